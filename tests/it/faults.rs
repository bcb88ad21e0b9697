//! Faults where they hurt: the gateway killed (SIGKILL) at each step boundary between
//! the start of `switch` and the end of `health`, a host that stops answering right
//! after its switch, a stopped host.  Each ends with every host serving one release, no
//! slot but the live one running, and no request dropped where the host was up.

use crate::support;

use std::time::{Duration, Instant};

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

/// `deploy status --live --json`: (host, recorded version, what the host says, disagrees).
fn status_live(gw: &Gateway, token: &str) -> Vec<(String, Option<String>, Option<String>, bool)> {
    let r = gw.run(
        Some(token),
        &["--json", "status", "hello", "-e", "staging", "--live"],
    );
    // 9: a host is flagged (a disagreement, or the old slot a kill left running).
    assert!(matches!(r.code, 0 | 9), "{r:?}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).unwrap();
    rows.iter()
        .map(|h| {
            (
                h["host"].as_str().unwrap().to_string(),
                h["version"].as_str().map(str::to_string),
                h["observed"]["version"].as_str().map(str::to_string),
                h["disagrees"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

/// Waits (at most 30 s) until `deploy status` names what every host serves, and says so.
fn status_names_what_runs(gw: &Gateway, token: &str, tb: &Testbed) {
    let t = Instant::now();
    loop {
        let rows = status_live(gw, token);
        let served: Vec<String> = rows
            .iter()
            .map(|(h, ..)| served_version(tb.server(h)))
            .collect();
        let right = rows.iter().zip(&served).all(|((_, rec, seen, dis), s)| {
            rec.as_ref() == Some(s) && seen.as_ref() == Some(s) && !dis
        });
        if right {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "status does not name what runs: {rows:?}, served {served:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_gateway_killed_at_any_step_boundary_leaves_the_serving_slot_serving() {
    let tb = Testbed::up("fault-kill", 2);
    tb.set_inventory(&tb.inventory_text().replace(
        "        groups: [web]\n",
        "        groups: [web]\n        rollout: {batch: \"1\", canary: false}\n",
    ));
    let mut gw = Gateway::start(Some(&tb), "0.1.0", "0.1.0");
    let ann = gw.token("ann", "staging", false);
    let r = gw.run(Some(&ann), &["release", "hello", "1.0.0", "-e", "staging"]);
    assert_eq!(r.code, 0, "{r:?}");
    let boundaries = [
        ("step_started", "switch", "1.1.0"),
        ("step_finished", "switch", "1.3.0"),
        ("step_started", "health", "1.4.0"),
        ("step_finished", "health", "1.1.0"),
    ];
    // Diagnostics: any moment the live pointer leads nowhere, with what was there.  (A
    // short sleep per look: a loop without one kept a core of this 2-core machine busy
    // per server for the whole test, and slowed every test beside it.)
    for s in &tb.servers {
        let watch = "cd /srv/apps/hello/run && while true; do t=$(readlink live.sock); \
            [ -S \"$t\" ] || echo \"$(date +%T.%N) live.sock -> '$t': $(ls | tr '\\n' ' ')\"; sleep 0.005; done > /tmp/watch.log 2>&1";
        docker(&["exec", "-d", &s.container, "sh", "-c", watch]);
    }
    for (kind, step, version) in boundaries {
        let load = KeepAliveLoad::paced(&tb.servers, 2, Duration::from_millis(2));
        let body = format!(r#"{{"app":"hello","env":"staging","version":"{version}"}}"#);
        let (status, _, reply) = gw.http("POST", "/v1/deployments", Some(&ann), Some(&body));
        assert_eq!(status, 202, "{reply}");
        let job: serde_json::Value = serde_json::from_str(&reply).unwrap();
        let job = job["id"].as_str().unwrap().to_string();
        let t = Instant::now();
        // web1 goes first (batches of one): killing at its boundary is mid-rollout.
        while !events(&gw, &ann, &job)
            .iter()
            .any(|e| e["type"] == kind && e["step"] == step && e["host"] == "web1")
        {
            assert!(
                t.elapsed() < Duration::from_secs(180),
                "{kind} {step} never came"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        gw.kill();
        std::thread::sleep(Duration::from_secs(1));
        gw.restart();
        // The restarted gateway reads what the hosts serve (whatever the dead one heard).
        status_names_what_runs(&gw, &ann, &tb);
        // The next deploy of the same release finishes the job: nothing dropped, one
        // slot running per host.
        let r = gw.run(Some(&ann), &["release", "hello", version, "-e", "staging"]);
        let seen = load.stop();
        eprintln!(
            "killed at web1's {kind} {step} ({version}): {} keep-alive requests, {} failed",
            seen.sent, seen.failed
        );
        let log = exec(
            &tb.server("web1").container,
            "tail -n 5 /var/log/nginx/error.log || true",
        );
        assert_eq!(r.code, 0, "after a kill at {kind} {step}: {r:?}");
        assert_eq!(
            seen.failed, 0,
            "{kind} {step}: {:?}\nnginx: {log}",
            seen.samples
        );
        for s in &tb.servers {
            assert_eq!(served_version(s), version);
            assert_eq!(running_slots(&s.container), 1, "{}: one slot runs", s.name);
        }
        status_names_what_runs(&gw, &ann, &tb);
    }
}

/// The job's last `host_finished` for `host`: (status, error, elapsed ms).
fn host_end(evs: &[serde_json::Value], host: &str) -> (String, String, u64) {
    let e = evs
        .iter()
        .rev()
        .find(|e| e["type"] == "host_finished" && e["host"] == host)
        .unwrap_or_else(|| panic!("no host_finished for {host}: {evs:?}"));
    (
        e["status"].as_str().unwrap_or_default().to_string(),
        e["error"].as_str().unwrap_or_default().to_string(),
        e["elapsed_ms"].as_u64().unwrap_or_default(),
    )
}

fn wait_job(gw: &Gateway, token: &str, job: &str) -> String {
    let t = Instant::now();
    loop {
        let (_, _, body) = gw.http("GET", &format!("/v1/jobs/{job}"), Some(token), None);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let state = v["state"].as_str().unwrap_or_default().to_string();
        if state != "running" {
            return state;
        }
        assert!(
            t.elapsed() < Duration::from_secs(240),
            "job {job} never ended"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_host_that_stops_answering_after_its_switch_is_reported_then_converges() {
    let tb = Testbed::up("fault-cut", 3);
    tb.set_inventory(&tb.inventory_text().replace(
        "        groups: [web]\n",
        "        groups: [web]\n        rollout: {batch: \"1\", canary: false, max_failed: 0, on_halt: rollback}\n",
    ));
    let gw = Gateway::start(Some(&tb), "0.1.0", "0.1.0");
    let ann = gw.token("ann", "staging", false);
    let r = gw.run(Some(&ann), &["release", "hello", "1.0.0", "-e", "staging"]);
    assert_eq!(r.code, 0, "{r:?}");
    let body = r#"{"app":"hello","env":"staging","version":"1.1.0"}"#;
    let (_, _, reply) = gw.http("POST", "/v1/deployments", Some(&ann), Some(body));
    let job: serde_json::Value = serde_json::from_str(&reply).unwrap();
    let job = job["id"].as_str().unwrap().to_string();
    let web2 = tb.server("web2").container.clone();
    let t = Instant::now();
    while !events(&gw, &ann, &job)
        .iter()
        .any(|e| e["type"] == "switched" && e["host"] == "web2")
    {
        assert!(
            t.elapsed() < Duration::from_secs(180),
            "web2 never switched"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // Its network is gone right after its switch: it answers nothing, mid-job.
    let cut = Instant::now();
    docker(&["pause", &web2]);
    assert_eq!(wait_job(&gw, &ann, &job), "failed");
    let noticed = cut.elapsed();
    docker(&["unpause", &web2]);
    let evs = events(&gw, &ann, &job);
    let (_, why2, _) = host_end(&evs, "web2");
    eprintln!("web2 cut after its switch; the job ended {noticed:?} later: {why2}");
    assert!(
        why2.contains("web2") && why2.contains("still serves 1.1.0"),
        "{why2}"
    );
    assert!(noticed < Duration::from_secs(60), "{noticed:?}");
    let (status1, why1, _) = host_end(&evs, "web1");
    assert_eq!(status1, "failed", "the summary tells the final truth");
    assert!(why1.contains("rolled back to 1.0.0"), "{why1}");
    assert_eq!(served_version(tb.server("web1")), "1.0.0");
    assert_eq!(served_version(tb.server("web3")), "1.0.0");
    // The record says what each host serves (web2 still 1.1.0), and the hosts agree.
    status_names_what_runs(&gw, &ann, &tb);
    // The next deploy brings every host to one release, one slot each.
    let r = gw.run(Some(&ann), &["release", "hello", "1.0.0", "-e", "staging"]);
    assert_eq!(r.code, 0, "{r:?}");
    for s in &tb.servers {
        assert_eq!(served_version(s), "1.0.0", "{}", s.name);
        assert_eq!(running_slots(&s.container), 1, "{} runs one slot", s.name);
    }
    status_names_what_runs(&gw, &ann, &tb);

    // A stopped host is reported unreachable, by name, within 20 s.
    docker(&["stop", "-t", "1", &tb.server("web3").container]);
    let r = gw.run(Some(&ann), &["release", "hello", "1.0.0", "-e", "staging"]);
    assert_eq!(r.code, 1, "{r:?}");
    let jobs: serde_json::Value =
        serde_json::from_str(&gw.http("GET", "/v1/jobs?limit=1", Some(&ann), None).2).unwrap();
    let last = jobs[0]["id"].as_str().unwrap().to_string();
    let (status3, why3, ms3) = host_end(&events(&gw, &ann, &last), "web3");
    eprintln!("stopped web3 reported after {ms3} ms: {why3}");
    assert_eq!(status3, "unreachable");
    assert!(ms3 < 20_000, "{ms3} ms");
    assert!(why3.starts_with("web3: "), "{why3}");
}

fn docker(args: &[&str]) {
    // The cgroup freezer behind `docker pause` may fail to freeze a task caught in
    // uninterruptible I/O ("unable to freeze" on this machine's fuse-overlayfs); it
    // gets a few more tries, a moment apart.
    let tries = if args.first() == Some(&"pause") { 5 } else { 1 };
    for i in 1..=tries {
        let st = std::process::Command::new("docker")
            .args(args)
            .status()
            .unwrap();
        if st.success() {
            return;
        }
        assert!(i < tries, "docker {args:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
