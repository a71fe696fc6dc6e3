#!/usr/bin/env bash
# scripts/scale-profile.sh — where `pod create` gets slower as a node fills up (issue #19).
#
# Two throwaway nodes run side by side: "small" holds SMALL pods (default 10), "big" BIG pods
# (default 880; a bridge takes at most 1,023 ports). Then each node creates one more pod in turn,
# PAIRS times (default 60), so that both see the same machine at the same moments and the VM's
# drift cancels out: the difference is what the pods already there cost. Each create runs with
# PODBOX_TRACE=1, and the script prints, per step of `pod create`, the median in each node and
# the difference. With `perf` (Debian's linux-perf), PAIRS more paired creates run while it
# samples the whole machine, and it prints the kernel and user functions whose samples grew most
# from the small node's creates to the big node's (each node runs its own copy of the binary, so
# the samples are told apart by command name).
#
# Creates are paired, not timed in one long loop, and that has a cost of its own: between two
# creates on the big node the other node has run, so the big bridge's lists are cold in the
# cache and the growth shows larger than in scripts/bench.sh's loop, where they stay warm.
#
# Knobs: SMALL, BIG, PAIRS, BIN (a release podbox; built if not given). Needs root. Everything
# runs inside the two nodes (new PID, mount, network and UTS namespaces, podbox's pause as init).
# On exit, also on failure or Ctrl-C, each node's pods are removed (their cgroups are the
# machine's), both inits are killed by PID and the scratch directory is removed.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SMALL=${SMALL:-10} BIG=${BIG:-880} PAIRS=${PAIRS:-60}
[[ $(id -u) == 0 ]] || { echo "scale-profile.sh: needs root" >&2; exit 1; }
for v in "$SMALL" "$BIG" "$PAIRS"; do
    [[ $v =~ ^[0-9]+$ ]] || { echo "scale-profile.sh: SMALL, BIG and PAIRS are whole numbers (got '$v')" >&2; exit 1; }
done
(( SMALL >= 1 && BIG > SMALL && PAIRS >= 1 && BIG + 2 * PAIRS <= 1020 )) ||
    { echo "scale-profile.sh: need 1 <= SMALL < BIG, PAIRS >= 1 and BIG + 2 * PAIRS <= 1020 (a bridge takes 1,023 ports)" >&2; exit 1; }
if [[ -z ${BIN:-} ]]; then
    (cd "$HERE" && cargo build --release --quiet)
    BIN=$HERE/target/$(rustc --print host-tuple)/release/podbox
fi
[[ -x "$HERE/rootfs/bin/busybox" ]] || "$HERE/scripts/build-rootfs.sh"

WORK=$(mktemp -d /tmp/podbox-scale-profile.XXXXXX)
declare -A INITS=() UNSHARES=()
PERF_PID=""
# in_node NODE CMD...: CMD in NODE's namespaces, with the node's state root and podbox copy.
in_node() {
    local n=$1; shift
    nsenter -t "${INITS[$n]}" --net --pid --mount --uts -- \
        env PODBOX_ROOTFS="$HERE/rootfs" PB="$WORK/pb-$n" R="$WORK/$n/root" "$@"
}
cleanup() {
    local rc=$? n u
    trap - EXIT INT TERM
    if [[ -n $PERF_PID ]]; then kill -INT "$PERF_PID" 2>/dev/null || true; wait "$PERF_PID" 2>/dev/null || true; fi
    # The pods first: their cgroups are in the machine's hierarchies, which outlive the node.
    for n in "${!INITS[@]}"; do
        in_node "$n" bash -c '[[ ! -d $R ]] || "$PB" --root "$R" pod rm -f --all >/dev/null' ||
            { echo "scale-profile.sh: removing the pods of node $n failed" >&2; rc=1; }
    done
    # Killing a node's init ends every process in it; its namespaces, the pods' veths and the
    # tmpfs with the state go with the last reference. A node whose init was not seen in time:
    # whatever unshare has started.
    for n in "${!UNSHARES[@]}"; do
        u=${UNSHARES[$n]}
        if [[ -n ${INITS[$n]:-} ]]; then
            kill -KILL "${INITS[$n]}" 2>/dev/null || true
        else
            for c in $(cat "/proc/$u/task/$u/children" 2>/dev/null); do kill -KILL "$c" 2>/dev/null || true; done
        fi
        wait "$u" 2>/dev/null || true
    done
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT INT TERM

# One copy of the binary per node: perf tells their samples apart by command name.
cp "$BIN" "$WORK/pb-small"; cp "$BIN" "$WORK/pb-big"
source "$HERE/scripts/lib/node-init.sh"
for n in small big; do
    start_node_init "$BIN" pause
    UNSHARES[$n]=$UNSHARE
    [[ -n $INIT ]] || { echo "scale-profile.sh: node init did not start" >&2; exit 1; }
    INITS[$n]=$INIT
done
for n in small big; do
    mkdir -p "$WORK/$n"
    # The state on a tmpfs of the node's own mount namespace: it goes with the node.
    in_node "$n" bash -c 'mount -t tmpfs -o mode=0755,size=512m profile "${R%/root}" && ip link set lo up &&
        "$PB" --root "$R" network config --subnet 10.244.0.0/22 >/dev/null'
done
fill() { in_node "$1" bash -ec 'for i in $(seq "$0"); do "$PB" --root "$R" pod create "f$i" --network bridge >/dev/null; done' "$2"; }
echo "scale-profile.sh: filling the nodes ($SMALL and $BIG pods)" >&2
fill small "$SMALL"; fill big "$BIG"

echo "scale-profile.sh: $PAIRS paired creates, timed" >&2
# One create: its wall time (µs) on stdout's first line, then its steps (name, tab, µs). A
# failed create stops the script with podbox's message.
one='t0=$(date +%s%N)
     PODBOX_TRACE=1 "$PB" --root "$R" pod create "x$0" --network bridge 2>"${R%/root}/trace" >/dev/null ||
         { grep -v "^podbox-trace " "${R%/root}/trace" >&2; exit 1; }
     t1=$(date +%s%N); echo "total $(( (t1 - t0) / 1000 ))"
     sed -n "s/^podbox-trace \(.*\) \([0-9.]*\) ms$/\1\t\2/p" "${R%/root}/trace" | awk -F"\t" "{printf \"%s\t%d\n\", \$1, \$2 * 1000}"'
# pairs FROM TO SUFFIX: creates FROM..TO in both nodes in turn, their steps into NODE.steps.
pairs() {
    for i in $(seq "$1" "$2"); do
        in_node small bash -c "$one" "$i" >>"$WORK/small.steps$3"
        in_node big bash -c "$one" "$i" >>"$WORK/big.steps$3"
    done
}
pairs 1 "$PAIRS" ""
# Then as many again under perf, which slows everything down: its creates are not timed.
if command -v perf >/dev/null; then
    echo "scale-profile.sh: $PAIRS paired creates under perf" >&2
    perf record -q -F 20000 -a -g -o "$WORK/perf.data" -- sleep 3600 2>"$WORK/perf.log" &
    PERF_PID=$!
    sleep 1
    if kill -0 "$PERF_PID" 2>/dev/null; then
        pairs "$((PAIRS + 1))" "$((2 * PAIRS))" .perf
        kill -INT "$PERF_PID" 2>/dev/null || true
    else
        echo "scale-profile.sh: perf did not start: $(head -c 300 "$WORK/perf.log")" >&2
    fi
    wait "$PERF_PID" 2>/dev/null || true; PERF_PID=""
fi

echo "== pod create, median per step (ms): with $SMALL pods, with $BIG pods, difference"
python3 - "$WORK" <<'EOF'
import collections, statistics, sys
w = sys.argv[1]
def steps(f):
    d = collections.defaultdict(list)
    for line in open(f"{w}/{f}.steps"):
        if line.startswith("total "):
            d["(whole command)"].append(int(line.split()[1]) / 1000)
        elif "\t" in line:
            name, us = line.rstrip("\n").rsplit("\t", 1)
            d[name].append(int(us) / 1000)
    return d
a, b = steps("small"), steps("big")
for name in a:
    if name in b:
        x, y = statistics.median(a[name]), statistics.median(b[name])
        print(f"  {name:<52} {x:7.3f} {y:7.3f} {y - x:+7.3f}")
EOF
if [[ -f $WORK/perf.data ]]; then
    echo "== functions whose samples grew most (samples at 20 kHz: small node, big node, difference)"
    # Tab-separated: Rust's symbol names have spaces in them. Fields: overhead, samples, command,
    # symbol ("[k] name" or "[.] name").
    perf report -i "$WORK/perf.data" --no-children --sort comm,sym --stdio -n -g none -t $'\t' 2>/dev/null | python3 -c '
import sys, collections
n = collections.defaultdict(lambda: [0, 0])
for line in sys.stdin:
    f = [x.strip() for x in line.rstrip("\n").split("\t")]
    if len(f) < 4 or f[2] not in ("pb-small", "pb-big") or not f[1].isdigit():
        continue
    sym = f[3].split("] ", 1)[-1]
    n[sym][f[2] == "pb-big"] += int(f[1])
tot = [sum(v[i] for v in n.values()) for i in (0, 1)]
print("  %-40s %7d %7d %+7d" % ("(all)", tot[0], tot[1], tot[1] - tot[0]))
for sym, (x, y) in sorted(n.items(), key=lambda kv: kv[1][0] - kv[1][1])[:25]:
    print("  %-40s %7d %7d %+7d" % (sym, x, y, y - x))'
else
    echo "(no perf: install linux-perf for the per-function part)"
fi
