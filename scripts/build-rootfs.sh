#!/usr/bin/env bash
# Build rootfs/, the root file system every podbox container runs from, out of Debian's
# busybox-static: one static binary, a link per applet, and the few files a shell and the
# networking applets expect. Idempotent; installs busybox-static when missing.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$here/rootfs}

if [ ! -x /bin/busybox ] || ! /bin/busybox --list >/dev/null 2>&1 || ! file -L /bin/busybox 2>/dev/null | grep -q static; then
  if ! dpkg -s busybox-static >/dev/null 2>&1; then
    echo "installing busybox-static" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null || {
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null; }
  fi
fi
bb=/bin/busybox

tmp="$out.tmp.$$"
rm -rf "$tmp"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,root,var/www,var/log,run,home}
chmod 1777 "$tmp/tmp"
install -m 0755 "$bb" "$tmp/bin/busybox"
# A link per applet where busybox installs it (/bin/sh, /usr/bin/wget, /usr/sbin/httpd, ...).
"$bb" --list-full | while read -r path; do
  [ "$path" = bin/busybox ] && continue
  mkdir -p "$tmp/$(dirname "$path")"
  ln -sf /bin/busybox "$tmp/$path"
done
cat > "$tmp/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
user:x:1000:1000:user:/home/user:/bin/sh
P
cat > "$tmp/etc/group" <<'G'
root:x:0:
daemon:x:1:
tty:x:5:
users:x:100:user
nogroup:x:65534:
user:x:1000:
G
mkdir -p "$tmp/home/user" && chown 1000:1000 "$tmp/home/user"
: > "$tmp/etc/hostname"; : > "$tmp/etc/hosts"; : > "$tmp/etc/resolv.conf"
echo '<html><body>hello from podbox</body></html>' > "$tmp/var/www/index.html"
# whoami: the client address the server saw (no NAT between pods; the node's address when masqueraded).
# httpd listens on IPv6 too and reports IPv4 peers as [::ffff:a.b.c.d]; print the plain address.
mkdir -p "$tmp/var/www/cgi-bin"
cat > "$tmp/var/www/cgi-bin/whoami" <<'W'
#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
echo "$REMOTE_ADDR" | sed 's/^\[::ffff:\(.*\)\]$/\1/; s/^\[\(.*\)\]$/\1/'
W
chmod 0755 "$tmp/var/www/cgi-bin/whoami"
chmod 0600 "$tmp/root" 2>/dev/null || true; chmod 0700 "$tmp/root"
printf "Built by scripts/build-rootfs.sh from Debian's busybox-static; everything here but this file is ignored by git.\n" > "$tmp/README.md"
echo "podbox rootfs from $("$bb" | head -1)" > "$tmp/etc/podbox-release"

rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "rootfs ready: $out ($(ls "$out/bin" | wc -l) entries in /bin)"
