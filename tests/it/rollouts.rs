//! Safe rollouts on real servers: zero dropped requests under load (upgrade, halt,
//! rollback, restart), a broken release halted at the canary, rollback without
//! installing, keep-N with a failed release, a server stopped mid-rollout, and cancel
//! mid-rollout.

use crate::support;

use std::time::Instant;

use deploy::wire::{HostStatus, JobStatus};
use support::load::{KeepAliveLoad, nginx_workers};
use support::*;

/// Both kinds of load at once: one connection per request (HTTP/1.0) and HTTP/1.1
/// clients that keep their connection and send GETs and POSTs on it.
struct Loads(Load, KeepAliveLoad);

impl Loads {
    fn start(tb: &Testbed) -> Loads {
        Loads(
            Load::start(&tb.servers),
            // Paced (5 ms between requests per client): tens of thousands of requests
            // a phase still, and CPU left for the deploy on this 2-core machine.
            KeepAliveLoad::paced(&tb.servers, 2, std::time::Duration::from_millis(5)),
        )
    }
    /// Stops both; asserts nothing failed; returns the keep-alive requests sent.
    fn check(self, what: &str) -> u64 {
        let (sent, failed, samples) = self.0.stop();
        let ka = self.1.stop();
        eprintln!(
            "{what}: {sent} one-shot requests ({failed} failed); {} keep-alive requests on {} connections ({} failed)",
            ka.sent, ka.connections, ka.failed
        );
        assert!(
            sent > 100 && ka.sent > 1000,
            "the load must be real: {sent}, {ka:?}"
        );
        assert!(
            ka.connections * 10 < ka.sent,
            "connections are reused: {ka:?}"
        );
        assert_eq!(failed, 0, "{what}: dropped one-shot requests: {samples:?}");
        assert_eq!(
            ka.failed, 0,
            "{what}: dropped keep-alive requests: {:?}",
            ka.samples
        );
        ka.sent
    }
}

fn workers(tb: &Testbed) -> Vec<String> {
    tb.servers
        .iter()
        .map(|s| nginx_workers(&s.container))
        .collect()
}

#[test]
fn zero_downtime_upgrade_broken_release_halt_and_rollback_under_keepalive_load() {
    let tb = Testbed::up("rollout-load", 3);
    let gw = Gateway::start(Some(&tb), "0.1.0", "0.1.0");
    let ann = gw.token("ann", "staging", false);
    let r = gw.run(Some(&ann), &["release", "hello", "1.0.0", "-e", "staging"]);
    assert_eq!(r.code, 0, "{r:?}");
    let mut keepalive_sent = 0;

    // 1.0.0 -> 1.1.0 under continuous load: zero failed requests, and no nginx reload
    // (the switch renames the live socket link; nginx's workers are the same after).
    let nginx_before = workers(&tb);
    let load = Loads::start(&tb);
    let t = Instant::now();
    let r = gw.run(Some(&ann), &["release", "hello", "1.1.0", "-e", "staging"]);
    let deploy_secs = t.elapsed().as_secs_f64();
    keepalive_sent += load.check("upgrade");
    assert_eq!(r.code, 0, "{r:?}");
    let reloads = nginx_before
        .iter()
        .zip(workers(&tb))
        .filter(|(a, b)| **a != *b)
        .count();
    eprintln!("upgrade: {deploy_secs:.1}s; hosts whose nginx reloaded: {reloads}");
    assert_eq!(reloads, 0, "nginx reloaded during the upgrade");
    for s in &tb.servers {
        let line = format!(
            "{}: switch changed live -> hello-green: 1.0.0 -> 1.1.0 (no reload)",
            s.name
        );
        assert!(r.stdout.contains(&line), "{}", r.stdout);
    }
    for s in &tb.servers {
        assert_eq!(served_version(s), "1.1.0");
    }

    // The broken 1.2.0 halts at the canary; every host keeps serving 1.1.0.
    let load = Loads::start(&tb);
    let r = gw.run(Some(&ann), &["release", "hello", "1.2.0", "-e", "staging"]);
    keepalive_sent += load.check("broken release");
    assert_eq!(r.code, 1, "the job-failed exit code: {r:?}");
    assert!(
        r.stdout.contains("health check GET /healthz")
            && r.stdout.contains("answered 500, expected 200"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("not started: the rollout halted after batch 1/2"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("job failed"));
    for s in &tb.servers {
        assert_eq!(served_version(s), "1.1.0", "{}", s.name);
    }

    // Host by host, web2 cannot build 1.3.0: the rollout halts after web1 switched,
    // and web1 goes back to 1.1.0, all under load.
    tb.set_inventory(&tb.inventory_text().replace(
        "        groups: [web]\n",
        "        groups: [web]\n        rollout: {batch: \"1\", canary: false, max_failed: 0, on_halt: rollback}\n",
    ));
    exec(
        &tb.server("web2").container,
        "d=/srv/apps/hello/releases/1.3.0 && mkdir -p $d && touch $d/stuck && chown -R root:root $d",
    );
    let load = Loads::start(&tb);
    let r = gw.run(Some(&ann), &["release", "hello", "1.3.0", "-e", "staging"]);
    keepalive_sent += load.check("halt and rollback");
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.contains("web1: rolled back to 1.1.0"),
        "{}",
        r.stdout
    );
    for s in &tb.servers {
        assert_eq!(served_version(s), "1.1.0", "{}", s.name);
    }
    // Undo the sabotage (prune would trip over it later).
    exec(
        &tb.server("web2").container,
        "rm -rf /srv/apps/hello/releases/1.3.0",
    );

    // Rollback to the previous good release (1.0.0): no install, zero failures.
    let nginx_before = workers(&tb);
    let load = Loads::start(&tb);
    let t = Instant::now();
    let r = gw.run(Some(&ann), &["rollback", "hello", "-e", "staging", "--yes"]);
    let rollback_secs = t.elapsed().as_secs_f64();
    keepalive_sent += load.check("rollback");
    eprintln!("rollback: {rollback_secs:.1}s (the upgrade took {deploy_secs:.1}s)");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        workers(&tb),
        nginx_before,
        "nginx reloaded during the rollback"
    );
    for s in &tb.servers {
        assert_eq!(served_version(s), "1.0.0");
        assert!(
            r.stdout.contains(&format!(
                "{}: install ok hello-app==1.0.0 is installed",
                s.name
            )),
            "{}",
            r.stdout
        );
    }
    assert!(
        !r.stdout.contains("Collecting") && !r.stdout.contains("pip"),
        "a rollback installs nothing: {}",
        r.stdout
    );
    assert!(r.stderr.contains("started: rollback hello 1.0.0"), "{r:?}");

    // `deploy restart` under the same load: each host's other slot starts the same
    // release and takes the traffic after its health check; zero failures, no reload.
    let slots_before: Vec<String> = tb.servers.iter().map(|s| live_slot(&s.container)).collect();
    let nginx_before = workers(&tb);
    let load = Loads::start(&tb);
    let r = gw.run(Some(&ann), &["restart", "hello", "-e", "staging", "--yes"]);
    keepalive_sent += load.check("restart");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        workers(&tb),
        nginx_before,
        "nginx reloaded during the restart"
    );
    for (s, before) in tb.servers.iter().zip(slots_before) {
        assert_ne!(
            live_slot(&s.container),
            before,
            "{}: the other slot took over",
            s.name
        );
        assert_eq!(served_version(s), "1.0.0");
    }
    eprintln!("keep-alive requests in all: {keepalive_sent}");
    assert!(
        keepalive_sent >= 20_000,
        "at least 20,000 keep-alive requests: {keepalive_sent}"
    );
}

#[test]
fn keep_two_releases_after_five_deploys_one_failed() {
    let tb = Testbed::up("rollout-keep", 1);
    tb.set_inventory(&tb.inventory_text().replace(
        "    keep_releases: 3\n",
        "    keep_releases: 2\n    drain_secs: 0\n",
    ));
    let c = tb.server("web1").container.clone();
    for (version, ok) in [
        ("1.0.0", true),
        ("1.1.0", true),
        ("1.2.0", false),
        ("1.3.0", true),
        ("1.4.0", true),
    ] {
        let d = tb.deploy(version, false);
        assert_eq!(
            d.result.status == JobStatus::Succeeded,
            ok,
            "{version}: {:#?}",
            d.result
        );
    }
    let releases = exec(&c, "ls /srv/apps/hello/releases");
    assert_eq!(
        releases.split_whitespace().collect::<Vec<_>>(),
        ["1.3.0", "1.4.0"],
        "the live and the previous good release, nothing else"
    );
    assert_eq!(served_version(tb.server("web1")), "1.4.0");
}

fn rolling_inventory(tb: &Testbed) {
    tb.set_inventory(&tb.inventory_text().replace(
        "        groups: [web]\n",
        "        groups: [web]\n        rollout: {batch: \"1\", canary: false, pause_secs: 3, max_failed: 0, on_halt: rollback}\n",
    ));
}

#[test]
fn a_server_stopped_mid_rollout_fails_alone_and_upgraded_hosts_roll_back() {
    let tb = Testbed::up("rollout-stop", 3);
    rolling_inventory(&tb);
    assert_eq!(
        tb.deploy("1.0.0", false).result.status,
        JobStatus::Succeeded
    );
    let job = tb.deploy_in_background("1.1.0");
    job.wait_host_finished("web1");
    let web2 = tb.server("web2").container.clone();
    let st = std::process::Command::new("docker")
        .args(["stop", "-t", "1", &web2])
        .status()
        .unwrap();
    assert!(st.success());
    let d = job.join();
    assert_eq!(d.result.status, JobStatus::Failed);
    let h2 = d.host("web2");
    assert_eq!(h2.status, HostStatus::Unreachable, "{h2:?}");
    let h1 = d.host("web1");
    assert!(
        h1.error
            .as_deref()
            .unwrap_or("")
            .contains("rolled back to 1.0.0"),
        "{h1:?}"
    );
    let h3 = d.host("web3");
    assert!(
        h3.error.as_deref().unwrap_or("").contains("not started"),
        "{h3:?}"
    );
    for name in ["web1", "web3"] {
        assert_eq!(
            served_version(tb.server(name)),
            "1.0.0",
            "{name} ends on one working release"
        );
    }
}

#[test]
fn cancel_mid_rollout_leaves_every_host_on_a_working_release() {
    let tb = Testbed::up("rollout-cancel", 3);
    rolling_inventory(&tb);
    assert_eq!(
        tb.deploy("1.0.0", false).result.status,
        JobStatus::Succeeded
    );
    let job = tb.deploy_in_background("1.1.0");
    job.wait_host_finished("web1");
    job.cancel.store(true, std::sync::atomic::Ordering::SeqCst);
    let d = job.join();
    assert_eq!(d.result.status, JobStatus::Cancelled);
    assert_eq!(d.host("web1").status, HostStatus::Changed);
    for name in ["web2", "web3"] {
        let h = d.host(name);
        assert_eq!(h.status, HostStatus::Cancelled, "{h:?}");
        assert!(
            h.error.as_deref().unwrap_or("").contains("cancelled"),
            "{h:?}"
        );
    }
    assert_eq!(served_version(tb.server("web1")), "1.1.0");
    assert_eq!(served_version(tb.server("web2")), "1.0.0");
    assert_eq!(served_version(tb.server("web3")), "1.0.0");
    // The job's end says what the cancel left: one host changed, two cancelled, none
    // failed (the words every front end shows: deploy_wire::present).
    let end = (d.events.iter().rev())
        .map(|e| deploy_wire::present::line(&e.kind))
        .find(|l| l.text.starts_with("cancelled in"))
        .expect("a job_finished event");
    assert!(
        end.text.ends_with(": 1 changed, 2 cancelled"),
        "{}",
        end.text
    );
}
