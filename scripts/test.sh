#!/usr/bin/env bash
# The whole test suite: set up (packages, rootfs, build), then every unit and integration test.
# Integration tests run as root, each inside throwaway namespaces that play the nodes.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# podman drives podbox as its OCI runtime in tests/oci.rs; that test skips only where podman
# cannot be installed.
if ! command -v podman >/dev/null; then
  echo "installing podman (for the OCI runtime test)" >&2
  { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman >/dev/null 2>&1; }; } ||
    echo "podman could not be installed: the podman test will skip" >&2
fi
# critest's images: stand-ins for every image critest pulls, built offline (Go, Debian's busybox
# through apt-get download) by ../shared/conformance/critest-images.sh once into
# target/critest-images (~1 min; cached after); tests/cri.rs runs critest with them.
if [ ! -f target/critest-images/refs ]; then
  for c in "${PODBOX_CONFORMANCE_DIR:-}" ../shared/conformance ../../shared/conformance; do
    if [ -n "$c" ] && [ -x "$c/critest-images.sh" ]; then
      "$c/critest-images.sh" target/critest-images >/dev/null || echo "critest-images.sh failed: the critest test will fail" >&2
      break
    fi
  done
fi
# Root-only tests are #[ignore]d (a non-root `cargo test` reports them as ignored, not passed);
# this script runs as root and includes them.
cargo test --all-targets --no-fail-fast -- --include-ignored --test-threads="${PODBOX_TEST_THREADS:-2}" "$@"
