#!/usr/bin/env bash
# Run critest (cri-tools v1.29, the CRI validation suite) against `podbox cri`, as root, inside a
# throwaway node: new PID, mount, network, UTS and IPC namespaces whose init is podbox's pause. The
# images critest pulls come from a docker-registry on the node's loopback, which podbox reaches
# for registry.k8s.io and gcr.io through a registries.conf mirror. Nothing leaves the machine.
#
#   scripts/critest.sh [CRITEST ARGS…]     e.g. --ginkgo.focus 'PodSandbox'
#
# Images: the stand-ins of ../shared/conformance/critest-images.sh if CRITEST_IMAGES (default
# target/critest-images) holds its output (layout/ and refs); otherwise the busybox rootfs under
# busybox:1.29-2 and the test-image-* names that are only pulled and removed (specs needing the
# other images, or tools this busybox lacks, then fail). Results: a JUnit report in
# target/critest-junit.xml and a summary line. Env: CRITEST_TIMEOUT (default 1800 s).
set -euo pipefail
cd "$(dirname "$0")/.."
# The debug build (.cargo/config.toml names the host target: builds are under its tuple).
PB=target/$(rustc --print host-tuple)/debug/podbox
[ "$(id -u)" = 0 ] || { echo "critest.sh: run as root" >&2; exit 1; }

if [ "${1:-}" = "--inside" ]; then
  shift; W=$1; shift
  export PODBOX_ROOT=$W/root PODBOX_IMAGES=$W/images PODBOX_REGISTRIES_CONF=$W/registries.conf
  ip link set lo up
  printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:5000\n' "$W/registry" >"$W/registry.yml"
  docker-registry serve "$W/registry.yml" >"$W/registry.log" 2>&1 &
  for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:5000/v2/ && break; sleep 0.1; done
  # push LAYOUT SHORT-NAME PATH:TAG (the path below the registry host)
  push() { skopeo copy -q --insecure-policy --dest-tls-verify=false "oci:$1:$2" "docker://127.0.0.1:5000/$3"; }
  IM=${CRITEST_IMAGES:-target/critest-images}
  if [ -f "$IM/refs" ]; then
    while read -r short refs; do for r in $refs; do push "$IM/layout" "$short" "$r"; done; done <"$IM/refs"
  else
    echo "critest.sh: no $IM/refs (run ../shared/conformance/critest-images.sh $IM): busybox from the rootfs under some of the names" >&2
    "$PB" image import rootfs busybox >/dev/null
    L=$W/layout; mkdir -p "$L"; cp -r "$W/images/blobs" "$L/blobs"
    # Specs that only pull, list and remove take any image under the names they ask for; each
    # name gets an image of its own (a label in its config: removing an image removes all its
    # names), test-image-tags one image under three tags.
    refs="e2e-test-images/busybox:1.29-2 k8s-staging-cri-tools/test-image-latest:latest k8s-staging-cri-tools/test-image-tag:test k8s-staging-cri-tools/test-image-tag:all k8s-staging-cri-tools/test-image-tags:1"
    # shellcheck disable=SC2086
    python3 - "$L" "$("$PB" image inspect localhost/busybox)" $refs <<'EOF'
import hashlib, json, os, sys
layout, info, refs = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3:]
info = info[0] if isinstance(info, list) else info
blob = lambda d: os.path.join(layout, "blobs/sha256", d.split(":")[1])
def put(b):
    d = "sha256:" + hashlib.sha256(b).hexdigest(); open(blob(d), "wb").write(b); return d, len(b)
manifest = json.load(open(blob(info["digest"])))
config = json.load(open(blob(manifest["config"]["digest"])))
mt = manifest.get("mediaType", "application/vnd.oci.image.manifest.v1+json")
entries = []
for i, r in enumerate(refs):
    config.setdefault("config", {})["Labels"] = {"podbox.test.image": r}
    manifest["config"]["digest"], manifest["config"]["size"] = put(json.dumps(config).encode())
    d, n = put(json.dumps(manifest).encode())
    entries.append({"mediaType": mt, "digest": d, "size": n, "annotations": {"org.opencontainers.image.ref.name": "i%d" % i}})
open(os.path.join(layout, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
json.dump({"schemaVersion": 2, "manifests": entries}, open(os.path.join(layout, "index.json"), "w"))
EOF
    i=0; for r in $refs; do push "$L" "i$i" "$r"; i=$((i + 1)); done
    for t in 2 3; do push "$L" "i4" "k8s-staging-cri-tools/test-image-tags:$t"; done
  fi
  printf '[[registry]]\nlocation = "%s"\n[[registry.mirror]]\nlocation = "127.0.0.1:5000"\ninsecure = true\n' registry.k8s.io >"$W/registries.conf"
  printf '[[registry]]\nlocation = "%s"\n[[registry.mirror]]\nlocation = "127.0.0.1:5000"\ninsecure = true\n' gcr.io >>"$W/registries.conf"
  "$PB" cri --listen "$W/cri.sock" >"$W/cri.log" 2>&1 &
  for _ in $(seq 100); do [ -S "$W/cri.sock" ] && break; sleep 0.1; done
  rc=0
  timeout "${CRITEST_TIMEOUT:-1800}" target/conformance/bin/critest --runtime-endpoint "unix://$W/cri.sock" --image-endpoint "unix://$W/cri.sock" \
    --runtime-service-timeout 30s --ginkgo.junit-report "$W/junit.xml" \
    --ginkgo.skip 'public image with digest should be pulled and removed' "$@" >"$W/critest.log" 2>&1 || rc=$?
  tail -5 "$W/critest.log"
  exit $rc
fi

conf=""
for c in "${PODBOX_CONFORMANCE_DIR:-}" ../shared/conformance ../../shared/conformance; do
  [ -n "$c" ] && [ -x "$c/build.sh" ] && { conf=$c; break; }
done
[ -x target/conformance/bin/critest ] || { [ -n "$conf" ] || { echo "critest.sh: no conformance sources (set PODBOX_CONFORMANCE_DIR)" >&2; exit 1; }; "$conf/build.sh" target/conformance cri; }
cargo build --quiet
W=$(mktemp -d /tmp/podbox-critest-XXXXXX)
unshare --fork --pid --mount --mount-proc --net --uts --ipc --propagation private -- "$PB" pause &
ushare=$!
init=""
for _ in $(seq 100); do
  init=$(cat "/proc/$ushare/task/$ushare/children" 2>/dev/null | awk '{print $1}')
  [ -n "$init" ] && readlink "/proc/$init/exe" | grep -q pause && break
  init=""; sleep 0.05
done
[ -n "$init" ] || { echo "critest.sh: the node did not start" >&2; kill "$ushare"; exit 1; }
cleanup() {
  nsenter -t "$init" --net --pid --mount --uts --ipc -- env PODBOX_ROOT="$W/root" "$PB" pod rm -f --all >/dev/null 2>&1 || true
  kill -KILL "$init" 2>/dev/null || true
  wait "$ushare" 2>/dev/null || true
  cp "$W/junit.xml" target/critest-junit.xml 2>/dev/null || true
  cp "$W/critest.log" target/critest.log 2>/dev/null || true
  cp "$W/cri.log" target/critest-cri-server.log 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
rc=0
nsenter -t "$init" --net --pid --mount --uts --ipc -- bash "$PWD/scripts/critest.sh" --inside "$W" "$@" || rc=$?
if [ -f "$W/junit.xml" ]; then
  python3 - "$W/junit.xml" <<'EOF'
import sys, xml.etree.ElementTree as ET
cases = ET.parse(sys.argv[1]).getroot().iter("testcase")
res = {"passed": 0, "failed": 0, "skipped": 0}
for c in cases:
    if c.find("skipped") is not None: res["skipped"] += 1
    elif c.find("failure") is not None or c.find("error") is not None: res["failed"] += 1
    else: res["passed"] += 1
print("critest: {passed} passed, {failed} failed, {skipped} skipped".format(**res))
EOF
fi
exit $rc
