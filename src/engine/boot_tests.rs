//! Only the live slot starts at boot: the boot flags follow the live pointer through a
//! deploy, an upgrade, a restart and a rollback, and a flag alone never makes a slot
//! count as changed (fake servers).

use deploy_wire::JobStatus;

use super::testbed::{Bed, bed, spec};

/// Each slot's `autostart=` on `host` (blue, green); None: no file.
fn boot(b: &Bed, host: &str) -> [Option<String>; 2] {
    let s = b.fleet.server(host);
    let s = s.state();
    ["blue", "green"].map(|slot| {
        let f = s
            .files
            .get(&format!("/etc/supervisor/conf.d/hello-{slot}.conf"))?;
        f.lines()
            .find_map(|l| l.strip_prefix("autostart="))
            .map(str::to_string)
    })
}

fn on_off(live: &str, other: Option<&str>) -> [Option<String>; 2] {
    [Some(live.to_string()), other.map(str::to_string)]
}

#[tokio::test]
async fn only_the_live_slot_starts_at_boot_after_every_switch() {
    let b = bed("{}");
    let (r, _) = b.run(spec("1.0.0")).await;
    assert_eq!(r.status, JobStatus::Succeeded);
    // First deploy: blue live and on; green has no file yet (nothing to turn off).
    assert_eq!(boot(&b, "web1"), on_off("true", None));
    // A second run changes nothing: the flag is not a difference from the template.
    let (r, events) = b.run(spec("1.0.0")).await;
    assert_eq!(r.changed_steps(), 0, "{events:?}");
    // Upgrade: green live and on, blue off.
    assert_eq!(b.run(spec("1.1.0")).await.0.status, JobStatus::Succeeded);
    assert_eq!(
        boot(&b, "web2"),
        [Some("false".into()), Some("true".into())]
    );
    // Restart: the idle slot (blue) takes over, same release.
    let mut restart = spec("1.1.0");
    restart.restart = true;
    restart.no_install = true;
    assert_eq!(b.run(restart).await.0.status, JobStatus::Succeeded);
    assert_eq!(
        boot(&b, "web3"),
        [Some("true".into()), Some("false".into())]
    );
    // Rollback to 1.0.0: green again.
    let mut back = spec("1.0.0");
    back.no_install = true;
    assert_eq!(b.run(back).await.0.status, JobStatus::Succeeded);
    assert_eq!(b.serving("web1").as_deref(), Some("1.0.0"));
    for h in ["web1", "web2", "web3"] {
        assert_eq!(
            boot(&b, h),
            [Some("false".into()), Some("true".into())],
            "{h}"
        );
    }
}

#[tokio::test]
async fn a_failed_start_leaves_the_boot_flags_with_the_slot_that_serves() {
    let b = bed("{}");
    assert_eq!(b.run(spec("1.0.0")).await.0.status, JobStatus::Succeeded);
    b.fleet.server("web1").state().broken.insert("2.0.0".into());
    let (r, _) = b.run(spec("2.0.0")).await;
    assert_eq!(r.status, JobStatus::Failed);
    assert_eq!(b.serving("web1").as_deref(), Some("1.0.0"));
    assert_eq!(
        boot(&b, "web1"),
        [Some("true".into()), Some("false".into())]
    );
}
