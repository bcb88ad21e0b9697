//! A full disk: a server whose `/srv` (a small tmpfs) fills while a release installs
//! fails that host with a plain reason naming the filesystem, keeps serving its live
//! release (HTTP checked during and after), keeps nothing of the failed release, and
//! halts the rollout (the other host, after the canary, is untouched); the lock is
//! freed, and once space is freed the next deploy converges.

use crate::support;

use support::*;

/// Every path under `/srv` but the filler, sorted.
fn srv_listing(container: &str) -> String {
    exec(
        container,
        "find /srv -path /srv/filler -prune -o -print | LC_ALL=C sort",
    )
}

#[test]
fn a_disk_that_fills_during_install_fails_the_canary_plainly_and_keeps_nothing() {
    let t = std::time::Instant::now();
    let tb = Testbed::up_with_small_srv("full-disk", 2, "64m");
    tb.set_inventory(&tb.inventory_text().replace(
        "        groups: [web]\n",
        "        groups: [web]\n        rollout: {canary: true, max_failed: 0}\n",
    ));
    let gw = Gateway::start(Some(&tb), "0.1.0", "0.1.0");
    let ann = gw.token("ann", "staging", false);
    let r = gw.run(Some(&ann), &["release", "hello", "1.0.0", "-e", "staging"]);
    assert_eq!(r.code, 0, "the first release fits: {r:?}");
    let web1 = tb.server("web1").container.clone();
    let before = srv_listing(&web1);
    // Fill /srv but a third of what a release takes: the next virtualenv fits, its
    // install runs out of space midway.
    let release_kb: u64 = exec(&web1, "du -sk /srv/apps/hello/releases/1.0.0 | cut -f1")
        .trim()
        .parse()
        .unwrap();
    let fill = format!(
        "avail=$(df -Pk /srv | awk 'NR==2 {{print $4}}'); \
         fallocate -l $(( (avail - {}) * 1024 )) /srv/filler && df -Pk /srv | tail -1",
        release_kb / 3
    );
    eprintln!(
        "a release takes {release_kb} KiB; /srv after filling: {}",
        exec(&web1, &fill).trim()
    );

    let load = Load::start(&tb.servers);
    let r = gw.run(Some(&ann), &["release", "hello", "1.1.0", "-e", "staging"]);
    let (sent, failed, samples) = load.stop();
    eprintln!("{}{}", r.stdout, r.stderr);
    assert_eq!(r.code, 1, "{r:?}");
    let said = format!("{}{}", r.stdout, r.stderr);
    let reason = said
        .lines()
        .find(|l| l.contains("no space left on /srv while installing hello-app==1.1.0: "))
        .unwrap_or_else(|| panic!("the CLI says why plainly: {said}"));
    assert!(reason.len() < 500, "one short line: {reason}");
    assert!(
        reason.contains("the unfinished release 1.1.0 was removed"),
        "{reason}"
    );
    assert!(!reason.contains("deploy-space:"), "{reason}");
    // Served throughout, and still.
    assert!(sent > 0);
    assert_eq!(
        failed, 0,
        "requests failed while the disk was full: {samples:?}"
    );
    for s in &tb.servers {
        assert_eq!(served_version(s), "1.0.0", "{}", s.name);
    }
    // Nothing of 1.1.0 is left on web1; web2 never started.
    assert_eq!(
        srv_listing(&web1),
        before,
        "web1's /srv as before the deploy"
    );
    let web2 = &tb.server("web2").container;
    assert_eq!(
        exec(web2, "ls /srv/apps/hello/releases").trim(),
        "1.0.0",
        "web2 untouched"
    );

    // Space freed: the next deploy (the lock was freed) converges everywhere.
    exec(&web1, "rm -f /srv/filler");
    let r = gw.run(Some(&ann), &["release", "hello", "1.1.0", "-e", "staging"]);
    assert_eq!(r.code, 0, "{r:?}");
    for s in &tb.servers {
        assert_eq!(served_version(s), "1.1.0", "{}", s.name);
    }
    eprintln!("full disk test: {:?}", t.elapsed());
}
