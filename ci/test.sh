#!/usr/bin/env bash
#! The test command (README.md; `.ci/run` runs it).
#
#   bash ci/test.sh          every test: pass 1 then pass 2 (below); exits 1 if either failed
#   bash ci/test.sh fast     the fast tier: every unit test of every package (the CLI's too),
#                            no Docker, no PostgreSQL, no network (under a minute once built)
#   bash ci/test.sh pg       pass 2 alone
#
# Tests run under cargo-nextest (`.config/nextest.toml`): each test is its own process and
# every test binary's tests share one queue, several at a time (most integration tests
# wait on containers and clocks, not on the CPU); the tests that measure the machine
# (zero failed requests under load, the browser's latencies) run one at a time in their
# own groups. Extra arguments go to nextest: `bash ci/test.sh -E 'test(/^rollouts::/)'`.
#
# Pass 1: every test of the workspace, gateways on the SQLite store (tests/it/shared_store.rs
#   and dashboard_sessions.rs make their own PostgreSQL databases, whatever the store).
# Pass 2: PostgreSQL. `DEPLOY_TEST_STORE=postgres` gives every gateway a fresh database
#   on the private server (`ci/testbed.sh postgres`: 127.0.0.1:55432, role `deploy`); it
#   runs the store's contract (every `Store` method, `gateway::store::`, on both backends)
#   and the gateway tests that need no Docker (below). What a gateway does with hosts is
#   the same code on either store; what differs on PostgreSQL (several gateways, leases,
#   NOTIFY, sessions) is tests/it/shared_store.rs's and dashboard_sessions.rs's, run in
#   pass 1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Pass 2's gateway tests: the API, tokens and scopes, locks, schedules and cron, the
# day-two API, the notification outbox across a restart, on PostgreSQL, less
#   - the tests that deploy to Docker servers (PG_DOCKER): what they add on top of the
#     API tests is the engine's work on hosts, the same code on either store, and pass 1
#     runs them; what they asked of the store is the store contract's (every `Store`
#     method, on both backends: src/gateway/store/store_tests*.rs);
#   - a_second_gateway_on_the_same_database_fails...: it checks SQLite's lock file (one
#     `serve` per file); on PostgreSQL gateways share a database (shared_store's tests).
PG_SUITE='test(/^(gateway_api|gateway_auth|gateway_jobs|gateway_lock|gateway_scopes|gateway_versions|day_two_api|day_two|schedules|cron|pipeline|notify_outbox)::/)'
PG_DOCKER='test(=gateway_jobs::cli_deploys_through_the_gateway_with_lock_detach_and_resume)
    | test(=gateway_jobs::a_gateway_killed_mid_job_marks_it_interrupted_and_frees_the_lock)
    | test(=gateway_versions::latest_and_specifiers_resolve_on_the_gateway)
    | test(=day_two::run_app_logs_and_restart_through_the_front_door)
    | test(=cron::quiet_if_newer_and_lock_wait_through_the_binary)
    | test(=cron::a_real_crond_runs_a_quiet_release_that_succeeds_silently)
    | test(=pipeline::a_commit_is_built_once_deployed_promoted_and_its_trail_written)'
PG_SKIP="($PG_DOCKER) | test(=gateway_lock::a_second_gateway_on_the_same_database_fails_and_the_first_keeps_its_job_and_lock)"

nextest() { cargo nextest run --workspace --locked --no-fail-fast "$@"; }

failed=()
pass() { # pass NAME COMMAND...: runs a test command, remembering a failure
    local name="$1" t0=$SECONDS; shift
    echo "== $name ($(date -u +%H:%M:%S)): $*"
    if "$@"; then
        echo "== $name: ok ($((SECONDS - t0)) s)"
    else
        echo "== $name: FAILED ($((SECONDS - t0)) s)"
        failed+=("$name")
    fi
}

pg_pass() {
    export DEPLOY_TEST_STORE=postgres
    export DEPLOY_TEST_PG_URL=postgres://deploy@127.0.0.1:55432
    export DEPLOY_TEST_PG_PASSWORD=deploy-test-pw # the fixed test password of ci/testbed.sh
    if ci/testbed.sh postgres; then
        pass "pass 2: the store contract and the gateway tests, PostgreSQL" \
            nextest --profile pg -E "(package(deploy) & kind(lib) & test(/^gateway::store::/)) | ($PG_SUITE & !($PG_SKIP))" "$@"
    else
        echo "== pass 2: FAILED: the test PostgreSQL server did not start (ci/testbed.sh postgres)"
        failed+=("pass 2: PostgreSQL server")
    fi
}

# The CLI binary the integration tests drive (it lives in another package, so a test
# cannot name it with CARGO_BIN_EXE; building it once here spares every test the wait).
build_cli() { cargo build --locked --quiet -p deploy-cli --bin deploy && export DEPLOY_TEST_CLI_BUILT=1; }

# The Debian packages tests/it/package.rs installs, built before the tests: ci/package.sh
# builds deploy-gateway without the tests' `fake` feature, and cargo puts that binary where
# the tests' own is (target/debug/deploy-gateway), so it must not run while they do.
build_debs() {
    local dir
    dir="$(bash ci/package.sh | tail -1)" && export DEPLOY_TEST_DEB_DIR="$dir"
}

case "${1:-all}" in
    fast)
        shift
        pass "fast tier: unit tests, every package" nextest --lib --bins "$@"
        ;;
    pg)
        shift
        build_cli
        pg_pass "$@"
        ;;
    all | -*)
        [[ "${1:-}" == all ]] && shift
        build_cli
        build_debs
        pass "pass 1: every test, SQLite store" nextest "$@"
        pg_pass "$@"
        ;;
    *)
        echo "usage: bash ci/test.sh [fast|pg|all] [nextest arguments]" >&2
        exit 2
        ;;
esac

if ((${#failed[@]})); then
    printf '== failed: %s\n' "${failed[@]}"
    exit 1
fi
echo "== all tests passed"
