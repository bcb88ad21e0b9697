//! `deploy-gateway check-config` as the binary runs it: a good config is `ok:` and exit 0,
//! a broken one each problem (file, line, field) and exit 2; neither opens the database,
//! listens or connects (the inventory's hosts are unreachable ports).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::support::root;

const INVENTORY: &str = "\
hosts:
  web1:
    address: 127.0.0.1
    port: 1
    groups: [web]
applications:
  hello:
    package: hello-app
    index_url: http://index.test/simple/
    wsgi: hello_app:app
    port: 8000
    server_names: [hello.example.test]
    environments:
      staging:
        groups: [web]
";

/// A gateway's directory: config (database in `state/`), inventory, key, pinned keys,
/// and the repository's playbooks and templates by absolute path.
fn bastion() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| dir.path().join(f);
    std::fs::write(
        p("gateway.toml"),
        format!(
            "listen = \"127.0.0.1:1\"\ndatabase = \"state/gateway.db\"\ninventory = \"inventory.yml\"\n\
             known_hosts = \"known_hosts\"\nssh_key = \"key\"\nplaybooks = \"{}\"\ntemplates = \"{}\"\n\
             [cli]\noldest = \"0.1.0\"\nnewest = \"0.1.0\"\nupgrade_command = \"x\"\n",
            root().join("playbooks").display(),
            root().join("templates").display()
        ),
    )
    .unwrap();
    std::fs::write(p("inventory.yml"), INVENTORY).unwrap();
    std::fs::write(p("known_hosts"), "[127.0.0.1]:1 SHA256:AAAA\n").unwrap();
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(p("key"))
        .status()
        .unwrap();
    assert!(st.success());
    dir
}

fn check_config(config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deploy-gateway"))
        .args(["check-config", "--config"])
        .arg(config)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn a_good_config_is_ok_with_its_summary_and_exit_0() {
    let dir = bastion();
    let config = dir.path().join("gateway.toml");
    let out = check_config(&config);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(
        stdout,
        format!(
            "ok: {}: 1 application, 1 environment, 1 host\n",
            config.display()
        )
    );
    assert!(stderr.is_empty(), "{stderr}");
    assert!(!dir.path().join("state").exists(), "no database was made");
}

#[test]
fn a_broken_config_prints_each_problem_and_exits_2() {
    let dir = bastion();
    let p = |f: &str| dir.path().join(f);
    std::fs::set_permissions(p("key"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::write(
        p("inventory.yml"),
        INVENTORY.replace(
            "    wsgi: hello_app:app\n",
            "    wsgi: hello_app:app\n    wokers: 3\n",
        ),
    )
    .unwrap();
    let out = check_config(&p("gateway.toml"));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    let file = |f: &str| p(f).display().to_string();
    assert!(
        lines[0].starts_with(&format!("{}:5: ssh_key: ", file("gateway.toml")))
            && lines[0].contains("mode 0640"),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with(&format!("{}:11: ", file("inventory.yml")))
            && lines[1].contains("unknown field `wokers`"),
        "{stderr}"
    );
    assert!(lines[2].contains("2 problem(s)"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // A config that is not TOML: its line, and still no panic.
    std::fs::write(p("gateway.toml"), "listen = \n").unwrap();
    let out = check_config(&p("gateway.toml"));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with(&format!("{}:1: ", file("gateway.toml"))),
        "{stderr}"
    );
    // A config that is not there.
    let out = check_config(&PathBuf::from("/nonexistent/gateway.toml"));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read the gateway config"));
}
