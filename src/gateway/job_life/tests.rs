//! Tests of a job's life: the final event of an interrupted job.

use super::*;
use deploy_wire::StepStatus;

fn stored(kinds: Vec<EventKind>) -> Vec<(u64, String)> {
    kinds
        .into_iter()
        .enumerate()
        .map(|(i, k)| (i as u64 + 1, serde_json::to_string(&Event::now(k)).unwrap()))
        .collect()
}

#[test]
fn an_interrupted_job_reports_its_real_elapsed_time_and_how_its_hosts_ended() {
    let events = stored(vec![
        EventKind::JobStarted {
            app: "hello".into(),
            env: "staging".into(),
            version: "2.0".into(),
            hosts: vec!["web1".into(), "web2".into(), "web3".into()],
            check: false,
            steps: vec!["switch".into()],
        },
        EventKind::StepFinished {
            host: "web1".into(),
            step: "switch".into(),
            status: StepStatus::Changed,
            reason: String::new(),
            diff: None,
            elapsed_ms: 1,
        },
        EventKind::HostFinished {
            host: "web1".into(),
            status: HostStatus::Changed,
            changed: 1,
            elapsed_ms: 1,
            error: None,
            round_trips: 0,
        },
        EventKind::HostFinished {
            host: "web2".into(),
            status: HostStatus::Ok,
            changed: 0,
            elapsed_ms: 1,
            error: None,
            round_trips: 0,
        },
    ]);
    let started = now_ms() - 22_000;
    let EventKind::JobFinished {
        status,
        elapsed_ms,
        hosts_ok,
        hosts_changed,
        hosts_failed,
        hosts_unreachable,
        hosts_cancelled,
    } = interrupted(started, &events)
    else {
        panic!("not a job_finished event");
    };
    assert_eq!(status, JobStatus::Interrupted);
    assert!((22_000..30_000).contains(&elapsed_ms), "{elapsed_ms}");
    assert_eq!((hosts_ok, hosts_changed, hosts_failed), (1, 1, 1));
    assert_eq!(
        (hosts_unreachable, hosts_cancelled),
        (0, 0),
        "not ended: failed"
    );
}

/// Interleavings of claim, renew, take-over, finish, late events and database loss by
/// two gateways on two handles of one database, in simulated time (leases judged by the
/// same clock as in the gateway: the database's).  After every step: no two gateways
/// may act for one (application, environment) at once, at most one job holds each lock,
/// and every ended job's story ends with exactly one final event, with nothing stored
/// after it.
mod randomized {
    use std::collections::{BTreeMap, HashMap};
    use std::time::Duration;

    use deploy_wire::api::{JobInfo, JobKind, JobState};

    use super::super::clock::Reaper;
    use crate::gateway::store::{Db, JobEnd, Lease, Location, NewEvent};

    const LEASE: u64 = 9_000;
    const MARGIN: u64 = LEASE / 5;
    const TARGETS: [&str; 2] = ["staging", "production"];

    /// xorshift64*: a fixed sequence per seed, no crate needed.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) % n
        }
    }

    /// What one gateway believes.
    struct Gateway {
        name: String,
        db: Db,
        reaper: Reaper,
        /// Its jobs: id -> (environment, next event number, until when its claim is
        /// trusted).
        owned: BTreeMap<String, (String, u64, u64)>,
        /// Until when (simulated ms) it trusts its leases after its last renewal, as its
        /// `LeaseClock` does.
        held_until: u64,
        /// Its way to the database is cut until then.
        cut_until: u64,
    }

    impl Gateway {
        fn may_act(&self, id: &str, t: u64) -> bool {
            let claimed = self.owned.get(id).map_or(0, |o| o.2);
            t < self.held_until.max(claimed)
        }
    }

    fn job(id: &str, env: &str, t: u64) -> JobInfo {
        JobInfo {
            id: id.into(),
            kind: JobKind::Deploy,
            app: "hello".into(),
            env: env.into(),
            version: "1.0".into(),
            check: false,
            user: "ann".into(),
            state: JobState::Running,
            created_ms: t,
            finished_ms: None,
            error: None,
            triggered_by: None,
        }
    }

    fn run(seed: u64, dir: &std::path::Path) {
        let at = Location::Sqlite(dir.join(format!("state-{seed}.db")));
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut gws: Vec<Gateway> = (0..2)
            .map(|i| Gateway {
                name: format!("gw-{i}"),
                db: Db::open(&at).unwrap(),
                reaper: Reaper::new(Duration::from_millis(LEASE)),
                owned: BTreeMap::new(),
                held_until: 0,
                cut_until: 0,
            })
            .collect();
        let (mut t, mut next_job) = (1_000_000u64, 0);
        let mut ended: Vec<String> = Vec::new();
        for step in 0..120 {
            t += rng.below(4_000);
            let g = &mut gws[rng.below(2) as usize];
            let reachable = t >= g.cut_until;
            match rng.below(7) {
                0 if reachable => {
                    next_job += 1;
                    let id = format!("j{next_job}");
                    let env = TARGETS[rng.below(2) as usize];
                    let lease = Lease {
                        owner: g.name.clone(),
                        until_ms: t + LEASE,
                    };
                    if g.db.start_job(&job(&id, env, t), &lease).unwrap().is_ok() {
                        g.owned.insert(id, (env.to_string(), 1, t + LEASE - MARGIN));
                    }
                }
                1 if reachable => {
                    let lease = Lease {
                        owner: g.name.clone(),
                        until_ms: t + LEASE,
                    };
                    let held = g.db.renew_leases(&lease).unwrap();
                    g.owned.retain(|id, _| held.contains(id));
                    g.held_until = g.held_until.max(t + LEASE - MARGIN);
                }
                2 => match reachable {
                    true => {
                        if let Some(before) = g.reaper.look(t) {
                            ended.extend(
                                g.db.expire_leases(before)
                                    .unwrap()
                                    .into_iter()
                                    .map(|(id, _)| id),
                            );
                        }
                    }
                    false => g.reaper.failed(),
                },
                3 if reachable => {
                    let mine = g.owned.keys().find(|id| g.may_act(id, t)).cloned();
                    if let Some(id) = mine {
                        let end = JobEnd::plain(JobState::Succeeded, None);
                        if g.db.finish_job(&id, &end).unwrap() {
                            ended.push(id.clone());
                        }
                        g.owned.remove(&id);
                    }
                }
                4 if reachable => {
                    // Events, whatever the gateway believes (a stalled one wakes late).
                    for (id, (_, seq, _)) in g.owned.iter_mut() {
                        let e = NewEvent {
                            job: id.clone(),
                            seq: *seq,
                            ts_ms: t,
                            data: "{}".into(),
                            note: false,
                        };
                        g.db.append_events(&[e]).unwrap();
                        *seq += 1;
                    }
                }
                5 => g.cut_until = t + rng.below(30_000),
                _ => {} // a stall: time passes, nothing is done
            }
            check(&gws, &ended, t, seed, step);
        }
    }

    fn check(gws: &[Gateway], ended: &[String], t: u64, seed: u64, step: u32) {
        let mut acting: HashMap<&str, Vec<(&str, &str)>> = HashMap::new();
        for g in gws {
            for (id, (env, _, _)) in g.owned.iter().filter(|(id, _)| g.may_act(id, t)) {
                acting.entry(env).or_default().push((&g.name, id));
                let state = gws[0].db.job(id).unwrap().unwrap().state;
                assert_eq!(
                    state,
                    JobState::Running,
                    "seed {seed} step {step}: {} believes it may act for {id}, which is {state}",
                    g.name
                );
            }
        }
        for (env, who) in &acting {
            assert!(
                who.len() <= 1,
                "seed {seed} step {step}: two owners act on {env}: {who:?}"
            );
        }
        let db = &gws[0].db;
        for id in ended {
            let events = db.events_after(id, 0, 10_000).unwrap();
            let finals: Vec<usize> = (events.iter().enumerate())
                .filter(|(_, (_, d))| d.contains("job_finished"))
                .map(|(i, _)| i)
                .collect();
            assert_eq!(
                finals,
                [events.len() - 1],
                "seed {seed} step {step}: job {id} has events after its end: {events:?}"
            );
            assert_ne!(db.job(id).unwrap().unwrap().state, JobState::Running);
        }
    }

    #[test]
    fn no_interleaving_yields_two_owners_or_an_event_after_the_final_one() {
        let dir = tempfile::tempdir().unwrap();
        for seed in 0..60 {
            run(seed, dir.path());
        }
    }
}
