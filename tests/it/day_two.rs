//! The day-two commands through the CLI and the gateway on two real servers (one test
//! bed): `deploy run` (its output, its exit code, the app user, scrubbed secrets, and a
//! token without the `run` right refused before anything runs), `deploy app-logs -f`
//! (an access-log line of a request made after it started, then no `tail` left on the
//! servers once it is killed; without `-f`, one host's last lines) and `deploy restart` (every web slot flips, the release
//! served stays the same).

use crate::support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::*;

const SECRET: &str = "day-two-secret-value-93";

fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out after {secs}s waiting for {what}");
}

/// A token with the `run` right (the support helper makes none).
fn run_token(gw: &Gateway, user: &str, env: &str) -> String {
    let out = std::process::Command::new(gateway_bin())
        .args(["token", "create", "--config"])
        .arg(gw.config())
        .args(["--user", user, "--env", env, "--run"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `tail` processes running on a server (read from /proc: no procps needed).
fn tails(container: &str) -> usize {
    let out = exec(
        container,
        "for p in /proc/[0-9]*; do cat $p/comm 2>/dev/null; done | grep -cx tail || true",
    );
    out.trim().parse().unwrap_or(0)
}

#[test]
fn run_app_logs_and_restart_through_the_front_door() {
    let tb = Testbed::up("day-two", 2);
    tb.set_inventory(&tb.inventory_text().replace(
        "      GREETING: hello from the inventory\n",
        &format!("      GREETING: hello from the inventory\n      API_KEY: {SECRET}\n"),
    ));
    let gw = Gateway::start(Some(&tb), "0.1.0", "0.1.0");
    let ann = gw.token("ann", "staging", false);
    let ops = run_token(&gw, "ops", "staging");
    let r = gw.run(Some(&ann), &["release", "hello", "1.0.0", "-e", "staging"]);
    assert_eq!(r.code, 0, "{r:?}\n{}", gw.log());

    run_returns_output_and_exit_code(&gw, &ops);
    run_is_refused_without_the_right(&gw, &tb, &ann);
    app_logs_follow_a_new_line_and_leave_no_tail(&gw, &tb, &ann);
    restart_flips_every_slot_on_the_same_release(&gw, &tb, &ann);
}

fn run_returns_output_and_exit_code(gw: &Gateway, ops: &str) {
    let script = "echo out; exit 3";
    let r = gw.run(
        Some(ops),
        &["run", "hello", "-e", "staging", "--", "sh", "-c", script],
    );
    assert_eq!(r.code, 3, "{r:?}");
    assert_eq!(r.stdout, "out\n", "{r:?}");

    // As the app's own user, on the host asked for, with its env values scrubbed.
    let r = gw.run(
        Some(ops),
        &[
            "run", "hello", "-e", "staging", "--host", "web2", "--", "id", "-un",
        ],
    );
    assert_eq!((r.code, r.stdout.as_str()), (0, "app-hello\n"), "{r:?}");
    let r = gw.run(
        Some(ops),
        &[
            "run",
            "hello",
            "-e",
            "staging",
            "--",
            "sh",
            "-c",
            "echo \"key=$API_KEY\"",
        ],
    );
    assert_eq!((r.code, r.stdout.as_str()), (0, "key=***\n"), "{r:?}");

    // The run is a job: `deploy logs` shows its output and its exit code.
    let (_, _, body) = gw.http("GET", "/v1/jobs?limit=5", Some(ops), None);
    let jobs: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    let first_run = jobs.iter().rfind(|j| j["kind"] == "run").unwrap();
    let id = first_run["id"].as_str().unwrap();
    let r = gw.run(Some(ops), &["logs", id]);
    assert!(r.stdout.contains("run: | out"), "{r:?}");
    assert!(r.stdout.contains("the command exited 3"), "{r:?}");
    assert!(!r.stdout.contains(SECRET) && !gw.log().contains(SECRET));
}

fn run_is_refused_without_the_right(gw: &Gateway, tb: &Testbed, ann: &str) {
    let marker = "/tmp/day-two-ran-without-the-right";
    let r = gw.run(
        Some(ann),
        &["run", "hello", "-e", "staging", "--", "touch", marker],
    );
    assert_eq!(r.code, 4, "forbidden: {r:?}");
    assert!(r.stderr.contains("lacks the `run` right"), "{r:?}");
    for s in &tb.servers {
        let seen = exec(
            &s.container,
            &format!("test -e {marker} && echo yes || echo no"),
        );
        assert_eq!(seen.trim(), "no", "{}: the command ran", s.name);
    }
    let admin = gw.token("root", "", true);
    let (_, _, audit) = gw.http("GET", "/v1/audit?limit=50", Some(&admin), None);
    assert!(audit.contains("refused: no run right"), "{audit}");
}

fn app_logs_follow_a_new_line_and_leave_no_tail(gw: &Gateway, tb: &Testbed, ann: &str) {
    let mut child = gw
        .cli(
            Some(ann),
            &["app-logs", "hello", "-e", "staging", "-f", "-n", "0"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    for s in &tb.servers {
        wait_until(30, &format!("tail on {}", s.name), || {
            tails(&s.container) > 0
        });
    }
    // A request after `app-logs` started: gunicorn writes its access-log line to the
    // live slot's log, which the followed `tail` sends on.
    let marker = format!("day-two-marker-{}", std::process::id());
    let web2 = tb.server("web2");
    let (status, _) = http_get(web2.http_port, HOST, &format!("/?{marker}"));
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    let found = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains(&marker) => break Some(l),
            Ok(l) => seen.push(l),
            Err(_) => break None,
        }
    };
    let line = found.unwrap_or_else(|| panic!("no line with {marker} in 10 s: {seen:?}"));
    assert!(line.starts_with("web2 | "), "{line}");
    child.kill().unwrap();
    let _ = child.wait();
    for s in &tb.servers {
        wait_until(20, &format!("no tail left on {}", s.name), || {
            tails(&s.container) == 0
        });
    }
    // Without -f: the last lines of one host, then the command ends.
    let r = gw.run(
        Some(ann),
        &[
            "app-logs", "hello", "-e", "staging", "--host", "web2", "-n", "5",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("web2 | ") && l.contains(&marker)),
        "{r:?}"
    );
    assert!(!r.stdout.contains("web1 | "), "{r:?}");
}

fn restart_flips_every_slot_on_the_same_release(gw: &Gateway, tb: &Testbed, ann: &str) {
    let before: Vec<String> = tb.servers.iter().map(|s| live_slot(&s.container)).collect();
    let r = gw.run(Some(ann), &["restart", "hello", "-e", "staging"]);
    assert_eq!(r.code, 0, "{r:?}");
    for (s, was) in tb.servers.iter().zip(&before) {
        let now = live_slot(&s.container);
        assert!(
            ["blue", "green"].contains(&now.as_str()) && &now != was,
            "{}: the web slot did not flip ({was} -> {now})",
            s.name
        );
        assert_eq!(served_version(s), "1.0.0", "{}", s.name);
    }
    let (_, _, body) = gw.http("GET", "/v1/jobs?limit=1", Some(ann), None);
    let jobs: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (jobs[0]["kind"].as_str(), jobs[0]["version"].as_str()),
        (Some("restart"), Some("1.0.0"))
    );
}
