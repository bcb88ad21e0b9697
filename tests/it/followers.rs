//! Followers that never give up while the job lives (issue 25, item 4): the `deploy` CLI
//! following a job through a front door ([`support::front::Front`], one URL as behind a
//! load balancer) re-attaches when the gateway behind it is SIGKILLed and restarted on
//! another port, and when the PostgreSQL server under the gateways restarts while the
//! door switches to another gateway on that database; it ends with the job's real end,
//! having shown every event once and in order (the same lines as `deploy logs` after).
//!
//! The jobs need no servers: their one host is a loopback port that never answers
//! (`silent_listener`), so a job runs for the SSH connect timeout (10 s) and then fails,
//! unreachable, unless its gateway dies first.  The PostgreSQL test runs a server of its
//! own ([`pg::PrivateServer`]): the shared test server must never be stopped.

use crate::support;

use std::io::Read;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::front::Front;
use support::*;

/// Longer than an earlier CLI's five reconnects in a row (about 8 s) before exit 5.
const GATEWAY_DOWN: Duration = Duration::from_secs(10);

/// A child's output, read as it comes.
struct Output(Arc<Mutex<String>>);

impl Output {
    fn of(mut from: impl Read + Send + 'static) -> Output {
        let text = Arc::new(Mutex::new(String::new()));
        let into = text.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 {
                    break;
                }
                into.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Output(text)
    }

    fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }
}

/// A CLI started in the background: its process and its output so far.
struct Follower {
    child: Child,
    stdout: Output,
    stderr: Output,
}

impl Follower {
    /// `deploy ARGS` against `front` (the gateway's environment, the front's URL).
    fn start(gw: &Gateway, front: &Front, token: &str, args: &[&str]) -> Follower {
        let mut child = gw
            .cli(Some(token), args)
            .env("DEPLOY_GATEWAY", &front.url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = Output::of(child.stdout.take().unwrap());
        let stderr = Output::of(child.stderr.take().unwrap());
        Follower {
            child,
            stdout,
            stderr,
        }
    }

    /// Waits (at most `secs`) for it to exit: (code, stdout, stderr).
    fn wait(mut self, secs: u64) -> (i32, String, String) {
        let end = Instant::now() + Duration::from_secs(secs);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                panic!(
                    "the follower still runs after {secs} s:\n{}\n{}",
                    self.stdout.text(),
                    self.stderr.text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        std::thread::sleep(Duration::from_millis(200)); // the readers' last bytes
        (
            status.code().unwrap_or(-1),
            self.stdout.text(),
            self.stderr.text(),
        )
    }
}

fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The lines a plain `deploy release` or `logs --follow` printed for events: those before
/// the summary (which starts with an empty line).
fn event_lines(stdout: &str) -> Vec<&str> {
    stdout.lines().take_while(|l| !l.is_empty()).collect()
}

#[test]
fn a_release_re_attaches_across_a_gateway_killed_and_restarted_and_ends_as_the_job_did() {
    let (_silent, port) = silent_listener();
    let mut gw = Gateway::start(None, "0.1.0", "0.1.0");
    gw.set_inventory(&inventory_on_port(port));
    let ann = gw.token("ann", "staging", false);
    let front = Front::to(&gw.url);
    let release = ["release", "hello", "1.0.0", "-e", "staging"];
    let follower = Follower::start(&gw, &front, &ann, &release);
    wait_until(30, "the job to start and be followed", || {
        !follower.stdout.text().is_empty()
    });
    let id = follower
        .stderr
        .text()
        .lines()
        .find_map(|l| l.strip_prefix("job ")?.split_whitespace().next())
        .unwrap()
        .to_string();
    assert_eq!(gw.job_state(&ann, &id), "running");

    // SIGKILL mid-job; down for longer than an earlier CLI waited; then a new process on
    // the same state, on another port behind the same door.
    gw.kill();
    front.switch(None);
    std::thread::sleep(GATEWAY_DOWN);
    gw.restart();
    front.switch(Some(&gw.url));

    let (code, stdout, stderr) = follower.wait(60);
    assert_eq!(gw.job_state(&ann, &id), "interrupted", "{}", gw.log());
    assert_eq!(
        code, 1,
        "the code of a job that did not succeed:\n{stdout}\n{stderr}"
    );
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with("job interrupted"), "{stdout}");
    assert!(
        stderr.contains(&format!("deploy: lost the events of job {id} (")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("deploy: re-attached to job {id} after ")),
        "{stderr}"
    );
    // Every event once, in order: what `deploy logs` shows now.
    let logs = gw.run(Some(&ann), &["logs", &id]);
    assert_eq!(logs.code, 1, "{logs:?}");
    let stored = event_lines(&logs.stdout);
    let stored = &stored[..stored.len() - 1]; // `job interrupted`
    assert_eq!(event_lines(&stdout), stored, "{stderr}");
    assert!(stored.last().unwrap().contains("interrupted"), "{stored:?}");
}

#[test]
fn logs_follow_keeps_following_across_a_postgresql_restart_and_a_switch_of_gateway() {
    let server = pg::PrivateServer::start();
    let db = server.new_database("followers");
    let (_silent, port) = silent_listener();
    let gateway = || {
        let gw = Gateway::start_opts(
            None,
            GatewayOpts {
                database: Some(db.clone()),
                ..GatewayOpts::default()
            },
        );
        gw.set_inventory(&inventory_on_port(port));
        gw
    };
    let (a, b) = (gateway(), gateway());
    let ann = a.token("ann", "staging", false);
    let front = Front::to(&a.url);
    let id = a.start_deploy(&ann);
    let follow = ["--json", "logs", &id, "--follow"];
    let follower = Follower::start(&a, &front, &ann, &follow);
    wait_until(30, "the follower to show the job's start", || {
        follower.stdout.text().contains("\"job_started\"")
    });

    // The database goes away under both gateways while the job runs (it waits for its
    // host), the door moves from A to B, and the database comes back.
    let down = Instant::now();
    server.stop();
    std::thread::sleep(Duration::from_secs(1));
    front.switch(Some(&b.url));
    server.start_again();
    println!("PostgreSQL down for {:.1} s", down.elapsed().as_secs_f64());
    // B answers at once: the connections the restart broke in its pool are replaced.
    let (status, _, body) = b.http("GET", &format!("/v1/jobs/{id}"), Some(&ann), None);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"state\":\"running\""),
        "the outage came mid-job: {body}"
    );

    let (code, stdout, stderr) = follower.wait(60);
    let state = b.job_state(&ann, &id);
    assert_eq!(state, "failed", "its host never answers:\n{}", a.log());
    assert_eq!(code, 1, "the code of a failed job:\n{stdout}\n{stderr}");
    assert!(!stderr.contains("internal error"), "{stderr}");
    assert!(
        stderr.contains(&format!("deploy: lost the events of job {id} (")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("deploy: re-attached to job {id} after ")),
        "{stderr}"
    );
    // Every event once and in order: the very lines `deploy --json logs` prints.
    let logs = b.run(Some(&ann), &["--json", "logs", &id]);
    assert_eq!(logs.code, 1, "{logs:?}");
    assert_eq!(stdout, logs.stdout, "{stderr}");
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(
        (last["type"].as_str(), last["status"].as_str()),
        (Some("job_finished"), Some("failed")),
        "{last}"
    );
}
