#!/usr/bin/env bash
#! Benchmark: six servers deployed by one gateway that reaches them all, against the same
#! six through a front door and two site runners (tests/it/sites_bench.rs).  Prints the
#! median, min and max wall time of each and the ratio, from one invocation.
#
#   ci/bench_sites.sh [RUNS]     (default 3; needs what the tests need: .ci/run)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export DEPLOY_BENCH_RUNS="${1:-3}"
cargo build --quiet --locked -p deploy-cli --bin deploy
DEPLOY_TEST_CLI_BUILT=1 cargo nextest run --locked --workspace --run-ignored only \
    -E 'test(=sites_bench::bench_two_sites_against_one_gateway)' --no-capture 2>&1 \
    | sed -n '/^6 servers/,/^| noop/p'
