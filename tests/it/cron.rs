//! `deploy` from cron, through the real binaries: `--quiet` (nothing on success, one
//! line on failure), `--lock-wait`, `--if-newer` (the gateway's `up_to_date`), the token
//! from a file, and a real cron daemon running a release.
//!
//! The daemon is busybox's `crond` (Debian package `busybox-static`: Debian's `busybox`
//! is built without it), run privately with its own crontab directory (`-c`) and log.
//! Decision: Debian's `cron` daemon reads only the system spool (`/var/spool/cron`,
//! `/etc/crontab`, `/etc/cron.d`) and cannot be run as a private instance for a test.
//!
//! The tests without Docker hold the lock with a job whose only host never speaks SSH (it
//! runs until the 10 s connect timeout); the others use test beds of one server.

use crate::support;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use support::*;

fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed().as_secs() < secs, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The gateway's jobs, newest first.
fn jobs(gw: &Gateway, token: &str) -> Vec<serde_json::Value> {
    let (status, _, body) = gw.http("GET", "/v1/jobs?limit=200", Some(token), None);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// `deploy ARGS` with the token in DEPLOY_TOKEN.
fn deploy(gw: &Gateway, token: &str, args: &str) -> CliRun {
    let args: Vec<&str> = args.split_whitespace().collect();
    gw.run(Some(token), &args)
}

fn assert_silent(r: &CliRun, what: &str) {
    assert_eq!(r.code, 0, "{what}: {r:?}");
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("", ""), "{what}");
}

#[test]
fn a_token_file_comes_first_and_a_missing_one_exits_2_naming_it() {
    let gw = Gateway::start(None, "0.1.0", "0.1.0");
    let ann = gw.token("ann", "staging", false);
    let file = gw.dir.path().join("ann.token");
    std::fs::write(&file, format!("\n  {ann}  \n")).unwrap();
    let path = file.to_str().unwrap();

    // --token-file and DEPLOY_TOKEN_FILE both win over a wrong DEPLOY_TOKEN.
    let r = gw.run(Some("wrong"), &["--token-file", path, "apps"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("hello"), "{r:?}");
    let out = gw
        .cli(Some("wrong"), &["apps"])
        .env("DEPLOY_TOKEN_FILE", path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // The wrong token alone is refused: the file was what made the difference.
    assert_eq!(gw.run(Some("wrong"), &["apps"]).code, 4);

    // --token-file comes before DEPLOY_TOKEN_FILE.
    let missing = gw.dir.path().join("no-such.token");
    let out = gw
        .cli(
            Some(&ann),
            &["--token-file", missing.to_str().unwrap(), "apps"],
        )
        .env("DEPLOY_TOKEN_FILE", path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(missing.to_str().unwrap()), "{stderr}");
    assert!(out.stdout.is_empty());

    // A file that cannot be read as text: named, its content never shown.
    std::fs::write(&file, [0xff, 0xfe, b's', b'e', b'c', b'r', b'e', b't']).unwrap();
    let r = gw.run(None, &["--token-file", path, "apps"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains(path), "{r:?}");
    assert!(!r.stderr.contains("secret"), "{r:?}");
}

#[test]
fn lock_wait_1s_exits_6_after_a_second_naming_the_holder_once() {
    let (_silent, port) = silent_listener();
    let gw = Gateway::start(None, "0.1.0", "0.1.0");
    gw.set_inventory(&inventory_on_port(port));
    let ann = gw.token("ann", "staging", false);
    let holder = gw.start_deploy(&ann);

    let t = Instant::now();
    let r = deploy(&gw, &ann, "release hello 1.0.0 -e staging --lock-wait 1s");
    let took = t.elapsed();
    assert_eq!(r.code, 6, "{r:?}");
    assert!(took >= Duration::from_secs(1), "it waited: {took:?}");
    assert!(took < Duration::from_secs(8), "then gave up: {took:?}");
    assert_eq!(
        r.stderr.matches(&holder).count(),
        2,
        "said once, then in the error: {r:?}"
    );
    assert!(r.stderr.contains("waiting up to 1s"), "{r:?}");
    assert!(r.stderr.contains("gave up after waiting 1s"), "{r:?}");

    // Quiet: the one line of the refusal, with the holder.
    let r = deploy(
        &gw,
        &ann,
        "release hello 1.0.0 -e staging -q --lock-wait 1s",
    );
    assert_eq!(r.code, 6, "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
    assert!(r.stderr.contains(&holder) && r.stdout.is_empty(), "{r:?}");
    assert_eq!(gw.job_state(&ann, &holder), "running", "the holder went on");
    assert_eq!(jobs(&gw, &ann).len(), 1, "nothing else started");
}

/// One test bed for the quiet, if-newer and lock-wait cases, in this order.
#[test]
fn quiet_if_newer_and_lock_wait_through_the_binary() {
    let tb = Testbed::up("cron-cli", 1);
    let gw = Gateway::start(Some(&tb), "0.1.0", "0.1.0");
    let ann = gw.token("ann", "staging", false);
    let admin = gw.token("root", "", true);
    quiet_prints_nothing_on_success_and_one_line_on_failure(&gw, &tb, &ann);
    if_newer_starts_nothing_when_the_version_runs_everywhere(&gw, &tb, &ann, &admin);
    lock_wait_waits_for_the_holder_then_succeeds(&gw, &tb, &ann);
}

fn quiet_prints_nothing_on_success_and_one_line_on_failure(gw: &Gateway, tb: &Testbed, ann: &str) {
    let r = deploy(gw, ann, "release hello 1.0.0 -e staging --yes --quiet");
    assert_silent(&r, "a quiet release that succeeds");
    assert_eq!(served_version(&tb.servers[0]), "1.0.0");

    // Refused before any job: one line, exit 2.
    let r = deploy(gw, ann, "release hello 9.9.9 -e staging --yes -q");
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(
        (r.stdout.as_str(), r.stderr.lines().count()),
        ("", 1),
        "{r:?}"
    );
    assert!(
        r.stderr
            .contains("release hello 9.9.9 to staging: version 9.9.9"),
        "{r:?}"
    );

    // A job that fails its health check: one line with the job, its host's error.
    let r = deploy(gw, ann, "release hello 1.2.0 -e staging --yes -q");
    let job = jobs(gw, ann)[0]["id"].as_str().unwrap().to_string();
    println!("the quiet failure: {}", r.stderr);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(
        (r.stdout.as_str(), r.stderr.lines().count()),
        ("", 1),
        "{r:?}"
    );
    let head = format!(
        "deploy: release hello 1.2.0 to staging failed (job {job}): web1: step start failed: health check"
    );
    assert!(r.stderr.starts_with(&head), "{r:?}");
    assert_eq!(served_version(&tb.servers[0]), "1.0.0", "switched back");
}

/// The number of audit rows.
fn audit_rows(gw: &Gateway, admin: &str) -> usize {
    let (status, _, body) = gw.http("GET", "/v1/audit", Some(admin), None);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Vec<serde_json::Value>>(&body)
        .unwrap()
        .len()
}

fn if_newer_starts_nothing_when_the_version_runs_everywhere(
    gw: &Gateway,
    tb: &Testbed,
    ann: &str,
    admin: &str,
) {
    // 1.0.0 runs, but the host's last job failed: that is not "runs it"; deployed.
    let before = jobs(gw, ann).len();
    let r = deploy(
        gw,
        ann,
        "release hello 1.0.0 -e staging --yes -q --if-newer",
    );
    assert_silent(&r, "a re-deploy after a failure");
    assert_eq!(jobs(gw, ann).len(), before + 1, "a job ran");

    let r = deploy(gw, ann, "release hello latest -e staging --yes --if-newer");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        jobs(gw, ann)[0]["version"],
        "1.4.0",
        "latest resolved by the gateway"
    );
    assert_eq!(served_version(&tb.servers[0]), "1.4.0");

    let (before, audited) = (jobs(gw, ann).len(), audit_rows(gw, admin));
    let r = deploy(gw, ann, "release hello latest -e staging --yes --if-newer");
    assert_eq!(r.code, 0, "{r:?}");
    let said = "deploy: hello 1.4.0 already runs on every host of staging; nothing started\n";
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("", said));
    let r = deploy(
        gw,
        ann,
        "release hello ~=1.4 -e staging --yes --if-newer --quiet",
    );
    assert_silent(&r, "up to date, quietly");
    assert_eq!(jobs(gw, ann).len(), before, "no job started");
    assert_eq!(
        audit_rows(gw, admin),
        audited,
        "an up-to-date answer is not audited"
    );
}

fn lock_wait_waits_for_the_holder_then_succeeds(gw: &Gateway, tb: &Testbed, ann: &str) {
    // The holder drains its old slot for 15 s (the inventory is read per request).
    let plain = tb.inventory_text();
    let slow = plain.replace(
        "    keep_releases: 3\n",
        "    keep_releases: 3\n    drain_secs: 15\n",
    );
    assert_ne!(slow, plain);
    tb.set_inventory(&slow);
    let body = r#"{"app":"hello","env":"staging","version":"1.3.0"}"#;
    let (status, _, body) = gw.http("POST", "/v1/deployments", Some(ann), Some(body));
    tb.set_inventory(&plain);
    assert_eq!(status, 202, "{body}");
    let holder: serde_json::Value = serde_json::from_str(&body).unwrap();
    let holder = holder["id"].as_str().unwrap();

    let r = deploy(
        gw,
        ann,
        "release hello 1.1.0 -e staging --yes --lock-wait 2m",
    );
    assert_eq!(r.code, 0, "{r:?}");
    let waiting: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("waiting up to 2m"))
        .collect();
    assert_eq!(waiting.len(), 1, "said once: {r:?}");
    assert!(waiting[0].contains(holder), "{r:?}");
    let all = jobs(gw, ann);
    let job = |id: &str| all.iter().find(|j| j["id"] == id).unwrap().clone();
    let (h, w) = (job(holder), job(&r.job_id()));
    assert_eq!(
        (h["state"].as_str(), w["state"].as_str()),
        (Some("succeeded"), Some("succeeded"))
    );
    assert!(
        w["created_ms"].as_u64() >= h["finished_ms"].as_u64(),
        "{h} then {w}"
    );
    assert_eq!(served_version(&tb.servers[0]), "1.1.0");
}

/// A private busybox crond, killed (and reaped) on drop.
struct Crond(Child);

impl Drop for Crond {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn crond(tabs: &Path, log: &Path) -> Crond {
    let child = Command::new("busybox")
        .args(["crond", "-f", "-l", "0", "-c"])
        .arg(tabs)
        .arg("-L")
        .arg(log)
        .spawn()
        .expect("busybox crond (apt-get install busybox-static)");
    Crond(child)
}

fn user_name() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn a_real_crond_runs_a_quiet_release_that_succeeds_silently() {
    let tb = Testbed::up("cron-daemon", 1);
    let gw = Gateway::start(Some(&tb), "0.1.0", "0.1.0");
    let admin = gw.token("root", "", true);
    let token_file = gw.dir.path().join("cron.token");
    std::fs::write(&token_file, gw.token("cron", "staging", false) + "\n").unwrap();
    let (dir, tabs) = (gw.dir.path(), gw.dir.path().join("crontabs"));
    std::fs::create_dir(&tabs).unwrap();
    // crond runs it with /bin/sh and a minimal environment: absolute paths only.
    let line = format!(
        "* * * * * DEPLOY_GATEWAY={} DEPLOY_TOKEN_FILE={} XDG_CONFIG_HOME={} {} release hello 1.1.0 -e staging --yes --quiet --if-newer --lock-wait 1m >{} 2>&1; echo $? >{}\n",
        gw.url,
        token_file.display(),
        dir.join("cli-config").display(),
        cli_bin().display(),
        dir.join("cron.out").display(),
        dir.join("cron.code").display(),
    );
    std::fs::write(tabs.join(user_name()), line).unwrap();
    let daemon = crond(&tabs, &dir.join("crond.log"));

    // The next minute boundary (crond looks once a minute), then the job on record.
    let mut job = None;
    wait_until(75, "crond to start the release", || {
        job = jobs(&gw, &admin)
            .into_iter()
            .find(|j| j["version"] == "1.1.0");
        job.is_some()
    });
    drop(daemon); // no second run
    let job = job.unwrap();
    let code = dir.join("cron.code");
    wait_until(120, "the cron command to end", || {
        std::fs::read_to_string(&code).is_ok_and(|c| c.ends_with('\n'))
    });
    let log = std::fs::read_to_string(dir.join("crond.log")).unwrap_or_default();
    assert_eq!(std::fs::read_to_string(&code).unwrap(), "0\n", "{log}");
    assert_eq!(
        std::fs::read_to_string(dir.join("cron.out")).unwrap(),
        "",
        "quiet"
    );
    let id = job["id"].as_str().unwrap();
    assert_eq!(gw.job_state(&admin, id), "succeeded");
    assert_eq!(
        (job["user"].as_str(), job["kind"].as_str()),
        (Some("cron"), Some("deploy"))
    );
    assert_eq!(served_version(&tb.servers[0]), "1.1.0");
}
