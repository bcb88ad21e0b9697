//! Artifacts: an Artifactory repository (ci/artifactory_stub.py, JFrog's API over the
//! test bed's wheels) reached by the gateway with its own credentials, relayed to servers
//! that have no route to it or used directly with credentials that only the installer's
//! environment sees (with pip behind the relay, with uv directly); hash verification;
//! uv shipped once and building the same release as pip.

use crate::support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use deploy::wire::StepStatus;
use support::*;

/// Captures `ps auxww` on every server, over and over, until dropped.
struct PsWatch {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<String>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl PsWatch {
    fn start(containers: Vec<String>) -> PsWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, v) = (stop.clone(), seen.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                for c in &containers {
                    let out = std::process::Command::new("docker")
                        .args(["exec", c, "ps", "auxww"])
                        .output();
                    if let Ok(o) = out {
                        v.lock()
                            .unwrap()
                            .push(String::from_utf8_lossy(&o.stdout).into_owned());
                    }
                }
            }
        });
        PsWatch {
            stop,
            seen,
            handle: Some(handle),
        }
    }
    fn finish(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.take().unwrap().join().unwrap();
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

/// Files under / (but /proc, /sys, /dev) of a container that contain `secret`.
fn files_containing(container: &str, secret: &str) -> String {
    exec(
        container,
        &format!(
            "grep -rlsF --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev -e '{secret}' / || true"
        ),
    )
}

/// The job's stored events, as the admin API returns them.
fn job_log(gw: &Gateway, token: &str, r: &CliRun) -> String {
    let path = format!("/v1/jobs/{}/log", r.job_id());
    gw.http("GET", &path, Some(token), None).2
}

/// `deploy release hello VERSION -e staging` while `ps` is captured on every server;
/// asserts it succeeded and every server serves VERSION.
fn release_watching_ps(
    tb: &Testbed,
    gw: &Gateway,
    token: &str,
    version: &str,
) -> (CliRun, Vec<String>) {
    let ps = PsWatch::start(tb.servers.iter().map(|s| s.container.clone()).collect());
    let r = gw.run(Some(token), &["release", "hello", version, "-e", "staging"]);
    let ps = ps.finish();
    assert_eq!(r.code, 0, "{r:?}");
    for s in &tb.servers {
        assert_eq!(served_version(s), version);
    }
    (r, ps)
}

fn artifactory_source(tb: &Testbed, auth: &str, servers_url: bool) -> String {
    let servers = if servers_url {
        "servers_url = \"http://index:8081/artifactory\"\n"
    } else {
        ""
    };
    format!(
        "[sources.artifactory]\nkind = \"artifactory\"\nurl = \"http://127.0.0.1:{}/artifactory\"\n\
         repository = \"pypi-local\"\n{servers}{auth}\n[applications.hello]\nsource = \"artifactory\"\n",
        tb.artifactory_port
    )
}

/// Asserts that `secret` is in no file of any server, in no `ps` capture, and in none of
/// the gateway's log, state file, job events or the CLI's output.
fn assert_no_leak(
    tb: &Testbed,
    gw: &Gateway,
    admin: &str,
    jobs: &[String],
    cli: &[CliRun],
    ps: &[String],
    secret: &str,
) {
    // The probe can fail: the stub's own credentials file holds the secret.
    assert!(
        files_containing(&tb.index_container, secret).contains("/stub/credentials"),
        "the grep finds the secret where it is"
    );
    for s in &tb.servers {
        let found = files_containing(&s.container, secret);
        assert!(
            found.trim().is_empty(),
            "secret in files of {}: {found}",
            s.name
        );
    }
    assert!(
        ps.iter().any(|p| p.contains("pip install")),
        "ps was captured while an installer ran"
    );
    for p in ps {
        assert!(!p.contains(secret), "secret in the process list:\n{p}");
    }
    let mut haystacks = vec![
        ("gateway log", gw.log()),
        (
            "state file",
            String::from_utf8_lossy(&gw.db_bytes()).into_owned(),
        ),
    ];
    for id in jobs {
        let (_, _, log) = gw.http("GET", &format!("/v1/jobs/{id}/log"), Some(admin), None);
        assert!(log.contains("job_finished"), "{log}");
        haystacks.push(("events", log));
    }
    for r in cli {
        haystacks.push(("CLI output", format!("{}{}", r.stdout, r.stderr)));
    }
    for (what, text) in &haystacks {
        assert!(!text.contains(secret), "the secret leaked into the {what}");
    }
}

#[test]
fn relay_serves_servers_without_a_route_with_one_download_per_wheel_and_no_secret_leaks() {
    let tb = Testbed::up_with("art-relay", 3, true);
    tb.use_pip(); // pip unless the test names uv (the test bed's default is uv)
    // No route: the servers cannot even resolve the index.
    let probe = std::process::Command::new("docker")
        .args(["exec", &tb.server("web1").container])
        .args([
            "curl",
            "-sS",
            "-m",
            "3",
            "http://index:8081/artifactory/api/system/ping",
        ])
        .output()
        .unwrap();
    assert!(!probe.status.success(), "web1 must not reach the index");

    tb.set_inventory(&tb.inventory_text().replace(
        "        groups: [web]\n",
        "        groups: [web]\n        delivery: relay\n",
    ));
    let token = tb.artifactory_credential("token");
    let gw = Gateway::start_with(
        Some(&tb),
        "0.1.0",
        "0.1.0",
        Some(&artifactory_source(&tb, "token_env = \"ART_TOKEN\"", false)),
        &[("ART_TOKEN", &token)],
    );
    let ann = gw.token("ann", "staging", false);
    let admin = gw.token("root", "", true);

    // Versions come from Artifactory's simple API, through the gateway's token.
    let versions = gw.run(Some(&ann), &["versions", "hello"]);
    assert_eq!(versions.code, 0, "{versions:?}");
    assert!(versions.stdout.contains("1.4.0"), "{versions:?}");

    let (r, ps) = release_watching_ps(&tb, &gw, &ann, "1.0.0");

    // Three servers, one download of each wheel from the repository.
    let log = tb.artifactory_log();
    for wheel in [
        "hello_app-1.0.0-py3-none-any.whl",
        "gunicorn-27.0.1-py3-none-any.whl",
    ] {
        let downloads = log
            .lines()
            .filter(|l| l.starts_with("GET ") && l.contains("/packages/") && l.contains(wheel))
            .count();
        assert_eq!(downloads, 1, "{wheel} downloads in the access log:\n{log}");
    }
    assert!(
        !log.lines().any(|l| l.ends_with(" 401")),
        "the gateway always authenticated:\n{log}"
    );
    // One listing per project for the whole job: all hosts saw the same snapshot.
    let listings = log
        .lines()
        .filter(|l| l.contains("/simple/gunicorn/"))
        .count();
    assert_eq!(listings, 1, "{log}");
    let events = job_log(&gw, &admin, &r);
    assert!(
        events.contains("relay: fetched hello_app-1.0.0-py3-none-any.whl"),
        "{events}"
    );

    // The two wheels sit in the relay's cache, named by their SHA-256.
    let cached = relay_cache(&gw);
    assert_eq!(cached.len(), 2, "{cached:?}");
    assert_no_leak(&tb, &gw, &admin, &[r.job_id()], &[r, versions], &ps, &token);
}

#[test]
fn direct_delivery_keeps_the_credential_in_the_installer_environment_only() {
    let tb = Testbed::up("art-direct", 2);
    tb.use_pip(); // pip unless the test names uv (the test bed's default is uv)
    let password = tb.artifactory_credential("password");
    std::fs::write(tb.path("art-password"), format!("{password}\n")).unwrap();
    let auth = format!(
        "username = \"deploy-svc\"\npassword_file = {:?}",
        tb.path("art-password")
    );
    // The fast path: uv, shipped by the gateway.
    tb.set_inventory(&tb.inventory_text().replace(
        "    wsgi: hello_app:app\n",
        "    wsgi: hello_app:app\n    installer: uv\n",
    ));
    let sources = artifactory_source(&tb, &auth, true) + &tb.uv_config();
    let gw = Gateway::start_with(Some(&tb), "0.1.0", "0.1.0", Some(&sources), &[]);
    let ann = gw.token("ann", "staging", false);
    let admin = gw.token("root", "", true);

    let (r, ps) = release_watching_ps(&tb, &gw, &ann, "1.1.0");
    // The server that built the release fetched from the repository itself,
    // authenticated; the other unpacked its build (engine `share.rs`).
    let log = tb.artifactory_log();
    // (uv may GET a wheel twice: once for its metadata, once to install it.)
    let got = log
        .lines()
        .filter(|l| {
            l.starts_with("GET ")
                && l.contains("hello_app-1.1.0-py3-none-any.whl")
                && l.ends_with(" 200")
        })
        .count();
    assert!(got >= 1, "the building server downloads the wheel:\n{log}");
    assert!(
        !log.lines().any(|l| l.ends_with(" 401")),
        "every request was authenticated:\n{log}"
    );
    let events = job_log(&gw, &admin, &r);
    assert!(events.contains("uv pip install"), "{events}");
    assert!(events.contains("unpacked the environment web"), "{events}");
    assert_no_leak(&tb, &gw, &admin, &[r.job_id()], &[r], &ps, &password);
}

#[test]
fn a_wheel_whose_hash_does_not_match_the_index_is_refused_and_the_host_stays() {
    let tb = Testbed::up("art-hash", 1);
    tb.use_pip(); // pip unless the test names uv (the test bed's default is uv)
    // hello: pip, directly; hello-relay: pip through the relay (an application of its
    // own: two environments may not share a host); hello-uv: uv.
    let inv = tb.inventory_text()
        + "  hello-relay:\n    package: hello-app\n    wsgi: hello_app:app\n    port: 8200\n\
           \x20   server_names: [hello-relay.example.test]\n    environments:\n      relayed:\n        groups: [web]\n        delivery: relay\n"
        + "  hello-uv:\n    package: hello-app\n    wsgi: hello_app:app\n    installer: uv\n    port: 8100\n\
           \x20   server_names: [hello-uv.example.test]\n    environments:\n      staging:\n        groups: [web]\n";
    tb.set_inventory(&inv);
    let key = tb.artifactory_credential("api_key");
    let sources = artifactory_source(
        &tb,
        "username = \"deploy-svc\"\napi_key_env = \"ART_KEY\"",
        true,
    ) + "[applications.hello-uv]\nsource = \"artifactory\"\n"
        + "[applications.hello-relay]\nsource = \"artifactory\"\n"
        + &tb.uv_config();
    let gw = Gateway::start_with(
        Some(&tb),
        "0.1.0",
        "0.1.0",
        Some(&sources),
        &[("ART_KEY", &key)],
    );
    let ann = gw.token("ann", "staging,relayed", false);
    let web1 = tb.server("web1");
    for (app, env) in [
        ("hello", "staging"),
        ("hello-uv", "staging"),
        ("hello-relay", "relayed"),
    ] {
        let r = gw.run(Some(&ann), &["release", app, "1.0.0", "-e", env]);
        assert_eq!(r.code, 0, "{r:?}");
    }

    // What the relay cached for the 1.0.0 deploys (hello-relay's wheels).
    let cached_before = relay_cache(&gw);

    // The repository listed 1.1.0 with its checksum at upload; now the bytes change (a
    // valid wheel with one more file: only its hash gives it away).
    exec(
        &tb.index_container,
        "python3 -c \"import zipfile; z = zipfile.ZipFile('/packages/hello_app-1.1.0-py3-none-any.whl', 'a'); \
         z.writestr('hello_app/extra.py', 'x = 1'); z.close()\"",
    );
    for (app, env, why) in [
        ("hello", "staging", "THESE PACKAGES DO NOT MATCH THE HASHES"),
        (
            "hello-relay",
            "relayed",
            "relay: refused hello_app-1.1.0-py3-none-any.whl: its SHA-256 is",
        ),
        (
            "hello-uv",
            "staging",
            "Hash mismatch for `hello-app==1.1.0`",
        ),
    ] {
        let r = gw.run(Some(&ann), &["release", app, "1.1.0", "-e", env]);
        assert_eq!(r.code, 1, "{app} {env}: {r:?}");
        let all = format!("{}{}", r.stdout, r.stderr);
        assert!(
            all.contains("step install failed"),
            "{app} {env}: the install step fails: {all}"
        );
        let events = job_log(&gw, &ann, &r);
        assert!(
            events.contains(why),
            "{app} {env}: expected {why:?} in {events}"
        );
        let (status, body) = http_get(web1.http_port, &format!("{app}.example.test"), "/");
        assert_eq!(
            (status, body.trim()),
            (200, "1.0.0"),
            "{app} {env}: still on 1.0.0"
        );
        assert_eq!(
            exec(
                &web1.container,
                &format!("readlink /srv/apps/{app}/current")
            )
            .trim(),
            "releases/1.0.0"
        );
        assert_eq!(
            exec(
                &web1.container,
                &format!("test -f /srv/apps/{app}/releases/1.1.0/.deploy-release && echo complete || echo incomplete")
            )
            .trim(),
            "incomplete"
        );
    }
    // The relay's download of the tampered 1.1.0 (pip stops there) was refused:
    // nothing of it stays in the cache, not even a partial file.
    let cached = relay_cache(&gw);
    assert_eq!(cached, cached_before, "only the 1.0.0 deploy's files");
}

/// Files in the gateway's relay cache.
fn relay_cache(gw: &Gateway) -> Vec<String> {
    let mut files = walk(&gw.dir.path().join("state/relay-cache"));
    files.sort();
    files
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

#[test]
fn uv_is_shipped_once_and_builds_the_same_release_as_pip() {
    let tb = Testbed::up("art-uv", 2);
    tb.use_pip(); // pip unless the test names uv (the test bed's default is uv)
    // One application with `installer: uv`, two environments of one host each.
    let inv = tb
        .inventory_text()
        .replace(
            "    environments:\n      staging:\n        groups: [web]\n",
            "    environments:\n      one:\n        groups: [g1]\n      two:\n        groups: [g2]\n",
        )
        .replacen("    groups: [web]\n", "    groups: [g1]\n", 1)
        .replacen("    groups: [web]\n", "    groups: [g2]\n", 1)
        .replace("    wsgi: hello_app:app\n", "    wsgi: hello_app:app\n    installer: uv\n");
    assert!(
        inv.contains("groups: [g2]") && !inv.contains("[web]"),
        "{inv}"
    );
    tb.set_inventory(&inv);
    let deploy = |env: &str, version: &str, uv: bool| {
        let mut cfg = tb.config();
        if !uv {
            cfg.uv = None;
        }
        let inv = deploy::inventory::Inventory::load(&tb.path("inventory.yml")).unwrap();
        let spec = deploy::engine::JobSpec {
            app: "hello".into(),
            env: env.into(),
            version: version.into(),
            check: false,
            no_install: false,
            restart: false,
            batch: None,
            index: None,
            wheel: None,
        };
        let plan = deploy::engine::plan(&inv, &cfg, &spec).unwrap();
        let sink = Arc::new(deploy::engine::Collect::default());
        let rt = tokio::runtime::Runtime::new().unwrap();
        let result = rt.block_on(deploy::engine::run(plan, Arc::new(cfg), sink.clone()));
        let events = std::mem::take(&mut *sink.0.lock().unwrap());
        Deployed { result, events }
    };
    // The gateway has no uv binary: pip, and the report says why.
    let pip = deploy("one", "1.1.0", false);
    assert_eq!(
        pip.result.status,
        deploy::wire::JobStatus::Succeeded,
        "{:?}",
        pip.result
    );
    let (_, why, _) = pip.step("web1", "venv");
    assert!(
        why.contains("python3 -m venv") && why.contains("no uv binary"),
        "{why}"
    );

    // With a binary: shipped once, then found by its checksum.
    let uv = deploy("two", "1.1.0", true);
    assert_eq!(
        uv.result.status,
        deploy::wire::JobStatus::Succeeded,
        "{:?}",
        uv.result
    );
    let (st, why, _) = uv.step("web2", "venv");
    assert_eq!(st, StepStatus::Changed);
    assert!(
        why.contains("uv venv") && why.contains("shipped uv 0.13.9"),
        "{why}"
    );
    let (_, why, _) = uv.step("web2", "install");
    assert!(why.contains("uv pip install"), "{why}");
    let again = deploy("two", "1.0.0", true);
    let (_, why, _) = again.step("web2", "venv");
    assert!(why.contains("uv venv") && !why.contains("shipped"), "{why}");
    assert_eq!(served_version(tb.server("web2")), "1.0.0");
    let uvs = exec(
        &tb.server("web2").container,
        "ls -d /home/deploy/.cache/deploy/uv-*",
    );
    assert_eq!(uvs.lines().count(), 1, "{uvs}");

    // Same distributions either way (pip's own tools aside).
    let dists = |c: &str| -> Vec<String> {
        let mut v: Vec<String> = exec(
            c,
            "ls /srv/apps/hello/releases/1.1.0/lib/python3*/site-packages | grep dist-info$",
        )
        .lines()
        .filter(|l| !l.starts_with("pip-") && !l.starts_with("setuptools-"))
        .map(str::to_string)
        .collect();
        v.sort();
        v
    };
    let (a, b) = (
        dists(&tb.server("web1").container),
        dists(&tb.server("web2").container),
    );
    assert_eq!(a, b);
    assert_eq!(
        a,
        ["gunicorn-27.0.1.dist-info", "hello_app-1.1.0.dist-info"]
    );
    assert_eq!(served_version(tb.server("web1")), "1.1.0");
}
