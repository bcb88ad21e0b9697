//! Fast tests of a full disk on [`super::fake`] servers: the canary whose install runs
//! out of space fails with a plain reason naming the filesystem, keeps serving its live
//! release, keeps no unfinished release, and the rollout halts before the other hosts.

use deploy_wire::{EventKind, HostStatus, JobStatus};

use crate::fake::Rel;
use crate::testbed::{bed, spec};

#[tokio::test]
async fn a_canary_out_of_space_fails_plainly_and_keeps_nothing_of_the_release() {
    let b = bed("{canary: true, batch: 2}");
    let (r, _) = b.run(spec("1.0.0")).await;
    assert_eq!(r.status, JobStatus::Succeeded);
    b.fleet.server("web1").state().disk_full = true;
    let (r, events) = b.run(spec("1.1.0")).await;
    assert_eq!(r.status, JobStatus::Failed);
    let web1 = r.hosts.iter().find(|h| h.host == "web1").unwrap();
    assert_eq!(web1.status, HostStatus::Failed);
    let err = web1.error.as_deref().unwrap();
    assert!(
        err.starts_with(
            "web1: step install failed: no space left on /srv while installing hello-app==1.1.0: \
             Caused by: failed to write to file `/srv/apps/hello/releases/1.1.0/"
        ) && err.ends_with("; the unfinished release 1.1.0 was removed"),
        "{err}"
    );
    assert!(
        !err.contains("Resolved") && !err.contains("deploy-space"),
        "{err}"
    );
    // The canary halted the rollout: the others were never touched.
    let started: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::HostStarted { host } => Some(host.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(started, ["web1"]);
    for h in ["web1", "web2", "web3"] {
        assert_eq!(b.serving(h).as_deref(), Some("1.0.0"), "{h}");
    }
    let releases = b.fleet.server("web1").state().releases.clone();
    assert!(!releases.contains_key("1.1.0"), "{releases:?}");
    assert_eq!(releases.get("1.0.0").map(|r| r.1), Some(Rel::Complete));

    // Space freed: the next deploy converges.
    b.fleet.server("web1").state().disk_full = false;
    let (r, _) = b.run(spec("1.1.0")).await;
    assert_eq!(r.status, JobStatus::Succeeded, "{:?}", r.hosts);
    for h in ["web1", "web2", "web3"] {
        assert_eq!(b.serving(h).as_deref(), Some("1.1.0"), "{h}");
    }
}
