#!/usr/bin/env bash
# Set up a fresh machine for podbox: Debian packages it uses at run time and in tests, the
# busybox root file system, and a build of podbox. Idempotent; run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "setup.sh: run as root (podbox creates namespaces, mounts and links)" >&2; exit 1; }

need=()
command -v busybox >/dev/null 2>&1 && file -L "$(command -v busybox)" 2>/dev/null | grep -q static || need+=(busybox-static)
command -v nft >/dev/null || need+=(nftables)
command -v ip >/dev/null || need+=(iproute2)
command -v nsenter >/dev/null && command -v unshare >/dev/null || need+=(util-linux)
command -v file >/dev/null || need+=(file)
command -v ping >/dev/null || need+=(iputils-ping)
# tests/images.rs: a registry on loopback inside the node, images pushed with skopeo
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v skopeo >/dev/null || need+=(skopeo)
command -v curl >/dev/null || need+=(curl)
# tests/hardening.rs: hostile frames are crafted with python3 (socket, struct) from the node, and
# an io_uring probe is compiled with `cc -static`.
command -v python3 >/dev/null || need+=(python3)
command -v cc >/dev/null || need+=(gcc)
[ -e "$(cc -print-file-name=libc.a 2>/dev/null)" ] && [ -e /usr/include/linux/io_uring.h ] || need+=(libc6-dev linux-libc-dev)
# tests/reliability.rs kills the CLI at chosen syscalls with strace's fault injection.
command -v strace >/dev/null || need+=(strace)
# tests/cni.rs: the reference CNI plugins (bridge, host-local, portmap, loopback), which use iptables.
[ -x /usr/lib/cni/bridge ] || [ -x /opt/cni/bin/bridge ] || need+=(containernetworking-plugins)
command -v iptables >/dev/null || need+=(iptables)
# tests/containerd.rs drives podbox through containerd's runc shim (ctr comes with it).
command -v containerd >/dev/null && command -v ctr >/dev/null || need+=(containerd)
# tests/cri.rs builds crictl from the offline cri-tools sources (../shared/conformance) with Go.
command -v go >/dev/null || need+=(golang-go)
# ../shared/conformance/critest-images.sh (the images critest pulls, built by scripts/test.sh)
# takes containerd's pause from catatonit.
command -v catatonit >/dev/null || need+=(catatonit)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
[ -x rootfs/bin/busybox ] && [ -e rootfs/usr/sbin/httpd ] && [ -x rootfs/var/www/cgi-bin/whoami ] || ./scripts/build-rootfs.sh
cargo build --quiet ${PODBOX_RELEASE:+--release}
