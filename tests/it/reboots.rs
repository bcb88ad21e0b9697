//! Reboots of container servers under supervisord (`docker restart` of a test bed made
//! `--rebootable`: the same ports, an empty `/run`, the disk kept): a server restarted
//! before a deploy, while its job waits at the switch, and right after a switch (the old
//! slot still draining) comes back serving the live release with only the live slot
//! running; `status --live` is right from the host's first answer; the job the restart
//! cut fails that host with a plain reason, soon; the next deploy converges.
//!
//! (1.2.0 of the test index fails its health check: the releases here are 1.0.0,
//! 1.1.0, 1.3.0 and 1.4.0.)
//!
//! One test bed for the three points (each starts from a converged host).  The job is
//! stopped exactly where wanted with the host's own fence: every command of a job first
//! takes the fence's lock (`~deploy/.deploy/fence/hello.staging.lock`), so the test,
//! holding that lock, lets the job's commands through one at a time ([`Stepper`]) until
//! the one waiting is the switch (2), or the one after it (3); then the host restarts.

use crate::support;

use std::time::{Duration, Instant};

use support::reboot::*;
use support::*;

/// After a reboot: the first answer of `status --live` is right and flags nothing, the
/// host serves `live`, and only the live slot runs.
fn serves_alone_after_boot(gw: &Gateway, tb: &Testbed, token: &str, live: &str, when: &str) {
    let (code, row) = first_live_status(gw, token);
    let web1 = tb.server("web1");
    let seen = || {
        exec(
            &web1.container,
            "grep -H autostart /etc/supervisor/conf.d/*.conf; supervisorctl status; \
             tail -n 8 /var/log/supervisor/supervisord.log; ls -l /srv/apps/hello/run",
        )
    };
    assert_eq!(
        code,
        0,
        "{when}: status --live flags the host: {row:#}\n{}",
        seen()
    );
    assert_eq!(row["version"], live, "{when}: the record: {row:#}");
    assert_eq!(
        row["observed"]["version"], live,
        "{when}: the host: {row:#}"
    );
    assert_eq!(row["disagrees"], false, "{when}: {row:#}");
    assert_eq!(served_version(web1), live, "{when}");
    let running = running_slots(&web1.container);
    assert_eq!(
        running,
        vec![format!("hello-{}", live_slot(&web1.container))],
        "{when}: only the live slot runs"
    );
}

#[test]
fn a_server_rebooted_before_at_and_after_a_switch_serves_its_live_release_alone() {
    let t = Instant::now();
    let tb = Testbed::up_rebootable("reboots", 1);
    // A halted job keeps what it did (`keep`): a rollback racing the host's return
    // would make the live release depend on timing.
    tb.set_inventory(&tb.inventory_text().replace(
        "        groups: [web]\n",
        "        groups: [web]\n        rollout: {on_halt: keep}\n",
    ));
    let gw = Gateway::start(Some(&tb), "0.1.0", "0.1.0");
    let ann = gw.token("ann", "staging", false);
    let container = tb.server("web1").container.clone();
    release(&gw, &ann, "1.0.0");
    eprintln!("set up: {:?}", t.elapsed());

    // (1) Before a deploy.
    let p = Instant::now();
    reboot(&tb, "web1");
    serves_alone_after_boot(&gw, &tb, &ann, "1.0.0", "rebooted before a deploy");
    release(&gw, &ann, "1.1.0");
    assert_eq!(served_version(tb.server("web1")), "1.1.0");
    eprintln!("(1) before a deploy: {:?}", p.elapsed());

    // (2) At the switch: the switch's command waits on the host for the fence.
    let p = Instant::now();
    let mut fence = Stepper::hold(&container);
    let job = start_deploy(&gw, &ann, "1.3.0");
    fence.until(&gw, &ann, &job, |evs| last_step(evs) == Some("switch"));
    assert!(
        !has(&gw.job_events(&ann, &job), "switched"),
        "held before the switch"
    );
    reboot(&tb, "web1");
    let (state, err, took) = job_end(&gw, &ann, &job);
    eprintln!("(2) the job cut at its switch ended {took:?} after the host was back: {err}");
    assert_eq!(state, "failed");
    assert!(err.starts_with("web1: step switch failed: "), "{err}");
    assert!(took < Duration::from_secs(30), "{took:?}");
    serves_alone_after_boot(&gw, &tb, &ann, "1.1.0", "rebooted at the switch");
    release(&gw, &ann, "1.3.0");
    assert_eq!(served_version(tb.server("web1")), "1.3.0");
    eprintln!("(2) at the switch: {:?}", p.elapsed());

    // (3) Right after the switch: the pointer moved, the old slot still runs, and the
    // job's next command (the health check through nginx) waits for the fence.
    let p = Instant::now();
    let mut fence = Stepper::hold(&container);
    let job = start_deploy(&gw, &ann, "1.4.0");
    fence.until(&gw, &ann, &job, |evs| has(evs, "switched"));
    assert_eq!(
        running_slots(&container).len(),
        2,
        "both slots run right after the switch"
    );
    reboot(&tb, "web1");
    let (state, err, took) = job_end(&gw, &ann, &job);
    eprintln!("(3) the job cut after its switch ended {took:?} after the host was back: {err}");
    assert_eq!(state, "failed");
    // The step the reboot cuts is one after the switch: the health check, or (when the
    // stepper let it through before the reboot landed) one of those after it.
    let after_switch = ["health", "processes", "after_switch", "drain"];
    assert!(
        after_switch
            .iter()
            .any(|s| err.starts_with(&format!("web1: step {s} failed: "))),
        "{err}"
    );
    assert!(took < Duration::from_secs(30), "{took:?}");
    serves_alone_after_boot(&gw, &tb, &ann, "1.4.0", "rebooted after the switch");
    release(&gw, &ann, "1.1.0");
    assert_eq!(served_version(tb.server("web1")), "1.1.0");
    assert_eq!(running_slots(&container).len(), 1);
    eprintln!("(3) after a switch: {:?}", p.elapsed());
    eprintln!("reboots: {:?}", t.elapsed());
}
