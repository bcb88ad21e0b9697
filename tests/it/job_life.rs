//! One owner for a job's life, across real processes: a gateway stalled past its lease
//! (SIGSTOP) while another gateway takes its job over and runs the next one, then
//! resumed (SIGCONT), changes nothing on any host and stores nothing after its job's
//! final event; its hosts end as the newer job left them.

use crate::shared_store::{
    DEPLOY_100, DEPLOY_110, all_at_once, deploy, events, gateway, phase, print_problems, state,
    wait_ended, wait_until,
};
use crate::support;

use std::time::Instant;

use serde_json::Value;
use support::*;

const LEASE_SECS: u64 = 6;

fn has(evs: &[Value], kind: &str, host: &str, step: Option<&str>) -> bool {
    evs.iter()
        .any(|e| e["type"] == kind && e["host"] == host && step.is_none_or(|s| e["step"] == s))
}

#[test]
fn a_stalled_gateway_changes_nothing_on_hosts_and_stores_nothing_after_the_final_event() {
    let (began, mut t) = (Instant::now(), Instant::now());
    let tb = Testbed::up("life-stall", 3);
    all_at_once(&tb);
    // One host after another, each holding 4 s in a hook before its switch: the stalled
    // gateway stops in web1's hook and wakes with web1's switch (and two hosts) to go.
    let text = tb
        .inventory_text()
        .replace("rollout: {batch: \"3\", canary: false}", "rollout: {batch: \"1\", canary: false}")
        .replace(
            "    keep_releases: 3\n",
            "    keep_releases: 3\n    hooks:\n      before_switch:\n        - {name: hold, command: sleep 4, scope: every_host}\n",
        );
    assert!(
        text.contains("batch: \"1\"") && text.contains("sleep 4"),
        "{text}"
    );
    tb.set_inventory(&text);
    let db = pg::new_database("life_stall");
    let lease = format!("lease_secs = {LEASE_SECS}\n");
    let a = gateway(Some(&tb), &db, &lease);
    let b = gateway(Some(&tb), &db, &lease);
    let ann = a.token("ann", "staging", false);
    phase(&mut t, "test bed and two gateways up");

    // A's job reaches web1's hook; A stops there.
    let j1 = deploy(&a, &ann, DEPLOY_100);
    wait_until(120, "job 1 in web1's hook", || {
        has(
            &events(&b, &ann, &j1),
            "step_started",
            "web1",
            Some("before_switch"),
        )
    });
    a.signal("STOP");
    let stopped = Instant::now();
    phase(&mut t, "A stopped in web1's hook");

    // B takes job 1 over once A's lease ended, then runs job 2 to web1's switch.
    assert_eq!(wait_ended(&b, &ann, &j1, LEASE_SECS + 20), "interrupted");
    println!(
        "job 1 interrupted {:.1} s after A stopped (lease {LEASE_SECS} s)",
        stopped.elapsed().as_secs_f64()
    );
    let j2 = deploy(&b, &ann, DEPLOY_110);
    wait_until(120, "job 2 to switch web1", || {
        has(&events(&b, &ann, &j2), "switched", "web1", None)
    });
    phase(&mut t, "job 1 taken over, job 2 switched web1");

    // A wakes up with web1's switch to 1.0.0 next, in a job that is no longer its own.
    a.signal("CONT");
    let ended = wait_ended(&b, &ann, &j2, 180);
    assert_eq!(ended, "succeeded", "{}", b.log());
    std::thread::sleep(std::time::Duration::from_secs(LEASE_SECS / 2)); // A's time to misbehave
    phase(&mut t, "A resumed, job 2 ended");

    for s in &tb.servers {
        assert_eq!(
            served_version(s),
            "1.1.0",
            "{}: A changed it after resuming",
            s.name
        );
        let seen = exec(&s.container, "cat /home/deploy/.deploy/fence/hello.staging");
        let epoch2 = pg::sql(&db, &format!("SELECT epoch FROM jobs WHERE id = '{j2}'"));
        assert_eq!(
            seen.trim(),
            epoch2.trim(),
            "{}: the newest epoch it has seen",
            s.name
        );
    }
    let evs = events(&b, &ann, &j1);
    let finals: Vec<usize> = (evs.iter().enumerate())
        .filter(|(_, e)| e["type"] == "job_finished")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        finals,
        [evs.len() - 1],
        "nothing after job 1's final event: {evs:?}"
    );
    assert!(
        !has(&evs, "switched", "web1", None),
        "A switched web1: {evs:?}"
    );
    assert_eq!(state(&b, &ann, &j1), "interrupted");
    let said = a.log();
    assert!(
        said.contains("another gateway marked it interrupted; it sends nothing more")
            || said.contains("another gateway took it over"),
        "A:\n{said}"
    );
    print_problems(&[("A", &a), ("B", &b)]);
    println!("test took {:.1} s", began.elapsed().as_secs_f64());
}

/// The seconds the database is away in the outage test (`DEPLOY_TEST_OUTAGE_SECS`, for
/// the figures of a longer one; 20 by default).
fn outage_secs() -> u64 {
    std::env::var("DEPLOY_TEST_OUTAGE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

fn pg_target() -> String {
    let base = pg::base_url();
    base.rsplit_once('@').unwrap().1.to_string()
}

#[test]
fn a_database_outage_longer_than_the_lease_keeps_the_job_its_owner_and_every_event() {
    let (began, mut t) = (Instant::now(), Instant::now());
    let tb = Testbed::up("life-outage", 2);
    all_at_once(&tb);
    let text = tb
        .inventory_text()
        .replace("rollout: {batch: \"3\", canary: false}", "rollout: {batch: \"1\", canary: false}")
        .replace(
            "    keep_releases: 3\n",
            "    keep_releases: 3\n    hooks:\n      before_switch:\n        - {name: hold, command: 'echo holding; sleep 6; echo held', scope: every_host}\n",
        );
    tb.set_inventory(&text);
    let db = pg::new_database("life_outage");
    let proxy = support::proxy::Proxy::start(&pg_target());
    let lease = format!("lease_secs = {LEASE_SECS}\n");
    let a = gateway(Some(&tb), &proxy.url(&db), &lease);
    let b = gateway(Some(&tb), &proxy.url(&db), &lease);
    let ann = a.token("ann", "staging", false);
    phase(
        &mut t,
        "test bed and two gateways up, their database behind a proxy",
    );

    let j1 = deploy(&a, &ann, DEPLOY_100);
    wait_until(120, "the job in web1's hook", || {
        has(
            &events(&a, &ann, &j1),
            "step_started",
            "web1",
            Some("before_switch"),
        )
    });
    let before = events(&a, &ann, &j1).len();
    let secs = outage_secs();
    proxy.cut();
    std::thread::sleep(std::time::Duration::from_secs(secs));
    proxy.restore();
    phase(
        &mut t,
        &format!("the database away for {secs} s (lease {LEASE_SECS} s)"),
    );

    assert_eq!(
        wait_ended(&a, &ann, &j1, 180),
        "succeeded",
        "A:\n{}\nB:\n{}",
        a.log(),
        b.log()
    );
    let evs = events(&b, &ann, &j1);
    let log = b
        .http("GET", &format!("/v1/jobs/{j1}/log"), Some(&ann), None)
        .2;
    let seqs: Vec<u64> = serde_json::from_str::<Value>(&log)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    let want: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, want, "no gap in the stored events");
    assert!(
        evs.len() > before,
        "{before} events before the outage, {} after",
        evs.len()
    );
    // What happened on web1 while the database was away was kept: its hook's output.
    let said = |line: &str| {
        evs.iter()
            .any(|e| e["type"] == "output" && e["host"] == "web1" && e["line"] == line)
    };
    assert!(said("holding") && said("held"), "{evs:?}");
    let finals = evs.iter().filter(|e| e["type"] == "job_finished").count();
    assert_eq!(
        (finals, evs.last().unwrap()["type"].as_str()),
        (1, Some("job_finished"))
    );
    for s in &tb.servers {
        assert_eq!(served_version(s), "1.0.0", "{}", s.name);
    }
    let taken = [&a, &b]
        .iter()
        .any(|g| g.log().contains("expired; marked interrupted"));
    assert!(
        !taken,
        "a live owner's job was taken over:\nA:\n{}\nB:\n{}",
        a.log(),
        b.log()
    );
    println!(
        "events: {before} before the outage, {} in all, 0 lost",
        evs.len()
    );
    print_problems(&[("A", &a), ("B", &b)]);
    println!("test took {:.1} s", began.elapsed().as_secs_f64());
}

#[test]
fn after_the_database_lost_its_session_the_gateway_id_is_taken_again_and_a_duplicate_refused() {
    let db = pg::new_database("life_identity");
    let proxy = support::proxy::Proxy::start(&pg_target());
    let id = "gateway_id = \"gw-same\"\nlease_secs = 6\n";
    let a = gateway(None, &proxy.url(&db), id);
    // The database loses every session of A (a restart): A takes its id again at its
    // next renewal (every 2 s here), so a second gateway with that id is refused.
    proxy.cut();
    std::thread::sleep(std::time::Duration::from_secs(1));
    proxy.restore();
    wait_until(20, "A to take its id again", || {
        a.log().contains("taking the id again")
    });
    std::thread::sleep(std::time::Duration::from_secs(1));
    // The same config (so the same id), through the restored proxy.
    let mut dup = a
        .command(&["serve"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + std::time::Duration::from_secs(20);
    while dup.try_wait().unwrap().is_none() && Instant::now() < end {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let Some(status) = dup.try_wait().unwrap() else {
        let _ = dup.kill();
        panic!("a second gateway with A's id started and runs");
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut dup.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{err}");
    assert!(err.contains("gw-same"), "{err}");
    assert!(
        a.http("GET", "/v1/health", None, None).0 == 200,
        "A serves on"
    );
}
