//! Fast tests of hosts converging after an interrupted job, on [`super::fake`] servers: a
//! slot left running is stopped (and said) by the next job that reaches the host, and
//! said as a would-change by a check; the live view ([`super::observe`]) flags it, and a
//! live slot that fails its health check.

use deploy_wire::{Event, EventKind, JobStatus, StepStatus};

use crate::observe::{ask, observe_with};
use crate::testbed::{Bed, bed, spec};
use crate::transport::Connector;

/// The line of `host`'s last `step`.
fn step_line(events: &[Event], host: &str, step: &str) -> (StepStatus, String) {
    events
        .iter()
        .rev()
        .find_map(|e| match &e.kind {
            EventKind::StepFinished {
                host: h,
                step: s,
                status,
                reason,
                ..
            } if h == host && s == step => Some((*status, reason.clone())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no {step} on {host}: {events:?}"))
}

/// web1 serves 1.1.0 from green while blue still runs 1.0.0: its network went right
/// after its switch, before `drain` (the rollout halted there and kept what it had).
async fn cut_off_after_its_switch() -> Bed {
    let b = bed("{batch: 1, max_failed: 0, on_halt: keep}");
    assert_eq!(b.run(spec("1.0.0")).await.0.status, JobStatus::Succeeded);
    b.fleet.server("web1").state().die_after = Some("live.sock.deploy-new".into());
    assert_eq!(b.run(spec("1.1.0")).await.0.status, JobStatus::Failed);
    let web1 = b.fleet.server("web1");
    {
        let mut s = web1.state();
        s.down = false;
        s.die_after = None;
    }
    assert_eq!(b.serving("web1").as_deref(), Some("1.1.0"));
    assert_eq!(web1.running(), 2, "blue was never drained");
    b
}

#[tokio::test]
async fn a_slot_left_running_by_an_interrupted_job_is_stopped_by_the_next_deploy_and_said() {
    let b = cut_off_after_its_switch().await;
    // A check says it would stop it, and stops nothing.
    let mut check = spec("1.1.0");
    check.check = true;
    let (r, events) = b.run(check).await;
    assert_eq!(r.status, JobStatus::Succeeded, "{:?}", r.hosts);
    let (status, line) = step_line(&events, "web1", "start");
    assert_eq!(status, StepStatus::Changed);
    assert!(
        line.starts_with("would stop slot blue (1.0.0), left running by an interrupted job; "),
        "{line}"
    );
    assert_eq!(
        b.fleet.server("web1").running(),
        2,
        "a check changes nothing"
    );
    // A deploy of what web1 serves: the leftover goes, the live slot keeps its process.
    let pid = b.fleet.server("web1").state().running["hello-green"].0;
    let (r, events) = b.run(spec("1.1.0")).await;
    assert_eq!(r.status, JobStatus::Succeeded, "{:?}", r.hosts);
    let (status, line) = step_line(&events, "web1", "start");
    assert_eq!(status, StepStatus::Changed);
    assert_eq!(
        line,
        format!(
            "stopped slot blue (1.0.0), left running by an interrupted job; \
             hello-green runs 1.1.0 (pid {pid}); nothing it depends on changed"
        )
    );
    let web1 = b.fleet.server("web1");
    assert_eq!(web1.running(), 1);
    assert_eq!(
        web1.state().running["hello-green"].0,
        pid,
        "never restarted"
    );
    assert_eq!(b.serving("web1").as_deref(), Some("1.1.0"));
    assert_eq!(step_line(&events, "web1", "drain").0, StepStatus::Ok);
    // web2 and web3 (left on 1.0.0 by the halt) had none: their normal upgrade says none.
    for h in ["web2", "web3"] {
        let (_, line) = step_line(&events, h, "start");
        assert!(
            line.starts_with("started 1.1.0 in hello-green"),
            "{h}: {line}"
        );
        assert_eq!(b.fleet.server(h).running(), 1, "{h}");
    }
}

/// Every host serves 1.1.0 from green; on web1 blue runs 1.0.0 again, as a job
/// interrupted after its switch leaves it.
async fn one_leftover() -> Bed {
    let b = bed("{}");
    for v in ["1.0.0", "1.1.0"] {
        assert_eq!(b.run(spec(v)).await.0.status, JobStatus::Succeeded);
    }
    b.fleet.server("web1").state().running.insert(
        "hello-blue".into(),
        (7, "/srv/apps/hello/releases/1.0.0".into()),
    );
    b
}

#[tokio::test]
async fn a_rollback_and_a_restart_stop_a_leftover_too() {
    for kind in ["rollback", "restart", "upgrade"] {
        let b = one_leftover().await;
        let mut s = match kind {
            "rollback" => spec("1.0.0"),
            "restart" => spec("1.1.0"),
            _ => spec("1.2.0"),
        };
        s.no_install = kind != "upgrade";
        s.restart = kind == "restart";
        let (r, events) = b.run(s).await;
        assert_eq!(r.status, JobStatus::Succeeded, "{kind}: {:?}", r.hosts);
        let (_, line) = step_line(&events, "web1", "start");
        let want = match kind {
            "rollback" => "started 1.0.0 in hello-blue",
            "restart" => "restarted 1.1.0 in hello-blue",
            _ => "started 1.2.0 in hello-blue",
        };
        assert!(
            line.starts_with(&format!(
                "stopped slot blue (1.0.0), left running by an interrupted job; {want}"
            )),
            "{kind}: {line}"
        );
        assert_eq!(b.fleet.server("web1").running(), 1, "{kind}");
    }
}

#[tokio::test]
async fn the_live_view_says_which_slot_runs_without_being_live_and_how_the_live_one_answers() {
    let b = cut_off_after_its_switch().await;
    // web2's live slot died (stopped by hand): nginx would answer 502.
    b.fleet.server("web2").state().running.remove("hello-blue");
    let seen = observe_with(&b.inv, &b.cfg, b.fleet.as_ref(), "hello", "production")
        .await
        .unwrap();
    let view = |h: &str| {
        seen.iter()
            .find(|o| o.host == h)
            .unwrap()
            .view
            .clone()
            .unwrap()
    };
    let web1 = view("web1");
    assert_eq!(web1.live_slot.as_deref(), Some("green"));
    let blue = &web1.processes[0];
    assert_eq!(
        (
            blue.name.as_str(),
            blue.slot.as_deref(),
            blue.state.as_str()
        ),
        ("hello-blue", Some("blue"), "running")
    );
    assert_eq!(blue.release.as_deref(), Some("1.0.0"));
    assert!(web1.health.as_ref().is_some_and(|h| h.ok), "{web1:?}");
    let pid = blue.pid.unwrap();
    assert_eq!(
        web1.problems(),
        [format!(
            "slot blue runs 1.0.0 (pid {pid}) but is not live: left running by an \
             interrupted job; the next deploy, rollback or restart stops it"
        )]
    );
    let web2 = view("web2");
    let health = web2.health.clone().unwrap();
    assert!(!health.ok, "{web2:?}");
    assert_eq!(
        web2.problems(),
        [format!(
            "the live slot blue (1.0.0) fails its health check: {}",
            health.said
        )]
    );
    assert!(health.said.contains("502"), "{health:?}");
    assert!(view("web3").problems().is_empty(), "{:?}", view("web3"));
}

#[tokio::test]
async fn the_live_view_reads_a_host_in_two_round_trips() {
    let b = bed("{}");
    assert_eq!(b.run(spec("1.0.0")).await.0.status, JobStatus::Succeeded);
    let host = &b.inv.hosts["web1"];
    let conn = b.fleet.connect(host).await.unwrap();
    let app = b.inv.app("hello").unwrap();
    let pm = crate::procman::for_kind(app.process_manager);
    let view = ask(conn.as_ref(), &b.cfg, app, &host.user, pm.as_ref())
        .await
        .unwrap();
    assert!(view.health.as_ref().is_some_and(|h| h.ok), "{view:?}");
    assert_eq!(
        view.health.unwrap().said,
        "GET /healthz answered 200".to_string()
    );
    // One batch (pointer, program files, the process manager, the health check), then
    // the releases of what runs.
    assert_eq!(conn.channels_opened(), 2);
}

/// The worker and an extra process on every host, 1.0.0 deployed; then the inventory
/// without the extra one.
async fn extra_process_removed() -> Bed {
    let procs = "    settle_secs: 1\n    processes:\n      worker: {command: run-worker}\n      extra: {command: run-extra}\n";
    let mut b = crate::testbed::bed_with("{batch: 1}", procs);
    assert_eq!(b.run(spec("1.0.0")).await.0.status, JobStatus::Succeeded);
    let fewer = crate::testbed::bed_with(
        "{batch: 1}",
        "    settle_secs: 1\n    processes:\n      worker: {command: run-worker}\n",
    );
    b.inv = fewer.inv.clone();
    b
}

#[tokio::test]
async fn a_process_removed_from_the_inventory_is_flagged_then_stopped_and_removed_by_the_next_deploy()
 {
    let b = extra_process_removed().await;
    let seen = observe_with(&b.inv, &b.cfg, b.fleet.as_ref(), "hello", "production")
        .await
        .unwrap();
    let web1 = seen[0].view.clone().unwrap();
    assert!(
        web1.processes
            .iter()
            .any(|p| p.name == "hello-extra-0" && p.unknown && p.state == "running"),
        "{web1:?}"
    );
    assert!(
        web1.problems()
            .iter()
            .any(|p| p.starts_with("hello-extra-0 (running) is not in the inventory")),
        "{:?}",
        web1.problems()
    );
    let (r, events) = b.run(spec("1.0.0")).await;
    assert_eq!(r.status, JobStatus::Succeeded, "{:?}", r.hosts);
    assert_eq!(
        step_line(&events, "web1", "processes"),
        (
            StepStatus::Changed,
            "hello-extra removed (not in the inventory)".to_string()
        )
    );
    let s = b.fleet.server("web1");
    assert!(!s.state().running.contains_key("hello-extra"));
    assert!(
        !s.state()
            .files
            .contains_key("/etc/supervisor/conf.d/hello-extra.conf")
    );
    let (_, events) = b.run(spec("1.0.0")).await;
    assert_eq!(step_line(&events, "web1", "processes").0, StepStatus::Ok);
}

#[tokio::test]
async fn a_worker_that_does_not_stay_up_fails_its_host_and_the_rollout_goes_back() {
    let procs = "    settle_secs: 1\n    processes:\n      worker: {command: run-worker}\n";
    let b = crate::testbed::bed_with("{batch: 1, max_failed: 0, on_halt: rollback}", procs);
    assert_eq!(b.run(spec("1.0.0")).await.0.status, JobStatus::Succeeded);
    b.fleet
        .server("web1")
        .state()
        .crashing
        .insert("1.1.0".into());
    let (r, events) = b.run(spec("1.1.0")).await;
    assert_eq!(r.status, JobStatus::Failed, "{:?}", r.hosts);
    // The first `processes` of web1 failed; the last (the rollback's) put 1.0.0 back.
    let line = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::StepFinished {
                host,
                step,
                status,
                reason,
                ..
            } if host == "web1" && step == "processes" => {
                assert_eq!(*status, StepStatus::Failed, "{reason}");
                Some(reason.clone())
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(
        step_line(&events, "web1", "processes").0,
        StepStatus::Changed
    );
    assert!(
        line.contains("watching hello-worker for 1s failed") && line.contains("boom"),
        "{line}"
    );
    assert_eq!(b.serving("web1").as_deref(), Some("1.0.0"), "rolled back");
    assert_eq!(b.serving("web2").as_deref(), Some("1.0.0"), "never reached");
}
