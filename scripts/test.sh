#!/usr/bin/env bash
# The whole test suite: set up (packages, rootfs, build), then every unit and integration test.
# Integration tests run as root, each inside throwaway namespaces that play the nodes.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo test --all-targets --no-fail-fast -- --test-threads="${PODBOX_TEST_THREADS:-2}" "$@"
