//! Processes watched and releases that still exist (issue 26, items 3 and 4), on real
//! servers through the gateway and the CLI: a worker that exits at start fails the deploy
//! (exit 1), which halts and goes back, its log lines in the job; a process removed from
//! the inventory is flagged by `status --live`, then stopped and removed by the next
//! deploy; a rollback after prune never goes to a release that is gone.

use crate::support;

use support::{Gateway, Testbed, exec};

/// A worker that prints a line and exits at start on 1.1.0 (a release with a broken
/// worker) and otherwise runs; `extra`, one that just runs.
const BEAT: &str = "      beat:\n        command: python -c 'import os, sys, time; r = os.environ[\"DEPLOY_RELEASE\"]; print(\"beat starting on\", r, flush=True); sys.exit(3) if r == \"1.1.0\" else time.sleep(86400)'\n        stop_secs: 2\n";
const EXTRA: &str = "      extra:\n        command: python -c 'import time; time.sleep(86400)'\n        stop_secs: 2\n";

/// The test bed's inventory (`base`) with a settle time of 1 s, `keep_releases` and `processes`.
fn inventory(base: &str, keep: u32, processes: &str) -> String {
    let procs = if processes.is_empty() {
        String::new()
    } else {
        format!("    processes:\n{processes}")
    };
    base.replace(
        "    keep_releases: 3\n",
        &format!("    keep_releases: {keep}\n    settle_secs: 1\n    drain_secs: 0\n{procs}"),
    )
}

fn live_release(tb: &Testbed, host: &str) -> String {
    exec(
        &tb.server(host).container,
        "readlink /srv/apps/hello/run/live.sock",
    )
}

#[test]
fn a_worker_that_crashes_at_start_fails_and_rolls_back_and_a_removed_one_is_stopped() {
    let tb = Testbed::up("watch-procs", 2);
    let text = tb.inventory_text();
    tb.set_inventory(&inventory(&text, 3, &format!("{BEAT}{EXTRA}")));
    let gw = Gateway::start(Some(&tb), "0.1.0", "0.1.0");
    let ann = gw.token("ann", "*", true);
    let release = |v: &str| {
        gw.run(
            Some(&ann),
            &["release", "hello", v, "-e", "staging", "--yes"],
        )
    };
    let r = release("1.0.0");
    assert_eq!(r.code, 0, "{r:?}");

    // 1.1.0's worker exits at start: the deploy fails, halts and goes back.
    let r = release("1.1.0");
    let out = format!("{}{}", r.stdout, r.stderr);
    assert_eq!(
        r.code, 1,
        "a worker that does not stay up fails the job: {out}"
    );
    assert!(
        out.contains("beat starting on 1.1.0"),
        "its log lines in the job: {out}"
    );
    assert!(
        out.contains("not running: hello-beat:hello-beat-0"),
        "{out}"
    );
    for host in ["web1", "web2"] {
        assert!(
            live_release(&tb, host).contains("@1.0.0.sock"),
            "{host} back on 1.0.0"
        );
        let st = exec(
            &tb.server(host).container,
            "supervisorctl status 'hello-beat:*' || true",
        );
        assert!(
            st.contains("RUNNING") && !st.contains("BACKOFF") && !st.contains("FATAL"),
            "{host}: {st}"
        );
    }

    // `extra` leaves the inventory: flagged, then stopped and removed, said as changed.
    tb.set_inventory(&inventory(&text, 3, BEAT));
    let st = gw.run(Some(&ann), &["status", "hello", "-e", "staging", "--live"]);
    assert_eq!(st.code, 9, "{st:?}");
    assert!(st.stdout.contains("hello-extra-0"), "listed: {st:?}");
    assert!(
        st.stdout.contains("is not in the inventory"),
        "flagged: {st:?}"
    );
    let r = release("1.0.0");
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .contains("hello-extra removed (not in the inventory)"),
        "{}",
        r.stdout
    );
    for s in &tb.servers {
        let st = exec(
            &s.container,
            "supervisorctl status; ls /etc/supervisor/conf.d",
        );
        assert!(!st.contains("hello-extra"), "{}: {st}", s.name);
    }
    let st = gw.run(Some(&ann), &["status", "hello", "-e", "staging", "--live"]);
    assert_eq!(st.code, 0, "{st:?}");
}

#[test]
fn a_rollback_never_targets_a_pruned_release_and_says_which_are_possible() {
    let tb = Testbed::up("watch-rollback", 2);
    let text = tb.inventory_text();
    tb.set_inventory(&inventory(&text, 2, ""));
    let gw = Gateway::start(Some(&tb), "0.1.0", "0.1.0");
    let ann = gw.token("ann", "*", true);
    for v in ["1.0.0", "1.1.0", "1.3.0"] {
        let r = gw.run(
            Some(&ann),
            &["release", "hello", v, "-e", "staging", "--yes"],
        );
        assert_eq!(r.code, 0, "{v}: {r:?}");
    }
    let rollback = || gw.run(Some(&ann), &["rollback", "hello", "-e", "staging", "--yes"]);
    let r = rollback();
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("back to 1.1.0"), "{}", r.stderr);
    // keep_releases 2: 1.1.0 (live) and 1.3.0 stay; 1.0.0 is gone on every host.
    for s in &tb.servers {
        let ls = exec(&s.container, "ls /srv/apps/hello/releases");
        assert!(!ls.contains("1.0.0"), "{}: {ls}", s.name);
    }
    // The history's next one back is pruned: refused before anything starts, exit 2,
    // naming what is possible.
    let r = rollback();
    assert_eq!(r.code, 2, "{r:?}");
    assert!(!r.stderr.contains("back to 1.0.0"), "{}", r.stderr);
    assert!(r.stderr.contains("possible targets: 1.3.0"), "{}", r.stderr);
    // Named with --to: refused the same way, before any host is asked to switch.
    let r = gw.run(
        Some(&ann),
        &[
            "rollback", "hello", "-e", "staging", "--to", "1.0.0", "--yes",
        ],
    );
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("1.0.0 is not complete on every host")
            && r.stderr.contains("possible targets: 1.3.0"),
        "{}",
        r.stderr
    );
    for host in ["web1", "web2"] {
        assert!(
            live_release(&tb, host).contains("@1.1.0.sock"),
            "{host} untouched"
        );
    }
}
