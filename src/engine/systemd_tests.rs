//! The engine under `process_manager: systemd`, against [`super::fake`] servers: a
//! deploy with a worker, a second run that changes nothing, an upgrade, a restart and a
//! rollback (boot links following the live pointer), check mode's unit-file diffs, a
//! worker that does not stay up, `app-logs` from the journal and `status --live`.

use deploy_wire::{EventKind, JobStatus};
use tokio::sync::mpsc;

use super::app_logs::{self, Source, TailSpec};
use super::testbed::{Bed, bed_with, spec};
use crate::procman::{Systemd, systemd::UNIT_DIR};

const APP: &str = "    process_manager: systemd\n    settle_secs: 1\n    processes:\n      worker: {command: run-worker, count: 2}\n";

fn file(b: &Bed, host: &str, unit: &str) -> Option<String> {
    b.fleet
        .server(host)
        .state()
        .files
        .get(&format!("{UNIT_DIR}/{unit}"))
        .cloned()
}

fn enabled(b: &Bed, host: &str) -> Vec<String> {
    b.fleet
        .server(host)
        .state()
        .enabled
        .iter()
        .cloned()
        .collect()
}

fn links(live: &str) -> Vec<String> {
    let mut v = vec![
        format!("deploy-hello-{live}.service"),
        "deploy-hello-worker@0.service".to_string(),
        "deploy-hello-worker@1.service".to_string(),
    ];
    v.sort();
    v
}

#[tokio::test]
async fn deploy_upgrade_restart_and_rollback_under_systemd() {
    let b = bed_with("{}", APP);
    let (r, events) = b.run(spec("1.0.0")).await;
    assert_eq!(r.status, JobStatus::Succeeded, "{:?} {events:?}", r.hosts);
    assert_eq!(b.serving("web1").as_deref(), Some("1.0.0"));
    let blue = file(&b, "web1", "deploy-hello-blue.service").unwrap();
    assert!(
        blue.starts_with("# Managed by deploy for hello (production), slot blue"),
        "{blue}"
    );
    assert!(
        blue.contains("\nExecStart=/bin/sh -c \"cd /srv/apps/hello/shared && "),
        "{blue}"
    );
    assert!(file(&b, "web1", "deploy-hello-worker@.service").is_some());
    let s = b.fleet.server("web1");
    assert!(
        !s.state()
            .files
            .keys()
            .any(|f| f.starts_with("/etc/supervisor")),
        "no supervisord file"
    );
    assert!(
        !s.state().log.iter().any(|l| l.contains("supervisorctl")),
        "no supervisorctl"
    );
    assert_eq!(enabled(&b, "web1"), links("blue"));
    // A second run changes nothing.
    let (r, events) = b.run(spec("1.0.0")).await;
    assert_eq!(r.changed_steps(), 0, "{events:?}");
    // Upgrade: green serves and is the slot linked at boot.
    assert_eq!(b.run(spec("1.1.0")).await.0.status, JobStatus::Succeeded);
    assert_eq!(b.serving("web2").as_deref(), Some("1.1.0"));
    assert_eq!(enabled(&b, "web2"), links("green"));
    assert_eq!(s.running(), 2, "one slot and the worker");
    // Restart: blue takes over the same release; the worker's copies restarted.
    let mut restart = spec("1.1.0");
    restart.restart = true;
    restart.no_install = true;
    assert_eq!(b.run(restart).await.0.status, JobStatus::Succeeded);
    assert_eq!(enabled(&b, "web3"), links("blue"));
    assert!(s.state().log.iter().any(|l| l
        == "sudo -n systemctl restart deploy-hello-worker@0.service deploy-hello-worker@1.service"));
    // Rollback to 1.0.0, in green.
    let mut back = spec("1.0.0");
    back.no_install = true;
    assert_eq!(b.run(back).await.0.status, JobStatus::Succeeded);
    for h in ["web1", "web2", "web3"] {
        assert_eq!(b.serving(h).as_deref(), Some("1.0.0"), "{h}");
        assert_eq!(enabled(&b, h), links("green"), "{h}");
        let w = file(&b, h, "deploy-hello-worker@.service").unwrap();
        assert!(w.contains("/releases/1.0.0/"), "the worker went back too");
    }
}

#[tokio::test]
async fn check_mode_shows_the_unit_files_it_would_write() {
    let b = bed_with("{}", APP);
    assert_eq!(b.run(spec("1.0.0")).await.0.status, JobStatus::Succeeded);
    let mut check = spec("1.1.0");
    check.check = true;
    let (r, events) = b.run(check).await;
    assert_eq!(r.status, JobStatus::Succeeded);
    let diffs: String = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::StepFinished {
                host,
                diff: Some(d),
                ..
            } if host == "web1" => Some(d.clone()),
            _ => None,
        })
        .collect();
    assert!(
        diffs.contains(&format!("{UNIT_DIR}/deploy-hello-green.service")),
        "{diffs}"
    );
    assert!(
        diffs.contains(&format!("{UNIT_DIR}/deploy-hello-worker@.service")),
        "{diffs}"
    );
    assert!(diffs.contains("+ExecStart=/bin/sh -c"), "{diffs}");
    assert_eq!(
        b.serving("web1").as_deref(),
        Some("1.0.0"),
        "nothing changed"
    );
}

#[tokio::test]
async fn a_worker_that_does_not_stay_up_under_systemd_fails_its_host_and_goes_back() {
    let b = bed_with("{batch: 1, max_failed: 0, on_halt: rollback}", APP);
    assert_eq!(b.run(spec("1.0.0")).await.0.status, JobStatus::Succeeded);
    b.fleet
        .server("web1")
        .state()
        .crashing
        .insert("1.1.0".into());
    let (r, events) = b.run(spec("1.1.0")).await;
    assert_eq!(r.status, JobStatus::Failed, "{:?}", r.hosts);
    let said = events.iter().any(|e| {
        matches!(&e.kind,
        EventKind::StepFinished { host, step, reason, .. }
            if host == "web1" && step == "processes"
                && reason.contains("watching deploy-hello-worker for 1s failed")
                && reason.contains("exited and restarted"))
    });
    assert!(said, "{events:?}");
    assert_eq!(b.serving("web1").as_deref(), Some("1.0.0"), "rolled back");
    assert_eq!(enabled(&b, "web1"), links("blue"));
}

#[tokio::test]
async fn app_logs_read_the_journal_and_status_reads_systemctl_show() {
    let b = bed_with("{}", APP);
    assert_eq!(b.run(spec("1.0.0")).await.0.status, JobStatus::Succeeded);
    let app = b.inv.app("hello").unwrap();
    let (_, hosts) = b.inv.hosts_for(app, "production").unwrap();
    let hosts: Vec<_> = hosts.into_iter().cloned().collect();
    let read = |source: Source| {
        let (b, hosts) = (&b, &hosts);
        async move {
            let (tx, mut rx) = mpsc::channel(64);
            let spec = TailSpec {
                app: "hello".into(),
                source,
                lines: 10,
                follow: false,
            };
            app_logs::tail_with(&b.cfg, b.fleet.as_ref(), &hosts[..1], &Systemd, &spec, &tx).await;
            drop(tx);
            let mut got = Vec::new();
            while let Some(e) = rx.recv().await {
                got.push(e);
            }
            got
        }
    };
    let web = read(Source::Web).await;
    assert_eq!(web.len(), 1, "{web:?}");
    assert!(
        web[0].line.contains(" deploy-hello-blue[1000]: "),
        "{web:?}"
    );
    assert_eq!((web[0].copy, web[0].notice), (None, false));
    let worker = read(Source::Process {
        name: "worker".into(),
        copies: 2,
    })
    .await;
    let copies: Vec<Option<u32>> = worker.iter().map(|e| e.copy).collect();
    assert_eq!(copies, [Some(0), Some(1)], "{worker:?}");
    let ran = b.fleet.server("web1").state().log.clone();
    assert!(ran.contains(
        &"sudo -n journalctl --no-pager -o short-iso -n 10 -u deploy-hello-worker@0.service -u deploy-hello-worker@1.service".to_string()
    ));
    // status --live: the slots and each copy, from one `systemctl show`.
    let seen =
        crate::observe::observe_with(&b.inv, &b.cfg, b.fleet.as_ref(), "hello", "production")
            .await
            .unwrap();
    let view = seen[0].view.as_ref().unwrap();
    assert_eq!(view.live_slot.as_deref(), Some("blue"));
    let names: Vec<(&str, &str)> = view
        .processes
        .iter()
        .map(|p| (p.name.as_str(), p.state.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("deploy-hello-blue", "running"),
            ("deploy-hello-green", "stopped"),
            ("deploy-hello-worker@0", "running"),
            ("deploy-hello-worker@1", "running"),
        ],
        "{view:?}"
    );
    assert!(view.problems().is_empty(), "{:?}", view.problems());
}
