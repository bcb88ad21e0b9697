//! Build once, ship everywhere, on real servers (engine `share.rs`): one server of a
//! job runs the installer, the others unpack its build; every server's site-packages
//! ends byte-identical to a per-host install's, and each marker records the hash the
//! engine reports.  An upgrade ships only what changed to servers that have the
//! previous release, and links the rest.

use crate::support;

use deploy::wire::{JobStatus, StepStatus};
use support::*;

/// `sha256sum` of every file of the release's site-packages, sorted by path
/// (bytecode caches aside: pip writes timestamps in them).
fn site_packages(container: &str, version: &str) -> String {
    exec(
        container,
        &format!(
            "cd /srv/apps/hello/releases/{version}/lib/python3*/site-packages && \
             find . -type f ! -name '*.pyc' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum"
        ),
    )
}

fn marker(container: &str, version: &str) -> String {
    exec(
        container,
        &format!("cat /srv/apps/hello/releases/{version}/.deploy-release"),
    )
}

/// The hosts among `hosts` whose installer ran in `d`.
fn installers<'h>(d: &Deployed, hosts: &[&'h str]) -> Vec<&'h str> {
    hosts
        .iter()
        .copied()
        .filter(|h| d.step(h, "install").1.starts_with("installed "))
        .collect()
}

/// Every server has `reference` as `version`'s site-packages, reported `env` as its
/// hash, has it in its marker, and serves `version`.
fn assert_one_build(tb: &Testbed, d: &Deployed, version: &str, reference: &str, env: &str) {
    for s in &tb.servers {
        assert_eq!(
            site_packages(&s.container, version),
            reference,
            "{}'s site-packages of {version} differ",
            s.name
        );
        let reported = d.host(&s.name).env_sha256.clone();
        assert_eq!(reported.as_deref(), Some(env), "{}", s.name);
        let m = marker(&s.container, version);
        assert!(
            m.trim_end().ends_with(&format!("env={env}")),
            "{}: {m}",
            s.name
        );
        assert_eq!(served_version(s), version, "{}", s.name);
    }
}

#[test]
fn one_server_installs_the_others_unpack_its_build_byte_identical_to_a_per_host_install_and_upgrades_link_what_did_not_change()
 {
    let tb = Testbed::up("shipped-envs", 3);
    let three = tb.inventory_text();
    // 1. A per-host install: staging with web1 alone (a job of one host ships nothing).
    let one = three
        .replacen("    groups: [web]\n", "    groups: [web, first]\n", 1)
        .replace(
            "      staging:\n        groups: [web]\n",
            "      staging:\n        groups: [first]\n",
        );
    assert_ne!(one, three);
    tb.set_inventory(&one);
    let d = tb.deploy("1.0.0", false);
    assert_eq!(d.result.status, JobStatus::Succeeded, "{:#?}", d.result);
    let (status, reason, _) = d.step("web1", "install");
    assert_eq!(status, StepStatus::Changed, "{reason}");
    assert!(reason.starts_with("installed hello-app==1.0.0"), "{reason}");
    let per_host = d.host("web1").env_sha256.clone().expect("web1's hash");
    let web1 = tb.server("web1").container.clone();
    assert!(!exec(&web1, "ls /srv/apps/hello/releases").contains(".tar"));

    // 2. All three: web1 has it; one of web2 and web3 installs, the other unpacks.
    tb.set_inventory(&three);
    let d = tb.deploy("1.0.0", false);
    assert_eq!(d.result.status, JobStatus::Succeeded, "{:#?}", d.result);
    assert_eq!(d.step("web1", "venv").1, "release 1.0.0 is complete");
    let installed = installers(&d, &["web2", "web3"]);
    assert_eq!(installed.len(), 1, "one installer run: {installed:?}");
    let builder = installed[0];
    let receiver = if builder == "web2" { "web3" } else { "web2" };
    let (status, reason, _) = d.step(receiver, "venv");
    assert_eq!(status, StepStatus::Changed, "{reason}");
    assert!(
        reason.starts_with(&format!("unpacked the environment {builder} built (")),
        "{reason}"
    );
    assert!(reason.contains("no installer ran on this host"), "{reason}");
    assert_eq!(d.step(receiver, "install").0, StepStatus::Ok);
    let (_, why, _) = d.step(builder, "venv");
    assert!(
        why.contains("built here once, for the job's other hosts"),
        "{why}"
    );

    // 3. The same files everywhere, and the hash each host reports is its marker's.
    let reference = site_packages(&web1, "1.0.0");
    assert!(reference.contains("hello_app"), "{reference}");
    assert_one_build(&tb, &d, "1.0.0", &reference, &per_host);
    // The unpacked server runs the app from its own copy: its processes were started
    // from it and answer.
    let rc = tb.server(receiver);
    let (code, body) = http_get(rc.http_port, HOST, "/");
    assert_eq!(code, 200, "{body}");

    // 4. An upgrade: one server installs 1.1.0; the others build it from their 1.0.0
    //    (same hash) and the files that changed: unchanged files are hard links.
    let d = tb.deploy("1.1.0", false);
    assert_eq!(d.result.status, JobStatus::Succeeded, "{:#?}", d.result);
    let builders = installers(&d, &["web1", "web2", "web3"]);
    assert_eq!(builders.len(), 1, "one installer run: {builders:?}");
    let reference = site_packages(&tb.server(builders[0]).container, "1.1.0");
    let env = d.host(builders[0]).env_sha256.clone().unwrap();
    assert_one_build(&tb, &d, "1.1.0", &reference, &env);
    for s in &tb.servers {
        if s.name == builders[0] {
            continue;
        }
        let (_, reason, _) = d.step(&s.name, "venv");
        assert!(
            reason.contains("of changes over release 1.0.0 (its unchanged files linked;"),
            "{}: {reason}",
            s.name
        );
        // gunicorn did not change: its files are the 1.0.0 release's, linked.
        let inodes = exec(
            &s.container,
            "cd /srv/apps/hello/releases && stat -c %i 1.0.0/lib/python3*/site-packages/gunicorn/__init__.py \
             1.1.0/lib/python3*/site-packages/gunicorn/__init__.py",
        );
        let inodes: Vec<&str> = inodes.split_whitespace().collect();
        assert_eq!(inodes.len(), 2, "{inodes:?}");
        assert_eq!(inodes[0], inodes[1], "{}: not linked", s.name);
    }
}
