//! The sites benchmark (`ci/bench_sites.sh`, ignored in the suite): the same six servers
//! deployed (a) by one gateway that reaches all of them (a container on both site
//! networks, `deploy-gateway apply`, no sites) and (b) through the front door and two
//! site runners (`deploy-gateway apply` on the front door's PostgreSQL, each site's
//! hosts handed to its runner), interleaved, `DEPLOY_BENCH_RUNS` times (default 3).
//! Prints the median, min and max wall time of each and the ratio (b)/(a).
//!
//! Scenarios: `fresh`: a release not on the servers (its directory removed before each
//! run; the hosts' uv cache stays warm, as on a server that deployed before): build,
//! start, health check, switch; `noop`: the live release again.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::gateway_bin;
use crate::support::sites::SitesBed;

const SERVERS: [&str; 6] = ["web1", "web2", "web3", "web4", "web5", "web6"];

struct Whole {
    container: String,
    config: String,
}

/// A container on the bed's network and both sites', with a config of its own (SQLite,
/// the inventory without sites): one gateway that reaches all six servers.
fn whole(bed: &SitesBed) -> Whole {
    let dir = bed.tb.path("whole");
    std::fs::create_dir_all(&dir).unwrap();
    let runner = std::fs::read_to_string(bed.tb.path("runner-a/gateway.toml")).unwrap();
    let inventory = bed
        .tb
        .inventory_text()
        .replace(", site: a}", "}")
        .replace(", site: b}", "}");
    std::fs::write(dir.join("inventory.yml"), inventory).unwrap();
    let config: String = runner
        .lines()
        .filter(|l| {
            !l.starts_with("database") && !l.starts_with("site ") && !l.starts_with("inventory ")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let config = format!(
        "database = {:?}\ninventory = {:?}\n{config}",
        dir.join("gateway.db"),
        dir.join("inventory.yml")
    )
    .replace("gateway_id = \"runner-a\"", "gateway_id = \"whole\"");
    std::fs::write(dir.join("gateway.toml"), config).unwrap();
    let a = bed.runner("a").container.clone();
    let container = a.replace("runner-a", "whole");
    // The same mounts and environment as runner a's: a copy of its container.
    let out = Command::new("docker")
        .args(["inspect", "-f", "{{range .Mounts}}{{.Source}} {{end}}", &a])
        .output()
        .unwrap();
    let mounts = String::from_utf8_lossy(&out.stdout).to_string();
    let image = Command::new("docker")
        .args(["inspect", "-f", "{{.Config.Image}}", &a])
        .output()
        .unwrap();
    let image = String::from_utf8_lossy(&image.stdout).trim().to_string();
    let mut run = Command::new("docker");
    run.args(["run", "-d", "--init", "--name", &container]);
    run.args(["--label", &format!("deploy.testbed={}", bed.tb.name)]);
    run.args([
        "--label",
        &format!("deploy.testbed.owner={}", std::process::id()),
    ]);
    run.args([
        "--network",
        &bed.tb.network,
        "-e",
        &format!("ART_TOKEN={}", bed.token),
    ]);
    for m in mounts.split_whitespace() {
        run.args(["-v", &format!("{m}:{m}")]);
    }
    run.args(["--entrypoint", "sleep", &image, "infinity"]);
    assert!(run.output().unwrap().status.success());
    for site in ["a", "b"] {
        let net = format!("deploy-tb-{}-{site}", bed.tb.name);
        let ok = Command::new("docker")
            .args(["network", "connect", &net, &container])
            .status();
        assert!(ok.unwrap().success());
    }
    Whole {
        container,
        config: dir.join("gateway.toml").display().to_string(),
    }
}

fn timed(mut cmd: Command) -> Duration {
    let t = Instant::now();
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed()
}

fn apply_whole(w: &Whole, version: &str) -> Duration {
    let mut cmd = Command::new("docker");
    cmd.args([
        "exec",
        &w.container,
        gateway_bin(),
        "apply",
        "--config",
        &w.config,
    ]);
    cmd.args(["hello", version, "-e", "staging"]);
    timed(cmd)
}

fn apply_sites(bed: &SitesBed, version: &str) -> Duration {
    let mut cmd = bed.front.command(&["apply"]);
    cmd.args(["hello", version, "-e", "staging"]);
    timed(cmd)
}

/// Removes `version`'s release from every server (it is not live).
fn forget(bed: &SitesBed, version: &str) {
    for s in SERVERS {
        let c = &bed.tb.server(s).container;
        crate::support::exec(c, &format!("rm -rf /srv/apps/hello/releases/{version}"));
    }
}

fn stats(xs: &mut [Duration]) -> (f64, f64, f64) {
    xs.sort();
    let s = |d: Duration| d.as_secs_f64();
    (s(xs[xs.len() / 2]), s(xs[0]), s(xs[xs.len() - 1]))
}

#[test]
#[ignore = "a benchmark: ci/bench_sites.sh runs it"]
fn bench_two_sites_against_one_gateway() {
    let runs: usize = std::env::var("DEPLOY_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let bed = SitesBed::up("sites-bench", "");
    let w = whole(&bed);
    // Both paths once, so that both are warm (uv cached on the hosts, wheels in caches).
    apply_whole(&w, "1.0.0");
    apply_sites(&bed, "1.0.0");
    let (mut fresh, mut noop) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    let versions = ["1.1.0", "1.3.0"];
    for i in 0..runs {
        for (m, mode) in ["one", "sites"].into_iter().enumerate() {
            let v = versions[(2 * i + m) % 2];
            forget(&bed, v);
            let apply = |v: &str| match mode {
                "one" => apply_whole(&w, v),
                _ => apply_sites(&bed, v),
            };
            fresh[m].push(apply(v));
            noop[m].push(apply(v));
            for s in SERVERS {
                assert_eq!(bed.served(s), v, "{s}");
            }
        }
    }
    println!("\n6 servers (3 per site), {runs} runs each, interleaved; wall seconds");
    println!("| scenario | one gateway med (min-max) | two sites med (min-max) | sites/one |");
    println!("|---|---|---|---|");
    for (name, xs) in [("fresh", &mut fresh), ("noop", &mut noop)] {
        let (o, omin, omax) = stats(&mut xs[0]);
        let (s, smin, smax) = stats(&mut xs[1]);
        println!(
            "| {name} | {o:.2} ({omin:.2}-{omax:.2}) | {s:.2} ({smin:.2}-{smax:.2}) | {:.2}x |",
            s / o
        );
    }
}
