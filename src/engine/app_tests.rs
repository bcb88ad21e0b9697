//! Fast tests of what a real application adds to a rollout (hooks once or on every
//! host, other processes, restart) against [`super::fake`] servers.

use deploy_wire::{EventKind, HostStatus, JobStatus, StepStatus};

use crate::testbed::{Bed, bed_with, spec};

const APP: &str = "    processes:\n      worker: {command: python -m rq worker, count: 2}\n\
    \x20   hooks:\n      before_switch:\n        - {name: migrate, command: python -m django migrate}\n\
    \x20       - {name: collectstatic, command: python -m django collectstatic, scope: every_host}\n";

/// The commands a fake host ran that contain `needle`.
fn ran(b: &Bed, host: &str, needle: &str) -> usize {
    let server = b.fleet.server(host);
    let state = server.state();
    state.log.iter().filter(|l| l.contains(needle)).count()
}

fn step_status(events: &[deploy_wire::Event], host: &str, step: &str) -> Option<StepStatus> {
    events.iter().find_map(|e| match &e.kind {
        EventKind::StepFinished {
            host: h,
            step: s,
            status,
            ..
        } if h == host && s == step => Some(*status),
        _ => None,
    })
}

#[tokio::test]
async fn once_hooks_run_on_the_first_host_only_and_never_twice_for_a_release() {
    // No canary asked for: the once hook still makes the first host go alone.
    let b = bed_with("{canary: false}", APP);
    let (r, events) = b.run(spec("1.0.0")).await;
    assert_eq!(r.status, JobStatus::Succeeded, "{r:?}");
    assert_eq!(ran(&b, "web1", "django migrate"), 1);
    for h in ["web2", "web3"] {
        assert_eq!(ran(&b, h, "django migrate"), 0, "{h}");
        assert_eq!(ran(&b, h, "django collectstatic"), 1, "{h}");
    }
    // web1 finished (and switched) before web2 started: it went alone.
    let pos = |pred: &dyn Fn(&EventKind) -> bool| events.iter().position(|e| pred(&e.kind));
    let web1_done = pos(&|k| matches!(k, EventKind::HostFinished { host, .. } if host == "web1"));
    let web2_start = pos(&|k| matches!(k, EventKind::StepStarted { host, .. } if host == "web2"));
    assert!(web1_done < web2_start, "web1 first and alone");
    // The workers run, as the app user; a re-deploy of the release runs no hook again.
    assert_eq!(ran(&b, "web2", "supervisorctl update hello-worker"), 1);
    let (r, events) = b.run(spec("1.0.0")).await;
    assert_eq!(r.status, JobStatus::Succeeded);
    assert_eq!(ran(&b, "web1", "django migrate"), 1);
    assert_eq!(ran(&b, "web2", "django collectstatic"), 1);
    assert_eq!(
        step_status(&events, "web1", "before_switch"),
        Some(StepStatus::Ok)
    );
    assert_eq!(
        step_status(&events, "web2", "processes"),
        Some(StepStatus::Ok),
        "{events:#?}"
    );
    // A new release reloads the workers on it.
    let (r, _) = b.run(spec("1.1.0")).await;
    assert_eq!(r.status, JobStatus::Succeeded);
    assert_eq!(ran(&b, "web3", "supervisorctl update hello-worker"), 2);
    assert_eq!(ran(&b, "web1", "django migrate"), 2);
}

#[tokio::test]
async fn a_failing_once_hook_halts_the_rollout_before_any_switch_whatever_max_failed_says() {
    let b = bed_with("{canary: false, max_failed: 5}", APP);
    let (r, _) = b.run(spec("1.0.0")).await;
    assert_eq!(r.status, JobStatus::Succeeded);
    b.fleet.server("web1").state().fail_when = Some("django migrate".into());
    let (r, events) = b.run(spec("1.1.0")).await;
    assert_eq!(r.status, JobStatus::Failed);
    assert_eq!(
        step_status(&events, "web1", "before_switch"),
        Some(StepStatus::Failed)
    );
    for h in ["web1", "web2", "web3"] {
        assert_eq!(
            b.serving(h).as_deref(),
            Some("1.0.0"),
            "{h} still serves 1.0.0"
        );
    }
    let web2 = r.hosts.iter().find(|h| h.host == "web2").unwrap();
    assert_eq!(web2.status, HostStatus::Cancelled);
    assert!(
        web2.error
            .as_deref()
            .unwrap_or("")
            .contains("web1, which runs the once hooks, failed"),
        "{web2:?}"
    );
}

#[tokio::test]
async fn a_restart_starts_the_live_release_afresh_in_the_idle_slot_and_restarts_workers() {
    let b = bed_with("{canary: false}", APP);
    b.run(spec("1.0.0")).await;
    let before = b.fleet.server("web1").state().live.clone();
    let mut s = spec("1.0.0");
    (s.no_install, s.restart) = (true, true);
    let (r, events) = b.run(s).await;
    assert_eq!(r.status, JobStatus::Succeeded, "{r:?}");
    let after = b.fleet.server("web1").state().live.clone();
    assert_ne!(before, after, "the other slot took the traffic");
    assert_eq!(b.serving("web1").as_deref(), Some("1.0.0"));
    assert_eq!(ran(&b, "web2", "supervisorctl restart 'hello-worker:*'"), 1);
    assert_eq!(
        step_status(&events, "web1", "install"),
        Some(StepStatus::Ok)
    );
    assert_eq!(
        step_status(&events, "web1", "before_switch"),
        Some(StepStatus::Ok)
    );
}

#[tokio::test]
async fn hook_output_is_streamed_with_the_apps_secrets_scrubbed() {
    let app = "    env: {DB_PASSWORD: s3cr3t-pw-42}\n    hooks:\n      after_switch:\n        - {name: dump, command: print-env, scope: every_host}\n";
    let b = bed_with("{}", app);
    let (r, events) = b.run(spec("1.0.0")).await;
    assert_eq!(r.status, JobStatus::Succeeded, "{r:?}");
    let lines: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Output { step, line, .. } if step == "after_switch" => Some(line.as_str()),
            _ => None,
        })
        .collect();
    assert!(lines.contains(&"DB_PASSWORD=***"), "{lines:?}");
    let all = format!("{events:?}");
    assert!(!all.contains("s3cr3t-pw-42"), "a secret leaked");
    // The facts are not scrubbed: the env file read back equals the rendered one, so a
    // re-deploy changes nothing (no restart).
    let (r, events) = b.run(spec("1.0.0")).await;
    assert_eq!(r.status, JobStatus::Succeeded);
    assert_eq!(
        step_status(&events, "web1", "env_file"),
        Some(StepStatus::Ok)
    );
    assert_eq!(step_status(&events, "web1", "start"), Some(StepStatus::Ok));
}
