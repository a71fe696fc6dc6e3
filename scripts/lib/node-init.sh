# start_node_init PROGRAM...: start PROGRAM (podbox's `pause`, the node's init) as PID 1 of new
# PID, mount, network and UTS namespaces, and set UNSHARE (the unshare process's PID) and INIT
# (the init's PID in the machine's numbering; empty if it did not start within 2 s). Used by
# scripts/bench.sh and scripts/hot-functions.sh; the caller kills INIT and waits for UNSHARE.
start_node_init() {
    unshare --fork --pid --mount --mount-proc --net --uts --propagation private -- "$@" </dev/null &
    UNSHARE=$!
    INIT=""
    for _ in $(seq 200); do
        INIT=$(cut -d' ' -f1 "/proc/$UNSHARE/task/$UNSHARE/children" 2>/dev/null || true)
        [[ -n $INIT ]] && [[ $(readlink "/proc/$INIT/exe" 2>/dev/null) == *pause* ]] && break
        INIT=""
        sleep 0.01
    done
}
