//! Fast tests of the rollout logic (batches, canary, `max_failed`, halt with rollback or
//! keep, cancel between batches, prune, job-level phases) against [`super::fake`]
//! servers: no Docker, milliseconds each.

use std::sync::Arc;

use deploy_wire::{Event, EventKind, HostStatus, JobStatus, StepStatus};

use super::ops::Report;
use super::phases::{JobPhase, PhaseCtx, Place, When};
use super::testbed::{Bed, bed, spec};
use super::{CancelFlag, Collect, EventSink, JobResult};

fn status(r: &JobResult, host: &str) -> HostStatus {
    r.hosts.iter().find(|h| h.host == host).unwrap().status
}

#[tokio::test]
async fn a_fresh_deploy_converges_and_a_second_run_changes_nothing() {
    let b = bed("{}");
    let (r1, _) = b.run(spec("1.0.0")).await;
    assert_eq!(r1.status, JobStatus::Succeeded, "{:?}", r1.hosts);
    for h in ["web1", "web2", "web3"] {
        assert_eq!(b.serving(h).as_deref(), Some("1.0.0"));
    }
    let mut fresh: Vec<u32> = r1.hosts.iter().map(|h| h.round_trips).collect();
    fresh.sort();
    let reloads = b.fleet.server("web1").state().reloads;
    let (r, events) = b.run(spec("1.0.0")).await;
    assert_eq!(r.status, JobStatus::Succeeded);
    assert_eq!(r.changed_steps(), 0, "{events:?}");
    // Round trips are counted per host, and a no-op needs fewer than a fresh deploy.
    let noop = r.hosts[0].round_trips;
    // A snapshot and the health check on a no-op; 8 for a fresh deploy on the fake (it
    // has no uv to ship: a real fresh uv deploy is one more), and one more on the host
    // that packs its build for the others (`share.rs`); the two that unpack it, 8.
    // Exact, so a round trip added anywhere fails here (ARCHITECTURE.md, "Round trips
    // are the cost").
    assert_eq!(noop, 2, "no-op");
    assert_eq!(
        fresh,
        [8, 8, 9],
        "fresh: unpacked, unpacked, built and packed"
    );
    eprintln!("round trips: fresh {fresh:?}, no-op {noop}");
    assert_eq!(
        b.fleet.server("web1").state().reloads,
        reloads,
        "no reload on a no-op"
    );
    let (r, _) = b.run(spec("1.1.0")).await;
    assert_eq!(r.status, JobStatus::Succeeded);
    assert_eq!(b.serving("web2").as_deref(), Some("1.1.0"));
    assert_eq!(r.hosts[0].previous.as_deref(), Some("1.0.0"));
}

#[tokio::test]
async fn the_canary_goes_alone_first_then_batches_of_the_given_size() {
    assert_eq!(
        super::batches(5, true, crate::inventory::BatchSize::Count(2)),
        vec![vec![0], vec![1, 2], vec![3, 4]]
    );
    assert_eq!(
        super::batches(4, false, crate::inventory::BatchSize::Percent(50)),
        vec![vec![0, 1], vec![2, 3]]
    );
    assert_eq!(
        super::batches(1, true, crate::inventory::BatchSize::Count(3)),
        vec![vec![0]]
    );
    let b = bed("{canary: true, batch: 1}");
    let (r, events) = b.run(spec("1.0.0")).await;
    assert_eq!(r.status, JobStatus::Succeeded);
    let mut connects = b.connects();
    connects.sort();
    assert_eq!(connects, ["web1", "web2", "web3"], "one connection each");
    // Each host finished before the next one started.
    let order: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::HostStarted { host } => Some(format!("+{host}")),
            EventKind::HostFinished { host, .. } => Some(format!("-{host}")),
            _ => None,
        })
        .collect();
    assert_eq!(
        order,
        ["+web1", "-web1", "+web2", "-web2", "+web3", "-web3"]
    );
}

#[tokio::test]
async fn a_failed_canary_halts_the_rollout_before_the_other_hosts() {
    let b = bed("{canary: true, max_failed: 0}");
    b.fleet.server("web1").state().broken.insert("1.0.0".into());
    let (r, _) = b.run(spec("1.0.0")).await;
    assert_eq!(r.status, JobStatus::Failed);
    assert_eq!(status(&r, "web1"), HostStatus::Failed);
    for h in ["web2", "web3"] {
        assert_eq!(status(&r, h), HostStatus::Cancelled);
        let err = r
            .hosts
            .iter()
            .find(|x| x.host == h)
            .unwrap()
            .error
            .clone()
            .unwrap();
        assert!(
            err.contains("not started: the rollout halted after batch 1/2"),
            "{err}"
        );
    }
    // The next batch's handshakes were made while the canary worked (prefetch.rs), but
    // no command ran on a host after the halt.
    let mut connects = b.connects();
    connects.sort();
    assert_eq!(connects, ["web1", "web2", "web3"]);
    for h in ["web2", "web3"] {
        let ran = b.fleet.server(h).state().log.clone();
        assert!(ran.is_empty(), "{h} ran commands after the halt: {ran:?}");
    }
}

#[tokio::test]
async fn max_failed_tolerates_that_many_failed_hosts() {
    let b = bed("{batch: 1, max_failed: 1}");
    b.fleet.server("web2").state().down = true;
    let (r, _) = b.run(spec("1.0.0")).await;
    assert_eq!(status(&r, "web2"), HostStatus::Unreachable);
    assert_eq!(
        status(&r, "web3"),
        HostStatus::Changed,
        "one failure is tolerated"
    );
    assert_eq!(r.status, JobStatus::Failed);
}

#[tokio::test]
async fn a_halt_rolls_upgraded_hosts_back_to_their_previous_release() {
    let b = bed("{batch: 1, max_failed: 0, on_halt: rollback}");
    assert_eq!(b.run(spec("1.0.0")).await.0.status, JobStatus::Succeeded);
    b.fleet.server("web2").state().broken.insert("2.0.0".into());
    let (r, _) = b.run(spec("2.0.0")).await;
    assert_eq!(r.status, JobStatus::Failed);
    assert_eq!(
        b.serving("web1").as_deref(),
        Some("1.0.0"),
        "web1 went back"
    );
    assert_eq!(
        b.serving("web2").as_deref(),
        Some("1.0.0"),
        "web2 switched back itself"
    );
    assert_eq!(
        b.serving("web3").as_deref(),
        Some("1.0.0"),
        "web3 was never touched"
    );
    let e1 = r.hosts[0].error.clone().unwrap();
    assert!(e1.contains("rolled back to 1.0.0"), "{e1}");
    assert_eq!(status(&r, "web3"), HostStatus::Cancelled);
}

#[tokio::test]
async fn a_halt_with_keep_leaves_upgraded_hosts_on_the_new_release() {
    let b = bed("{batch: 1, max_failed: 0, on_halt: keep}");
    b.run(spec("1.0.0")).await;
    b.fleet.server("web2").state().broken.insert("2.0.0".into());
    let (r, _) = b.run(spec("2.0.0")).await;
    assert_eq!(r.status, JobStatus::Failed);
    assert_eq!(b.serving("web1").as_deref(), Some("2.0.0"));
    assert_eq!(b.serving("web2").as_deref(), Some("1.0.0"));
    assert_eq!(status(&r, "web1"), HostStatus::Changed);
}

/// Cancels the job as soon as `host` finishes.
struct CancelAfter {
    host: &'static str,
    flag: CancelFlag,
    inner: Collect,
}

impl EventSink for CancelAfter {
    fn emit(&self, event: Event) {
        if let EventKind::HostFinished { host, .. } = &event.kind
            && host == self.host
        {
            self.flag.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        self.inner.emit(event);
    }
}

#[tokio::test]
async fn a_cancel_between_batches_stops_the_hosts_not_yet_started() {
    let b = bed("{batch: 1}");
    let flag = CancelFlag::default();
    let sink = Arc::new(CancelAfter {
        host: "web1",
        flag: flag.clone(),
        inner: Collect::default(),
    });
    let plan = super::plan(&b.inv, &b.cfg, &spec("1.0.0")).unwrap();
    let r = super::run_with(plan, b.cfg.clone(), b.fleet.clone(), sink, flag).await;
    assert_eq!(r.status, JobStatus::Cancelled);
    assert_eq!(status(&r, "web1"), HostStatus::Changed);
    assert_eq!(status(&r, "web2"), HostStatus::Cancelled);
    assert_eq!(b.serving("web2"), None);
    // Connections are opened one batch ahead, never further, and none ran a command on
    // a host the cancel stopped.
    let mut connects = b.connects();
    connects.sort();
    assert_eq!(connects, ["web1", "web2"]);
    for h in ["web2", "web3"] {
        let ran = b.fleet.server(h).state().log.clone();
        assert!(ran.is_empty(), "{h} ran commands after the cancel: {ran:?}");
    }
}

#[tokio::test]
async fn prune_never_removes_the_live_release_or_the_rollback_target() {
    let b = bed("{}");
    for v in ["1.0.0", "2.0.0", "3.0.0"] {
        assert_eq!(b.run(spec(v)).await.0.status, JobStatus::Succeeded);
    }
    let kept = |b: &Bed| {
        b.fleet
            .server("web1")
            .state()
            .releases
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(kept(&b), ["2.0.0", "3.0.0"], "keep_releases: 2");
    // Roll back to 2.0.0: both 2.0.0 (live) and 3.0.0 (newest other) stay.
    let mut back = spec("2.0.0");
    back.no_install = true;
    assert_eq!(b.run(back).await.0.status, JobStatus::Succeeded);
    assert_eq!(b.serving("web1").as_deref(), Some("2.0.0"));
    assert_eq!(kept(&b), ["2.0.0", "3.0.0"]);
    // A rollback to a release no longer on disk installs nothing and fails.
    let mut gone = spec("1.0.0");
    gone.no_install = true;
    let (r, _) = b.run(gone).await;
    assert_eq!(r.status, JobStatus::Failed);
    assert_eq!(b.serving("web1").as_deref(), Some("2.0.0"));
    assert_eq!(
        kept(&b),
        ["2.0.0", "3.0.0"],
        "no unfinished virtualenv left"
    );
}

#[tokio::test]
async fn check_mode_changes_nothing_on_any_host() {
    let b = bed("{}");
    let mut s = spec("1.0.0");
    s.check = true;
    let (r, events) = b.run(s).await;
    assert_eq!(r.status, JobStatus::Succeeded);
    assert!(r.changed_steps() > 0, "it reports what would change");
    assert_eq!(b.serving("web1"), None);
    let log = b.fleet.server("web1").state().log.clone();
    assert!(
        log.iter()
            .all(|l| !l.contains("install -d") && !l.contains("supervisorctl start")),
        "{log:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::StepFinished { diff: Some(_), .. }))
    );
}

#[derive(Debug)]
struct Phase {
    name: &'static str,
    when: When,
    place: Place,
    fail: bool,
    runs: std::sync::Mutex<Vec<Option<String>>>,
}

impl Phase {
    fn new(name: &'static str, when: When, place: Place, fail: bool) -> Arc<Phase> {
        Arc::new(Phase {
            name,
            when,
            place,
            fail,
            runs: Default::default(),
        })
    }
}

impl JobPhase for Phase {
    fn name(&self) -> &str {
        self.name
    }
    fn when(&self) -> When {
        self.when
    }
    fn place(&self) -> Place {
        self.place
    }
    fn run<'a>(&'a self, ctx: PhaseCtx<'a>) -> futures_util::future::BoxFuture<'a, Report> {
        Box::pin(async move {
            self.runs
                .lock()
                .unwrap()
                .push(ctx.host.map(|(h, _)| h.name.clone()));
            if let Some((_, conn)) = ctx.host {
                let c = crate::commands::RemoteCmd::new("readlink /srv/apps/hello/current || true");
                conn.exec(&c, std::time::Duration::from_secs(1), &mut |_, _| {})
                    .await
                    .unwrap();
            }
            if self.fail {
                Report::failed("migration exploded")
            } else {
                Report::changed("ran once")
            }
        })
    }
}

#[tokio::test]
async fn job_phases_run_once_and_a_failed_before_phase_touches_no_host() {
    let b = bed("{}");
    let before = Phase::new("migrate", When::BeforeHosts, Place::FirstHost, false);
    let after = Phase::new("notify", When::AfterHosts, Place::Gateway, false);
    let mut plan = super::plan(&b.inv, &b.cfg, &spec("1.0.0")).unwrap();
    plan.phases = vec![after.clone(), before.clone()];
    let (r, events) = b
        .run_plan(plan, CancelFlag::default(), Arc::new(Collect::default()))
        .await;
    assert_eq!(r.status, JobStatus::Succeeded);
    assert_eq!(*before.runs.lock().unwrap(), [Some("web1".to_string())]);
    assert_eq!(*after.runs.lock().unwrap(), [None]);
    let phases: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::PhaseFinished { phase, status, .. } => {
                Some(format!("{phase}:{}", status.as_str()))
            }
            EventKind::HostStarted { host } => Some(host.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(phases.first().map(String::as_str), Some("migrate:changed"));
    assert_eq!(phases.last().map(String::as_str), Some("notify:changed"));

    let b = bed("{}");
    let failing = Phase::new("migrate", When::BeforeHosts, Place::Gateway, true);
    let after = Phase::new("notify", When::AfterHosts, Place::Gateway, false);
    let mut plan = super::plan(&b.inv, &b.cfg, &spec("1.0.0")).unwrap();
    plan.phases = vec![failing, after.clone()];
    let (r, events) = b
        .run_plan(plan, CancelFlag::default(), Arc::new(Collect::default()))
        .await;
    assert_eq!(r.status, JobStatus::Failed);
    assert!(b.connects().is_empty(), "no host contacted");
    assert!(after.runs.lock().unwrap().is_empty());
    assert!(r.hosts.iter().all(|h| {
        h.error
            .as_deref()
            .unwrap_or("")
            .contains("phase migrate failed: migration exploded")
    }));
    assert!(events.iter().any(|e| matches!(
        &e.kind,
        EventKind::PhaseFinished {
            status: StepStatus::Failed,
            ..
        }
    )));
}

fn last_host_finished(events: &[Event], host: &str) -> (HostStatus, String) {
    events
        .iter()
        .rev()
        .find_map(|e| match &e.kind {
            EventKind::HostFinished {
                host: h,
                status,
                error,
                ..
            } if h == host => Some((*status, error.clone().unwrap_or_default())),
            _ => None,
        })
        .unwrap()
}

#[tokio::test]
async fn an_upgrade_switches_with_one_rename_and_no_reload_and_says_so() {
    let b = bed("{}");
    let (_, first) = b.run(spec("1.0.0")).await;
    assert_eq!(b.fleet.server("web1").state().reloads, 1, "the site, once");
    let (r, events) = b.run(spec("1.1.0")).await;
    assert_eq!(r.status, JobStatus::Succeeded);
    assert_eq!(
        b.fleet.server("web1").state().reloads,
        1,
        "no reload to switch"
    );
    let switched = |evs: &[Event]| {
        evs.iter()
            .filter(|e| matches!(&e.kind, EventKind::Switched { .. }))
            .count()
    };
    assert_eq!(switched(&first), 3);
    assert_eq!(switched(&events), 3);
    for h in ["web1", "web2", "web3"] {
        assert_eq!(
            b.fleet.server(h).running(),
            1,
            "{h}: the old slot was drained"
        );
        assert_eq!(
            r.hosts
                .iter()
                .find(|x| x.host == h)
                .unwrap()
                .serving
                .as_deref(),
            Some("1.1.0")
        );
    }
}

#[tokio::test]
async fn a_host_cut_off_after_its_switch_is_reported_and_the_next_deploy_converges() {
    let b = bed("{batch: 1, max_failed: 0, on_halt: rollback}");
    assert_eq!(b.run(spec("1.0.0")).await.0.status, JobStatus::Succeeded);
    // web2's network goes right after its switch (before health and drain).
    b.fleet.server("web2").state().die_after = Some("live.sock.deploy-new".into());
    let (r, events) = b.run(spec("2.0.0")).await;
    assert_eq!(r.status, JobStatus::Failed);
    assert_eq!(
        b.serving("web1").as_deref(),
        Some("1.0.0"),
        "web1 went back"
    );
    assert_eq!(
        b.serving("web3").as_deref(),
        Some("1.0.0"),
        "web3 was never touched"
    );
    let (status, why) = last_host_finished(&events, "web1");
    assert_eq!(
        status,
        HostStatus::Failed,
        "the summary says the final truth"
    );
    assert!(why.contains("rolled back to 1.0.0"), "{why}");
    let (_, why) = last_host_finished(&events, "web2");
    assert!(
        why.contains("still serves 2.0.0") && why.contains("next deploy"),
        "{why}"
    );
    // The network comes back; the next deploy brings every host to one release.
    {
        let server = b.fleet.server("web2");
        let mut s = server.state();
        s.down = false;
        s.die_after = None;
    }
    assert_eq!(b.run(spec("1.0.0")).await.0.status, JobStatus::Succeeded);
    for h in ["web1", "web2", "web3"] {
        assert_eq!(b.serving(h).as_deref(), Some("1.0.0"), "{h}");
        assert_eq!(b.fleet.server(h).running(), 1, "{h} runs one slot");
    }
}

#[tokio::test]
async fn no_slot_but_the_live_one_runs_after_a_failed_switch_or_an_interrupted_job() {
    let b = bed("{}");
    b.run(spec("1.0.0")).await;
    // A changed site that nginx refuses: the switch fails after the new slot started.
    {
        let server = b.fleet.server("web1");
        let mut s = server.state();
        s.files
            .insert("/etc/nginx/sites-enabled/hello.conf".into(), "old".into());
        s.fail_when = Some("nginx -t".into());
    }
    let (r, events) = b.run(spec("1.1.0")).await;
    assert_eq!(status(&r, "web1"), HostStatus::Failed);
    assert_eq!(b.serving("web1").as_deref(), Some("1.0.0"));
    assert_eq!(
        b.fleet.server("web1").running(),
        1,
        "the new slot was stopped"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::Output { step, .. } if step == "tidy"))
    );
    // A slot left running by a job the gateway never finished: the next no-op deploy
    // stops it.
    b.fleet.server("web1").state().fail_when = None;
    b.run(spec("1.0.0")).await;
    b.fleet.server("web2").state().running.insert(
        "hello-green".into(),
        (7, "/srv/apps/hello/releases/1.0.0".into()),
    );
    let (r, _) = b.run(spec("1.0.0")).await;
    assert_eq!(r.status, JobStatus::Succeeded);
    assert_eq!(b.fleet.server("web2").running(), 1);
    assert_eq!(b.serving("web2").as_deref(), Some("1.0.0"));
}

#[tokio::test]
async fn a_host_failing_after_its_switch_is_rolled_back_and_says_where_it_ended() {
    let b = bed("{batch: 1, max_failed: 0, on_halt: rollback}");
    for v in ["0.9", "1.0.0"] {
        assert_eq!(b.run(spec(v)).await.0.status, JobStatus::Succeeded);
    }
    // web1 cannot prune: its step fails after its switch, in the deploy and in the
    // halt's rollback alike.
    b.fleet.server("web1").state().fail_when = Some("rm -rf --".into());
    let (r, events) = b.run(spec("2.0.0")).await;
    assert_eq!(r.status, JobStatus::Failed);
    assert_eq!(
        b.serving("web1").as_deref(),
        Some("1.0.0"),
        "web1 went back"
    );
    assert_eq!(b.serving("web2").as_deref(), Some("1.0.0"), "never touched");
    let (status, why) = last_host_finished(&events, "web1");
    assert_eq!(status, HostStatus::Failed);
    assert!(
        why.contains("rolled back to 1.0.0") && why.contains("then: "),
        "{why}"
    );
    assert_eq!(r.hosts[0].serving.as_deref(), Some("1.0.0"));
}

/// The `prune` report of `host` in a job's events.
fn prune_reason(events: &[Event], host: &str) -> String {
    super::testbed::step_reason(events, host, "prune").unwrap()
}

#[tokio::test]
async fn check_mode_names_the_releases_the_deploy_would_prune() {
    let b = bed("{}");
    for v in ["1.0.0", "2.0.0"] {
        assert_eq!(b.run(spec(v)).await.0.status, JobStatus::Succeeded);
    }
    let mut check = spec("3.0.0");
    check.check = true;
    let (_, events) = b.run(check).await;
    let would = prune_reason(&events, "web1");
    let (r, events) = b.run(spec("3.0.0")).await;
    assert_eq!(r.status, JobStatus::Succeeded);
    let did = prune_reason(&events, "web1");
    assert_eq!(did, "removed releases 1.0.0");
    assert_eq!(would, "would remove releases 1.0.0");
}
