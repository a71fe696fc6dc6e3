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
# tests/containerd.rs drives podbox through containerd's runc shim (ctr comes with it).
command -v containerd >/dev/null && command -v ctr >/dev/null || need+=(containerd)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
[ -x rootfs/bin/busybox ] && [ -e rootfs/usr/sbin/httpd ] && [ -x rootfs/var/www/cgi-bin/whoami ] || ./scripts/build-rootfs.sh
cargo build --quiet ${PODBOX_RELEASE:+--release}
