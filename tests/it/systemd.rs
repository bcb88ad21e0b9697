//! The systemd process manager on real systemd (issue 27): test servers that are
//! containers with systemd as PID 1 (`ci/testbed.sh up --systemd`, the environment on
//! `process_manager: systemd`), through the gateway and the CLI: the sample app deployed,
//! upgraded, restarted and rolled back under keep-alive load with only
//! `docs/sudoers-systemd`'s sudo rights, its units hardened and only the live slot's
//! enabled; the Django app with PostgreSQL, hooks and workers under load; reboots
//! (`docker restart`: a boot of systemd) before, at and right after a switch.
//!
//! (1.2.0 of the test index fails its health check: the releases here are 1.0.0,
//! 1.1.0, 1.3.0 and 1.4.0.)

use crate::support;

use std::time::{Duration, Instant};

use support::load::KeepAliveLoad;
use support::reboot::*;
use support::*;

/// The sample app with a worker and a hook, settle 1 s, drain 1 s.
fn hello_inventory(tb: &Testbed) -> String {
    tb.inventory_text().replace(
        "    keep_releases: 3\n",
        "    keep_releases: 3\n    settle_secs: 1\n    drain_secs: 1\n    processes:\n      \
         worker: {command: \"python -c 'import os, time; print(\\\"worker up on\\\", os.environ[\\\"DEPLOY_RELEASE\\\"], flush=True); time.sleep(86400)'\", stop_secs: 2}\n    \
         hooks:\n      before_switch:\n        - {name: greet, command: \"python -c 'print(\\\"hook ran\\\")'\"}\n",
    )
}

fn release(gw: &Gateway, token: &str, app: &str, version: &str) {
    let r = gw.run(
        Some(token),
        &["release", app, version, "-e", "staging", "--yes"],
    );
    assert_eq!(r.code, 0, "release {app} {version}: {r:?}");
}

/// The deploy user's sudo rights become `docs/sudoers-systemd` alone (the image's
/// passwordless `ALL` removed); checked with visudo, and a command outside it refused.
fn only_the_documented_sudo_rights(container: &str) {
    let file = std::fs::read(root().join("docs/sudoers-systemd")).unwrap();
    let mut c = std::process::Command::new("docker")
        .args([
            "exec",
            "-i",
            container,
            "sh",
            "-c",
            "cat > /tmp/deploy-systemd",
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut c.stdin.take().unwrap(), &file).unwrap();
    assert!(c.wait().unwrap().success());
    exec(
        container,
        "visudo -cqf /tmp/deploy-systemd && install -m 0440 /tmp/deploy-systemd /etc/sudoers.d/deploy-systemd \
         && rm -f /etc/sudoers.d/deploy",
    );
    let refused = exec(
        container,
        "su deploy -s /bin/sh -c 'sudo -n /usr/bin/id -u' 2>&1 && echo ALLOWED || echo refused",
    );
    assert!(refused.trim_end().ends_with("refused"), "{refused}");
}

/// `systemctl show -p User,NoNewPrivileges,ProtectSystem` of a unit, as `k=v` lines.
fn hardening(container: &str, unit: &str) -> String {
    exec(
        container,
        &format!(
            "systemctl show -p User -p NoNewPrivileges -p ProtectSystem -p ProtectHome -p PrivateTmp {unit}"
        ),
    )
}

/// The live slot's unit and the worker's copy run as the app user, hardened; only the
/// live slot's unit starts at boot; what runs is the live slot and the worker.
fn units_as_deploy_writes_them(container: &str) {
    let live = format!("deploy-hello-{}.service", live_slot(container));
    for unit in [live.as_str(), "deploy-hello-worker@0.service"] {
        let h = hardening(container, unit);
        for want in [
            "User=app-hello",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "PrivateTmp=yes",
        ] {
            assert!(h.lines().any(|l| l == want), "{unit}: {want} in\n{h}");
        }
        let user = exec(
            container,
            &format!("ps -o user= -p $(systemctl show -p MainPID --value {unit})"),
        );
        assert_eq!(user.trim(), "app-hello", "{unit}'s process");
    }
    assert_eq!(enabled_slot_units(container, "hello"), vec![live.clone()]);
    assert_eq!(
        active_units(container, "hello"),
        vec![live, "deploy-hello-worker@0.service".to_string()]
    );
}

#[test]
fn the_sample_app_on_systemd_with_only_the_sudoers_rights_upgrades_restarts_and_rolls_back_under_load_with_no_failed_request()
 {
    let t = Instant::now();
    let tb = Testbed::up_systemd("sd-sample", 1, &[]);
    let web1 = tb.server("web1").clone();
    assert_eq!(exec(&web1.container, "ps -p 1 -o comm=").trim(), "systemd");
    only_the_documented_sudo_rights(&web1.container);
    tb.set_inventory(&hello_inventory(&tb));
    let gw = Gateway::start(Some(&tb), "0.1.0", "0.1.0");
    let ann = gw.token("ann", "staging", false);
    eprintln!("set up: {:?}", t.elapsed());

    let p = Instant::now();
    release(&gw, &ann, "hello", "1.0.0");
    assert_eq!(served_version(&web1), "1.0.0");
    units_as_deploy_writes_them(&web1.container);
    eprintln!("first deploy: {:?}", p.elapsed());

    // An upgrade and a restart while keep-alive clients send GETs and POSTs.
    let p = Instant::now();
    let load = KeepAliveLoad::paced(std::slice::from_ref(&web1), 2, Duration::from_millis(2));
    release(&gw, &ann, "hello", "1.1.0");
    let slot = live_slot(&web1.container);
    let r = gw.run(Some(&ann), &["restart", "hello", "-e", "staging"]);
    assert_eq!(r.code, 0, "{r:?}");
    std::thread::sleep(Duration::from_millis(500));
    let seen = load.stop();
    seen.assert_no_failure("the upgrade and the restart", p, 100);
    assert_ne!(
        live_slot(&web1.container),
        slot,
        "the restart flips the slot"
    );
    assert_eq!(served_version(&web1), "1.1.0");
    units_as_deploy_writes_them(&web1.container);

    let st = gw.run(Some(&ann), &["status", "hello", "-e", "staging", "--live"]);
    assert_eq!(st.code, 0, "{st:?}");
    assert!(st.stdout.contains("1.1.0"), "{st:?}");

    // app-logs reads the journal: the live slot's access lines under its unit's
    // identifier, the worker's own line.
    let ident = format!(" deploy-hello-{}[", live_slot(&web1.container));
    let logs = gw.run(
        Some(&ann),
        &["app-logs", "hello", "-e", "staging", "-n", "30"],
    );
    assert_eq!(logs.code, 0, "{logs:?}");
    assert!(
        logs.stdout.lines().any(|l| l.starts_with("web1 | ")
            && l.contains(&ident)
            && l.contains("\"POST /orders HTTP/1.1\" 200")),
        "{logs:?}"
    );
    let logs = gw.run(
        Some(&ann),
        &[
            "app-logs",
            "hello",
            "-e",
            "staging",
            "--process",
            "worker",
            "-n",
            "5",
        ],
    );
    assert_eq!(logs.code, 0, "{logs:?}");
    assert!(logs.stdout.contains("worker up on 1.1.0"), "{logs:?}");

    let p = Instant::now();
    let r = gw.run(Some(&ann), &["rollback", "hello", "-e", "staging", "--yes"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(served_version(&web1), "1.0.0");
    units_as_deploy_writes_them(&web1.container);
    eprintln!("rollback: {:?}; whole test: {:?}", p.elapsed(), t.elapsed());
}

/// After a boot: the first answer of `status --live` is right, the host serves `live`,
/// only the live slot's unit runs (and the worker), only it starts at boot.
fn serves_alone_after_boot(gw: &Gateway, tb: &Testbed, token: &str, live: &str, when: &str) {
    let (code, row) = first_live_status(gw, token);
    let web1 = tb.server("web1");
    let seen = || {
        exec(
            &web1.container,
            "systemctl list-units --all --plain --no-legend 'deploy-*'; ls -l /srv/apps/hello/run; \
             journalctl -b --no-pager -n 20 -u 'deploy-*'",
        )
    };
    assert_eq!(
        code,
        0,
        "{when}: status --live flags the host: {row:#}\n{}",
        seen()
    );
    assert_eq!(row["observed"]["version"], live, "{when}: {row:#}");
    assert_eq!(row["disagrees"], false, "{when}: {row:#}");
    assert_eq!(served_version(web1), live, "{when}");
    let slot = format!("deploy-hello-{}.service", live_slot(&web1.container));
    assert_eq!(
        active_units(&web1.container, "hello"),
        vec![slot.clone(), "deploy-hello-worker@0.service".to_string()],
        "{when}: {}",
        seen()
    );
    assert_eq!(enabled_slot_units(&web1.container, "hello"), vec![slot]);
}

#[test]
fn a_systemd_server_rebooted_before_at_and_after_a_switch_boots_its_live_slot_alone() {
    let t = Instant::now();
    let tb = Testbed::up_systemd("sd-reboots", 1, &["--rebootable"]);
    tb.set_inventory(&hello_inventory(&tb).replace(
        "        groups: [web]\n",
        "        groups: [web]\n        rollout: {on_halt: keep}\n",
    ));
    let gw = Gateway::start(Some(&tb), "0.1.0", "0.1.0");
    let ann = gw.token("ann", "staging", false);
    let container = tb.server("web1").container.clone();
    release(&gw, &ann, "hello", "1.0.0");
    eprintln!("set up: {:?}", t.elapsed());

    // (1) Before a deploy.
    let p = Instant::now();
    reboot(&tb, "web1");
    serves_alone_after_boot(&gw, &tb, &ann, "1.0.0", "rebooted before a deploy");
    release(&gw, &ann, "hello", "1.1.0");
    assert_eq!(served_version(tb.server("web1")), "1.1.0");
    eprintln!("(1) before a deploy: {:?}", p.elapsed());

    // (2) At the switch.
    let p = Instant::now();
    let mut fence = Stepper::hold(&container);
    let job = start_deploy(&gw, &ann, "1.3.0");
    fence.until(&gw, &ann, &job, |evs| last_step(evs) == Some("switch"));
    assert!(!has(&gw.job_events(&ann, &job), "switched"));
    reboot(&tb, "web1");
    let (state, err, took) = job_end(&gw, &ann, &job);
    eprintln!("(2) the job cut at its switch ended {took:?} after the host was back: {err}");
    assert_eq!(state, "failed");
    assert!(took < Duration::from_secs(30), "{took:?}");
    serves_alone_after_boot(&gw, &tb, &ann, "1.1.0", "rebooted at the switch");
    release(&gw, &ann, "hello", "1.3.0");
    assert_eq!(served_version(tb.server("web1")), "1.3.0");
    eprintln!("(2) at the switch: {:?}", p.elapsed());

    // (3) Right after the switch: both slots run, the old one drains.
    let p = Instant::now();
    let mut fence = Stepper::hold(&container);
    let job = start_deploy(&gw, &ann, "1.4.0");
    fence.until(&gw, &ann, &job, |evs| has(evs, "switched"));
    assert_eq!(
        active_units(&container, "hello").len(),
        3,
        "both slots and the worker run right after the switch"
    );
    reboot(&tb, "web1");
    let (state, err, took) = job_end(&gw, &ann, &job);
    eprintln!("(3) the job cut after its switch ended {took:?} after the host was back: {err}");
    assert_eq!(state, "failed");
    assert!(took < Duration::from_secs(30), "{took:?}");
    serves_alone_after_boot(&gw, &tb, &ann, "1.4.0", "rebooted after the switch");
    release(&gw, &ann, "hello", "1.1.0");
    assert_eq!(served_version(tb.server("web1")), "1.1.0");
    assert_eq!(active_units(&container, "hello").len(), 2);
    eprintln!(
        "(3) after a switch: {:?}; whole test: {:?}",
        p.elapsed(),
        t.elapsed()
    );
}
