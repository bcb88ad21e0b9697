//! Bad input gets an error a user can act on (file, line, field, what was expected), a
//! non-zero exit, and nothing runs: these go through the real `deploy-gateway` binary
//! with an inventory whose only host cannot be reached, so any attempt to connect would
//! show up as a different error and exit code.

use std::path::PathBuf;
use std::process::{Command, Output};

const INVENTORY: &str = "\
hosts:
  web1:
    address: 127.0.0.1
    port: 1
    groups: [web]
applications:
  hello:
    package: hello-app
    index_url: http://index:8080/simple/
    wsgi: hello_app:app
    port: 8000
    server_names: [hello.example.test]
    environments:
      staging:
        groups: [web]
";

struct Case {
    dir: tempfile::TempDir,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

impl Case {
    fn new(inventory: &str) -> Case {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("inventory.yml"), inventory).unwrap();
        let st = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.path().join("key"))
            .status()
            .unwrap();
        assert!(st.success());
        for sub in ["playbooks", "templates"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
            for f in std::fs::read_dir(root().join(sub)).unwrap() {
                let f = f.unwrap();
                std::fs::copy(f.path(), dir.path().join(sub).join(f.file_name())).unwrap();
            }
        }
        Case { dir }
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    fn write(&self, p: &str, text: &str) {
        std::fs::write(self.path(p), text).unwrap();
    }
    fn apply(&self, app: &str, version: &str) -> Output {
        Command::new(env!("CARGO_BIN_EXE_deploy-gateway"))
            .arg("apply")
            .arg("--inventory")
            .arg(self.path("inventory.yml"))
            .arg("--known-hosts")
            .arg(self.path("known_hosts"))
            .arg("--key")
            .arg(self.path("key"))
            .arg("--playbooks")
            .arg(self.path("playbooks"))
            .arg("--templates")
            .arg(self.path("templates"))
            .args([app, version, "-e", "staging"])
            .output()
            .unwrap()
    }
}

/// Asserts a usage error (exit 2) that nothing ran, and returns stderr.
fn refused(out: Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(2),
        "stderr: {stderr}\nstdout: {stdout}"
    );
    assert!(stdout.is_empty(), "nothing may run: {stdout}");
    assert!(!stderr.contains("cannot connect"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

fn file(case: &Case, p: &str) -> String {
    case.path(p).display().to_string()
}

#[test]
fn the_fixture_itself_is_valid_so_each_case_tests_one_thing() {
    let c = Case::new(INVENTORY);
    let out = c.apply("hello", "1.0.0");
    // Valid input gets as far as connecting (and fails there: exit 1, not 2).
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("cannot connect to 127.0.0.1:1"));
}

#[test]
fn malformed_yaml_names_file_and_line() {
    let c = Case::new(&INVENTORY.replace(
        "    groups: [web]\napplications",
        "    groups: [web\napplications",
    ));
    let err = refused(c.apply("hello", "1.0.0"));
    assert!(
        err.starts_with(&format!("deploy-gateway: {}:", file(&c, "inventory.yml"))),
        "{err}"
    );
    assert!(
        err.split(':').nth(2).unwrap().trim().parse::<u32>().is_ok(),
        "a line number: {err}"
    );
}

#[test]
fn an_unknown_field_names_its_line_and_the_expected_ones() {
    let c = Case::new(&INVENTORY.replace("    port: 8000\n", "    port: 8000\n    wokers: 3\n"));
    let err = refused(c.apply("hello", "1.0.0"));
    assert!(
        err.contains(&format!("{}:12:", file(&c, "inventory.yml"))),
        "{err}"
    );
    assert!(
        err.contains("unknown field `wokers`") && err.contains("workers"),
        "{err}"
    );
}

#[test]
fn an_unknown_step_lists_the_valid_ones() {
    let c = Case::new(INVENTORY);
    let pb = std::fs::read_to_string(c.path("playbooks/python-web.yml")).unwrap();
    c.write(
        "playbooks/python-web.yml",
        &pb.replace("  - switch ", "  - swicth "),
    );
    let err = refused(c.apply("hello", "1.0.0"));
    assert!(
        err.contains(&format!("{}:", file(&c, "playbooks/python-web.yml"))),
        "{err}"
    );
    assert!(err.contains("swicth"), "{err}");
    for step in deploy::engine::step_names() {
        assert!(err.contains(step), "should list {step}: {err}");
    }
}

#[test]
fn a_missing_template_variable_names_template_line_and_variable() {
    let c = Case::new(INVENTORY);
    let t = std::fs::read_to_string(c.path("templates/nginx-site.conf.j2")).unwrap();
    c.write(
        "templates/nginx-site.conf.j2",
        &t.replace("    listen 80;", "    listen {{ app.listen }};"),
    );
    let err = refused(c.apply("hello", "1.0.0"));
    let line = t.lines().position(|l| l == "    listen 80;").unwrap() + 1;
    assert!(
        err.contains(&format!(
            "{}:{line}: template:",
            file(&c, "templates/nginx-site.conf.j2")
        )),
        "{err}"
    );
    assert!(
        err.contains("undefined") && err.contains("app.listen"),
        "{err}"
    );
}

#[test]
fn a_host_in_no_group_is_refused() {
    let c = Case::new(&INVENTORY.replace("    port: 1\n    groups: [web]\n", "    port: 1\n"));
    let err = refused(c.apply("hello", "1.0.0"));
    assert!(
        err.contains(&format!(
            "{}:3: hosts.web1.groups:",
            file(&c, "inventory.yml")
        )),
        "{err}"
    );
    assert!(err.contains("in no group"), "{err}");
}

#[test]
fn versions_and_names_that_could_smuggle_shell_are_refused() {
    let c = Case::new(INVENTORY);
    for version in [
        "1.0;touch /tmp/pwned",
        "$(id)",
        "1.0 && reboot",
        "../../etc",
        "`id`",
    ] {
        let err = refused(c.apply("hello", version));
        assert!(err.contains("version: invalid version"), "{version}: {err}");
    }
    let err = refused(c.apply("hello;id", "1.0.0"));
    assert!(err.contains("invalid application name"), "{err}");
    let c = Case::new(&INVENTORY.replace("wsgi: hello_app:app", "wsgi: \"hello_app:app; id\""));
    let err = refused(c.apply("hello", "1.0.0"));
    assert!(
        err.contains("applications.hello.wsgi: invalid entry point"),
        "{err}"
    );
}

#[test]
fn an_unknown_environment_lists_the_known_ones() {
    let c = Case::new(INVENTORY);
    let out = Command::new(env!("CARGO_BIN_EXE_deploy-gateway"))
        .args(["apply", "hello", "1.0.0", "-e", "prod", "--inventory"])
        .arg(c.path("inventory.yml"))
        .arg("--key")
        .arg(c.path("key"))
        .arg("--playbooks")
        .arg(c.path("playbooks"))
        .arg("--templates")
        .arg(c.path("templates"))
        .output()
        .unwrap();
    let err = refused(out);
    assert!(
        err.contains("no environment prod that this token may read (yours: staging)"),
        "{err}"
    );
}

#[test]
fn the_shipped_example_inventory_parses() {
    let inv = deploy::inventory::Inventory::load(&root().join("inventory/example.yml")).unwrap();
    let app = inv.app("hello").unwrap();
    let (env, hosts) = inv.hosts_for(app, "production").unwrap();
    assert_eq!(env.parallel, 5);
    assert_eq!(
        hosts.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(),
        ["web1", "web2"]
    );
    assert_eq!(app.health.retries, 30);
}

#[test]
fn artifact_settings_with_bad_values_or_no_way_to_apply_them_are_refused() {
    let c =
        Case::new(&INVENTORY.replace("    port: 8000\n", "    port: 8000\n    installer: conda\n"));
    let err = refused(c.apply("hello", "1.0.0"));
    assert!(
        err.contains("conda") && err.contains("pip") && err.contains("uv"),
        "{err}"
    );
    let c = Case::new(&INVENTORY.replace(
        "        groups: [web]\n",
        "        groups: [web]\n        delivery: relay\n",
    ));
    let err = refused(c.apply("hello", "1.0.0"));
    assert!(
        err.contains("applications.hello.environments.staging.delivery")
            && err.contains("deploy-gateway serve"),
        "{err}"
    );
    let c = Case::new(&INVENTORY.replace("    index_url: http://index:8080/simple/\n", ""));
    let err = refused(c.apply("hello", "1.0.0"));
    assert!(err.contains("index_url"), "{err}");
}

#[test]
fn bad_process_hook_and_static_fields_name_their_line_and_field() {
    let with =
        |extra: &str| INVENTORY.replace("    port: 8000\n", &format!("    port: 8000\n{extra}"));
    let cases = [
        (
            "    processes:\n      worker: {command: celery, cont: 2}\n",
            ":13:",
            "unknown field `cont`",
        ),
        (
            "    hooks:\n      before_switch:\n        - {name: migrate}\n",
            ":14: applications.hello.hooks.before_switch[0].command:",
            "expected a command",
        ),
        (
            "    static: {url: static/}\n",
            ":12: applications.hello.static.url:",
            "leading and a trailing `/`",
        ),
    ];
    for (extra, at, what) in cases {
        let c = Case::new(&with(extra));
        let err = refused(c.apply("hello", "1.0.0"));
        assert!(
            err.contains(&format!("{}{at}", file(&c, "inventory.yml"))),
            "{at}: {err}"
        );
        assert!(err.contains(what), "{what}: {err}");
    }
}

#[test]
fn two_environments_sharing_a_host_are_refused_naming_both_and_the_host() {
    let c = Case::new(&INVENTORY.replace(
        "      staging:\n        groups: [web]\n",
        "      staging:\n        groups: [web]\n      canary:\n        groups: [web]\n",
    ));
    let err = refused(c.apply("hello", "1.0.0"));
    assert!(
        err.contains("applications.hello.environments.staging.groups")
            && err.contains("environments `canary` and `staging` both select host `web1`"),
        "{err}"
    );
}
