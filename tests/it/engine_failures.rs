//! Hosts that fail: an unreachable host fails alone, unknown and changed host keys are
//! refused, and many deploys in a row neither leak SSH channels nor open extra
//! connections.  (These environments tolerate failed hosts, `max_failed: 5`, so the
//! other hosts finish; halting is tested in tests/rollouts.rs.)

const TOLERANT: &str = "        groups: [web]\n        rollout: {max_failed: 5}\n";

use crate::support;

use deploy::wire::{HostStatus, JobStatus};
use support::*;

#[test]
fn an_unreachable_host_fails_alone_and_the_others_finish() {
    let tb = Testbed::up("unreachable", 2);
    // web9 points at a loopback port nothing listens on.
    let text = tb.inventory_text().replace(
        "applications:\n",
        "  web9:\n    address: 127.0.0.1\n    port: 1\n    user: deploy\n    groups: [web]\napplications:\n",
    );
    let text = text.replace("        groups: [web]\n", TOLERANT);
    tb.set_inventory(&text);
    let d = tb.deploy("1.0.0", false);
    assert_eq!(d.result.status, JobStatus::Failed);
    let web9 = d.host("web9");
    assert_eq!(web9.status, HostStatus::Unreachable);
    let err = web9.error.as_deref().unwrap();
    assert!(
        err.contains("web9") && err.contains("127.0.0.1:1") && err.contains("cannot connect"),
        "{err}"
    );
    for s in &tb.servers {
        assert_eq!(d.host(&s.name).status, HostStatus::Changed, "{}", s.name);
        assert_eq!(served_version(s), "1.0.0");
    }
}

#[test]
fn unknown_and_changed_host_keys_are_refused() {
    let tb = Testbed::up("hostkeys", 2);
    tb.set_inventory(
        &tb.inventory_text()
            .replace("        groups: [web]\n", TOLERANT),
    );
    let d = tb.deploy("1.0.0", false);
    assert_eq!(d.result.status, JobStatus::Succeeded);
    let logins_before = ssh_logins(&tb.server("web2").container);

    // web2 is rebuilt: new host keys, sshd re-reads them on SIGHUP.
    let web2 = tb.server("web2").container.clone();
    exec(
        &web2,
        "rm -f /etc/ssh/ssh_host_* && ssh-keygen -A >/dev/null && pkill -HUP -o -x sshd",
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    let d = tb.deploy("1.1.0", false);
    assert_eq!(d.result.status, JobStatus::Failed);
    let h = d.host("web2");
    assert_eq!(h.status, HostStatus::Unreachable);
    let err = h.error.as_deref().unwrap();
    assert!(
        err.contains("HOST KEY CHANGED") && err.contains("refusing"),
        "{err}"
    );
    assert_eq!(
        ssh_logins(&web2),
        logins_before,
        "no login may happen with a changed key"
    );
    assert_eq!(
        served_version(tb.server("web2")),
        "1.0.0",
        "web2 must be untouched"
    );
    assert_eq!(d.host("web1").status, HostStatus::Changed);

    // A host with no pin at all is refused too, naming the fingerprint to check.
    let pins = read_to_string(&tb.path("known_hosts"));
    let port = tb.server("web1").ssh_port;
    let kept: String = pins
        .lines()
        .filter(|l| !l.contains(&format!(":{port} ")))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(tb.path("known_hosts"), kept).unwrap();
    let d = tb.deploy("1.1.0", false);
    let h = d.host("web1");
    assert_eq!(h.status, HostStatus::Unreachable);
    let err = h.error.as_deref().unwrap();
    assert!(
        err.contains("not pinned") && err.contains("SHA256:") && err.contains("trust-host"),
        "{err}"
    );
}

#[test]
fn twenty_deploys_in_a_row_each_over_one_connection() {
    let tb = Testbed::up("twenty", 1);
    tb.set_inventory(&tb.inventory_text().replace(
        "    keep_releases: 3\n",
        "    keep_releases: 3\n    drain_secs: 0\n",
    ));
    let web1 = tb.server("web1").clone();
    // The engine batches its commands (about 8 channels a run): sshd allows 3 sessions
    // per connection here, so a channel left open would fail the run.
    exec(
        &web1.container,
        "echo 'MaxSessions 3' >> /etc/ssh/sshd_config && pkill -HUP -o -f '^sshd: /usr/sbin/sshd' && sleep 1",
    );
    for i in 0..20 {
        // Alternate releases so every run starts a slot and switches.
        let version = if i % 2 == 0 { "1.0.0" } else { "1.1.0" };
        let logins = ssh_logins(&web1.container);
        let d = tb.deploy(version, false);
        assert_eq!(
            d.result.status,
            JobStatus::Succeeded,
            "run {i}: {:#?}",
            d.result
        );
        let h = d.host("web1");
        assert_eq!(h.connections, 1, "run {i}");
        assert!(h.channels > 3, "run {i} used only {} channels", h.channels);
        assert_eq!(
            ssh_logins(&web1.container),
            logins + 1,
            "run {i} must log in exactly once"
        );
        assert_eq!(served_version(&web1), version, "run {i}");
    }
}
