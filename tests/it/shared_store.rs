//! Two (or three) gateways on one PostgreSQL database, as real processes: a token made
//! through one works on the other; a deploy started through A is followed live through
//! B (`deploy --json logs --follow`) and locks its (app, env) on both; 20 deploy requests
//! sent at once, 10 to each gateway, start exactly one job; a gateway killed mid-job
//! (SIGKILL, after it renewed its lease twice) has its job marked `interrupted` by
//! exactly one of two survivors (one started while the job ran, which must leave it
//! alone) once its lease expires, not before (the seconds from kill to `interrupted` are
//! measured and printed), after which the lock is free; schedules tick on both gateways
//! and each slot runs once.
//!
//! What the schedule test measures: cron slots are whole minutes (5 fields, no seconds),
//! so five cron slots would take five minutes.  It runs five one-shot (`at`) schedules
//! 3 s apart (five distinct slots, each claimed by one of two ticking gateways: exactly
//! one run row, one job and one gateway's log line each; each slot comes due while both
//! gateways are stopped, SIGSTOP, and both resume together, SIGCONT, so that both tick
//! at once and really race for the claim) and one `* * * * *` cron schedule over
//! two consecutive minutes: its first slot runs once with both gateways up; the gateway
//! that ran it is then killed and the next minute's slot runs once, through the
//! survivor.  That test needs no servers (hosts on a closed port: a scheduled job fails
//! at the connection, which is enough to see that it started, when and how often), so
//! it waits for minute boundaries (at most about two minutes) alongside the other two.

use crate::support;

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use deploy::gateway::store::now_ms;
use deploy::schedule::format_local;
use serde_json::{Value, json};
use support::*;

pub(crate) const DEPLOY_100: &str = r#"{"app":"hello","env":"staging","version":"1.0.0"}"#;
pub(crate) const DEPLOY_110: &str = r#"{"app":"hello","env":"staging","version":"1.1.0"}"#;
/// The lease of the kill test: short, so that the test is, but several renewals long.
const LEASE_SECS: u64 = 10;

/// A gateway on the shared database `db` (the testbed's files when `tb` is given);
/// `extra`: top-level TOML lines.
pub(crate) fn gateway(tb: Option<&Testbed>, db: &str, extra: &str) -> Gateway {
    Gateway::start_opts(
        tb,
        GatewayOpts {
            database: Some(db.to_string()),
            extra: extra.to_string(),
            ..GatewayOpts::default()
        },
    )
}

pub(crate) fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

pub(crate) fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {secs}s waiting for {what}");
}

/// `GET path` through `gw`: the JSON body (asserting 200).
pub(crate) fn get(gw: &Gateway, token: &str, path: &str) -> Value {
    let (status, _, body) = gw.http("GET", path, Some(token), None);
    assert_eq!(status, 200, "GET {path} on {}: {body}", gw.url);
    json_of(&body)
}

pub(crate) fn job(gw: &Gateway, token: &str, id: &str) -> Value {
    get(gw, token, &format!("/v1/jobs/{id}"))
}

pub(crate) fn state(gw: &Gateway, token: &str, id: &str) -> String {
    job(gw, token, id)["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A job's stored events, as JSON values.
pub(crate) fn events(gw: &Gateway, token: &str, id: &str) -> Vec<Value> {
    let log = get(gw, token, &format!("/v1/jobs/{id}/log"));
    log.as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].clone())
        .collect()
}

/// The ids of the jobs `gw` lists as running.
fn running_jobs(gw: &Gateway, token: &str) -> Vec<String> {
    get(gw, token, "/v1/jobs?limit=1000")
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["state"] == "running")
        .map(|j| j["id"].as_str().unwrap().to_string())
        .collect()
}

pub(crate) fn post(gw: &Gateway, token: &str, path: &str, body: &str) -> (u16, Value) {
    let (status, _, body) = gw.http("POST", path, Some(token), Some(body));
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

pub(crate) fn deploy(gw: &Gateway, token: &str, body: &str) -> String {
    let (status, v) = post(gw, token, "/v1/deployments", body);
    assert_eq!(status, 202, "{v}");
    v["id"].as_str().unwrap().to_string()
}

pub(crate) fn wait_ended(gw: &Gateway, token: &str, id: &str, secs: u64) -> String {
    wait_until(secs, &format!("job {id} to end"), || {
        state(gw, token, id) != "running"
    });
    state(gw, token, id)
}

/// Every host at once (no canary): a deploy takes one host's time.
pub(crate) fn all_at_once(tb: &Testbed) {
    let text = tb.inventory_text().replace(
        "        groups: [web]\n",
        "        groups: [web]\n        rollout: {batch: \"3\", canary: false}\n",
    );
    assert_ne!(text, tb.inventory_text());
    tb.set_inventory(&text);
}

/// Prints how long a phase took (the file's runtime is a claim too).
pub(crate) fn phase(began: &mut Instant, what: &str) {
    println!("[{:5.1} s] {what}", began.elapsed().as_secs_f64());
    *began = Instant::now();
}

/// Prints the warnings and errors the gateways logged (for the record: not asserted, a
/// killed gateway's peers may rightly warn), but the offline inventory's unreachable index.
pub(crate) fn print_problems(gws: &[(&str, &Gateway)]) {
    for (name, gw) in gws {
        for l in gw.log().lines() {
            let noise = l.contains("cannot reach the index http://127.0.0.1:1/");
            if !noise && (l.contains(" WARN ") || l.contains(" ERROR ") || l.contains("panicked")) {
                println!("gateway {name}: {l}");
            }
        }
    }
}

fn reader(mut from: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = from.read_to_string(&mut text);
        text
    })
}

#[test]
fn a_deploy_through_one_gateway_is_followed_live_through_the_other_and_locks_both() {
    let (began, mut t) = (Instant::now(), Instant::now());
    cli_bin();
    let tb = Testbed::up("shared-follow", 3);
    all_at_once(&tb);
    phase(&mut t, "test bed up");
    let db = pg::new_database("shared_follow");
    let a = gateway(Some(&tb), &db, "");
    let b = gateway(Some(&tb), &db, "");
    phase(&mut t, "database and two gateways");

    // 1. A token made through A works on B (and B does check tokens).
    let ann = a.token("ann", "staging", false);
    get(&b, &ann, "/v1/jobs");
    let (status, _, body) = b.http("GET", "/v1/jobs", Some("not-a-token"), None);
    assert_eq!(status, 401, "{body}");

    // 2. A deploy through A (fresh hosts: venvs and installs, several seconds), followed
    //    through B from its start; while it runs, both gateways refuse a second deploy.
    let id = deploy(&a, &ann, DEPLOY_100);
    let mut follower = b
        .cli(Some(&ann), &["--json", "logs", &id, "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = follower.stdout.take().unwrap();
    let lines = std::thread::spawn(move || {
        BufReader::new(out)
            .lines()
            .map(|l| (now_ms(), l.unwrap()))
            .collect::<Vec<_>>()
    });
    let follower_err = reader(follower.stderr.take().unwrap());

    let r = b.run(Some(&ann), &["release", "hello", "1.1.0", "-e", "staging"]);
    assert_eq!(r.code, 6, "B refuses as locked (exit 6): {r:?}");
    assert!(
        r.stderr.contains("a job of ann is running") && r.stderr.contains(&id),
        "B's refusal names A's job: {r:?}"
    );
    let (status, v) = post(&a, &ann, "/v1/deployments", DEPLOY_110);
    assert_eq!((status, v["code"].as_str()), (409, Some("locked")), "{v}");
    assert_eq!(v["job_id"], id.as_str(), "{v}");
    assert_eq!(
        state(&b, &ann, &id),
        "running",
        "the refusals must come while the job runs"
    );

    let waited = Instant::now();
    let exit = loop {
        if let Some(s) = follower.try_wait().unwrap() {
            break s;
        }
        if waited.elapsed() > Duration::from_secs(240) {
            let _ = follower.kill();
            panic!("the follower through B did not end with the job");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let lines = lines.join().unwrap();
    let err = follower_err.join().unwrap();
    assert_eq!(exit.code(), Some(0), "the follow ends with the job: {err}");
    assert_eq!(state(&a, &ann, &id), "succeeded");
    let got: Vec<(u64, Value)> = lines.iter().map(|(t, l)| (*t, json_of(l))).collect();
    let last = &got.last().expect("the follower printed events").1;
    assert_eq!(
        (last["type"].as_str(), last["status"].as_str()),
        (Some("job_finished"), Some("succeeded")),
        "{last}"
    );
    let end_ms = last["ts_ms"].as_u64().unwrap();
    // Every event A stored reached B's follower, once and in order.
    let stored = events(&a, &ann, &id);
    let seen: Vec<Value> = got.iter().map(|(_, e)| e.clone()).collect();
    assert_eq!(seen, stored, "B's follower saw what A stored");
    // Live: each host's events reached B's follower before the job ended.
    for s in &tb.servers {
        let first = got
            .iter()
            .find(|(_, e)| e["host"] == s.name.as_str())
            .map(|(t, _)| *t)
            .unwrap_or_else(|| panic!("no event of {} through B", s.name));
        assert!(
            first < end_ms,
            "{}'s first event reached B's follower only {} ms after the job ended",
            s.name,
            first - end_ms
        );
        println!(
            "{}: first event through B {} ms before the job ended",
            s.name,
            end_ms - first
        );
    }
    let early = got
        .iter()
        .filter(|(t, e)| e.get("host").is_some() && *t < end_ms)
        .count();
    let hosts = got.iter().filter(|(_, e)| e.get("host").is_some()).count();
    let mut lag: Vec<i64> = got
        .iter()
        .map(|(t, e)| *t as i64 - e["ts_ms"].as_i64().unwrap())
        .collect();
    lag.sort_unstable();
    let (median, max) = (lag[lag.len() / 2], lag[lag.len() - 1]);
    println!(
        "follow through B: {} events, {early} of {hosts} host events before the job's end; \
         lag from A's event to B's follower: median {median} ms, max {max} ms",
        got.len()
    );
    // Woken by A's notification, not found by B's once-a-second look at the store (that
    // would make the median about 500 ms).
    assert!(
        median < 300,
        "B's followers must be woken when A stores events: median lag {median} ms"
    );
    for s in &tb.servers {
        assert_eq!(served_version(s), "1.0.0");
    }
    phase(&mut t, "deploy through A followed through B");

    // 3. 20 deploys at once, 10 through each gateway: exactly one job.
    let barrier = Barrier::new(20);
    let answers: Vec<(&str, u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let (name, gw) = if i % 2 == 0 { ("A", &a) } else { ("B", &b) };
                let (barrier, ann) = (&barrier, &ann);
                scope.spawn(move || {
                    barrier.wait();
                    let (status, v) = post(gw, ann, "/v1/deployments", DEPLOY_110);
                    (name, status, v)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let accepted: Vec<_> = answers.iter().filter(|(_, s, _)| *s == 202).collect();
    let locked: Vec<_> = answers
        .iter()
        .filter(|(_, s, v)| *s == 409 && v["code"] == "locked")
        .collect();
    let count = |list: &[&(&str, u16, Value)], g: &str| list.iter().filter(|x| x.0 == g).count();
    println!(
        "20 concurrent deploys: {} accepted (A {}, B {}), {} locked (A {}, B {}), {} other",
        accepted.len(),
        count(&accepted, "A"),
        count(&accepted, "B"),
        locked.len(),
        count(&locked, "A"),
        count(&locked, "B"),
        20 - accepted.len() - locked.len()
    );
    assert_eq!(accepted.len(), 1, "exactly one accepted: {answers:?}");
    assert_eq!(
        locked.len(),
        19,
        "all others refused as locked: {answers:?}"
    );
    let winner = accepted[0].2["id"].as_str().unwrap().to_string();
    for (_, _, v) in &locked {
        assert_eq!(
            v["job_id"],
            winner.as_str(),
            "a refusal names the winner: {v}"
        );
    }
    for gw in [&a, &b] {
        assert_eq!(
            running_jobs(gw, &ann),
            vec![winner.clone()],
            "on {}",
            gw.url
        );
    }
    assert_eq!(
        pg::sql(&db, "SELECT count(*) FROM jobs WHERE state = 'running'"),
        "1"
    );
    assert_eq!(pg::sql(&db, "SELECT job_id FROM locks"), winner);
    // Enough: cancelled through the gateway that does NOT run it (the request waits in
    // the job's row for its own gateway), it stops after the steps in flight.
    let other = if accepted[0].0 == "A" { &b } else { &a };
    let (status, v) = post(other, &ann, &format!("/v1/jobs/{winner}/cancel"), "");
    assert_eq!(status, 200, "{v}");
    assert_eq!(wait_ended(&a, &ann, &winner, 240), "cancelled");
    for s in &tb.servers {
        let v = served_version(s);
        assert!(v == "1.0.0" || v == "1.1.0", "{}: {v}", s.name);
    }
    phase(&mut t, "20 concurrent deploys, the one job cancelled");
    print_problems(&[("A", &a), ("B", &b)]);
    println!("test took {:.1} s", began.elapsed().as_secs_f64());
}

#[test]
fn a_killed_gateways_job_is_interrupted_by_the_other_within_the_lease() {
    let (began, mut t) = (Instant::now(), Instant::now());
    cli_bin();
    let tb = Testbed::up("shared-lease", 3);
    all_at_once(&tb);
    // The job must outlive two lease renewals whatever the installer's speed (uv builds
    // a release in well under a second): every host holds 15 s in a hook before its switch.
    let held = tb.inventory_text().replace(
        "    keep_releases: 3\n",
        "    keep_releases: 3\n    hooks:\n      before_switch:\n        - {name: hold, command: sleep 15, scope: every_host}\n",
    );
    assert_ne!(held, tb.inventory_text());
    tb.set_inventory(&held);
    phase(&mut t, "test bed up");
    let db = pg::new_database("shared_lease");
    let lease = format!("lease_secs = {LEASE_SECS}\n");
    let mut a = gateway(Some(&tb), &db, &lease);
    let b = gateway(Some(&tb), &db, &lease);
    let ann = a.token("ann", "staging", false);

    // A fresh deploy through A (venvs, installs, the hook: it takes a while), killed mid-job
    // once A has renewed its lease twice (every lease/3 s): the kill is what stops the
    // renewals, so the job must end one lease after the last, not one after the start.
    let id = deploy(&a, &ann, DEPLOY_100);
    let created = job(&a, &ann, &id)["created_ms"].as_u64().unwrap();
    // A gateway that starts now leaves the running job alone (its owner may be alive).
    let c = gateway(Some(&tb), &db, &lease);
    assert_eq!(state(&c, &ann, &id), "running", "{}", c.log());
    let renewed = 2 * LEASE_SECS * 1000 / 3 + 1500;
    wait_until(
        120,
        "the job to be renewed twice, its hosts building",
        || {
            let evs = events(&a, &ann, &id);
            now_ms() >= created + renewed
                && tb.servers.iter().all(|s| {
                    evs.iter().any(|e| {
                        e["type"] == "step_started"
                            && e["host"] == s.name.as_str()
                            && e["step"] == "venv"
                    })
                })
        },
    );
    assert_eq!(
        state(&c, &ann, &id),
        "running",
        "the kill must come mid-job"
    );
    phase(
        &mut t,
        &format!(
            "gateways up, the job {:.1} s old, its hosts building",
            (now_ms() - created) as f64 / 1000.0
        ),
    );
    a.kill();
    let killed = Instant::now();
    let mut now = String::from("running");
    while now == "running" && killed.elapsed() < Duration::from_secs(LEASE_SECS + 30) {
        std::thread::sleep(Duration::from_millis(100));
        now = state(&b, &ann, &id);
    }
    let secs = killed.elapsed().as_secs_f64();
    println!("A killed: B shows job {id} {now} after {secs:.1} s (lease {LEASE_SECS} s)");
    assert_eq!(now, "interrupted", "B:\n{}\nC:\n{}", b.log(), c.log());
    assert!(
        secs <= (LEASE_SECS + 5) as f64,
        "interrupted {secs:.1} s after the kill, lease {LEASE_SECS} s"
    );
    assert!(
        secs >= LEASE_SECS as f64 * 2.0 / 3.0 - 1.0,
        "interrupted {secs:.1} s after the kill: before A's lease (renewed every {} s) can have expired",
        LEASE_SECS / 3
    );

    // Exactly one survivor marked it, with one final event, and says why.
    std::thread::sleep(Duration::from_secs(3)); // more checks by both survivors
    for gw in [&b, &c] {
        let evs = events(gw, &ann, &id);
        let finals = evs.iter().filter(|e| e["type"] == "job_finished").count();
        assert_eq!(finals, 1, "one final event: {evs:?}");
        let last = evs.last().unwrap();
        assert_eq!(
            (last["type"].as_str(), last["status"].as_str()),
            (Some("job_finished"), Some("interrupted")),
            "{last}"
        );
        assert_eq!(state(gw, &ann, &id), "interrupted");
    }
    let said = format!("job {id}: the lease of gateway ");
    let markers: Vec<&str> = [("B", &b), ("C", &c)]
        .into_iter()
        .filter(|(_, gw)| {
            gw.log().lines().any(|l| {
                l.contains(&said) && l.contains("expired; marked interrupted, lock released")
            })
        })
        .map(|(n, _)| n)
        .collect();
    println!("marked interrupted by {markers:?}");
    assert_eq!(
        markers.len(),
        1,
        "exactly one survivor marks it:\nB:\n{}\nC:\n{}",
        b.log(),
        c.log()
    );
    phase(&mut t, "killed, interrupted");
    let r = c.run(Some(&ann), &["logs", &id, "--follow"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("job interrupted"), "{r:?}");

    // The lock is free: a deploy through B finishes the work on every host.
    let r = b.run(Some(&ann), &["release", "hello", "1.0.0", "-e", "staging"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("job succeeded"), "{r:?}");
    for s in &tb.servers {
        assert_eq!(served_version(s), "1.0.0");
        let (status, body) = http_get(s.http_port, HOST, "/healthz");
        assert_eq!(status, 200, "{}: {body}", s.name);
    }
    phase(&mut t, "a new deploy through B");
    print_problems(&[("A", &a), ("B", &b), ("C", &c)]);
    println!("test took {:.1} s", began.elapsed().as_secs_f64());
}

/// A local wall time in UTC, `secs` from now, to the second (`at`); with its instant.
fn at_in(secs: u64) -> (String, u64) {
    let t = (now_ms() / 1000 + secs) * 1000;
    let text = format_local(t, "UTC")
        .trim_end_matches(" UTC")
        .replace(' ', "T");
    (format!("{text}:{:02}", (t / 1000) % 60), t)
}

/// A schedule's runs (newest first), as `gw` shows them.
fn runs(gw: &Gateway, token: &str, id: &str) -> Vec<Value> {
    get(gw, token, &format!("/v1/schedules/{id}"))["runs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The jobs a schedule started, as `gw` lists them.
fn jobs_of(gw: &Gateway, token: &str, id: &str) -> Vec<String> {
    let by = format!("schedule {id}");
    get(gw, token, "/v1/jobs?limit=1000")
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["triggered_by"] == by.as_str())
        .map(|j| j["id"].as_str().unwrap().to_string())
        .collect()
}

/// Which gateway ran (schedule, slot): the one whose log has the run's outcome line;
/// asserts there is exactly one.
fn ran_by<'a>(gws: &'a [(&'a str, Gateway)], id: &str, slot: u64) -> &'a str {
    let line = format!("schedule {id} slot {slot}: ");
    let by: Vec<&str> = gws
        .iter()
        .filter(|(_, gw)| gw.log().contains(&line))
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(by.len(), 1, "one gateway runs {id} slot {slot}: {by:?}");
    by[0]
}

/// Waits until the schedule has `n` runs, all started; returns them (newest first).
fn started_runs(gw: &Gateway, token: &str, id: &str, n: usize, secs: u64) -> Vec<Value> {
    wait_until(secs, &format!("{n} started run(s) of {id}"), || {
        let r = runs(gw, token, id);
        r.len() >= n && r.iter().all(|r| r["state"] == "started")
    });
    runs(gw, token, id)
}

fn sleep_until(ms: u64) {
    let now = now_ms();
    if ms > now {
        std::thread::sleep(Duration::from_millis(ms - now));
    }
}

/// The pid of `gw`'s `deploy-gateway serve` (the process whose command line names its
/// config file).
fn pid_of(gw: &Gateway) -> String {
    let config = gw.config().to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| a == "serve") && args.contains(&config) {
            return pid;
        }
    }
    panic!("no deploy-gateway serve --config {config}");
}

/// `kill -SIG` to all of `pids` at once (one call: microseconds apart).
fn signal(pids: &[String], sig: &str) {
    let st = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .args(pids)
        .status()
        .unwrap();
    assert!(st.success(), "kill -{sig} {pids:?}");
}

fn db_runs(db: &str, id: &str) -> String {
    pg::sql(
        db,
        &format!("SELECT count(*) FROM schedule_runs WHERE schedule_id = '{id}'"),
    )
}

#[test]
fn a_cron_schedule_runs_once_per_slot_across_two_gateways() {
    let began = Instant::now();
    let db = pg::new_database("shared_sched");
    let mut gws = vec![("A", gateway(None, &db, "")), ("B", gateway(None, &db, ""))];
    let ann = gws[0].1.token("ann", "staging,production", false);

    // Every minute, on production (its own lock: it never waits for the one-shots).
    let body = json!({"app": "hello", "env": "production", "what": "1.0.0", "cron": "* * * * *"});
    let (status, v) = post(&gws[1].1, &ann, "/v1/schedules", &body.to_string());
    assert_eq!(status, 201, "{v}");
    let cron = v["id"].as_str().unwrap().to_string();
    let first = v["next_ms"].as_u64().unwrap();
    assert_eq!(first % 60_000, 0, "{v}");

    // Five one-shots on staging, 3 s apart, made through A and B in turn.
    let shots: Vec<(String, u64)> = (0..5u64)
        .map(|i| {
            let (at, slot) = at_in(4 + 3 * i);
            let body = json!({"app": "hello", "env": "staging", "what": "1.0.0", "at": at});
            let gw = &gws[i as usize % 2].1;
            let (status, v) = post(gw, &ann, "/v1/schedules", &body.to_string());
            assert_eq!(status, 201, "{v}");
            assert_eq!(v["next_ms"].as_u64(), Some(slot), "{v}");
            (v["id"].as_str().unwrap().to_string(), slot)
        })
        .collect();
    // Each slot comes due while both gateways are stopped; resumed together, both tick at
    // once (an overdue tick fires at once) and race for the claim: without this their
    // ticks keep the phase of their start-up, and the later one finds the schedule
    // already moved on to its next slot, never trying the claim at all.
    let pids = [pid_of(&gws[0].1), pid_of(&gws[1].1)];
    for (id, slot) in &shots {
        sleep_until(slot - 600);
        signal(&pids, "STOP");
        sleep_until(slot + 400);
        signal(&pids, "CONT");
        started_runs(&gws[0].1, &ann, id, 1, 20);
    }
    std::thread::sleep(Duration::from_millis(2500)); // more ticks of both gateways
    let mut by = Vec::new();
    for (id, slot) in &shots {
        for (_, gw) in &gws {
            let r = runs(gw, &ann, id);
            assert_eq!(r.len(), 1, "one run per slot: {r:?}");
            assert_eq!(r[0]["slot_ms"].as_u64(), Some(*slot), "{r:?}");
            assert_eq!(r[0]["state"], "started", "{r:?}");
            let jobs = jobs_of(gw, &ann, id);
            assert_eq!(jobs.len(), 1, "one job per slot: {jobs:?}");
            assert_eq!(r[0]["job_id"], jobs[0].as_str());
        }
        assert_eq!(db_runs(&db, id), "1");
        by.push(ran_by(&gws, id, *slot));
    }
    println!("one-shot slots run by {by:?}");

    // The cron schedule's first slot, with both gateways up.
    sleep_until(first);
    let r = started_runs(&gws[0].1, &ann, &cron, 1, 20);
    std::thread::sleep(Duration::from_millis(2500));
    let r2 = runs(&gws[1].1, &ann, &cron);
    assert_eq!(r2, r, "one run, as both gateways show it");
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0]["slot_ms"].as_u64(), Some(first));
    assert_eq!(jobs_of(&gws[1].1, &ann, &cron).len(), 1);
    assert_eq!(db_runs(&db, &cron), "1");
    let latest = ran_by(&gws, &cron, first).to_string();
    let (gone, kept) = if latest == "A" { (0, 1) } else { (1, 0) };
    println!(
        "cron slot {} run by {latest}; killing it",
        format_local(first, "UTC")
    );
    gws[gone].1.kill();

    // The next slot runs once, through the survivor.
    let next = first + 60_000;
    let shown = get(&gws[kept].1, &ann, &format!("/v1/schedules/{cron}"));
    assert_eq!(shown["next_ms"].as_u64(), Some(next), "{shown}");
    sleep_until(next);
    started_runs(&gws[kept].1, &ann, &cron, 2, 20);
    std::thread::sleep(Duration::from_millis(2500));
    let r = runs(&gws[kept].1, &ann, &cron);
    let slots: Vec<Option<u64>> = r.iter().map(|r| r["slot_ms"].as_u64()).collect();
    assert_eq!(slots, vec![Some(next), Some(first)], "{r:?}");
    let mut jobs = jobs_of(&gws[kept].1, &ann, &cron);
    jobs.sort();
    let mut run_jobs: Vec<String> = r
        .iter()
        .map(|r| r["job_id"].as_str().unwrap().to_string())
        .collect();
    run_jobs.sort();
    assert_eq!(jobs, run_jobs, "one job per slot");
    assert_eq!(db_runs(&db, &cron), "2");
    assert_eq!(
        ran_by(&gws, &cron, next),
        gws[kept].0,
        "the survivor ran it"
    );
    let named: Vec<(&str, &Gateway)> = gws.iter().map(|(n, g)| (*n, g)).collect();
    print_problems(&named);
    println!(
        "cron slot {} run by {} after {} was killed; test took {:.1} s",
        format_local(next, "UTC"),
        gws[kept].0,
        gws[gone].0,
        began.elapsed().as_secs_f64()
    );
}
