//! Deploys the sample app to three real servers: fresh install, idempotent re-deploy,
//! check mode with a config diff, upgrade.

use crate::support;

use deploy::wire::{HostStatus, JobStatus, StepStatus};
use support::*;

#[test]
fn deploy_redeploy_check_and_upgrade_on_three_servers() {
    let tb = Testbed::up("engine-deploy", 3);
    // pip, the product's default installer, end to end (the test bed's default is uv).
    tb.use_pip();

    // 1. Fresh deploy of 1.0.0: every server's nginx answers 1.0.0.
    let d = tb.deploy("1.0.0", false);
    assert_eq!(d.result.status, JobStatus::Succeeded, "{:#?}", d.result);
    for s in &tb.servers {
        assert_eq!(served_version(s), "1.0.0", "{}", s.name);
        assert_eq!(d.host(&s.name).status, HostStatus::Changed);
        assert_eq!(d.host(&s.name).connections, 1);
    }
    let pids: Vec<u32> = tb
        .servers
        .iter()
        .map(|s| app_pid(&s.container).expect("app runs"))
        .collect();

    // 2. The same release again: zero changed steps, nothing restarted.
    let d = tb.deploy("1.0.0", false);
    assert_eq!(d.result.status, JobStatus::Succeeded);
    assert_eq!(
        d.changed_steps(),
        Vec::<String>::new(),
        "re-deploy must change nothing"
    );
    assert_eq!(d.result.changed_steps(), 0);
    for (s, pid) in tb.servers.iter().zip(&pids) {
        assert_eq!(
            app_pid(&s.container),
            Some(*pid),
            "{} was restarted",
            s.name
        );
        assert_eq!(d.host(&s.name).status, HostStatus::Ok);
        let (status, reason, _) = d.step(&s.name, "start");
        assert_eq!(status, StepStatus::Ok, "{reason}");
        assert!(reason.contains("nothing it depends on changed"), "{reason}");
    }

    // 3. Check mode for 1.1.0 with a config change (workers 2 -> 3): reports what would
    //    change, with the config diff, and changes nothing.
    let web1 = tb.server("web1").container.clone();
    let snapshot = |c: &str| {
        exec(
            c,
            "readlink /srv/apps/hello/current /srv/apps/hello/run/live.sock; ls /srv/apps/hello/releases /etc/supervisor/conf.d; sha256sum /etc/supervisor/conf.d/* /etc/nginx/sites-enabled/hello.conf /srv/apps/hello/shared/env",
        )
    };
    let before = snapshot(&web1);
    tb.set_inventory(
        &tb.inventory_text()
            .replace("    port: 8000\n", "    port: 8000\n    workers: 3\n"),
    );
    let d = tb.deploy("1.1.0", true);
    assert_eq!(d.result.status, JobStatus::Succeeded);
    let (status, reason, _) = d.step("web1", "venv");
    assert_eq!(
        (status, reason.as_str()),
        (
            StepStatus::Changed,
            "would create the virtualenv /srv/apps/hello/releases/1.1.0 (python3 -m venv)"
        )
    );
    assert_eq!(d.step("web1", "install").0, StepStatus::Changed);
    let (status, reason, diff) = d.step("web1", "start");
    assert_eq!(status, StepStatus::Changed);
    assert_eq!(
        reason,
        "would start 1.1.0 in hello-green and check its health on its socket"
    );
    let diff = diff.expect("the new slot's config");
    assert!(
        diff.contains("+++ b/etc/supervisor/conf.d/hello-green.conf")
            && diff.contains(
                "releases/1.1.0/bin/gunicorn --bind unix:/srv/apps/hello/run/green@1.1.0.sock --umask 0 --workers 3"
            ),
        "{diff}"
    );
    let (status, reason, diff) = d.step("web1", "switch");
    assert_eq!(status, StepStatus::Changed);
    assert_eq!(
        reason,
        "would point the live socket at hello-green (1.0.0 -> 1.1.0)"
    );
    assert_eq!(
        diff, None,
        "the nginx site does not change with the release"
    );
    assert_eq!(d.step("web1", "health").0, StepStatus::Skipped);
    assert_eq!(d.step("web1", "drain").0, StepStatus::Changed);
    assert_eq!(
        snapshot(&web1),
        before,
        "check mode must not change the host"
    );
    assert_eq!(app_pid(&web1), Some(pids[0]), "check mode must not restart");
    for s in &tb.servers {
        assert_eq!(served_version(s), "1.0.0");
    }

    // 4. Upgrade to 1.1.0: serves 1.1.0, 1.0.0 stays on disk, current -> 1.1.0.
    let d = tb.deploy("1.1.0", false);
    assert_eq!(d.result.status, JobStatus::Succeeded, "{:#?}", d.result);
    for s in &tb.servers {
        assert_eq!(served_version(s), "1.1.0", "{}", s.name);
        assert_eq!(
            exec(&s.container, "readlink /srv/apps/hello/current").trim(),
            "releases/1.1.0"
        );
        let releases = exec(&s.container, "ls /srv/apps/hello/releases");
        assert_eq!(
            releases.split_whitespace().collect::<Vec<_>>(),
            ["1.0.0", "1.1.0"]
        );
        assert!(
            exec(
                &s.container,
                "cat /srv/apps/hello/releases/1.0.0/.deploy-release"
            )
            .contains("hello-app 1.0.0")
        );
        assert_eq!(live_slot(&s.container), "green");
        assert!(
            exec(&s.container, "cat /etc/supervisor/conf.d/hello-green.conf")
                .contains("--workers 3")
        );
        assert!(
            exec(&s.container, "supervisorctl status hello-blue || true").contains("STOPPED"),
            "the old slot is stopped after the drain"
        );
        assert_ne!(app_pid(&s.container), None);
    }
}
