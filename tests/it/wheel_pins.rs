//! Issue 26 item 1, the hosts' side: each deploy's hosts install exactly the file the
//! gateway read from the index when it accepted the job (and the ledger recorded), with
//! uv and with pip; `status --live` shows each host's wheel SHA-256; a file swapped on
//! the index after that read (same version, other bytes, a listing that agrees with
//! them) is refused on the host and nothing is switched.

use std::time::{Duration, Instant};

use crate::support::{self, Gateway, Testbed, exec, http_get};

fn index_sha(tb: &Testbed, file: &str) -> String {
    let (code, page) = http_get(tb.index_port, "127.0.0.1", "/simple/hello-app/");
    assert_eq!(code, 200, "{page}");
    let at = page.find(file).unwrap_or_else(|| panic!("{file}: {page}"));
    let s = page[at..].find("#sha256=").expect("a hash") + at + 8;
    page[s..s + 64].to_string()
}

fn docker(args: &[&str]) {
    let ok = std::process::Command::new("docker")
        .args(args)
        .status()
        .unwrap();
    assert!(ok.success(), "docker {args:?}");
}

/// Requests for hello-app's listing the index has answered so far.
fn listing_reads(tb: &Testbed) -> usize {
    let out = std::process::Command::new("docker")
        .args(["logs", &tb.index_container])
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    all.matches("/simple/hello-app/").count()
}

/// Releases `version` while web1 is frozen: the gateway reads the index's listing when
/// it accepts the job; then the wheel's bytes change on the index (its listing follows:
/// pypiserver hashes the file it has); then web1 wakes and installs.
fn release_with_a_swap(tb: &Testbed, gw: &Gateway, token: &str, version: &str) -> support::CliRun {
    let web1 = tb.server("web1").container.clone();
    let before = listing_reads(tb);
    docker(&["pause", &web1]);
    let run = {
        let (gw_args, token) = (version.to_string(), token.to_string());
        let cli = gw.cli(
            Some(&token),
            &["release", "hello", &gw_args, "-e", "staging"],
        );
        std::thread::spawn(move || {
            let mut cli = cli;
            let out = cli.output().unwrap();
            support::CliRun {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into(),
                stderr: String::from_utf8_lossy(&out.stderr).into(),
            }
        })
    };
    let t = Instant::now();
    while listing_reads(tb) == before && t.elapsed() < Duration::from_secs(4) {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    exec(
        &tb.index_container,
        &format!(
            "python3 -c \"import zipfile; z = zipfile.ZipFile('/packages/hello_app-{version}-py3-none-any.whl', 'a'); \
             z.writestr('hello_app/swapped.py', 'x = 1'); z.close()\""
        ),
    );
    docker(&["unpause", &web1]);
    run.join().unwrap()
}

/// The job's stored events, as the API returns them.
fn job_log(gw: &Gateway, token: &str, r: &support::CliRun) -> String {
    let id = r
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("job ")?.split_whitespace().next())
        .unwrap_or_else(|| panic!("no job id in {r:?}"));
    gw.http("GET", &format!("/v1/jobs/{id}/log"), Some(token), None)
        .2
}

fn assert_refused(
    tb: &Testbed,
    gw: &Gateway,
    token: &str,
    r: &support::CliRun,
    version: &str,
    live: &str,
) {
    assert_eq!(r.code, 1, "{r:?}");
    let log = job_log(gw, token, r);
    assert!(
        log.contains("with the SHA-256 the gateway recorded") && log.contains("refused"),
        "the host's install says why: {log}"
    );
    let web1 = tb.server("web1");
    let (status, body) = http_get(web1.http_port, "hello.example.test", "/");
    assert_eq!((status, body.trim()), (200, live), "still on {live}");
    assert_eq!(
        exec(
            &web1.container,
            &format!("test -f /srv/apps/hello/releases/{version}/.deploy-release && echo complete || echo incomplete")
        )
        .trim(),
        "incomplete"
    );
}

fn assert_live_wheel(gw: &Gateway, token: &str, sha: &str) {
    let s = gw.run(Some(token), &["status", "hello", "-e", "staging", "--live"]);
    assert_eq!(s.code, 0, "{s:?}");
    assert!(s.stdout.contains(&format!("wheel sha256 {sha}")), "{s:?}");
    assert!(!s.stdout.contains("!!"), "no flag: {s:?}");
}

#[test]
fn issue26_hosts_install_the_wheel_the_ledger_records_and_refuse_one_swapped_on_the_index() {
    let tb = Testbed::up("wheel-pin", 1);
    let sources = format!(
        "[sources.pypi]\nkind = \"simple\"\nurl = \"http://127.0.0.1:{}/simple/\"\n\
         servers_url = \"http://index:8080/simple/\"\n[applications.hello]\nsource = \"pypi\"\n{}",
        tb.index_port,
        tb.uv_config()
    );
    let gw = Gateway::start_with(Some(&tb), "0.1.0", "0.1.0", Some(&sources), &[]);
    let ann = gw.token("ann", "staging", false);

    // uv (the test bed's default): the host records the index's file, status agrees.
    let sha100 = index_sha(&tb, "hello_app-1.0.0-py3-none-any.whl");
    let r = gw.run(Some(&ann), &["release", "hello", "1.0.0", "-e", "staging"]);
    assert_eq!(r.code, 0, "{r:?}");
    let marker = exec(
        &tb.server("web1").container,
        "cat /srv/apps/hello/releases/1.0.0/.deploy-release",
    );
    // Then the environment's hash (engine `share.rs`).
    let (stamp, env) = marker
        .trim()
        .split_once(" env=")
        .unwrap_or_else(|| panic!("{marker}"));
    assert_eq!(stamp, format!("hello-app 1.0.0 sha256={sha100}"));
    assert_eq!(env.len(), 64, "{marker}");
    assert_live_wheel(&gw, &ann, &sha100);

    // uv: 1.1.0 swapped on the index after the gateway read it: refused.
    let r = release_with_a_swap(&tb, &gw, &ann, "1.1.0");
    assert_refused(&tb, &gw, &ann, &r, "1.1.0", "1.0.0");
    assert_live_wheel(&gw, &ann, &sha100);

    // pip: the swapped 1.1.0, now what the index lists when the gateway reads it, is
    // installed and recorded as such.
    tb.use_pip();
    let sha110 = index_sha(&tb, "hello_app-1.1.0-py3-none-any.whl");
    let r = gw.run(Some(&ann), &["release", "hello", "1.1.0", "-e", "staging"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_live_wheel(&gw, &ann, &sha110);

    // pip: 1.3.0 swapped on the index after the gateway read it: refused.
    let r = release_with_a_swap(&tb, &gw, &ann, "1.3.0");
    assert_refused(&tb, &gw, &ann, &r, "1.3.0", "1.1.0");
    assert_live_wheel(&gw, &ann, &sha110);
}
