//! Reboots of container servers under supervisord (`docker restart` of a test bed made
//! `--rebootable`: the same ports, an empty `/run`, the disk kept): a server restarted
//! before a deploy, while its job waits at the switch, and right after a switch (the old
//! slot still draining) comes back serving the live release with only the live slot
//! running; `status --live` is right from the host's first answer; the job the restart
//! cut fails that host with a plain reason, soon; the next deploy converges.
//!
//! One test bed for the three points (each starts from a converged host).  The job is
//! held exactly before its switch with the host's own fence: the test takes the fence's
//! lock (`~deploy/.deploy/fence/hello.staging.lock`) exclusively while `start` runs, so
//! the job's next command, the switch, waits for it on the host; then the host restarts.

use crate::support;

use std::io::Read;
use std::time::{Duration, Instant};

use support::*;

const FENCE_LOCK: &str = "/home/deploy/.deploy/fence/hello.staging.lock";

/// `docker restart` (SIGTERM, then SIGKILL after 1 s), then waits for sshd's banner.
fn reboot(tb: &Testbed, host: &str) {
    let s = tb.server(host);
    let st = std::process::Command::new("docker")
        .args(["restart", "-t", "1", &s.container])
        .status()
        .unwrap();
    assert!(st.success(), "docker restart {}", s.container);
    let t = Instant::now();
    loop {
        let mut banner = [0u8; 4];
        let answered = std::net::TcpStream::connect(("127.0.0.1", s.ssh_port)).and_then(|mut c| {
            c.set_read_timeout(Some(Duration::from_secs(2)))?;
            c.read_exact(&mut banner)
        });
        if answered.is_ok() && &banner == b"SSH-" {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{host} never came back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The first `deploy status --live --json` row in which the host answered (asked again
/// while it is unreachable): (exit code, row).
fn first_live_status(gw: &Gateway, token: &str) -> (i32, serde_json::Value) {
    let t = Instant::now();
    loop {
        let r = gw.run(
            Some(token),
            &["--json", "status", "hello", "-e", "staging", "--live"],
        );
        assert!(matches!(r.code, 0 | 9), "{r:?}");
        let rows: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).unwrap();
        let row = rows.into_iter().next().expect("one host");
        if row["observed"]["unreachable"].is_null() {
            return (r.code, row);
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "never answered: {row:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// After a reboot: the first answer of `status --live` is right and flags nothing, the
/// host serves `live`, and only the live slot runs.
fn serves_alone_after_boot(gw: &Gateway, tb: &Testbed, token: &str, live: &str, when: &str) {
    let (code, row) = first_live_status(gw, token);
    assert_eq!(code, 0, "{when}: status --live flags the host: {row:#}");
    assert_eq!(row["version"], live, "{when}: the record: {row:#}");
    assert_eq!(
        row["observed"]["version"], live,
        "{when}: the host: {row:#}"
    );
    assert_eq!(row["disagrees"], false, "{when}: {row:#}");
    let web1 = tb.server("web1");
    assert_eq!(served_version(web1), live, "{when}");
    let running = running_slots(&web1.container);
    assert_eq!(
        running,
        vec![format!("hello-{}", live_slot(&web1.container))],
        "{when}: only the live slot runs"
    );
}

/// Waits for an event of the job (`kind` on web1, and `step` when given).
fn wait_event(gw: &Gateway, token: &str, job: &str, kind: &str, step: Option<&str>) {
    let t = Instant::now();
    while !gw
        .job_events(token, job)
        .iter()
        .any(|e| e["type"] == kind && e["host"] == "web1" && step.is_none_or(|s| e["step"] == s))
    {
        assert!(
            t.elapsed() < Duration::from_secs(180),
            "{kind} {step:?} never came"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for the job's end: its state, web1's error, and how long it took from now.
fn job_end(gw: &Gateway, token: &str, job: &str) -> (String, String, Duration) {
    let t = Instant::now();
    loop {
        let state = gw.job_state(token, job);
        if state != "running" {
            let evs = gw.job_events(token, job);
            let err = evs
                .iter()
                .rev()
                .find(|e| e["type"] == "host_finished" && e["host"] == "web1")
                .map(|e| e["error"].as_str().unwrap_or_default().to_string())
                .unwrap_or_default();
            return (state, err, t.elapsed());
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "job {job} hangs after the reboot"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn start_deploy(gw: &Gateway, token: &str, version: &str) -> String {
    let body = format!(r#"{{"app":"hello","env":"staging","version":"{version}"}}"#);
    let (status, _, reply) = gw.http("POST", "/v1/deployments", Some(token), Some(&body));
    assert_eq!(status, 202, "{reply}");
    let job: serde_json::Value = serde_json::from_str(&reply).unwrap();
    job["id"].as_str().unwrap().to_string()
}

fn release(gw: &Gateway, token: &str, version: &str) {
    let r = gw.run(Some(token), &["release", "hello", version, "-e", "staging"]);
    assert_eq!(r.code, 0, "release {version}: {r:?}");
}

#[test]
fn a_server_rebooted_before_at_and_after_a_switch_serves_its_live_release_alone() {
    let t = Instant::now();
    let tb = Testbed::up_rebootable("reboots", 1);
    // A halted job keeps what it did (`keep`): a rollback racing the host's return
    // would make the live release depend on timing.
    let inventory = tb.inventory_text().replace(
        "        groups: [web]\n",
        "        groups: [web]\n        rollout: {on_halt: keep}\n",
    );
    tb.set_inventory(&inventory);
    let gw = Gateway::start(Some(&tb), "0.1.0", "0.1.0");
    let ann = gw.token("ann", "staging", false);
    let container = tb.server("web1").container.clone();
    release(&gw, &ann, "1.0.0");

    // (1) Before a deploy.
    let p = Instant::now();
    reboot(&tb, "web1");
    serves_alone_after_boot(&gw, &tb, &ann, "1.0.0", "rebooted before a deploy");
    release(&gw, &ann, "1.1.0");
    assert_eq!(served_version(tb.server("web1")), "1.1.0");
    eprintln!("(1) before a deploy: {:?}", p.elapsed());

    // (2) At the switch: the job's switch command waits for the fence the test holds.
    let p = Instant::now();
    let job = start_deploy(&gw, &ann, "1.2.0");
    wait_event(&gw, &ann, &job, "step_started", Some("start"));
    // `start` takes its settle time (3 s) on the host: its command holds the fence
    // (shared) by now, so the test's lock comes right after it, before the switch.
    std::thread::sleep(Duration::from_secs(1));
    let hold = format!("flock -x {FENCE_LOCK} sh -c 'touch /tmp/fence-held; exec sleep 600'");
    exec(
        &container,
        &format!("nohup sh -c {} >/dev/null 2>&1 &", sh_quote(&hold)),
    );
    wait_event(&gw, &ann, &job, "step_started", Some("switch"));
    let waiting = Instant::now();
    // The switch's command is on the host, waiting for the fence.
    while exec(&container, "pgrep -u deploy -x flock || true")
        .trim()
        .is_empty()
        || exec(&container, "test -e /tmp/fence-held && echo held || true").trim() != "held"
    {
        assert!(
            waiting.elapsed() < Duration::from_secs(30),
            "the switch never waited"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let evs = gw.job_events(&ann, &job);
    assert!(
        !evs.iter().any(|e| e["type"] == "switched"),
        "held before the switch: {evs:?}"
    );
    reboot(&tb, "web1");
    let (state, err, took) = job_end(&gw, &ann, &job);
    eprintln!("(2) the job cut at its switch ended {took:?} after the host was back: {err}");
    assert_eq!(state, "failed");
    assert!(err.starts_with("web1: step switch failed: "), "{err}");
    assert!(took < Duration::from_secs(30), "{took:?}");
    serves_alone_after_boot(&gw, &tb, &ann, "1.1.0", "rebooted at the switch");
    release(&gw, &ann, "1.2.0");
    assert_eq!(served_version(tb.server("web1")), "1.2.0");
    eprintln!("(2) at the switch: {:?}", p.elapsed());

    // (3) Right after a switch, the old slot still running (30 s of drain).
    let p = Instant::now();
    tb.set_inventory(&inventory.replace(
        "    keep_releases: 3\n",
        "    keep_releases: 3\n    drain_secs: 30\n",
    ));
    let job = start_deploy(&gw, &ann, "1.3.0");
    wait_event(&gw, &ann, &job, "switched", None);
    assert_eq!(
        running_slots(&container).len(),
        2,
        "both slots run right after the switch"
    );
    reboot(&tb, "web1");
    let (state, err, took) = job_end(&gw, &ann, &job);
    eprintln!("(3) the job cut after its switch ended {took:?} after the host was back: {err}");
    assert_eq!(state, "failed");
    assert!(err.starts_with("web1: "), "{err}");
    assert!(took < Duration::from_secs(30), "{took:?}");
    serves_alone_after_boot(&gw, &tb, &ann, "1.3.0", "rebooted after the switch");
    tb.set_inventory(&inventory);
    release(&gw, &ann, "1.1.0");
    assert_eq!(served_version(tb.server("web1")), "1.1.0");
    assert_eq!(running_slots(&container).len(), 1);
    eprintln!("(3) after a switch: {:?}", p.elapsed());
    eprintln!("reboots: {:?}", t.elapsed());
}

/// One POSIX shell word.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}
