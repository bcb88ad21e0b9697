//! One job per (application, environment) across runners, and one gateway per database,
//! through the real binaries and no Docker: the job's only host is a loopback listener
//! that never speaks SSH, so the job stays running until the 10 s connect timeout.

use crate::support;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::*;

fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed().as_secs() < secs, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn apply(gw: &Gateway) -> Output {
    Command::new(gateway_bin())
        .args(["apply", "--config"])
        .arg(gw.config())
        .args(["hello", "1.0.0", "-e", "staging"])
        .env("USER", "olly")
        .output()
        .unwrap()
}

/// The audit rows of `user`: (action, target, outcome), oldest first.
fn audit_of(gw: &Gateway, admin: &str, user: &str) -> Vec<(String, String, String)> {
    let (status, _, body) = gw.http("GET", "/v1/audit", Some(admin), None);
    assert_eq!(status, 200, "{body}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    let text = |v: &serde_json::Value| v.as_str().unwrap().to_string();
    let mut rows: Vec<_> = rows
        .iter()
        .filter(|r| r["user"] == user)
        .map(|r| (text(&r["action"]), text(&r["target"]), text(&r["outcome"])))
        .collect();
    rows.reverse();
    rows
}

#[test]
fn apply_is_refused_with_exit_6_and_the_holder_while_a_gateway_job_runs_and_is_audited() {
    let (_silent, port) = silent_listener();
    let gw = Gateway::start(None, "0.1.0", "0.1.0");
    gw.set_inventory(&inventory_on_port(port));
    let ann = gw.token("ann", "staging", false);
    let admin = gw.token("root", "", true);
    let job = gw.start_deploy(&ann);

    let out = apply(&gw);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "hello/staging 1.0.0: a job of ann is running on this application and environment ({job})"
        )),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing ran");
    assert_eq!(
        gw.job_state(&ann, &job),
        "running",
        "the gateway's job goes on"
    );
    assert_eq!(
        audit_of(&gw, &admin, "apply:olly"),
        [(
            "deploy".into(),
            "hello/staging 1.0.0".into(),
            "refused: locked".into()
        )]
    );

    // Once the gateway's job has ended, apply takes the lock and records its job.
    wait_until(60, "the gateway's job to end", || {
        gw.job_state(&ann, &job) != "running"
    });
    gw.set_inventory(OFFLINE_INVENTORY); // a host that refuses at once
    let out = apply(&gw);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "accepted, then unreachable: {stdout}"
    );
    assert!(stdout.contains("cannot connect to 127.0.0.1:1"), "{stdout}");
    let rows = audit_of(&gw, &admin, "apply:olly");
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(
        (rows[1].0.as_str(), rows[1].2.as_str()),
        ("deploy", "accepted")
    );
    assert_eq!(
        (rows[2].0.as_str(), rows[2].2.as_str()),
        ("deploy finished", "failed")
    );
    assert!(rows[2].1.starts_with("hello/staging 1.0.0 ("), "{rows:?}");
    // Its job is in the gateway's list, and its lock is free again.
    let (_, _, jobs) = gw.http("GET", "/v1/jobs?limit=1", Some(&ann), None);
    assert!(
        jobs.contains("\"user\":\"apply:olly\"") && jobs.contains("\"state\":\"failed\""),
        "{jobs}"
    );
    let next = gw.start_deploy(&ann);
    assert_ne!(next, job);
}

#[test]
fn a_second_gateway_on_the_same_database_fails_and_the_first_keeps_its_job_and_lock() {
    let (_silent, port) = silent_listener();
    let gw = Gateway::start(None, "0.1.0", "0.1.0");
    gw.set_inventory(&inventory_on_port(port));
    let ann = gw.token("ann", "staging", false);
    let job = gw.start_deploy(&ann);

    let out = Command::new(gateway_bin())
        .args(["serve", "--config"])
        .arg(gw.config())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let lock = gw.dir.path().join("state/gateway.db.lock");
    assert!(
        stderr.contains(&format!("listening on {})", gw.url))
            && stderr.contains(&format!("its lock file {} is held", lock.display()))
            && stderr.contains("one gateway per database"),
        "{stderr}"
    );
    assert!(!stderr.contains("interrupted"), "no recovery ran: {stderr}");

    // The first gateway's job still runs and still holds the lock.
    assert_eq!(gw.job_state(&ann, &job), "running");
    let body = r#"{"app":"hello","env":"staging","version":"1.0.0"}"#;
    let (status, _, body) = gw.http("POST", "/v1/deployments", Some(&ann), Some(body));
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("\"code\":\"locked\"") && body.contains(&job),
        "{body}"
    );
    // And it ends as its host dictates, not interrupted.
    wait_until(60, "the job to end", || {
        gw.job_state(&ann, &job) != "running"
    });
    assert_eq!(gw.job_state(&ann, &job), "failed");
    assert!(!gw.log().contains("interrupted"), "{}", gw.log());
}

#[test]
fn a_gateway_starting_while_apply_runs_leaves_the_apply_job_and_its_lock() {
    let (_silent, port) = silent_listener();
    let mut gw = Gateway::start(None, "0.1.0", "0.1.0");
    gw.set_inventory(&inventory_on_port(port));
    let ann = gw.token("ann", "staging", false);
    let child = Command::new(gateway_bin())
        .args(["apply", "--config"])
        .arg(gw.config())
        .args(["hello", "1.0.0", "-e", "staging"])
        .env("USER", "olly")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut job = String::new();
    wait_until(10, "apply's job", || {
        let (_, _, body) = gw.http("GET", "/v1/jobs?limit=1", Some(&ann), None);
        let jobs: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        let running = jobs
            .first()
            .filter(|j| j["user"] == "apply:olly" && j["state"] == "running");
        job = running
            .map(|j| j["id"].as_str().unwrap().to_string())
            .unwrap_or_default();
        !job.is_empty()
    });

    gw.restart(); // SIGKILL and start again: recovery runs while apply is alive
    assert!(!gw.log().contains("was interrupted"), "{}", gw.log());
    assert_eq!(gw.job_state(&ann, &job), "running");
    let body = r#"{"app":"hello","env":"staging","version":"1.0.0"}"#;
    let (status, _, body) = gw.http("POST", "/v1/deployments", Some(&ann), Some(body));
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("\"holder\":\"apply:olly\"") && body.contains(&job),
        "{body}"
    );

    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(gw.job_state(&ann, &job), "failed");
}
