#!/usr/bin/env bash
# The OCI runtime-tools validation suite (opencontainers/runtime-tools 260e151, built offline from
# ../shared/conformance) against podbox-runc, runc and crun, as root. Every test program
# (validation/*/*.t) runs on its own, with `timeout 60`, in fresh private mount, network and PID
# namespaces whose PID 1 is the test program itself: it does not reap the container inits
# reparented to it (nor does this machine's PID 1, where the suite's numbers in
# ../shared/conformance were measured), and when it exits the kernel ends and releases everything
# left in its PID namespace. A tmpfs on /run keeps the runtimes' state off the machine; crun also
# gets /sys/fs/cgroup/unified unmounted there (it refuses the hybrid layout). A file passes when it exits 0 and no check says "not ok".
# Prints a table (per file: pass, or FAIL with ok/total checks) with the totals, writes it to
# target/conformance-oci.txt and the TAP output of each run to target/conformance/logs/RUNTIME/.
#
#   scripts/conformance-oci.sh                 # all files, all three runtimes (~10 min)
#   RUNTIMES="podbox runc" FILES="pidfile hooks_stdin" scripts/conformance-oci.sh
#   CONFORMANCE_DIR=/path/to/shared/conformance  # where build.sh and the sources are
#   PODBOX_BIN=target/x86_64-unknown-linux-gnu/debug/podbox              # test this build instead of building --release
# New cgroups the runs leave behind (failed tests do) are removed at the end.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$repo/target/conformance
[ "$(id -u)" = 0 ] || { echo "conformance-oci.sh: run as root (the runtimes need it)" >&2; exit 1; }
conf=${CONFORMANCE_DIR:-}
for d in "$repo/../shared/conformance" "$repo/../../shared/conformance"; do
  [ -z "$conf" ] && [ -x "$d/build.sh" ] && conf=$(cd "$d" && pwd)
done
[ -n "$conf" ] || { echo "conformance-oci.sh: no ../shared/conformance/build.sh; set CONFORMANCE_DIR" >&2; exit 1; }

"$conf/build.sh" "$out" oci >/dev/null
# podbox: a copy of the release build (or of PODBOX_BIN), so that rebuilding meanwhile changes
# nothing mid-run.
bin=${PODBOX_BIN:-}
if [ -z "$bin" ]; then
  (cd "$repo" && cargo build --release -q)
  bin=$repo/target/$(rustc --print host-tuple)/release/podbox # .cargo/config.toml: under the host tuple
fi
mkdir -p "$out/podbox"
cp "$bin" "$out/podbox/podbox.bin"
ln -sf podbox.bin "$out/podbox/podbox-runc"

declare -A BIN=([podbox]=$out/podbox/podbox-runc [runc]=$(command -v runc || true) [crun]=$(command -v crun || true))
runtimes=()
for r in ${RUNTIMES:-podbox runc crun}; do
  if [ -n "${BIN[$r]:-}" ]; then runtimes+=("$r"); else echo "conformance-oci.sh: $r not installed, skipped" >&2; fi
done
cd "$out/runtime-tools"
files=()
if [ -n "${FILES:-}" ]; then
  for f in $FILES; do files+=("validation/$f/$f.t"); done
else
  for f in validation/*/*.t; do files+=("$f"); done
fi

cgroups_before=$(mktemp)
# The suite's programs make their bundles with Go's os.MkdirTemp (ocitest*) and leave them when a
# check fails: give them a directory of ours and remove it at the end, whatever happens.
export TMPDIR
TMPDIR=$(mktemp -d /tmp/podbox-conformance-XXXXXX)
# Searchable by all, as /tmp is: a user-namespaced container's root reaches its bundle through it.
chmod 0711 "$TMPDIR"
trap 'rm -rf "$TMPDIR" "$cgroups_before"' EXIT
find /sys/fs/cgroup -mindepth 1 -type d 2>/dev/null | sort >"$cgroups_before"
start=$(date +%s)
declare -A RESULT PASSED
for r in "${runtimes[@]}"; do PASSED[$r]=0; mkdir -p "$out/logs/$r"; done
for f in "${files[@]}"; do
  name=$(basename "$f" .t)
  for r in "${runtimes[@]}"; do
    log=$out/logs/$r/$name.log
    hide=""
    [ "$r" = crun ] && hide="umount /sys/fs/cgroup/unified 2>/dev/null || true;"
    set +e
    RUNTIME=${BIN[$r]} timeout -k 5 60 unshare --mount --net --pid --fork --mount-proc --propagation private -- \
      sh -c "mount -t tmpfs -o mode=755 conformance-run /run; $hide ip link set lo up; exec ./$f" \
      </dev/null >"$log" 2>&1
    rc=$?
    set -e
    ok=$(grep -c '^ok ' "$log" || true)
    nok=$(grep -c '^not ok ' "$log" || true)
    if [ "$rc" = 0 ] && [ "$nok" = 0 ] && [ $((ok)) -gt 0 ]; then
      RESULT[$name,$r]=pass; PASSED[$r]=$((PASSED[$r] + 1))
    elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
      RESULT[$name,$r]="TIMEOUT $ok/$((ok + nok))"
    else
      RESULT[$name,$r]="FAIL $ok/$((ok + nok))"
    fi
  done
done
elapsed=$(( $(date +%s) - start ))

# Leave no cgroup behind: remove (deepest first) the empty ones the runs created.
find /sys/fs/cgroup -mindepth 1 -type d 2>/dev/null | sort | comm -13 "$cgroups_before" - | sort -r | xargs -r rmdir 2>/dev/null || true
rm -f "$cgroups_before"

report=$repo/target/conformance-oci.txt
{
  printf '%-36s' "file"; for r in "${runtimes[@]}"; do printf ' %-16s' "$r"; done; echo
  for f in "${files[@]}"; do
    name=$(basename "$f" .t)
    printf '%-36s' "$name"; for r in "${runtimes[@]}"; do printf ' %-16s' "${RESULT[$name,$r]}"; done; echo
  done
  printf '%-36s' "passed (of ${#files[@]})"; for r in "${runtimes[@]}"; do printf ' %-16s' "${PASSED[$r]}"; done; echo
  echo "took ${elapsed}s; $(uname -r); podbox $(git -C "$repo" describe --always --dirty 2>/dev/null || echo '?'), $(runc --version 2>/dev/null | head -1), $(crun --version 2>/dev/null | head -1)"
} | tee "$report"
