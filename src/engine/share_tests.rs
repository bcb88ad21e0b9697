//! Build once, ship everywhere, on fake servers: one installer run per platform and
//! job, the others unpack its build; hosts that differ, a builder that fails or cannot
//! pack, a single host and check mode build (or not) as before, and say why.

use deploy_wire::{Event, EventKind, HostStatus, JobStatus};

use super::fake::fake_env;
use super::testbed::{Bed, bed, spec};

/// The hosts whose installer ran (an install command in their log).
fn installed_on(b: &Bed) -> Vec<String> {
    ["web1", "web2", "web3"]
        .into_iter()
        .filter(|h| {
            let log = b.fleet.server(h).state().log.clone();
            log.iter().any(|l| l.contains("read -r PIP_INDEX_URL"))
        })
        .map(str::to_string)
        .collect()
}

fn unpacked_on(b: &Bed) -> Vec<String> {
    ["web1", "web2", "web3"]
        .into_iter()
        .filter(|h| b.fleet.server(h).state().unpacked.contains("1.0.0"))
        .map(str::to_string)
        .collect()
}

fn packs(b: &Bed, host: &str) -> usize {
    let log = b.fleet.server(host).state().log.clone();
    log.iter()
        .filter(|l| l.contains("--exclude=./.deploy-release"))
        .count()
}

/// The `venv` step's reason on `host`.
fn venv_reason(events: &[Event], host: &str) -> String {
    super::testbed::step_reason(events, host, "venv").unwrap_or_default()
}

fn output(events: &[Event], host: &str) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Output { host: h, line, .. } if h == host => Some(line.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn one_host_installs_and_the_others_unpack_its_build_with_the_same_env_hash() {
    let b = bed("{}");
    let (r, events) = b.run(spec("1.0.0")).await;
    assert_eq!(r.status, JobStatus::Succeeded, "{:?}", r.hosts);
    let installed = installed_on(&b);
    assert_eq!(installed.len(), 1, "one installer run: {installed:?}");
    let builder = &installed[0];
    let mut unpacked = unpacked_on(&b);
    unpacked.push(builder.clone());
    unpacked.sort();
    assert_eq!(unpacked, ["web1", "web2", "web3"]);
    assert_eq!(packs(&b, builder), 1);
    for h in &r.hosts {
        assert_eq!(h.status, HostStatus::Changed, "{h:?}");
        assert_eq!(h.env_sha256, Some(fake_env("1.0.0")), "{}", h.host);
        assert_eq!(b.serving(&h.host).as_deref(), Some("1.0.0"));
        if &h.host != builder {
            let why = venv_reason(&events, &h.host);
            assert!(
                why.starts_with(&format!("unpacked the environment {builder} built (")),
                "{why}"
            );
            assert!(why.contains("no installer ran on this host"), "{why}");
        }
    }
    let why = venv_reason(&events, builder);
    assert!(
        why.contains("built here once, for the job's other hosts"),
        "{why}"
    );
    let said = output(&events, builder).join("\n");
    assert!(said.contains("packed the environment ("), "{said}");
    // Round trips: the builder pays one more than a lone fresh deploy (its pack);
    // a host that unpacks pays no more than that.
    for h in &r.hosts {
        let most = if &h.host == builder { 9 } else { 8 };
        assert!(h.round_trips <= most, "{}: {}", h.host, h.round_trips);
    }
    // The next deploy of the same release reads each host's hash from its marker.
    let (r, _) = b.run(spec("1.0.0")).await;
    assert_eq!(r.changed_steps(), 0);
    assert!(
        r.hosts
            .iter()
            .all(|h| h.env_sha256 == Some(fake_env("1.0.0")))
    );
}

#[tokio::test]
async fn a_host_of_another_platform_builds_its_own_and_says_so() {
    let b = bed("{canary: true}");
    b.fleet.server("web3").state().platform =
        Some("aarch64 glibc-2.36 /usr/bin/python3.11 other".into());
    let (r, events) = b.run(spec("1.0.0")).await;
    assert_eq!(r.status, JobStatus::Succeeded, "{:?}", r.hosts);
    assert_eq!(installed_on(&b), ["web1", "web3"]);
    assert_eq!(unpacked_on(&b), ["web2"]);
    let why = venv_reason(&events, "web3");
    assert!(
        why.contains("its platform differs from web1's: built here"),
        "{why}"
    );
}

#[tokio::test]
async fn a_builder_that_fails_sends_the_others_to_build_their_own() {
    let b = bed("{max_failed: 3}");
    b.fleet.server("web1").state().fail_when = Some("read -r PIP_INDEX_URL".into());
    let (r, events) = b.run(spec("1.0.0")).await;
    let by_host = |h: &str| r.hosts.iter().find(|x| x.host == h).unwrap().clone();
    assert_eq!(by_host("web1").status, HostStatus::Failed);
    for h in ["web2", "web3"] {
        assert_eq!(by_host(h).status, HostStatus::Changed, "{:?}", by_host(h));
        let why = venv_reason(&events, h);
        assert!(
            why.contains("web1 stopped before its build could be shipped: built here"),
            "{h}: {why}"
        );
    }
    assert!(unpacked_on(&b).is_empty());
}

#[tokio::test]
async fn a_build_that_cannot_be_packed_still_serves_its_host_and_the_others_install() {
    let b = bed("{canary: true}");
    b.fleet.server("web1").state().fail_when = Some("--exclude=./.deploy-release".into());
    let (r, events) = b.run(spec("1.0.0")).await;
    assert_eq!(r.status, JobStatus::Succeeded, "{:?}", r.hosts);
    assert_eq!(installed_on(&b), ["web1", "web2", "web3"]);
    let said = output(&events, "web1").join("\n");
    assert!(
        said.contains(
            "packing web1's build failed (exit 1): injected failure: each host builds its own"
        ),
        "{said}"
    );
    let why = venv_reason(&events, "web2");
    assert!(why.contains("packing web1's build failed"), "{why}");
}

#[tokio::test]
async fn one_host_or_check_mode_packs_nothing() {
    let b = bed("{}");
    let mut plan = crate::plan(&b.inv, &b.cfg, &spec("1.0.0")).unwrap();
    plan.hosts.retain(|(h, _)| h.name == "web2");
    let sink = std::sync::Arc::new(super::Collect::default());
    let (r, _) = b.run_plan(plan, Default::default(), sink).await;
    assert_eq!(r.status, JobStatus::Succeeded, "{:?}", r.hosts);
    assert_eq!(packs(&b, "web2"), 0);
    assert_eq!(r.hosts[0].env_sha256, Some(fake_env("1.0.0")));
    let mut s = spec("1.1.0");
    s.check = true;
    let (r, events) = b.run(s).await;
    assert_eq!(r.status, JobStatus::Succeeded, "{:?}", r.hosts);
    for h in ["web1", "web2", "web3"] {
        assert_eq!(packs(&b, h), 0);
        assert!(!venv_reason(&events, h).contains("built here"));
    }
}

#[tokio::test]
async fn an_upgrade_ships_only_the_changes_to_hosts_that_have_the_previous_release() {
    let b = bed("{canary: true}");
    let (r, _) = b.run(spec("1.0.0")).await;
    assert_eq!(r.status, JobStatus::Succeeded, "{:?}", r.hosts);
    // web3 lost its 1.0.0 meanwhile (say, pruned by hand): it takes the whole release.
    b.fleet.server("web3").state().releases.remove("1.0.0");
    let (r, events) = b.run(spec("1.1.0")).await;
    assert_eq!(r.status, JobStatus::Succeeded, "{:?}", r.hosts);
    let linked = |h: &str| b.fleet.server(h).state().linked.contains("1.1.0");
    let unpacked = |h: &str| b.fleet.server(h).state().unpacked.contains("1.1.0");
    assert!(!linked("web1") && !unpacked("web1"), "web1 built it");
    assert!(linked("web2") && !unpacked("web2"));
    assert!(unpacked("web3") && !linked("web3"));
    let why = venv_reason(&events, "web2");
    assert!(
        why.starts_with("unpacked the environment web1 built, as ")
            && why.contains(" kB of changes over release 1.0.0 (its unchanged files linked;"),
        "{why}"
    );
    let why = venv_reason(&events, "web3");
    assert!(
        why.contains("this host has no release 1.0.0 with web1's hash to build on"),
        "{why}"
    );
    for h in &r.hosts {
        assert_eq!(h.env_sha256, Some(fake_env("1.1.0")), "{}", h.host);
    }
}

#[tokio::test]
async fn a_builder_whose_connection_is_lost_after_its_install_sends_the_others_to_build_their_own()
{
    // web1's network goes once it has installed, before its build is packed: the hosts
    // waiting for it build their own, saying why, and web1 fails.
    let b = bed("{max_failed: 3}");
    b.fleet.server("web1").state().die_after = Some("read -r PIP_INDEX_URL".into());
    let (r, events) = b.run(spec("1.0.0")).await;
    let by_host = |h: &str| r.hosts.iter().find(|x| x.host == h).unwrap().clone();
    assert!(by_host("web1").status.is_failure(), "{:?}", by_host("web1"));
    for h in ["web2", "web3"] {
        assert_eq!(by_host(h).status, HostStatus::Changed, "{:?}", by_host(h));
        assert_eq!(b.serving(h).as_deref(), Some("1.0.0"));
        let why = venv_reason(&events, h);
        assert!(
            why.contains("packing web1's build failed: the connection was lost: built here"),
            "{h}: {why}"
        );
    }
    assert!(unpacked_on(&b).is_empty());
}
