//! A golden test of check mode (`deploy --check`): for hosts in every state the steps
//! decide about, what each step says it would do (status, reason, diff) and how the job
//! ends, compared with `testdata/check_mode.golden`; and that check mode changes nothing
//! on any [`super::fake`] server.  It pins check mode's output, not how the engine reads
//! the hosts: no command string or count is asserted.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use deploy_wire::{Event, EventKind, JobStatus};

use super::JobResult;
use super::fake::Rel;
use crate::testbed::{Bed, bed, bed_with, spec};

const GOLDEN: &str = "testdata/check_mode.golden";

/// An application with other processes and hooks (as in `app_tests.rs`).
const APP: &str = "    processes:\n      worker: {command: python -m rq worker, count: 2}\n\
    \x20   hooks:\n      before_switch:\n        - {name: migrate, command: python -m django migrate}\n\
    \x20       - {name: collectstatic, command: python -m django collectstatic, scope: every_host}\n";

/// Environment values that must never appear in check mode's output.
const SECRETS: [&str; 3] = ["hello-from-prod", "tok-0123456789", "old-secret-value"];
const ENV_APP: &str = "    env: {GREETING: hello-from-prod, API_TOKEN: tok-0123456789}\n";
const ENV_FILE: &str = "/srv/apps/hello/shared/env";
const SITE: &str = "/etc/nginx/sites-enabled/hello.conf";

/// What a fake server has that a deploy could change (everything but its log).
#[derive(Debug, PartialEq)]
struct Snapshot {
    layout: bool,
    releases: BTreeMap<String, (u64, Rel)>,
    files: BTreeMap<String, String>,
    live: Option<String>,
    current: Option<String>,
    running: BTreeMap<String, (u32, String)>,
    hooks: BTreeSet<(String, String)>,
    reloads: u32,
}

fn hosts(b: &Bed) -> Vec<String> {
    b.inv.hosts.keys().cloned().collect()
}

fn snapshot(b: &Bed) -> BTreeMap<String, Snapshot> {
    hosts(b)
        .into_iter()
        .map(|h| {
            let server = b.fleet.server(&h);
            let s = server.state();
            let snap = Snapshot {
                layout: s.layout,
                releases: s.releases.clone(),
                files: s.files.clone(),
                live: s.live.clone(),
                current: s.current.clone(),
                running: s.running.clone(),
                hooks: s.hooks.clone(),
                reloads: s.reloads,
            };
            (h, snap)
        })
        .collect()
}

/// Deploys `version` for real (to reach a state); it must succeed.
async fn deploy(b: &Bed, version: &str) {
    let (r, events) = b.run(spec(version)).await;
    assert_eq!(
        r.status,
        JobStatus::Succeeded,
        "deploy {version}: {events:?}"
    );
}

/// `pid 1234` -> `pid <n>`: the fake's pids count the commands it ran, which is not what
/// this test pins (batching commands changes them).
fn without_pids(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("pid ") {
        out.push_str(&rest[..i + 4]);
        rest = &rest[i + 4..];
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits > 0 {
            out.push_str("<n>");
            rest = &rest[digits..];
        }
    }
    out.push_str(rest);
    out
}

/// One host's steps, as the golden file has them.
fn host_block(r: &JobResult, events: &[Event], host: &str) -> String {
    let mut out = String::new();
    let h = r.hosts.iter().find(|h| h.host == host).unwrap();
    let _ = writeln!(out, "  host: {} ({} changed)", h.status.as_str(), h.changed);
    if let Some(e) = &h.error {
        let _ = writeln!(out, "  error: {e}");
    }
    for e in events {
        let EventKind::StepFinished {
            host: on,
            step,
            status,
            reason,
            diff,
            ..
        } = &e.kind
        else {
            continue;
        };
        if on != host {
            continue;
        }
        let _ = writeln!(out, "  {step}: {}: {reason}", status.as_str());
        for line in diff.iter().flat_map(|d| d.lines()) {
            let _ = writeln!(out, "    | {line}");
        }
    }
    without_pids(&out)
}

/// Runs `s` in check mode, asserts it changed nothing on any host, and appends what it
/// reported to `out` (a host that reported exactly what an earlier one did says so).
async fn check(b: &Bed, title: &str, mut s: super::JobSpec, out: &mut String) {
    s.check = true;
    let before = snapshot(b);
    let (r, events) = b.run(s.clone()).await;
    let after = snapshot(b);
    for (h, snap) in &before {
        assert_eq!(Some(snap), after.get(h), "{title}: check mode changed {h}");
    }
    let _ = writeln!(out, "== {title}");
    let _ = writeln!(
        out,
        "check {}{}{}: job {}",
        s.version,
        if s.no_install { " no_install" } else { "" },
        if s.restart { " restart" } else { "" },
        r.status.as_str()
    );
    let mut seen: Vec<(String, String)> = Vec::new();
    for h in hosts(b) {
        let block = host_block(&r, &events, &h);
        match seen.iter().find(|(_, b)| *b == block) {
            Some((first, _)) => {
                let _ = writeln!(out, "{h}: as {first}");
            }
            None => {
                let _ = write!(out, "{h}:\n{block}");
                seen.push((h, block));
            }
        }
    }
    out.push('\n');
}

/// Every state the steps decide about, each reached by real deploys on a fake fleet
/// (then a few fields of a fake server changed), checked.
async fn render_all() -> String {
    let mut out = String::new();

    let b = bed("{}");
    check(&b, "(a) nothing deployed", spec("1.0.0"), &mut out).await;

    let b = bed("{}");
    deploy(&b, "1.0.0").await;
    check(
        &b,
        "(b) the same release live: no-op",
        spec("1.0.0"),
        &mut out,
    )
    .await;
    check(
        &b,
        "(c) an older release live: upgrade",
        spec("1.1.0"),
        &mut out,
    )
    .await;

    let b = bed("{}");
    deploy(&b, "1.0.0").await;
    deploy(&b, "1.1.0").await;
    let t = "(d) the target release on disk, not live";
    check(&b, t, spec("1.0.0"), &mut out).await;
    let mut back = spec("1.0.0");
    back.no_install = true;
    check(&b, &format!("{t}: a rollback"), back, &mut out).await;
    let mut gone = spec("0.5.0");
    gone.no_install = true;
    let t = "(d) a rollback to a release not on disk";
    check(&b, t, gone, &mut out).await;

    // web1 has an unfinished 1.1.0; web2 and web3 have none.
    let b = bed("{}");
    deploy(&b, "1.0.0").await;
    b.fleet
        .server("web1")
        .state()
        .releases
        .insert("1.1.0".into(), (u64::MAX, Rel::Partial));
    let t = "(e) an unfinished release directory on web1";
    check(&b, t, spec("1.1.0"), &mut out).await;

    // web1's env file has other values and a key no longer wanted; web2 has none.
    let b = bed_with("{}", ENV_APP);
    deploy(&b, "1.0.0").await;
    {
        let server = b.fleet.server("web1");
        let mut s = server.state();
        let old = s.files.get(ENV_FILE).cloned().unwrap();
        let old = old.replace("hello-from-prod", "hello-from-before") + "OLD=old-secret-value\n";
        s.files.insert(ENV_FILE.into(), old);
    }
    b.fleet.server("web2").state().files.remove(ENV_FILE);
    {
        let server = b.fleet.server("web3");
        let mut s = server.state();
        let old = s.files.get(ENV_FILE).cloned().unwrap();
        let old = old.replace("tok-0123456789", "old-secret-value");
        s.files.insert(ENV_FILE.into(), old);
    }
    let t = "(f) env file: other values on web1, absent on web2, one value changed on web3";
    check(&b, t, spec("1.0.0"), &mut out).await;

    // web1's site names another server; web2 has none.
    let b = bed("{}");
    deploy(&b, "1.0.0").await;
    {
        let server = b.fleet.server("web1");
        let mut s = server.state();
        let site = s.files.get(SITE).cloned().unwrap();
        assert!(site.contains("hello.test"), "{site}");
        s.files
            .insert(SITE.into(), site.replace("hello.test", "old.test"));
    }
    b.fleet.server("web2").state().files.remove(SITE);
    let t = "(g) nginx site: another server name on web1, absent on web2";
    check(&b, t, spec("1.0.0"), &mut out).await;

    let b = bed("{}");
    deploy(&b, "1.0.0").await;
    b.fleet.server("web1").state().running.insert(
        "hello-green".into(),
        (7, "/srv/apps/hello/releases/1.0.0".into()),
    );
    let t = "(h) a slot that is not live runs on web1";
    check(&b, t, spec("1.0.0"), &mut out).await;
    check(&b, &format!("{t}: upgrade"), spec("1.1.0"), &mut out).await;

    let b = bed_with("{canary: false}", APP);
    let t = "(i) an app with processes and hooks";
    check(
        &b,
        &format!("{t}: nothing deployed"),
        spec("1.0.0"),
        &mut out,
    )
    .await;
    deploy(&b, "1.0.0").await;
    b.fleet
        .server("web2")
        .state()
        .running
        .remove("hello-worker");
    let t2 = format!("{t}: no-op, web2's workers stopped");
    check(&b, &t2, spec("1.0.0"), &mut out).await;
    check(&b, &format!("{t}: upgrade"), spec("1.1.0"), &mut out).await;
    let mut back = spec("1.0.0");
    (back.no_install, back.restart) = (true, true);
    check(&b, &format!("{t}: restart"), back, &mut out).await;

    // keep_releases is 2; web1 also has an old complete, a failed and an unfinished one.
    let b = bed("{}");
    for v in ["1.0.0", "2.0.0", "3.0.0"] {
        deploy(&b, v).await;
    }
    {
        let server = b.fleet.server("web1");
        let mut s = server.state();
        s.releases.insert("0.1".into(), (0, Rel::Complete));
        s.releases.insert("0.2".into(), (0, Rel::Failed));
        s.releases.insert("0.3".into(), (0, Rel::Partial));
    }
    let t = "(j) more releases than keep_releases (2) on web1";
    check(&b, &format!("{t}: no-op"), spec("3.0.0"), &mut out).await;
    check(&b, &format!("{t}: upgrade"), spec("4.0.0"), &mut out).await;

    out
}

/// Check mode reports the same steps and diffs as before, and changes nothing.
///
/// The expected output is `src/engine/testdata/check_mode.golden`.  Regenerate it with
/// `UPDATE_GOLDEN=1 cargo test --lib -p deploy-engine check_golden`, and only when a
/// change of check mode's output is intended (review the file's diff).  Pids are written
/// `<n>`: the fake's come from a count of the commands it ran.
#[tokio::test]
async fn check_mode_reports_the_same_steps_and_diffs_as_before() {
    let got = render_all().await;
    for s in SECRETS {
        assert!(!got.contains(s), "a value of the env file leaked: {s}");
    }
    assert!(!got.contains("/tmp/"), "a temporary path in the output");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(GOLDEN);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    if got != want {
        let d = crate::render::diff(GOLDEN, Some(&want), &got).unwrap_or_default();
        panic!("check mode's output changed (UPDATE_GOLDEN=1 rewrites {GOLDEN}):\n{d}");
    }
}
