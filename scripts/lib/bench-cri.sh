# scripts/lib/bench-cri.sh — bench.sh's `cri` part, sourced by its inner part (inside the node):
# pod + container ready through CRI with one crictl loop (runp + create + start timed, then
# stop + rm + stopp + rmp timed) against `podbox cri` and against containerd + runc (Debian's
# containerd 1.6, its CRI plugin, all its state in the work dir), in the same run; then the
# resident memory of each idle server. Images: critest's stand-ins (pause, busybox) from a
# docker-registry on the node's loopback, which both reach for registry.k8s.io.
# Uses the inner part's W, PB, HERE, BENCH_CG, ROWS, log, fail, stats, now. Knob:
# BENCH_CRI_ROUNDS (default 10; one warm-up round more on each side).

CRICTL=$HERE/target/conformance/bin/crictl
CRI_IMAGES=${CRITEST_IMAGES:-$HERE/target/critest-images}
if [[ ! -x $CRICTL || ! -f $CRI_IMAGES/refs ]] || ! command -v containerd >/dev/null || ! command -v docker-registry >/dev/null; then
    echo "cri: skipped: needs $CRICTL (scripts/critest.sh builds it), $CRI_IMAGES (../shared/conformance/critest-images.sh), containerd and docker-registry" >>"$W/notes"
    return 0
fi
CRI_ROUNDS=${BENCH_CRI_ROUNDS:-10}
BUSYBOX_IMAGE=registry.k8s.io/e2e-test-images/busybox:1.29-2

log "cri: loopback registry"
printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:5000\n' "$W/registry" >"$W/registry.yml"
docker-registry serve "$W/registry.yml" >"$W/registry.log" 2>&1 &
CRI_REGISTRY=$!
for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:5000/v2/ && break; sleep 0.1; done
for short in pause busybox; do
    for ref in $(awk -v s="$short" '$1 == s { $1 = ""; print }' "$CRI_IMAGES/refs"); do
        skopeo copy -q --insecure-policy --dest-tls-verify=false "oci:$CRI_IMAGES/layout:$short" "docker://127.0.0.1:5000/$ref" || fail "pushing $short"
    done
done

# ---- the two servers ----------------------------------------------------------------------------
CR=$W/cri-root
printf '[[registry]]\nlocation = "registry.k8s.io"\n[[registry.mirror]]\nlocation = "127.0.0.1:5000"\ninsecure = true\n' >"$W/registries.conf"
"$PB" --root "$CR" network config --subnet 10.246.0.0/22 >/dev/null
PODBOX_REGISTRIES_CONF=$W/registries.conf "$PB" --root "$CR" cri --listen "$W/podbox-cri.sock" >"$W/podbox-cri.log" 2>&1 &
PODBOX_CRI=$!

D=$W/containerd
mkdir -p "$D/cni"
# Its shims put their sockets under /run/containerd: a tmpfs there, in the node's mount namespace only.
# (The directory is the machine's: removed again if this made it.)
RUN_CTD_MADE=""
[[ -d /run/containerd ]] || { mkdir /run/containerd && RUN_CTD_MADE=1; }
mount -t tmpfs -o mode=0711 bench-containerd /run/containerd
cat >"$D/cni/10-bench.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "ctdbench", "plugins": [{"type": "bridge", "bridge": "ctd0", "isGateway": true, "ipMasq": false,
 "ipam": {"type": "host-local", "subnet": "10.247.0.0/22", "dataDir": "$D/ipam", "routes": [{"dst": "0.0.0.0/0"}]}}]}
EOF
# Root here has no CAP_SYS_RESOURCE: restrict_oom_score_adj (as in the critest run with containerd).
cat >"$D/config.toml" <<EOF
version = 2
root = "$D/root"
state = "$D/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$D/containerd.sock"
[ttrpc]
  address = "$D/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$D/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.6"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$D/cni"
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."registry.k8s.io"]
    endpoint = ["http://127.0.0.1:5000"]
EOF
containerd --config "$D/config.toml" >"$D/containerd.log" 2>&1 &
CONTAINERD=$!

cri_cleanup() {
    kill -TERM "$PODBOX_CRI" "$CONTAINERD" 2>/dev/null || true
    wait "$PODBOX_CRI" "$CONTAINERD" 2>/dev/null || true
    "$PB" --root "$CR" pod rm -f --all >/dev/null 2>&1 || true
    kill "$CRI_REGISTRY" 2>/dev/null || true
    wait "$CRI_REGISTRY" 2>/dev/null || true
    umount -l /run/containerd 2>/dev/null || true
    if [[ -n $RUN_CTD_MADE ]]; then rmdir /run/containerd 2>/dev/null || true; fi
}
for _ in $(seq 200); do [[ -S $W/podbox-cri.sock && -S $D/containerd.sock ]] && break; sleep 0.05; done
[[ -S $W/podbox-cri.sock ]] || { cri_cleanup; fail "podbox cri did not listen: $(cat "$W/podbox-cri.log")"; }
[[ -S $D/containerd.sock ]] || { cri_cleanup; fail "containerd did not listen: $(tail -5 "$D/containerd.log")"; }

# ---- the loop -------------------------------------------------------------------------------------
# cri_loop SIDE SOCKET: BENCH_CRI_ROUNDS timed rounds (after one warm-up round).
cri_loop() {
    local side=$1 ep=unix://$2 i pod ctr t0 t1 t2
    local c=("$CRICTL" --runtime-endpoint "$ep" --image-endpoint "$ep" --timeout 60s)
    log "cri: $side"
    "${c[@]}" pull "$BUSYBOX_IMAGE" >/dev/null || fail "cri $side: pull"
    mkdir -p "$W/cri-$side"
    : >"$W/cri-$side/ready.ns"; : >"$W/cri-$side/gone.ns"
    for i in $(seq 0 "$CRI_ROUNDS"); do
        printf '{"metadata": {"name": "bench-%s", "namespace": "bench", "uid": "uid-%s-%s", "attempt": 0}, "log_directory": "%s",
                 "linux": {"cgroup_parent": "/%s/ctd"}}' "$i" "$side" "$i" "$W/cri-$side/logs" "$BENCH_CG" >"$W/cri-$side/pod.json"
        printf '{"metadata": {"name": "c"}, "image": {"image": "%s"}, "command": ["sleep", "3600"], "log_path": "c-%s.log", "linux": {}}' \
            "$BUSYBOX_IMAGE" "$i" >"$W/cri-$side/ctr.json"
        t0=$(now)
        pod=$("${c[@]}" runp "$W/cri-$side/pod.json") || fail "cri $side: runp"
        ctr=$("${c[@]}" create --no-pull "$pod" "$W/cri-$side/ctr.json" "$W/cri-$side/pod.json") || fail "cri $side: create"
        "${c[@]}" start "$ctr" >/dev/null || fail "cri $side: start"
        t1=$(now)
        "${c[@]}" stop --timeout 0 "$ctr" >/dev/null && "${c[@]}" rm "$ctr" >/dev/null \
            && "${c[@]}" stopp "$pod" >/dev/null && "${c[@]}" rmp "$pod" >/dev/null || fail "cri $side: teardown"
        t2=$(now)
        if ((i > 0)); then echo $((t1 - t0)) >>"$W/cri-$side/ready.ns"; echo $((t2 - t1)) >>"$W/cri-$side/gone.ns"; fi
    done
    stats "cri_ready.$side" "$W/cri-$side/ready.ns" crictl
    stats "cri_gone.$side" "$W/cri-$side/gone.ns" crictl
}
cri_loop podbox "$W/podbox-cri.sock"
cri_loop containerd "$D/containerd.sock"
# crictl's own cost, in both sides' numbers: three calls that do nothing (Version) per round.
: >"$W/cri-client.ns"
for _ in $(seq "$CRI_ROUNDS"); do
    t0=$(now)
    for _ in 1 2 3; do "$CRICTL" --runtime-endpoint "unix://$W/podbox-cri.sock" version >/dev/null; done
    echo $(($(now) - t0)) >>"$W/cri-client.ns"
done
stats cri_client_floor "$W/cri-client.ns" crictl
for side in podbox containerd; do
    net=$(awk -v a="$(median_of "cri_ready.$side")" -v b="$(median_of cri_client_floor)" 'BEGIN { printf "%.3f", a - b }')
    printf 'cri_ready_server.%s	%s	%s	%s	1	crictl
' "$side" "$net" "$net" "$net" >>"$ROWS"
done
# Idle: every pod gone, both warmed up by the same work. containerd's shims have ended with
# their pods; podbox cri has no helper process that outlives a call.
sleep 1
for side in "podbox $PODBOX_CRI" "containerd $CONTAINERD"; do
    set -- $side
    kib=$(awk '/^VmRSS:/ {print $2}' "/proc/$2/status")
    printf 'mem.cri_idle.%s\t%s\t%s\t%s\t1\tKiB\n' "$1" "$kib" "$kib" "$kib" >>"$ROWS"
done
echo "cri: $CRI_ROUNDS rounds of crictl runp + create + start (ready) and stop + rm + stopp + rmp (gone) on each side; each crictl call is a process of its own (cri_client_floor: 3 Version calls); cri_ready_server = median ready - that floor" >>"$W/notes"
cri_cleanup
