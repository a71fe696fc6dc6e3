# start_node_init PROGRAM...: start PROGRAM (podbox's `pause`, the node's init) as PID 1 of new
# PID, mount, network and UTS namespaces, and set UNSHARE (the unshare process's PID) and INIT
# (the init's PID in the machine's numbering; empty if it did not start within 2 s). Used by
# scripts/bench.sh, scripts/hot-functions.sh and scripts/scale-profile.sh; the caller kills INIT
# and waits for UNSHARE.
#
# The node is started in a session of its own (setsid; the PID stays the same, as the child is
# no group leader): a Ctrl-C at the terminal goes to the terminal's foreground process group,
# and would reach the init too. The init ending first ends every process of the node, and with
# them the callers' cleanup inside it (removing the pods, whose cgroups are the machine's).
start_node_init() {
    setsid unshare --fork --pid --mount --mount-proc --net --uts --propagation private -- "$@" </dev/null &
    UNSHARE=$!
    INIT=""
    for _ in $(seq 200); do
        INIT=$(cut -d' ' -f1 "/proc/$UNSHARE/task/$UNSHARE/children" 2>/dev/null || true)
        [[ -n $INIT ]] && [[ $(readlink "/proc/$INIT/exe" 2>/dev/null) == *pause* ]] && break
        INIT=""
        sleep 0.01
    done
}
