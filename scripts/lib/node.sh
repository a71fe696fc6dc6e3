# Shell helpers for demos and benchmarks: a throwaway *node* — new network, PID, mount and UTS
# namespaces whose init is podbox's pause (it reaps orphans) — and a way to run commands in it.
# Everything podbox creates lives inside the node; `node_down` removes pods through podbox, then
# kills the node's init by PID, which ends every process and namespace left in it.
# Usage: source this file; node_up NAME; in_node NAME CMD...; node_down NAME (or node_down_all).

PODBOX_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# (.cargo/config.toml names the host target: builds are under its tuple)
PODBOX=${PODBOX:-$PODBOX_SRC/target/$(rustc --print host-tuple)/debug/podbox}
declare -A NODE_INIT NODE_UNSHARE
NODE_TMP=${NODE_TMP:-$(mktemp -d /tmp/podbox-demo.XXXXXX)}

node_up() {
  local name=$1
  unshare --fork --pid --mount --mount-proc --net --uts --propagation private -- "$PODBOX" pause 2>/dev/null &
  local u=$! init=""
  for _ in $(seq 200); do
    init=$(cat /proc/$u/task/$u/children 2>/dev/null | awk '{print $1}')
    [ -n "$init" ] && [ "$(cat /proc/$init/comm 2>/dev/null)" = pause ] && break
    sleep 0.01
  done
  NODE_INIT[$name]=$init; NODE_UNSHARE[$name]=$u
  in_node "$name" hostname "$name"
  in_node "$name" ip link set lo up
}

# in_node NAME CMD...: run CMD in the node, with podbox pointed at the node's own state root.
in_node() {
  local name=$1; shift
  PODBOX_ROOT=$NODE_TMP/$name PODBOX_IMAGES=$NODE_TMP/$name-images PODBOX_ROOTFS=${PODBOX_ROOTFS:-$PODBOX_SRC/rootfs} nsenter -t "${NODE_INIT[$name]}" --net --pid --mount --uts -- "$@"
}

node_down() {
  local name=$1
  [ -n "${NODE_INIT[$name]:-}" ] || return 0
  in_node "$name" "$PODBOX" pod rm -f --all >/dev/null 2>&1 || true
  kill -9 "${NODE_INIT[$name]}" 2>/dev/null || true
  wait "${NODE_UNSHARE[$name]}" 2>/dev/null || true
  unset 'NODE_INIT[$name]'
}

node_down_all() {
  local n
  for n in "${!NODE_INIT[@]}"; do node_down "$n"; done
  rm -rf "$NODE_TMP"
}

# wire A A_IF B B_IF: a cable between two nodes — a veth pair with end A_IF in node A's network
# namespace and B_IF in node B's, both up. Made from inside A, never in the machine's namespace.
wire() {
  local a=$1 a_if=$2 b=$3 b_if=$4
  nsenter --net=/proc/${NODE_INIT[$a]}/ns/net ip link add "$a_if" type veth peer name "$b_if" netns /proc/${NODE_INIT[$b]}/ns/net
  in_node "$a" ip link set "$a_if" up
  in_node "$b" ip link set "$b_if" up
}

# Demo output. say TEXT: a heading. on NODE CMD...: print the command as typed on that node, run it
# there, indent its output (a failing command is shown, not fatal: demos show failures too).
bold=$(tput bold 2>/dev/null || true); dim=$(tput dim 2>/dev/null || true); off=$(tput sgr0 2>/dev/null || true)
say() { printf '\n%s# %s%s\n' "$bold" "$*" "$off"; }
on() {
  local n=$1; shift
  printf '%s[%s]$ %s%s\n' "$dim" "$n" "$*" "$off"
  in_node "$n" "$@" 2>&1 | sed 's/^/  /' || true
}
