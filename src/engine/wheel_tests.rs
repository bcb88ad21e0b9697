//! Fast tests of pinned installs on [`super::fake`] servers: each host installs the
//! wheel the job pins (its hash in the release's marker, which the live view reports),
//! a host whose index serves other bytes fails its install and switches nothing, and a
//! release installed before pins is "unknown".

use deploy_wire::{EventKind, HostStatus, JobStatus, StepStatus};

use crate::index::WheelPin;
use crate::observe::observe_with;
use crate::testbed::{Bed, bed, spec};

fn pinned(version: &str, sha: &str) -> crate::JobSpec {
    crate::JobSpec {
        wheel: WheelPin::new(&format!("hello_app-{version}-py3-none-any.whl"), sha),
        ..spec(version)
    }
}

async fn wheels(b: &Bed) -> Vec<(String, Option<String>)> {
    observe_with(&b.inv, &b.cfg, b.fleet.as_ref(), "hello", "production")
        .await
        .unwrap()
        .into_iter()
        .map(|o| (o.host, o.view.unwrap().wheel_sha256))
        .collect()
}

#[tokio::test]
async fn each_host_records_the_pinned_wheel_and_the_live_view_reports_it() {
    let b = bed("{batch: 3, max_failed: 0, on_halt: keep}");
    let (r, _) = b.run(spec("1.0.0")).await;
    assert_eq!(r.status, JobStatus::Succeeded);
    let unknown: Vec<_> = ["web1", "web2", "web3"]
        .iter()
        .map(|h| (h.to_string(), None))
        .collect();
    assert_eq!(
        wheels(&b).await,
        unknown,
        "installed without a pin: unknown"
    );

    let sha = "1f".repeat(32);
    let (r, events) = b.run(pinned("1.1.0", &sha)).await;
    assert_eq!(r.status, JobStatus::Succeeded);
    let verified = events.iter().any(|e| {
        matches!(&e.kind, EventKind::StepFinished { step, reason, .. }
            if step == "install" && reason.contains(&format!("sha256 {sha} verified")))
    });
    assert!(
        verified,
        "the install says which file it verified: {events:?}"
    );
    let want: Vec<_> = ["web1", "web2", "web3"]
        .iter()
        .map(|h| (h.to_string(), Some(sha.clone())))
        .collect();
    assert_eq!(wheels(&b).await, want);
}

#[tokio::test]
async fn a_host_whose_index_serves_other_bytes_fails_its_install_and_switches_nothing() {
    let b = bed("{batch: 1, max_failed: 0, on_halt: keep}");
    assert_eq!(b.run(spec("1.0.0")).await.0.status, JobStatus::Succeeded);
    // The file of 1.1.0 on the index changed after the gateway read its listing.
    b.fleet
        .server("web1")
        .state()
        .index_serves
        .insert("1.1.0".into(), "99".repeat(32));
    let (r, events) = b.run(pinned("1.1.0", &"1f".repeat(32))).await;
    assert_eq!(r.status, JobStatus::Failed);
    let web1 = r.hosts.iter().find(|h| h.host == "web1").unwrap();
    assert_eq!(web1.status, HostStatus::Failed);
    let why = events.iter().find_map(|e| match &e.kind {
        EventKind::StepFinished {
            host,
            step,
            status: StepStatus::Failed,
            reason,
            ..
        } if host == "web1" && step == "install" => Some(reason.clone()),
        _ => None,
    });
    let why = why.unwrap_or_else(|| panic!("install failed on web1: {events:?}"));
    assert!(
        why.contains("with the SHA-256 the gateway recorded") && why.contains("refused"),
        "{why}"
    );
    for h in ["web1", "web2", "web3"] {
        assert_eq!(b.serving(h).as_deref(), Some("1.0.0"), "{h} still on 1.0.0");
    }
    let s = b.fleet.server("web1");
    assert!(!s.state().wheels.contains_key("1.1.0"));
    assert_ne!(
        s.state().releases.get("1.1.0").map(|r| r.1),
        Some(crate::fake::Rel::Complete),
        "no marker"
    );
}
