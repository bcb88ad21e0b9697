//! Faults where they hurt: the gateway killed (SIGKILL) at each step boundary between
//! the start of `switch` and the end of `health`, a host that stops answering right
//! after its switch, a stopped host.  Each ends with every host serving one release, no
//! slot but the live one running, and no request dropped where the host was up.

mod support;

use std::time::{Duration, Instant};

use deploy::wire::{EventKind, HostStatus, JobStatus};
use support::load::KeepAliveLoad;
use support::*;

/// The job's stored events, as JSON values.
fn events(gw: &Gateway, token: &str, job: &str) -> Vec<serde_json::Value> {
    let (status, _, body) = gw.http("GET", &format!("/v1/jobs/{job}/log"), Some(token), None);
    assert_eq!(status, 200, "{body}");
    let v: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    v.into_iter().map(|e| e["event"].clone()).collect()
}

/// The slots running on a host, as supervisord says.
fn running_slots(container: &str) -> usize {
    exec(container, "supervisorctl status || true")
        .lines()
        .filter(|l| l.starts_with("hello-") && l.contains("RUNNING"))
        .count()
}

#[test]
fn a_gateway_killed_at_any_step_boundary_leaves_the_serving_slot_serving() {
    let tb = Testbed::up("fault-kill", 1);
    let mut gw = Gateway::start(Some(&tb), "0.1.0", "0.1.0");
    let ann = gw.token("ann", "staging", false);
    let r = gw.run(Some(&ann), &["release", "hello", "1.0.0", "-e", "staging"]);
    assert_eq!(r.code, 0, "{r:?}");
    let web1 = tb.server("web1").clone();
    let boundaries = [
        ("step_started", "switch", "1.1.0"),
        ("step_finished", "switch", "1.3.0"),
        ("step_started", "health", "1.4.0"),
        ("step_finished", "health", "1.1.0"),
    ];
    for (kind, step, version) in boundaries {
        let load = KeepAliveLoad::start(std::slice::from_ref(&web1), 3);
        let body = format!(r#"{{"app":"hello","env":"staging","version":"{version}"}}"#);
        let (status, _, reply) = gw.http("POST", "/v1/deployments", Some(&ann), Some(&body));
        assert_eq!(status, 202, "{reply}");
        let job: serde_json::Value = serde_json::from_str(&reply).unwrap();
        let job = job["id"].as_str().unwrap().to_string();
        let t = Instant::now();
        loop {
            let seen = events(&gw, &ann, &job)
                .iter()
                .any(|e| e["type"] == kind && e["step"] == step);
            if seen {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(180),
                "{kind} {step} never came"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        gw.kill();
        std::thread::sleep(Duration::from_secs(1));
        gw.restart();
        // The next deploy of the same release finishes the job: same slot serving,
        // nothing dropped, the other slot stopped.
        let r = gw.run(Some(&ann), &["release", "hello", version, "-e", "staging"]);
        let seen = load.stop();
        eprintln!(
            "killed at {kind} {step} ({version}): {} keep-alive requests, {} failed",
            seen.sent, seen.failed
        );
        assert_eq!(r.code, 0, "after a kill at {kind} {step}: {r:?}");
        assert_eq!(seen.failed, 0, "{kind} {step}: {:?}", seen.samples);
        assert_eq!(served_version(&web1), version);
        assert_eq!(running_slots(&web1.container), 1, "one slot runs");
    }
}

#[test]
fn a_host_that_stops_answering_after_its_switch_is_reported_then_converges() {
    let tb = Testbed::up("fault-cut", 3);
    tb.set_inventory(&tb.inventory_text().replace(
        "        groups: [web]\n",
        "        groups: [web]\n        rollout: {batch: \"1\", canary: false, max_failed: 0, on_halt: rollback}\n",
    ));
    assert_eq!(
        tb.deploy("1.0.0", false).result.status,
        JobStatus::Succeeded
    );
    let job = tb.deploy_in_background("1.1.0");
    let web2 = tb.server("web2").container.clone();
    let t = Instant::now();
    while !job
        .events
        .0
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(&e.kind, EventKind::Switched { host, .. } if host == "web2"))
    {
        assert!(
            t.elapsed() < Duration::from_secs(180),
            "web2 never switched"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // Its network is gone: it answers nothing (frozen), mid-job.
    let cut = Instant::now();
    docker(&["pause", &web2]);
    let d = job.join();
    let noticed = cut.elapsed();
    docker(&["unpause", &web2]);
    assert_eq!(d.result.status, JobStatus::Failed);
    let h2 = d.host("web2");
    let why = h2.error.clone().unwrap_or_default();
    eprintln!("web2 cut after its switch; the job ended {noticed:?} later: {why}");
    assert!(
        why.contains("web2") && why.contains("still serves 1.1.0"),
        "{why}"
    );
    assert!(noticed < Duration::from_secs(60), "{noticed:?}");
    let h1 = d.host("web1");
    assert!(
        h1.error
            .as_deref()
            .unwrap_or("")
            .contains("rolled back to 1.0.0"),
        "{h1:?}"
    );
    assert_eq!(served_version(tb.server("web1")), "1.0.0");
    assert_eq!(served_version(tb.server("web3")), "1.0.0");
    // The next deploy brings every host to one release, one slot each.
    assert_eq!(
        tb.deploy("1.0.0", false).result.status,
        JobStatus::Succeeded
    );
    for s in &tb.servers {
        assert_eq!(served_version(s), "1.0.0", "{}", s.name);
        assert_eq!(running_slots(&s.container), 1, "{} runs one slot", s.name);
    }

    // A stopped host is reported unreachable, by name, within 20 s.
    docker(&["stop", "-t", "1", &tb.server("web3").container]);
    let t = Instant::now();
    let d = tb.deploy("1.0.0", false);
    let h3 = d.host("web3");
    eprintln!(
        "stopped web3 reported after {:?}: {:?}",
        t.elapsed(),
        h3.error
    );
    assert_eq!(h3.status, HostStatus::Unreachable);
    assert!(h3.elapsed < Duration::from_secs(20), "{h3:?}");
    assert!(
        h3.error.as_deref().unwrap_or("").starts_with("web3: "),
        "{h3:?}"
    );
}

fn docker(args: &[&str]) {
    let st = std::process::Command::new("docker")
        .args(args)
        .status()
        .unwrap();
    assert!(st.success(), "docker {args:?}");
}
