//! Runners per site (issue 30): two Docker networks that cannot reach each other, a runner
//! in each reaching only its own network's servers, a front door that reaches neither,
//! one PostgreSQL.  One deploy spans both sites; a runner killed mid-job; a site whose
//! runner is down; a schedule; and what the gateway believes, checked against what each
//! server serves.

use std::net::ToSocketAddrs;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::sites::{SITES, SitesBed, site_of};
use crate::support::{CliRun, Gateway};

const SERVERS: [&str; 6] = ["web1", "web2", "web3", "web4", "web5", "web6"];

/// The hosts whose part of `job` was lost (its runner's lease expired while it ran).
fn lost_parts(bed: &SitesBed, job: &str) -> Vec<String> {
    let lost: Vec<String> = (bed.parts(job).into_iter())
        .filter(|(_, _, state)| state == "lost")
        .map(|(host, _, _)| host)
        .collect();
    assert!(!lost.is_empty(), "{:?}", bed.parts(job));
    lost
}

/// The `host_finished` events of a job: host -> (status, error).
fn host_ends(gw: &Gateway, token: &str, job: &str) -> Vec<(String, String, String)> {
    gw.job_events(token, job)
        .into_iter()
        .filter(|e| e["type"] == "host_finished")
        .map(|e| {
            (
                e["host"].as_str().unwrap_or_default().to_string(),
                e["status"].as_str().unwrap_or_default().to_string(),
                e["error"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The last `host_finished` of `host` in a job.
fn last_end(ends: &[(String, String, String)], host: &str) -> (String, String) {
    let (_, status, error) = ends.iter().rev().find(|(h, _, _)| h == host).unwrap();
    (status.clone(), error.clone())
}

/// What `deploy status` says each server runs must be what it serves.
fn assert_status_is_the_truth(bed: &SitesBed, token: &str) {
    let r = bed
        .front
        .run(Some(token), &["status", "hello", "-e", "staging"]);
    assert_eq!(r.code, 0, "{r:?}");
    for s in SERVERS {
        let served = bed.served(s);
        let line = r
            .stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(s))
            .unwrap_or_else(|| panic!("{s} missing in {}", r.stdout));
        assert!(
            line.split_whitespace().any(|w| w == served),
            "{s} serves {served:?}, status says: {line}"
        );
    }
}

/// `deploy --json status --live`: host -> (observed version, unreachable reason, flags).
fn status_live(bed: &SitesBed, token: &str) -> Vec<(String, String, String, usize)> {
    let r = bed.front.run(
        Some(token),
        &["--json", "status", "hello", "-e", "staging", "--live"],
    );
    let rows: Vec<Value> = serde_json::from_str(&r.stdout).unwrap_or_else(|_| panic!("{r:?}"));
    rows.iter()
        .map(|h| {
            let o = &h["observed"];
            (
                h["host"].as_str().unwrap_or_default().to_string(),
                o["version"].as_str().unwrap_or_default().to_string(),
                o["unreachable"].as_str().unwrap_or_default().to_string(),
                h["flags"].as_array().map_or(0, Vec::len),
            )
        })
        .collect()
}

/// `deploy release hello VERSION`, doing `meanwhile` as soon as a host of site b runs.
fn release_while(bed: &SitesBed, token: &str, version: &str, meanwhile: impl FnOnce()) -> CliRun {
    let mut cli = bed
        .front
        .cli(Some(token), &["release", "hello", version, "-e", "staging"]);
    let watcher = std::thread::spawn(move || cli.output().unwrap());
    let since = Instant::now();
    loop {
        let running =
            (bed.tb).sql("SELECT count(*) FROM site_parts WHERE site = 'b' AND state = 'running'");
        if running.trim() != "0" {
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(120),
            "site b never ran"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    meanwhile();
    let out = watcher.join().unwrap();
    CliRun {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn one_job_spans_two_sites_through_their_runners_and_a_runner_killed_or_down_is_told_truthfully() {
    let t0 = Instant::now();
    let bed = SitesBed::up("sites", "site_wait_secs = 10\n");
    eprintln!("bed up: {:?}", t0.elapsed());
    let gw = &bed.front;
    let ann = gw.token("ann", "staging", false);
    let admin = gw.token("root", "", true);

    // The walls: each runner reaches its own site's servers only; the front door cannot
    // even resolve a server's name.
    for r in &bed.runners {
        for s in ["web1", "web4"] {
            assert_eq!(
                r.reaches(&bed, s),
                site_of(s) == r.site,
                "{} -> {s}",
                r.site
            );
        }
    }
    assert!(("web1", 22).to_socket_addrs().is_err());

    eprintln!("{:?}: 1", t0.elapsed());
    // 1. One deploy, one job, six hosts: each run by its site's runner; each site
    //    fetches the wheel once (through its runner's relay) and builds it once.
    let r = gw.run(Some(&ann), &["release", "hello", "1.0.0", "-e", "staging"]);
    assert_eq!(r.code, 0, "{r:?}\n{}", bed.runner("a").log());
    assert!(r.stdout.contains("job succeeded"), "{r:?}");
    let job = r.job_id();
    for s in SERVERS {
        assert_eq!(bed.served(s), "1.0.0", "{s}");
    }
    let parts = bed.parts(&job);
    assert_eq!(parts.len(), 6, "{parts:?}");
    for (host, owner, state) in &parts {
        assert_eq!(owner, &format!("runner-{}", site_of(host)), "{host}");
        assert_eq!(state, "done", "{host}");
    }
    let log = bed.tb.artifactory_log();
    let downloads = log
        .lines()
        .filter(|l| l.starts_with("GET ") && l.contains("hello_app-1.0.0-py3-none-any.whl"))
        .count();
    assert_eq!(downloads, 2, "one download per site:\n{log}");
    let events = gw.job_events(&admin, &job);
    for (site, servers) in SITES {
        let reasons: Vec<String> = events
            .iter()
            .filter(|e| e["type"] == "step_finished" && e["step"] == "venv")
            .filter(|e| servers.iter().any(|n| e["host"] == format!("web{n}")))
            .map(|e| e["reason"].as_str().unwrap_or_default().to_string())
            .collect();
        let built = reasons
            .iter()
            .filter(|r| r.contains("built here once"))
            .count();
        let unpacked = reasons.iter().filter(|r| r.starts_with("unpacked")).count();
        assert_eq!((built, unpacked), (1, 2), "site {site}: {reasons:#?}");
    }
    assert_status_is_the_truth(&bed, &ann);
    // `status --live` reads every host through its site's runner.
    let live = status_live(&bed, &ann);
    assert_eq!(live.len(), 6, "{live:?}");
    for (host, version, unreachable, flags) in &live {
        assert_eq!(
            (version.as_str(), unreachable.as_str(), *flags),
            ("1.0.0", "", 0),
            "{host}"
        );
    }

    eprintln!("{:?}: 2", t0.elapsed());
    // 2. Site b's runner killed while it runs its hosts: the job says so for each of
    //    them, halts and puts site a back; the record matches the servers.
    let r = release_while(&bed, &ann, "1.1.0", || bed.runner("b").kill());
    assert_ne!(r.code, 0, "{r:?}");
    let job = r.job_id();
    assert_eq!(gw.job_state(&ann, &job), "failed");
    let ends = host_ends(gw, &admin, &job);
    let lost = lost_parts(&bed, &job);
    for host in &lost {
        assert_eq!(site_of(host), "b");
        let (status, error) = last_end(&ends, host);
        assert_eq!(status, "failed", "{host}: {error}");
        assert!(
            error.contains("site b's runner (runner-b) stopped renewing its lease"),
            "{host}: {error}"
        );
    }
    for s in ["web1", "web2", "web3"] {
        assert_eq!(bed.served(s), "1.0.0", "{s} rolled back");
    }
    assert_status_is_the_truth(&bed, &ann);

    eprintln!("{:?}: 3", t0.elapsed());
    // 3. Site b's runner down: its hosts wait, then are unreachable, named as such,
    //    untouched (the release site a serves: nothing to roll back there).
    let before: Vec<String> = ["web4", "web5", "web6"].map(|s| bed.served(s)).to_vec();
    let r = gw.run(Some(&ann), &["release", "hello", "1.0.0", "-e", "staging"]);
    assert_ne!(r.code, 0, "{r:?}");
    let job = r.job_id();
    let ends = host_ends(gw, &admin, &job);
    let (status, error) = last_end(&ends, "web4");
    assert_eq!(status, "unreachable", "{error}");
    assert!(
        error.contains("no runner of site b took it within 10 s"),
        "{error}"
    );
    assert_eq!(
        ["web4", "web5", "web6"].map(|s| bed.served(s)).to_vec(),
        before
    );
    assert_status_is_the_truth(&bed, &ann);
    // `status --live` names the site whose runner is down, for each of its hosts.
    for (host, _, unreachable, _) in status_live(&bed, &ann) {
        let down = "no runner of site b answered within 10 s (is site b's runner up?)";
        assert_eq!(
            unreachable.contains(down),
            site_of(&host) == "b",
            "{host}: {unreachable}"
        );
    }

    eprintln!("{:?}: 4", t0.elapsed());
    // 4. Runner b back: the same deploy succeeds everywhere.
    bed.runner("b").start_again();
    let r = gw.run(Some(&ann), &["release", "hello", "1.1.0", "-e", "staging"]);
    assert_eq!(r.code, 0, "{r:?}\n{}", bed.runner("b").log());
    for s in SERVERS {
        assert_eq!(bed.served(s), "1.1.0", "{s}");
    }
    assert_status_is_the_truth(&bed, &ann);

    eprintln!("{:?}: 5", t0.elapsed());
    // 5. A schedule of the front door runs through the runners as any job does.
    let (at, _) = crate::schedules::at_in(3);
    let add = gw.run(
        Some(&ann),
        &[
            "--json", "schedule", "add", "hello", "1.0.0", "-e", "staging", "--at", &at,
        ],
    );
    assert_eq!(add.code, 0, "{add:?}");
    let id = serde_json::from_str::<Value>(&add.stdout).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let since = Instant::now();
    let job = loop {
        let (_, _, body) = gw.http("GET", &format!("/v1/schedules/{id}"), Some(&ann), None);
        let v: Value = serde_json::from_str(&body).unwrap();
        let run = v["runs"].as_array().and_then(|r| r.first().cloned());
        if let Some(job) = run.as_ref().and_then(|r| r["job_id"].as_str())
            && matches!(gw.job_state(&ann, job).as_str(), "succeeded" | "failed")
        {
            break job.to_string();
        }
        assert!(since.elapsed() < Duration::from_secs(120), "{body}");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(gw.job_state(&ann, &job), "succeeded");
    for s in SERVERS {
        assert_eq!(bed.served(s), "1.0.0", "{s}");
    }
    assert_status_is_the_truth(&bed, &ann);
}

#[test]
fn a_runner_stalled_mid_part_loses_it_and_sends_nothing_when_it_wakes() {
    let mut bed = SitesBed::up("sites-stall", "site_wait_secs = 10\n");
    let gw = &bed.front;
    let ann = gw.token("ann", "staging", false);
    let admin = gw.token("root", "", true);
    let r = gw.run(Some(&ann), &["release", "hello", "1.0.0", "-e", "staging"]);
    assert_eq!(r.code, 0, "{r:?}");

    // Site b's runner stalls (SIGSTOP) while it runs its hosts.
    let r = release_while(&bed, &ann, "1.1.0", || bed.runner("b").pause());
    assert_ne!(r.code, 0, "{r:?}");
    let job = r.job_id();
    let ends = host_ends(gw, &admin, &job);
    let lost = lost_parts(&bed, &job);
    for host in &lost {
        let (status, error) = last_end(&ends, host);
        assert_eq!(status, "failed", "{host}: {error}");
        assert!(
            error.contains("stopped renewing its lease"),
            "{host}: {error}"
        );
    }
    let before: Vec<String> = SERVERS.map(|s| bed.served(s)).to_vec();
    assert_status_is_the_truth(&bed, &ann);

    // It wakes: its leases are gone, so it sends nothing more and stores nothing.
    bed.runner("b").unpause();
    let since = Instant::now();
    while !bed
        .runner("b")
        .log()
        .contains("its part was no longer this runner's")
    {
        assert!(
            since.elapsed() < Duration::from_secs(60),
            "{}",
            bed.runner("b").log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(SERVERS.map(|s| bed.served(s)).to_vec(), before);
    for (host, _, state) in bed.parts(&job) {
        if lost.contains(&host) {
            assert_eq!(state, "lost", "{host}: nothing stored after its end");
        }
    }
    assert_status_is_the_truth(&bed, &ann);

    // Awake, it serves the next job as before.
    let r = gw.run(Some(&ann), &["release", "hello", "1.1.0", "-e", "staging"]);
    assert_eq!(r.code, 0, "{r:?}\n{}", bed.runner("b").log());
    for s in SERVERS {
        assert_eq!(bed.served(s), "1.1.0", "{s}");
    }
    assert_status_is_the_truth(&bed, &ann);

    // A cancel through the front door reaches the parts site b's runner runs: they stop
    // between steps and say so; the record still matches the servers.
    let job = std::cell::RefCell::new(String::new());
    let r = release_while(&bed, &ann, "1.3.0", || {
        let id = bed
            .tb
            .sql("SELECT job_id FROM site_parts WHERE state = 'running' LIMIT 1");
        let c = gw.run(Some(&ann), &["cancel", id.trim()]);
        assert_eq!(c.code, 0, "{c:?}");
        *job.borrow_mut() = id.trim().to_string();
    });
    let job = job.into_inner();
    assert_ne!(r.code, 0, "{r:?}");
    assert_eq!(gw.job_state(&ann, &job), "cancelled", "{r:?}");
    let ends = host_ends(gw, &admin, &job);
    assert!(
        ends.iter()
            .any(|(h, status, _)| site_of(h) == "b" && status == "cancelled"),
        "{ends:?}"
    );
    assert!(
        (bed.parts(&job).iter()).all(|(_, _, state)| state == "done"),
        "{:?}",
        bed.parts(&job)
    );
    assert_status_is_the_truth(&bed, &ann);

    // The front door SIGKILLed while site b's runner runs its parts, then restarted: it
    // marks the job interrupted; the runners stop its parts at their next renewal; then
    // the hosts are read through the runners and the record is what they serve.
    let body = r#"{"app":"hello","env":"staging","version":"1.4.0"}"#;
    let (code, _, answer) = bed
        .front
        .http("POST", "/v1/deployments", Some(&ann), Some(body));
    assert_eq!(code, 202, "{answer}");
    let job = serde_json::from_str::<Value>(&answer).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let since = Instant::now();
    while bed.tb.sql(&format!(
        "SELECT count(*) FROM site_parts WHERE job_id = '{job}' AND site = 'b' AND state = 'running'"
    ))
    .trim()
        == "0"
    {
        assert!(since.elapsed() < Duration::from_secs(120), "site b never ran");
        std::thread::sleep(Duration::from_millis(100));
    }
    bed.front.restart();
    assert_eq!(bed.front.job_state(&ann, &job), "interrupted");
    let since = Instant::now();
    loop {
        let running = bed.tb.sql(&format!(
            "SELECT count(*) FROM site_parts WHERE job_id = '{job}' AND state = 'running'"
        ));
        let reconciled = bed
            .front
            .log()
            .contains(&format!("job {job}: the live record of"));
        if running.trim() == "0" && reconciled {
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(90),
            "{}",
            bed.front.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        bed.front
            .log()
            .contains(&format!("job {job}: the live record of 6 host(s)")),
        "{}",
        bed.front.log()
    );
    assert_status_is_the_truth(&bed, &ann);
}
