#!/usr/bin/env bash
# scripts/bench.sh — podbox performance benchmark (issue #6).
#
# Compares podbox (release build) with the usual peer stack — CNI bridge plugin (host-local
# IPAM) + crun/runc — on: pod ready (also against the kernel floor: examples/kernel_floor.rs),
# container in a pod, pod gone, scale (1,000 pods in a /22), and memory.
# Everything runs inside a throwaway *node*: new PID, mount, network and UTS namespaces whose init
# is podbox's pause; killing that init by PID ends everything the benchmark started. Nothing is
# created in the machine's root network namespace.
#
# Timing: hyperfine (-N, no shell; --prepare resets the state before every timed run) for the
# single-operation benchmarks; our own loop with `date +%s%N` for the scale run.
#
# Output: one table on stdout (median, min, max, runs, and ratios against the targets) and the
# same as JSON in target/bench-results.json (override with BENCH_JSON=path).
# Knobs: BENCH_RUNS (hyperfine runs per benchmark, default 20), SCALE_PODS (pods of the scale run,
# default 1000, at most 1021 in the /22; BENCH_SCALE is the older name),
# BENCH_ONLY=main|images|cni|cri (one part only; images: pull + unpack of a ~100 MB 5-layer image from a
# loopback registry vs podman and vs plain gzip|tar, start from it vs from the rootfs, disk use;
# cri: a crictl loop against `podbox cri` and containerd + runc, scripts/lib/bench-cri.sh),
# BENCH_CRI_ROUNDS (default 10), BENCH_MEM_RUNS (peak-RSS samples per memory figure, default 7),
# BENCH_PROFILE=release|dev (the podbox build measured; dev only to try the script out on a
# loaded machine: its numbers are not podbox's), BENCH_PODBOX_DIR (measure the podbox in that
# directory instead of building one).
#
# Needs root. Installs crun, runc, containernetworking-plugins, hyperfine, catatonit, time with
# apt-get if they are missing.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF="$HERE/scripts/bench.sh"

# --------------------------------------------------------------------------------------------
# Outer part: prerequisites, the node, cleanup.
# --------------------------------------------------------------------------------------------
if [[ "${1:-}" != --inner ]]; then
    [[ $(id -u) == 0 ]] || { echo "bench.sh: needs root" >&2; exit 1; }
    need=()
    for pair in crun:crun runc:runc /usr/lib/cni/bridge:containernetworking-plugins hyperfine:hyperfine \
                catatonit:catatonit /usr/bin/time:time jq:jq; do
        bin=${pair%%:*} pkg=${pair#*:}
        if [[ $bin == /* ]]; then [[ -x $bin ]] || need+=("$pkg"); else command -v "$bin" >/dev/null || need+=("$pkg"); fi
    done
    if ((${#need[@]})); then
        echo "bench.sh: installing ${need[*]}" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    fi
    PROFILE=${BENCH_PROFILE:-release}
    if [[ -n ${BENCH_PODBOX_DIR:-} ]]; then
        BIN=$BENCH_PODBOX_DIR # a podbox (and examples/kernel_floor) built elsewhere
    else
        (cd "$HERE" && cargo build --profile "$PROFILE" --quiet && cargo build --profile "$PROFILE" --quiet --example kernel_floor)
        # .cargo/config.toml names the host target (static glibc): outputs are under its tuple.
        BIN=$HERE/target/$(rustc --print host-tuple)/$([[ $PROFILE == dev ]] && echo debug || echo "$PROFILE")
    fi
    [[ -x "$HERE/rootfs/bin/busybox" ]] || "$HERE/scripts/build-rootfs.sh"

    WORK=$(mktemp -d /tmp/podbox-bench.XXXXXX)
    CG="podbox-bench-$$"
    UNSHARE=""
    INIT=""
    cleanup() {
        local rc=$?
        # Killing the node's init makes the kernel end every process of the node; its mount and
        # network namespaces (pins, veths, bridges) go with the last reference.
        if [[ -n $INIT ]]; then kill -KILL "$INIT" 2>/dev/null || true; fi
        if [[ -n $UNSHARE ]]; then wait "$UNSHARE" 2>/dev/null || true; fi
        # crun/runc cgroups live in the machine-wide cgroup hierarchies: remove ours (deepest first).
        for d in /sys/fs/cgroup/*/"$CG"; do
            [[ -d $d ]] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
        done
        rm -rf "$WORK"
        exit "$rc"
    }
    trap cleanup EXIT INT TERM

    source "$HERE/scripts/lib/node-init.sh"
    start_node_init "$BIN/podbox" pause
    [[ -n $INIT ]] || { echo "bench.sh: node init did not start" >&2; exit 1; }

    root_links_before=$(ip -o link | awk -F': ' '{print $2}' | sort)
    nsenter -t "$INIT" --net --pid --mount --uts -- \
        env BENCH_WORK="$WORK" BENCH_CG="$CG" BENCH_BIN="$BIN" BENCH_CRI_ROUNDS="${BENCH_CRI_ROUNDS:-10}" BENCH_JSON="${BENCH_JSON:-$HERE/target/bench-results.json}" \
        BENCH_RUNS="${BENCH_RUNS:-20}" BENCH_SCALE="${SCALE_PODS:-${BENCH_SCALE:-1000}}" BENCH_ONLY="${BENCH_ONLY:-}" "$SELF" --inner
    root_links_after=$(ip -o link | awk -F': ' '{print $2}' | sort)
    if [[ $root_links_before != "$root_links_after" ]]; then
        echo "bench.sh: WARNING: the root namespace's links changed during the run" >&2
    fi
    exit 0
fi

# --------------------------------------------------------------------------------------------
# Inner part: runs inside the node (PID 1 of this PID namespace is podbox's pause).
# --------------------------------------------------------------------------------------------
# All state (podbox root, netns pins, CNI IPAM, crun/runc state, bundles) lives on a tmpfs
# mounted in the node's private mount namespace, as /run is on a usual node: the work dir is on
# disk here, where each file create costs ~0.4 ms and would swamp both sides' numbers.
W=$BENCH_WORK/run
mkdir -p "$W"
mount -t tmpfs -o mode=0755,size=512m bench-run "$W"
PB="$BENCH_BIN/podbox"
ROOTFS="$HERE/rootfs"
# Containers without an image run from the plain rootfs (podbox has no compiled-in default).
export PODBOX_ROOTFS="$ROOTFS" PODBOX_IMAGES="$W/images"
R="$W/podbox-root"
RUNS=$BENCH_RUNS
SCALE=$BENCH_SCALE
CRUN=(crun --root "$W/crun-state")
RUNC=(runc --root "$W/runc-state")
BUSYBOX="$ROOTFS/bin/busybox"
ROWS="$W/rows.tsv" # name, median_ms, min_ms, max_ms, runs, tool
: >"$ROWS"
mkdir -p "$W/netns" "$W/cni-ipam" "$W/hf" "$W/crun-state" "$W/runc-state"

inner_cleanup() {
    # Containers first (their cgroups are machine-wide), then the rest goes with the node.
    for id in $("${CRUN[@]}" list -q 2>/dev/null); do "${CRUN[@]}" delete -f "$id" >/dev/null 2>&1 || true; done
    for id in $("${RUNC[@]}" list -q 2>/dev/null); do "${RUNC[@]}" delete -f "$id" >/dev/null 2>&1 || true; done
    "$PB" --root "$R" pod rm -f --all >/dev/null 2>&1 || true
    # The cri part's pods (its own root); its servers end with the node.
    "$PB" --root "$W/cri-root" pod rm -f --all >/dev/null 2>&1 || true
    if [[ -n ${RUN_CTD_MADE:-} ]]; then umount -l /run/containerd 2>/dev/null; rmdir /run/containerd 2>/dev/null || true; fi
}
trap inner_cleanup EXIT

log() { echo "== $*" >&2; }
fail() { echo "bench.sh: FAILED: $*" >&2; exit 1; }

ip link set lo up
# crun 1.8 refuses hybrid cgroups: hide cgroup2 in this (private) mount namespace only.
if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified; fi
"$PB" --root "$R" network config --subnet 10.244.0.0/22 >/dev/null

# ---- the peer's pieces -------------------------------------------------------------------------
cat >"$W/cni.json" <<EOF
{"cniVersion": "1.0.0", "name": "benchnet", "type": "bridge", "bridge": "cni0", "isGateway": true,
 "ipMasq": false, "hairpinMode": true,
 "ipam": {"type": "host-local", "subnet": "10.88.0.0/22", "dataDir": "$W/cni-ipam",
          "routes": [{"dst": "0.0.0.0/0"}]}}
EOF
(cd "$W" && crun spec >/dev/null && mv config.json spec.json)
grep -q '"RLIMIT_NOFILE"' "$W/spec.json" && [[ $(jq '[.process.rlimits[]?.hard] | max' "$W/spec.json") -le $(ulimit -Hn) ]] \
    || fail "crun spec's RLIMIT_NOFILE exceeds the hard limit"
# make_bundle DIR CGROUP ARGS_JSON [NETNS]: a bundle on podbox's rootfs (read-only, shared).
make_bundle() {
    local dir=$1 cg=$2 args=$3 netns=${4:-}
    mkdir -p "$dir"
    jq --arg root "$ROOTFS" --arg cg "/$BENCH_CG/$cg" --argjson args "$args" --arg netns "$netns" '
        .process.terminal = false | .process.args = $args | .root = {path: $root, readonly: true}
        | .linux.cgroupsPath = $cg | .hostname = "bench"
        | .mounts += [{destination: "/dev/catatonit", type: "bind", source: "/usr/bin/catatonit", options: ["bind", "ro"]}]
        | if $netns != "" then .linux.namespaces = [.linux.namespaces[] | if .type == "network" then .path = $netns else . end] else . end
    ' "$W/spec.json" >"$dir/config.json"
}
make_bundle "$W/b-true" true '["/bin/true"]'
make_bundle "$W/b-sleep" sleep '["/bin/sleep", "infinity"]'
make_bundle "$W/b-cat" cat '["/dev/catatonit", "-P"]'

# peer-up N: the peer's "pod ready": pin a netns, CNI bridge ADD into it, crun run -d a pause.
cat >"$W/peer-up" <<EOF
#!/bin/sh
set -e
n=\$1; pin=$W/netns/peer\$n
touch "\$pin"; unshare --net="\$pin" true
CNI_COMMAND=ADD CNI_CONTAINERID=peer\$n CNI_NETNS=\$pin CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni \\
    /usr/lib/cni/bridge <$W/cni.json >$W/netns/peer\$n.result
[ "\${2:-}" = nopause ] && exit 0
${CRUN[*]} run -d --bundle $W/b-peer\$n peer\$n </dev/null >/dev/null 2>&1
EOF
# peer-down N: the peer's "pod gone": CNI DEL, crun delete -f, netns removal.
cat >"$W/peer-down" <<EOF
#!/bin/sh
set -e
n=\$1; pin=$W/netns/peer\$n
[ -e "\$pin" ] || exit 0
CNI_COMMAND=DEL CNI_CONTAINERID=peer\$n CNI_NETNS=\$pin CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni \\
    /usr/lib/cni/bridge <$W/cni.json
[ "\${2:-}" = nopause ] || ${CRUN[*]} delete -f peer\$n
umount "\$pin"; rm -f "\$pin" $W/netns/peer\$n.result
EOF
# podbox state resets for hyperfine's --prepare (errors: "not there" is fine).
cat >"$W/pod-absent" <<EOF
#!/bin/sh
$PB --root $R pod rm -f "\$1" >/dev/null 2>&1 || true
EOF
cat >"$W/pod-present" <<EOF
#!/bin/sh
$PB --root $R pod create "\$1" --network bridge >/dev/null
EOF
# The kernel floor (examples/kernel_floor.rs) on its own bridge and subnet; between runs its
# pins are unmounted and its veth deleted (not timed).
FLOOR="$BENCH_BIN/examples/kernel_floor"
mkdir -p "$W/floor"
ip link add flr0 type bridge && ip addr add 10.245.0.1/24 dev flr0 && ip link set flr0 up
cat >"$W/floor-absent" <<EOF
#!/bin/sh
for ns in net ipc uts; do umount "$W/floor/\$ns" 2>/dev/null; done
ip link del flr1 2>/dev/null
true
EOF
cat >"$W/ctr-absent" <<EOF
#!/bin/sh
$PB --root $R rm -f "\$1" "\$2" >/dev/null 2>&1 || true
EOF
chmod +x "$W"/floor-absent "$W"/peer-up "$W"/peer-down "$W"/pod-absent "$W"/pod-present "$W"/ctr-absent
make_bundle "$W/b-peer0" peer0 '["/dev/catatonit", "-P"]' "$W/netns/peer0"

# ---- measurement helpers -----------------------------------------------------------------------
# hf NAME [hyperfine args...]: one hyperfine benchmark, appended to the rows.
hf() {
    local name=$1; shift
    log "$name"
    hyperfine -N --style none --warmup 2 --runs "$RUNS" --export-json "$W/hf/$name.json" "$@" >/dev/null \
        || fail "hyperfine $name"
    jq -r --arg n "$name" '.results[0] | def ms: . * 1e6 | round / 1000; [$n, (.median|ms), (.min|ms), (.max|ms), (.times|length), "hyperfine"] | @tsv' \
        "$W/hf/$name.json" >>"$ROWS"
}
# stats NAME FILE_OF_NS [TOOL]: median/min/max of nanosecond samples, appended to the rows.
stats() {
    sort -n "$2" | awk -v n="$1" -v t="${3:-loop}" '{v[NR]=$1} END {
        m = (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2
        printf "%s\t%.3f\t%.3f\t%.3f\t%d\t%s\n", n, m/1e6, v[1]/1e6, v[NR]/1e6, NR, t }' >>"$ROWS"
}
now() { date +%s%N; }
median_of() { awk -F'\t' -v n="$1" '$1 == n {print $2}' "$ROWS"; }

# assert_clean WHAT BRIDGE IPAMDIR: after a teardown nothing may be left: no veth on the node,
# no allocation, no process but the node's init and this script's ancestry. Veths in a dying
# netns are removed by the kernel in the background: wait for them (bounded) and report how long.
assert_clean() {
    local what=$1 ipam=$2 t0 left
    t0=$(now)
    for _ in $(seq 3000); do
        left=$(ip -o link show type veth | wc -l)
        [[ $left == 0 ]] && break
        sleep 0.01
    done
    [[ $left == 0 ]] || fail "$what: $left veths left"
    echo "$what.veths_gone_after_ms $(( ($(now) - t0) / 1000000 ))" >>"$W/notes"
    local allocs
    # both IPAMs keep one file per allocated address, named by the address
    allocs=$(find "$ipam" -type f -regextype posix-extended -regex '.*/[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+' | wc -l)
    [[ $allocs == 0 ]] || { find "$ipam" -type f >&2; fail "$what: $allocs IPAM allocations left"; }
    local procs
    # anything but the node's init, this script and its ps is a leak
    ps -e -o pid=,ppid= >"$W/ps"
    procs=$(awk -v me=$$ '$1 != 1 && $1 != me && $2 != me' "$W/ps" | wc -l)
    [[ $procs == 0 ]] || { ps -ef >&2; fail "$what: $procs processes left"; }
}
: >"$W/notes"
# only PART: whether to run a part (all unless BENCH_ONLY names one).
only() { [[ -z ${BENCH_ONLY:-} || $BENCH_ONLY == "$1" ]]; }
if only main; then
# ---- 1. pod ready ------------------------------------------------------------------------------
hf pod_ready.podbox --prepare "$W/pod-absent pb" "$PB --root $R pod create pb --network bridge"
"$W/pod-absent" pb
hf pod_ready.peer --prepare "$W/peer-down 0" "$W/peer-up 0"
"$W/peer-down" 0
hf pod_ready.floor --prepare "$W/floor-absent" "$FLOOR $W/floor flr1 flr0 10.245.0.2/24 10.245.0.1"
"$W/floor-absent"

# ---- 2. container in a pod ---------------------------------------------------------------------
"$W/pod-present" pc
hf container.podbox --prepare "$W/ctr-absent pc c1" "$PB --root $R run --pod pc --name c1 -- /bin/true"
hf container.crun "${CRUN[*]} run --bundle $W/b-true ct"
hf container.runc "${RUNC[*]} run --bundle $W/b-true ct"
hf container.crun_nocgroup "${CRUN[*]} --cgroup-manager=disabled run --bundle $W/b-true ct"
"$W/pod-absent" pc

# ---- 3. pod gone -------------------------------------------------------------------------------
hf pod_gone.podbox --prepare "$W/pod-present pg" "$PB --root $R pod rm -f pg"
hf pod_gone.peer --prepare "$W/peer-up 0" "$W/peer-down 0"

# ---- 4. scale ----------------------------------------------------------------------------------
# ping_all FILE: one ping from the node to every pod; FILE has lines "IP NETNS_PIN BRIDGE".
# Each ping leaves two neighbour entries (the node's for the pod, the pod's for the gateway),
# and the kernel's ARP table is one for the whole machine (gc_thresh3, 1024 by default), which
# collects only entries older than 5 s: 1,000 pings in a row overflow it and fail. So both
# entries are deleted after each ping (not timed). Other work on the machine fills the same
# table, so a failed ping is retried once a second later; the retries are noted.
ping_all() {
    local bad=0 retried=0 ip pin br
    while read -r ip pin br; do
        if ! "$BUSYBOX" ping -c1 -W2 -q "$ip" >/dev/null 2>&1; then
            retried=$((retried + 1)); sleep 1
            "$BUSYBOX" ping -c1 -W2 -q "$ip" >/dev/null 2>&1 || { echo "unreachable: $ip" >&2; bad=$((bad + 1)); }
        fi
        ip neigh del "$ip" dev "$br" 2>/dev/null || true
        nsenter --net="$pin" ip neigh flush dev eth0 2>/dev/null || true
    done <"$1"
    echo "$2.pings_retried $retried" >>"$W/notes"
    [[ $bad == 0 ]] || fail "$2: $bad pods unreachable"
}

# settle WHAT: wait (at most 15 s) until the machine has been idle for a quarter of a second,
# and note how long that took. The kernel removes network namespaces in the background
# (`cleanup_net`, under the rtnl lock); what the previous benchmark left it to remove would
# otherwise be timed in the first steps of the next loop, whose first ten are the scale ratio's
# baseline. Idle here: each CPU was busy (user, nice, system, irq, softirq in /proc/stat) at
# most 10% of its time in the window; per CPU, as that removal runs on one worker; time stolen
# by the hypervisor is no work of this machine's.
settle() {
    local t0 a b
    t0=$(now)
    ticks() { awk '/^cpu[0-9]/ {busy = $2 + $3 + $4 + $7 + $8; print $1, busy, busy + $5 + $6}' /proc/stat; }
    for _ in $(seq 60); do
        a=$(ticks); sleep 0.25; b=$(ticks)
        awk 'NR == FNR {busy[$1] = $2; all[$1] = $3; next}
             {d = $3 - all[$1]; if (d > 0 && ($2 - busy[$1]) / d > 0.1) bad = 1} END {exit bad}' \
            <(echo "$a") <(echo "$b") && break
    done
    echo "$1.settled_after_ms $(( ($(now) - t0) / 1000000 ))" >>"$W/notes"
}

settle scale.podbox
log "scale.podbox ($SCALE pods)"
: >"$W/scale-podbox.ns"; : >"$W/ips-podbox"
t_all=$(now)
for i in $(seq "$SCALE"); do
    t0=$(now)
    "$PB" --root "$R" pod create "s$i" --network bridge >/dev/null
    echo $(( $(now) - t0 )) >>"$W/scale-podbox.ns"
done
echo $(( $(now) - t_all )) >"$W/scale-podbox-total.ns"
"$PB" --root "$R" ps --json >/dev/null
for i in $(seq "$SCALE"); do "$PB" --root "$R" pod inspect "s$i" | jq -r '"\(.attachment.ip) \(.namespaces.net) \(.attachment.bridge)"'; done >"$W/ips-podbox"
[[ $(cut -d' ' -f1 "$W/ips-podbox" | sort -u | grep -c .) == "$SCALE" ]] || fail "podbox: not $SCALE distinct pod IPs"
ping_all "$W/ips-podbox" scale.podbox
t0=$(now)
"$PB" --root "$R" pod rm -f --all
echo $(( $(now) - t0 )) >"$W/scale-podbox-rm.ns"
assert_clean scale.podbox "$R/network/ipam"

settle scale.peer
log "scale.peer ($SCALE netns + CNI ADD)"
: >"$W/scale-peer.ns"
t_all=$(now)
for i in $(seq "$SCALE"); do
    t0=$(now)
    "$W/peer-up" "$i" nopause
    echo $(( $(now) - t0 )) >>"$W/scale-peer.ns"
done
echo $(( $(now) - t_all )) >"$W/scale-peer-total.ns"
for i in $(seq "$SCALE"); do echo "$(jq -r '.ips[0].address' "$W/netns/peer$i.result" | cut -d/ -f1) $W/netns/peer$i cni0"; done >"$W/ips-peer"
[[ $(cut -d' ' -f1 "$W/ips-peer" | sort -u | grep -c .) == "$SCALE" ]] || fail "peer: not $SCALE distinct pod IPs"
ping_all "$W/ips-peer" scale.peer
t0=$(now)
for i in $(seq "$SCALE"); do "$W/peer-down" "$i" nopause; done
echo $(( $(now) - t0 )) >"$W/scale-peer-rm.ns"
assert_clean scale.peer "$W/cni-ipam"

for who in podbox peer; do
    head -n 10 "$W/scale-$who.ns" >"$W/first10"; tail -n 10 "$W/scale-$who.ns" >"$W/last10"
    stats "scale.$who.first10" "$W/first10"
    stats "scale.$who.last10" "$W/last10"
    stats "scale.$who.create_total" "$W/scale-$who-total.ns"
    stats "scale.$who.teardown_total" "$W/scale-$who-rm.ns"
done
printf 'scale.pods\t%s\t%s\t%s\t1\tcount\n' "$SCALE" "$SCALE" "$SCALE" >>"$ROWS"

# ---- 5. memory ---------------------------------------------------------------------------------
log memory
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
# (time writes to a file: a detached container must not hold a pipe of ours open)
maxrss_kib() {
    /usr/bin/time -v -o "$W/time.out" "$@" </dev/null >/dev/null 2>&1
    awk -F': ' '/Maximum resident set size/ {print $2}' "$W/time.out"
}
mem_row() { printf '%s\t%s\t%s\t%s\t1\tKiB\n' "$1" "$2" "$2" "$2" >>"$ROWS"; }
# mem_rows NAME RESET CMD...: peak RSS of CMD over MEM_RUNS runs (RESET, a shell command, runs
# before each, not measured): median, min and max. One sample is within ~0.2 MB of the next, but
# the CLI's figure is page-cache text, so a neighbour's activity can move it.
MEM_RUNS=${BENCH_MEM_RUNS:-7}
mem_rows() {
    local name=$1 reset=$2; shift 2
    : >"$W/mem.samples"
    for _ in $(seq "$MEM_RUNS"); do
        sh -c "$reset" >/dev/null 2>&1 || true
        maxrss_kib "$@" >>"$W/mem.samples"
    done
    sort -n "$W/mem.samples" | awk -v n="$name" '{v[NR]=$1} END {
        printf "%s\t%s\t%s\t%s\t%d\tKiB\n", n, v[int((NR+1)/2)], v[1], v[NR], NR }' >>"$ROWS"
}

# The first create after the scale run's teardown also prunes the anti-spoofing elements of the
# removed pods (nft.rs: every 32 removals; `nft -j list` of the table): measured on its own.
mem_row mem.cli_pod_create_prune.podbox "$(maxrss_kib "$PB" --root "$R" pod create pm0 --network bridge)"
"$PB" --root "$R" pod rm -f pm0
mem_rows mem.cli_pod_create.podbox "$PB --root $R pod rm -f pm" "$PB" --root "$R" pod create pm --network bridge
pause_pid=$("$PB" --root "$R" pod inspect pm | jq -r .pause.pid)
mem_row mem.pause.podbox "$(rss_kib "$pause_pid")"
mem_rows mem.cli_run.podbox "$PB --root $R rm -f pm c1" "$PB" --root "$R" run --pod pm --name c1 -- /bin/true
mem_rows mem.cli_run.crun "${CRUN[*]} delete -f ct" "${CRUN[@]}" run --bundle "$W/b-true" ct
mem_rows mem.cli_run.runc "${RUNC[*]} delete -f ct" "${RUNC[@]}" run --bundle "$W/b-true" ct
mem_row mem.cli_run_d_pause.crun "$(maxrss_kib "${CRUN[@]}" run -d --bundle "$W/b-cat" pcat)"
mem_row mem.pause.catatonit "$(rss_kib "$("${CRUN[@]}" state pcat | jq .pid)")"
"${CRUN[@]}" run -d --bundle "$W/b-sleep" psleep </dev/null >/dev/null 2>&1
mem_row mem.pause.busybox_sleep "$(rss_kib "$("${CRUN[@]}" state psleep | jq .pid)")"
"${CRUN[@]}" delete -f pcat >/dev/null; "${CRUN[@]}" delete -f psleep >/dev/null
"$PB" --root "$R" pod rm -f pm

fi # only main

# ---- 6. images ---------------------------------------------------------------------------------
# A ~100 MB image in 5 gzip layers (busybox rootfs + base64 noise, which compresses like text),
# written as an OCI layout and pushed to docker-registry on the node's loopback. The image side
# lives on disk ($BENCH_WORK), as an image store does; the floor extracts to the same disk.
if only images; then
    for bin in docker-registry skopeo podman curl; do command -v $bin >/dev/null || fail "images: needs $bin"; done
    IMG=$BENCH_WORK/img
    PBI=("$PB" --root "$R" --images "$IMG/store")
    PM=(podman --root "$IMG/podman" --runroot "$W/podman-run" --storage-driver overlay --cgroup-manager cgroupfs --events-backend file)
    mkdir -p "$IMG/layout/blobs/sha256" "$IMG/src"
    echo '{"imageLayoutVersion":"1.0.0"}' >"$IMG/layout/oci-layout"
    log "images: building a 5-layer image"
    put_blob() { local d; d=$(sha256sum "$1" | cut -d' ' -f1); cp "$1" "$IMG/layout/blobs/sha256/$d"; echo "$d"; }
    # make_layer N: $IMG/l$N.tar.gz; writes "blob-digest diff-id size" to $IMG/l$N.desc
    make_layer() {
        local n=$1 dir=$IMG/src/l$1
        mkdir -p "$dir/data$n"
        if [[ $n == 1 ]]; then cp -a "$ROOTFS/." "$dir/"; fi
        for f in 1 2 3 4; do head -c 3900000 /dev/urandom | base64 >"$dir/data$n/f$f"; done
        tar -C "$dir" -cf "$IMG/l$n.tar" .
        gzip -c "$IMG/l$n.tar" >"$IMG/l$n.tar.gz"
        echo "$(put_blob "$IMG/l$n.tar.gz") $(sha256sum "$IMG/l$n.tar" | cut -d' ' -f1) $(stat -c %s "$IMG/l$n.tar.gz")" >"$IMG/l$n.desc"
        rm -f "$IMG/l$n.tar"
    }
    # make_image TAG N...: an image of layers N..., tagged TAG in the layout's index
    make_image() {
        local tag=$1; shift
        cat $(printf "$IMG/l%s.desc " "$@") | jq -R -s '
            split("\n") | map(select(length > 0) | split(" "))
            | {architecture: "amd64", os: "linux", config: {Cmd: ["/bin/true"]},
               rootfs: {type: "layers", diff_ids: map("sha256:" + .[1])}}' >"$IMG/config-$tag.json"
        local cd; cd=$(put_blob "$IMG/config-$tag.json")
        cat $(printf "$IMG/l%s.desc " "$@") | jq -R -s --arg cd "sha256:$cd" --argjson cs "$(stat -c %s "$IMG/config-$tag.json")" '
            split("\n") | map(select(length > 0) | split(" "))
            | {schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
               config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $cd, size: $cs},
               layers: map({mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: ("sha256:" + .[0]), size: (.[2] | tonumber)})}' >"$IMG/manifest-$tag.json"
        local md; md=$(put_blob "$IMG/manifest-$tag.json")
        jq -n --arg d "sha256:$md" --argjson s "$(stat -c %s "$IMG/manifest-$tag.json")" --arg t "$tag" \
            '{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $d, size: $s, annotations: {"org.opencontainers.image.ref.name": $t}}' >>"$IMG/refs"
    }
    for n in 1 2 3 4 5 6; do make_layer "$n"; done
    : >"$IMG/refs"
    make_image v1 1 2 3 4 5
    make_image b 1 2 3 4 6 # shares 4 layers with v1
    jq -s '{schemaVersion: 2, manifests: .}' "$IMG/refs" >"$IMG/layout/index.json"
    mkdir -p "$IMG/registry"
    printf 'version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:5000\n' "$IMG/registry" >"$IMG/registry.yml"
    docker-registry serve "$IMG/registry.yml" >"$IMG/registry.log" 2>&1 &
    REG_PID=$!
    for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:5000/v2/ && break; sleep 0.1; done
    for t in v1 b; do skopeo copy -q --insecure-policy --dest-tls-verify=false "oci:$IMG/layout:$t" "docker://127.0.0.1:5000/bench:$t"; done
    REF=127.0.0.1:5000/bench:v1
    echo "images: bench:v1 is $(cat "$IMG"/l[1-5].desc | awk '{s += $3} END {printf "%.0f", s / 1048576}') MiB in 5 gzip layers ($(du -sh --apparent-size "$IMG"/src/l[1-5] | awk '{print $1}' | paste -sd+) unpacked)" >>"$W/notes"

    printf '#!/bin/sh\n%s image rm -f %s >/dev/null 2>&1; %s image prune >/dev/null\n' "${PBI[*]}" "$REF" "${PBI[*]}" >"$W/img-absent"
    printf '#!/bin/sh\n%s rmi -a -f >/dev/null 2>&1 || true\n' "${PM[*]}" >"$W/podman-absent"
    printf '#!/bin/sh\nset -e\nrm -rf %s/floor; mkdir -p %s/floor\nfor n in 1 2 3 4 5; do gzip -dc %s/l$n.tar.gz | tar -x -C %s/floor; done\n' "$IMG" "$IMG" "$IMG" "$IMG" >"$W/floor-x"
    chmod +x "$W/img-absent" "$W/podman-absent" "$W/floor-x"
    IRUNS=$(( RUNS < 5 ? RUNS : 5 )) # each run moves ~200 MB
    RUNS_SAVED=$RUNS; RUNS=$IRUNS
    hf pull.podbox --prepare "$W/img-absent" "${PBI[*]} image pull -q $REF"
    hf pull.podman --prepare "$W/podman-absent" "${PM[*]} pull -q --tls-verify=false $REF"
    hf pull.floor "$W/floor-x"
    RUNS=$RUNS_SAVED
    "$W/podman-absent"; rm -rf "$IMG/floor" "$IMG/podman"

    "${PBI[@]}" image pull -q "$REF"
    "${PBI[@]}" pod create pi --network none >/dev/null
    hf start.image5.podbox --prepare "$W/ctr-absent pi c1" "${PBI[*]} run --pod pi --name c1 --image $REF --pull Never -- /bin/true"
    hf start.rootfs.podbox --prepare "$W/ctr-absent pi c1" "${PBI[*]} run --pod pi --name c1 -- /bin/true"
    "${PBI[@]}" pod rm -f pi

    # disk: bench:b shares 4 of its 5 layers with bench:v1; each layer is stored and unpacked once.
    "${PBI[@]}" image pull -q 127.0.0.1:5000/bench:b
    echo "images: bench:v1 + bench:b (4 layers shared): $(ls "$IMG/store/layers" | wc -l) unpacked layers in $(du -sh "$IMG/store/layers" | cut -f1), blobs $(du -sh "$IMG/store/blobs" | cut -f1)" >>"$W/notes"
    kill "$REG_PID"; wait "$REG_PID" 2>/dev/null || true
    rm -rf "$IMG"
fi

# ---- 7. CNI plugin ADD / DEL: podbox-cni vs the reference bridge plugin ---------------------------
# The same network config but for type, bridge and range (no ipMasq, no ports: the bridge
# plugin's iptables work is then nil too), the same pinned netns, the same wrapper on both sides.
if only cni; then
    mkdir -p "$W/cnibin"
    # The plugin's own binary (src/bin/podbox-cni.rs), as installed; a build without one
    # (BENCH_PODBOX_DIR of an older build) is measured as podbox behind a symlink.
    if [[ -x $BENCH_BIN/podbox-cni ]]; then cni_bin=$BENCH_BIN/podbox-cni; else cni_bin=$PB; fi
    ln -sf "$cni_bin" "$W/cnibin/podbox-cni"
    echo "cni: podbox-cni is $(basename "$cni_bin") ($(( $(stat -c %s "$cni_bin") / 1048576 )) MiB)" >>"$W/notes"
    sed -e 's/"type": "bridge", "bridge": "cni0"/"type": "podbox-cni", "bridge": "pbcni0"/' \
        -e 's#10.88.0.0/22#10.90.0.0/22#' -e 's/"benchnet"/"benchnet-pb"/' "$W/cni.json" >"$W/podbox-cni.json"
    touch "$W/netns/cnib"; unshare --net="$W/netns/cnib" true
    cat >"$W/cni-op" <<EOF
#!/bin/sh
# cni-op PLUGIN CONF COMMAND: one CNI call for container "bench" in the pinned netns.
CNI_COMMAND=\$3 CNI_CONTAINERID=bench CNI_NETNS=$W/netns/cnib CNI_IFNAME=eth0 CNI_PATH=$W/cnibin:/usr/lib/cni \\
    PODBOX_CNI_STATE_DIR=$W/podbox-cni-state exec \$1 <\$2 >/dev/null
EOF
    chmod +x "$W/cni-op"
    for side in "podbox_cni $W/cnibin/podbox-cni $W/podbox-cni.json" "bridge /usr/lib/cni/bridge $W/cni.json"; do
        set -- $side
        hf "cni_add.$1" --prepare "$W/cni-op $2 $3 DEL" "$W/cni-op $2 $3 ADD"
        "$W/cni-op" "$2" "$3" DEL
        hf "cni_del.$1" --prepare "$W/cni-op $2 $3 ADD" "$W/cni-op $2 $3 DEL"
        "$W/cni-op" "$2" "$3" DEL
    done
    umount "$W/netns/cnib"; rm -f "$W/netns/cnib"
    assert_clean cni "$W/cni-ipam"
fi

# ---- 8. CRI: podbox cri vs containerd + runc, the same crictl loop ------------------------------
if only cri; then
    # shellcheck source=lib/bench-cri.sh
    source "$HERE/scripts/lib/bench-cri.sh"
fi

# ---- report ------------------------------------------------------------------------------------
ratio() { awk -v a="$(median_of "$1")" -v b="$(median_of "$2")" 'BEGIN { printf "%.3f", a / b }'; }
: >"$W/ratios.tsv"
# target NAME NUMERATOR DENOMINATOR LIMIT
target() {
    local r; r=$(ratio "$2" "$3")
    printf '%s\t%s\t%s\t%s\n' "$1" "$r" "$4" "$(awk -v r="$r" -v l="$4" 'BEGIN { print (r <= l) ? "met" : "MISSED" }')" >>"$W/ratios.tsv"
}
if only main; then
target "pod ready: podbox / peer" pod_ready.podbox pod_ready.peer 0.333
target "pod ready: podbox / kernel floor" pod_ready.podbox pod_ready.floor 3.0
target "container: podbox / crun" container.podbox container.crun 0.7
target "container: podbox / runc" container.podbox container.runc 1.0
target "pod gone: podbox / peer" pod_gone.podbox pod_gone.peer 0.2
target "scale: podbox last10 / first10" scale.podbox.last10 scale.podbox.first10 1.10
target "scale: peer last10 / first10" scale.peer.last10 scale.peer.first10 9999
target "scale: podbox create total / peer" scale.podbox.create_total scale.peer.create_total 9999
target "scale: podbox teardown total / peer" scale.podbox.teardown_total scale.peer.teardown_total 0.2
target "peak RSS: podbox pod create / crun run" mem.cli_pod_create.podbox mem.cli_run.crun 1.0
target "peak RSS: podbox run / crun run" mem.cli_run.podbox mem.cli_run.crun 1.0
pause_rss=$(median_of mem.pause.podbox)
printf '%s\t%s\t%s\t%s\n' "pause RSS KiB (limit)" "$pause_rss" 100 "$( ((pause_rss <= 100)) && echo met || echo MISSED)" >>"$W/ratios.tsv"
fi
if only cni; then
target "CNI ADD: podbox-cni / bridge plugin" cni_add.podbox_cni cni_add.bridge 0.333
target "CNI DEL: podbox-cni / bridge plugin" cni_del.podbox_cni cni_del.bridge 0.333
fi
if only cri && [[ -n $(median_of cri_ready.podbox) ]]; then
target "CRI pod+container ready: podbox / containerd" cri_ready.podbox cri_ready.containerd 0.2
target "CRI ready without crictl's cost: podbox / containerd" cri_ready_server.podbox cri_ready_server.containerd 9999
target "CRI stop+rm pod+container: podbox / containerd" cri_gone.podbox cri_gone.containerd 9999
target "CRI idle RSS: podbox cri / containerd" mem.cri_idle.podbox mem.cri_idle.containerd 0.25
fi
if only images; then
target "image pull+unpack: podbox / podman" pull.podbox pull.podman 0.5
target "image pull+unpack: podbox / gzip|tar floor" pull.podbox pull.floor 1.3
target "start: 5-layer image / rootfs" start.image5.podbox start.rootfs.podbox 1.1
fi

{
    echo "podbox benchmark — $(nproc) cores, kernel $(uname -r), $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
    echo
    { printf 'benchmark\tmedian\tmin\tmax\truns\tunit/tool\n'
      awk -F'\t' '{ u = ($6 == "KiB" || $6 == "count") ? $6 : "ms " $6; printf "%s\t%s\t%s\t%s\t%s\t%s\n", $1, $2, $3, $4, $5, u }' "$ROWS"; } | column -t -s $'\t'
    echo
    { printf 'ratio (medians)\tvalue\ttarget\tverdict\n'; sed 's/\t9999\t.*/\t-\t-/' "$W/ratios.tsv"; } | column -t -s $'\t'
    echo
    sed 's/^/note: /' "$W/notes"
} | tee "$W/table.txt"

mkdir -p "$(dirname "$BENCH_JSON")"
jq -n --rawfile rows "$ROWS" --rawfile ratios "$W/ratios.tsv" --rawfile notes "$W/notes" \
    --arg cpu "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)" --arg kernel "$(uname -r)" --argjson nproc "$(nproc)" '
    {machine: {nproc: $nproc, kernel: $kernel, cpu: $cpu},
     results: [$rows | split("\n")[] | select(length > 0) | split("\t")
               | {name: .[0], median: (.[1]|tonumber), min: (.[2]|tonumber), max: (.[3]|tonumber), runs: (.[4]|tonumber),
                  unit: (if .[5] == "KiB" or .[5] == "count" then .[5] else "ms" end), tool: .[5]}],
     ratios: [$ratios | split("\n")[] | select(length > 0) | split("\t")
              | {name: .[0], value: (.[1]|tonumber), target: (if .[2] == "9999" then null else (.[2]|tonumber) end),
                 verdict: (if .[2] == "9999" then null else .[3] end)}],
     notes: [$notes | split("\n")[] | select(length > 0)]}' >"$BENCH_JSON"
echo "results: $BENCH_JSON" >&2
