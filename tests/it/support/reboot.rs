//! Reboots of container servers (`docker restart` of a test bed made `--rebootable`), the
//! pieces tests/it/reboots.rs (supervisord) and tests/it/systemd.rs share: the restart and
//! the wait for sshd, `status --live` from the host's first answer, a job started and
//! followed to its end, and [`Stepper`], which holds a job's commands at the host's fence.

use std::io::Read;
use std::time::{Duration, Instant};

use super::{Gateway, Testbed, exec};

pub const FENCE_LOCK: &str = "/home/deploy/.deploy/fence/hello.staging.lock";

/// `docker restart` (SIGTERM, then SIGKILL after 1 s), then waits for sshd's banner.
pub fn reboot(tb: &Testbed, host: &str) {
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
pub fn first_live_status(gw: &Gateway, token: &str) -> (i32, serde_json::Value) {
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

/// Waits for the job's end: its state, web1's error, and how long it took from now.
pub fn job_end(gw: &Gateway, token: &str, job: &str) -> (String, String, Duration) {
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

pub fn start_deploy(gw: &Gateway, token: &str, version: &str) -> String {
    let body = format!(r#"{{"app":"hello","env":"staging","version":"{version}"}}"#);
    let (status, _, reply) = gw.http("POST", "/v1/deployments", Some(token), Some(&body));
    assert_eq!(status, 202, "{reply}");
    let job: serde_json::Value = serde_json::from_str(&reply).unwrap();
    job["id"].as_str().unwrap().to_string()
}

pub fn release(gw: &Gateway, token: &str, version: &str) {
    let r = gw.run(Some(token), &["release", "hello", version, "-e", "staging"]);
    assert_eq!(r.code, 0, "release {version}: {r:?}");
}

pub fn has(evs: &[serde_json::Value], kind: &str) -> bool {
    evs.iter().any(|e| e["type"] == kind && e["host"] == "web1")
}

/// The step web1 started last.
pub fn last_step(evs: &[serde_json::Value]) -> Option<&str> {
    evs.iter()
        .rev()
        .find(|e| e["type"] == "step_started" && e["host"] == "web1")
        .and_then(|e| e["step"].as_str())
}

/// The test holding the host's fence lock, letting a job's commands through one at a
/// time: each of them takes the lock first (`fence::guard`), so while the test holds
/// it the job's next command waits on the host, seen as the deploy user's `flock`.
pub struct Stepper<'a> {
    container: &'a str,
}

impl<'a> Stepper<'a> {
    /// Takes the lock (after the command that holds it, if one does, ends).
    pub fn hold(container: &'a str) -> Stepper<'a> {
        let hold = format!(
            "mkdir -p $(dirname {FENCE_LOCK}) && rm -f /tmp/fence-holder && \
             exec flock -x {FENCE_LOCK} sh -c 'echo $$ > /tmp/fence-holder.new && \
             mv /tmp/fence-holder.new /tmp/fence-holder && exec sleep 600'"
        );
        let st = std::process::Command::new("docker")
            .args(["exec", "-d", container, "sh", "-c", &hold])
            .status()
            .unwrap();
        assert!(st.success());
        let s = Stepper { container };
        s.wait(|| {
            !exec(container, "cat /tmp/fence-holder 2>/dev/null || true")
                .trim()
                .is_empty()
        });
        s
    }

    fn release(&self) {
        exec(
            self.container,
            "kill $(cat /tmp/fence-holder) && rm -f /tmp/fence-holder",
        );
    }

    /// A command of the job waits for the lock.
    fn waiting(&self) -> bool {
        !exec(
            self.container,
            "pgrep -u deploy -f '^flock -[xs] 9$' || true",
        )
        .trim()
        .is_empty()
    }

    fn wait(&self, mut done: impl FnMut() -> bool) {
        let t = Instant::now();
        while !done() {
            if t.elapsed() > Duration::from_secs(60) {
                panic!(
                    "the job never came to the fence:\n{}",
                    exec(
                        self.container,
                        "ps -eo user,pid,ppid,args; ls -la $(dirname /home/deploy/.deploy/fence/x)"
                    )
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Lets the job's commands through, one at a time, until one waits while `now`
    /// holds for the job's events; the lock stays held.
    pub fn until(
        &mut self,
        gw: &Gateway,
        token: &str,
        job: &str,
        now: impl Fn(&[serde_json::Value]) -> bool,
    ) {
        loop {
            self.wait(|| {
                let state = gw.job_state(token, job);
                assert_eq!(
                    state,
                    "running",
                    "{:?}",
                    gw.job_events(token, job)
                        .iter()
                        .rev()
                        .take(3)
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                );
                self.waiting()
            });
            // The events of what the job did before this command are stored by now.
            std::thread::sleep(Duration::from_millis(300));
            if now(&gw.job_events(token, job)) {
                return;
            }
            self.release();
            self.wait(|| !self.waiting());
            *self = Stepper::hold(self.container);
        }
    }
}
