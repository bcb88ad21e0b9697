//! Reboots of container servers under supervisord (`docker restart` of a test bed made
//! `--rebootable`: the same ports, an empty `/run`, the disk kept): a server restarted
//! before a deploy, while its job waits at the switch, and right after a switch (the old
//! slot still draining) comes back serving the live release with only the live slot
//! running; `status --live` is right from the host's first answer; the job the restart
//! cut fails that host with a plain reason, soon; the next deploy converges.
//!
//! (1.2.0 of the test index fails its health check: the releases here are 1.0.0,
//! 1.1.0, 1.3.0 and 1.4.0.)
//!
//! One test bed for the three points (each starts from a converged host).  The job is
//! stopped exactly where wanted with the host's own fence: every command of a job first
//! takes the fence's lock (`~deploy/.deploy/fence/hello.staging.lock`), so the test,
//! holding that lock, lets the job's commands through one at a time ([`Stepper`]) until
//! the one waiting is the switch (2), or the one after it (3); then the host restarts.

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
    let web1 = tb.server("web1");
    let seen = || {
        exec(
            &web1.container,
            "grep -H autostart /etc/supervisor/conf.d/*.conf; supervisorctl status; \
             tail -n 8 /var/log/supervisor/supervisord.log; ls -l /srv/apps/hello/run",
        )
    };
    assert_eq!(
        code,
        0,
        "{when}: status --live flags the host: {row:#}\n{}",
        seen()
    );
    assert_eq!(row["version"], live, "{when}: the record: {row:#}");
    assert_eq!(
        row["observed"]["version"], live,
        "{when}: the host: {row:#}"
    );
    assert_eq!(row["disagrees"], false, "{when}: {row:#}");
    assert_eq!(served_version(web1), live, "{when}");
    let running = running_slots(&web1.container);
    assert_eq!(
        running,
        vec![format!("hello-{}", live_slot(&web1.container))],
        "{when}: only the live slot runs"
    );
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
    tb.set_inventory(&tb.inventory_text().replace(
        "        groups: [web]\n",
        "        groups: [web]\n        rollout: {on_halt: keep}\n",
    ));
    let gw = Gateway::start(Some(&tb), "0.1.0", "0.1.0");
    let ann = gw.token("ann", "staging", false);
    let container = tb.server("web1").container.clone();
    release(&gw, &ann, "1.0.0");
    eprintln!("set up: {:?}", t.elapsed());

    // (1) Before a deploy.
    let p = Instant::now();
    reboot(&tb, "web1");
    serves_alone_after_boot(&gw, &tb, &ann, "1.0.0", "rebooted before a deploy");
    release(&gw, &ann, "1.1.0");
    assert_eq!(served_version(tb.server("web1")), "1.1.0");
    eprintln!("(1) before a deploy: {:?}", p.elapsed());

    // (2) At the switch: the switch's command waits on the host for the fence.
    let p = Instant::now();
    let mut fence = Stepper::hold(&container);
    let job = start_deploy(&gw, &ann, "1.3.0");
    fence.until(&gw, &ann, &job, |evs| last_step(evs) == Some("switch"));
    assert!(
        !has(&gw.job_events(&ann, &job), "switched"),
        "held before the switch"
    );
    reboot(&tb, "web1");
    let (state, err, took) = job_end(&gw, &ann, &job);
    eprintln!("(2) the job cut at its switch ended {took:?} after the host was back: {err}");
    assert_eq!(state, "failed");
    assert!(err.starts_with("web1: step switch failed: "), "{err}");
    assert!(took < Duration::from_secs(30), "{took:?}");
    serves_alone_after_boot(&gw, &tb, &ann, "1.1.0", "rebooted at the switch");
    release(&gw, &ann, "1.3.0");
    assert_eq!(served_version(tb.server("web1")), "1.3.0");
    eprintln!("(2) at the switch: {:?}", p.elapsed());

    // (3) Right after the switch: the pointer moved, the old slot still runs, and the
    // job's next command (the health check through nginx) waits for the fence.
    let p = Instant::now();
    let mut fence = Stepper::hold(&container);
    let job = start_deploy(&gw, &ann, "1.4.0");
    fence.until(&gw, &ann, &job, |evs| has(evs, "switched"));
    assert_eq!(
        running_slots(&container).len(),
        2,
        "both slots run right after the switch"
    );
    reboot(&tb, "web1");
    let (state, err, took) = job_end(&gw, &ann, &job);
    eprintln!("(3) the job cut after its switch ended {took:?} after the host was back: {err}");
    assert_eq!(state, "failed");
    assert!(err.starts_with("web1: step health failed: "), "{err}");
    assert!(took < Duration::from_secs(30), "{took:?}");
    serves_alone_after_boot(&gw, &tb, &ann, "1.4.0", "rebooted after the switch");
    release(&gw, &ann, "1.1.0");
    assert_eq!(served_version(tb.server("web1")), "1.1.0");
    assert_eq!(running_slots(&container).len(), 1);
    eprintln!("(3) after a switch: {:?}", p.elapsed());
    eprintln!("reboots: {:?}", t.elapsed());
}

fn has(evs: &[serde_json::Value], kind: &str) -> bool {
    evs.iter().any(|e| e["type"] == kind && e["host"] == "web1")
}

/// The step web1 started last.
fn last_step(evs: &[serde_json::Value]) -> Option<&str> {
    evs.iter()
        .rev()
        .find(|e| e["type"] == "step_started" && e["host"] == "web1")
        .and_then(|e| e["step"].as_str())
}

/// The test holding the host's fence lock, letting a job's commands through one at a
/// time: each of them takes the lock first (`fence::guard`), so while the test holds
/// it the job's next command waits on the host, seen as the deploy user's `flock`.
struct Stepper<'a> {
    container: &'a str,
}

impl<'a> Stepper<'a> {
    /// Takes the lock (after the command that holds it, if one does, ends).
    fn hold(container: &'a str) -> Stepper<'a> {
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
    fn until(
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
