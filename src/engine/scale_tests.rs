//! A scale test of the rollout logic: 1,000 [`super::fake`] hosts in batches (a canary,
//! then batches of 100), a fresh deploy, a no-op and an upgrade, each timed, with the
//! process's memory read before and after.  Prints its figures (`--nocapture`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use deploy_wire::{Event, EventKind, HostStatus, JobStatus};

use crate::inventory::{BatchSize, Inventory};
use crate::testbed::{Bed, bed, spec};

const HOSTS: usize = 1000;
const BATCH: u32 = 100;

/// Bounds about 5x what a debug build measured alone on 2 cores (fresh 1.1 s, no-op 0.8 s,
/// upgrade 1.6 s, 3.6 s in all; 54 MiB more resident, most of it the fake servers' logs
/// and the jobs' events); the whole test took 3.9 s in CI beside three Docker tests.
const MAX_RUN: Duration = Duration::from_secs(8);
const MAX_TOTAL: Duration = Duration::from_secs(20);
const MAX_GROWTH_KIB: u64 = 300 * 1024;

fn name(i: usize) -> String {
    format!("web{:04}", i + 1)
}

/// `bed`'s fleet and config with `bed_with`'s application on 1,000 hosts.
fn big_bed(dir: &tempfile::TempDir) -> Bed {
    let mut yaml = String::from("hosts:\n");
    for i in 0..HOSTS {
        let _ = std::fmt::Write::write_fmt(
            &mut yaml,
            format_args!(
                "  {}: {{address: 10.1.{}.{}, groups: [web]}}\n",
                name(i),
                i / 250,
                i % 250 + 1
            ),
        );
    }
    yaml.push_str(
        "applications:\n  hello:\n    package: hello-app\n    index_url: http://index:8080/simple/\n    wsgi: hello_app:app\n    port: 8000\n    server_names: [hello.test]\n\
         \x20   health: {retries: 2, interval_ms: 1}\n    keep_releases: 2\n    drain_secs: 0\n\
         \x20   environments:\n      production:\n        groups: [web]\n        parallel: 100\n",
    );
    yaml.push_str(&format!(
        "        rollout: {{canary: true, batch: {BATCH}, pause_secs: 0}}\n"
    ));
    let path = dir.path().join("inventory.yml");
    std::fs::write(&path, yaml).unwrap();
    let mut b = bed("{}");
    b.inv = Inventory::load(&path).unwrap();
    b
}

/// (VmRSS, VmHWM) of this process, in KiB.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn host_of(e: &Event) -> Option<&str> {
    match &e.kind {
        EventKind::HostStarted { host }
        | EventKind::Connected { host, .. }
        | EventKind::StepStarted { host, .. }
        | EventKind::Output { host, .. }
        | EventKind::StepFinished { host, .. }
        | EventKind::HostFinished { host, .. }
        | EventKind::Switched { host, .. }
        | EventKind::CommandExited { host, .. } => Some(host),
        _ => None,
    }
}

/// The batches, as host names: the canary alone, then batches of `BATCH`.
fn expected_batches() -> Vec<Vec<String>> {
    super::batches(HOSTS, true, BatchSize::Count(BATCH))
        .into_iter()
        .map(|b| b.into_iter().map(name).collect())
        .collect()
}

/// Each batch finished before the next one started (its connections may be opened
/// while the batch before it works: `prefetch.rs`), and each host was connected to once.
fn assert_batches_respected(b: &Bed, events: &[Event], what: &str) {
    let batches = expected_batches();
    let mut connects = std::mem::take(&mut *b.fleet.connects.lock().unwrap());
    connects.sort();
    let mut all: Vec<String> = batches.concat();
    all.sort();
    assert_eq!(connects, all, "{what}: one connection per host");
    let batch_of: HashMap<&str, usize> = batches
        .iter()
        .enumerate()
        .flat_map(|(bi, b)| b.iter().map(move |h| (h.as_str(), bi)))
        .collect();
    let mut finished = vec![0usize; batches.len()];
    for e in events {
        match &e.kind {
            EventKind::HostStarted { host } => {
                let bi = batch_of[host.as_str()];
                for (earlier, n) in finished[..bi].iter().enumerate() {
                    assert_eq!(
                        *n,
                        batches[earlier].len(),
                        "{what}: {host} (batch {bi}) started before batch {earlier} finished"
                    );
                }
            }
            EventKind::HostFinished { host, .. } => finished[batch_of[host.as_str()]] += 1,
            _ => {}
        }
    }
}

/// One run: the job, its time, its events per host (min, max) and in all, and the
/// commands the fake servers ran (printed, never asserted: batching changes it).
struct Figures {
    what: &'static str,
    wall: Duration,
    per_host: (usize, usize),
    total: usize,
    commands: usize,
}

/// Commands the fake servers have run so far.
fn commands(b: &Bed) -> usize {
    let servers = b.fleet.servers.lock().unwrap();
    servers.values().map(|s| s.state().log.len()).sum()
}

async fn run(b: &Bed, version: &str, what: &'static str, want: HostStatus) -> Figures {
    let ran_before = commands(b);
    let started = Instant::now();
    let (r, events) = b.run(spec(version)).await;
    let wall = started.elapsed();
    let ran = commands(b) - ran_before;
    assert_eq!(r.status, JobStatus::Succeeded, "{what}");
    assert_eq!(r.hosts.len(), HOSTS);
    for h in &r.hosts {
        assert_eq!(h.status, want, "{what}: {} {:?}", h.host, h.error);
        assert_eq!(h.serving.as_deref(), Some(version), "{what}: {}", h.host);
    }
    for i in 0..HOSTS {
        assert_eq!(b.serving(&name(i)).as_deref(), Some(version), "{what}");
        assert_eq!(b.fleet.server(&name(i)).running(), 1, "{what}: one slot");
    }
    assert_batches_respected(b, &events, what);
    let mut per: HashMap<&str, usize> = HashMap::new();
    for e in &events {
        if let Some(h) = host_of(e) {
            *per.entry(h).or_default() += 1;
        }
    }
    assert_eq!(per.len(), HOSTS, "{what}: events for every host");
    let min = per.values().copied().min().unwrap_or(0);
    let max = per.values().copied().max().unwrap_or(0);
    assert!(
        wall < MAX_RUN,
        "{what}: {HOSTS} hosts took {wall:?} (bound {MAX_RUN:?})"
    );
    Figures {
        what,
        wall,
        per_host: (min, max),
        total: events.len(),
        commands: ran,
    }
}

/// A 1,000-host rollout of the rollout logic runs fast with bounded memory.  Memory is
/// the whole process's (tests run as threads of one process): only a generous bound is
/// asserted.  Run it alone for figures that mean something:
/// `cargo test --lib -p deploy engine::scale_tests -- --nocapture`.
#[tokio::test]
async fn a_1000_host_rollout_of_the_rollout_logic_runs_fast_with_bounded_memory() {
    let test_started = Instant::now();
    let (rss_before, _) = memory_kib();
    let dir = tempfile::tempdir().unwrap();
    let b = big_bed(&dir);
    let mut figures = Vec::new();
    figures.push(run(&b, "1.0.0", "fresh", HostStatus::Changed).await);
    figures.push(run(&b, "1.0.0", "no-op", HostStatus::Ok).await);
    figures.push(run(&b, "1.1.0", "upgrade", HostStatus::Changed).await);
    let (rss_after, hwm_after) = memory_kib();
    let total = test_started.elapsed();
    for f in &figures {
        println!(
            "scale {}: {HOSTS} hosts in {:?}; events per host {}..{}, {} in the job; {} remote commands",
            f.what, f.wall, f.per_host.0, f.per_host.1, f.total, f.commands
        );
    }
    println!(
        "scale memory: VmRSS {rss_before} KiB before, {rss_after} KiB after (+{} KiB); VmHWM {hwm_after} KiB; whole test {total:?}",
        rss_after.saturating_sub(rss_before)
    );
    let growth = hwm_after.saturating_sub(rss_before);
    assert!(
        growth < MAX_GROWTH_KIB,
        "memory grew by {growth} KiB (peak over the start; bound {MAX_GROWTH_KIB} KiB)"
    );
    assert!(total < MAX_TOTAL, "the test took {total:?}");
}
