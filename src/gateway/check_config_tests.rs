//! Tests of `check-config` (`check_config.rs`): a good config and its summary, and broken
//! ones whose every problem is reported with its file, line and field.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use super::*;

const INVENTORY: &str = "\
hosts:
  web1:
    address: 127.0.0.1
    port: 2222
    groups: [web]
  web2:
    address: 127.0.0.1
    port: 2223
    groups: [stage]
applications:
  hello:
    package: hello-app
    index_url: http://index.test/simple/
    wsgi: hello_app:app
    port: 8000
    server_names: [hello.example.test]
    environments:
      production:
        groups: [web]
      staging:
        groups: [stage]
        delivery: relay
";

const CONFIG: &str = "\
listen = \"127.0.0.1:0\"
database = \"state/gateway.db\"
inventory = \"inventory.yml\"
known_hosts = \"known_hosts\"
ssh_key = \"id_ed25519\"
playbooks = \"playbooks\"
templates = \"templates\"
[cli]
oldest = \"0.1.0\"
newest = \"0.1.0\"
upgrade_command = \"x\"
";

/// A bastion's files in a temporary directory: the config, an inventory, a key (0600),
/// pinned keys for web1 only, and copies of the repository's playbooks and templates.
struct Bed {
    dir: tempfile::TempDir,
}

impl Bed {
    fn new() -> Bed {
        let dir = tempfile::tempdir().unwrap();
        let bed = Bed { dir };
        bed.write("gateway.toml", CONFIG);
        bed.write("inventory.yml", INVENTORY);
        bed.write("known_hosts", "[127.0.0.1]:2222 SHA256:AAAA\n");
        let st = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(bed.path("id_ed25519"))
            .status()
            .expect("ssh-keygen (openssh-client) runs");
        assert!(st.success());
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        for sub in ["playbooks", "templates"] {
            std::fs::create_dir(bed.path(sub)).unwrap();
            for f in std::fs::read_dir(root.join(sub)).unwrap() {
                let f = f.unwrap();
                std::fs::copy(f.path(), bed.path(sub).join(f.file_name())).unwrap();
            }
        }
        bed
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    fn write(&self, p: &str, text: &str) {
        std::fs::write(self.path(p), text).unwrap();
    }
    fn chmod(&self, p: &str, mode: u32) {
        std::fs::set_permissions(self.path(p), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    fn check(&self) -> Result<Summary, Vec<InputError>> {
        check(&self.path("gateway.toml"))
    }
    fn problems(&self) -> Vec<InputError> {
        match self.check() {
            Ok(s) => panic!("expected problems, got {}", s.line()),
            Err(p) => p,
        }
    }
}

#[test]
fn a_good_config_is_summarised_and_no_database_is_made() {
    let bed = Bed::new();
    let s = bed.check().unwrap_or_else(|p| panic!("{p:?}"));
    assert_eq!((s.applications, s.environments, s.hosts), (1, 2, 2));
    assert_eq!(
        s.line(),
        format!(
            "ok: {}: 1 application, 2 environments, 2 hosts",
            bed.path("gateway.toml").display()
        )
    );
    // web2 has no pin: a note naming the command, not a problem.
    assert_eq!(s.notes.len(), 1, "{:?}", s.notes);
    assert!(s.notes[0].contains("trust-host web2"), "{}", s.notes[0]);
    assert!(!bed.path("state").exists(), "the database was not opened");
}

#[test]
fn every_problem_is_reported_with_its_file_line_and_field() {
    let bed = Bed::new();
    bed.chmod("id_ed25519", 0o644);
    bed.chmod("known_hosts", 0o666);
    bed.write(
        "inventory.yml",
        &INVENTORY.replace("port: 8000", "port: eighty"),
    );
    let p = bed.problems();
    assert_eq!(p.len(), 3, "{p:#?}");
    let cfg = bed.path("gateway.toml");
    assert_eq!(
        (&p[0].file, p[0].line, p[0].field.as_str()),
        (&cfg, Some(5), "ssh_key")
    );
    assert!(
        p[0].message.contains("mode 0644") && p[0].message.contains("chmod 600"),
        "{}",
        p[0]
    );
    assert_eq!(
        (&p[1].file, p[1].line, p[1].field.as_str()),
        (&cfg, Some(4), "known_hosts")
    );
    assert!(p[1].message.contains("mode 0666"), "{}", p[1]);
    assert_eq!(p[2].file, bed.path("inventory.yml"));
    assert_eq!(p[2].line, Some(15));
    assert!(p[2].field.contains("port"), "{}", p[2]);
}

#[test]
fn missing_pins_and_unreadable_keys_are_problems() {
    let bed = Bed::new();
    std::fs::remove_file(bed.path("known_hosts")).unwrap();
    bed.write("id_ed25519", "not a key\n");
    bed.chmod("id_ed25519", 0o600);
    let p = bed.problems();
    assert_eq!(p.len(), 2, "{p:#?}");
    assert_eq!(p[0].field, "ssh_key");
    assert!(p[0].message.contains("cannot load SSH key"), "{}", p[0]);
    assert_eq!(p[1].field, "known_hosts");
    assert!(p[1].message.contains("trust-host"), "{}", p[1]);
}

#[test]
fn templates_and_playbooks_are_loaded_and_rendered_for_every_environment() {
    let bed = Bed::new();
    let site = bed.path("templates/nginx-site.conf.j2");
    let text = std::fs::read_to_string(&site).unwrap();
    std::fs::write(&site, format!("{text}\n# {{{{ app.no_such_field }}}}\n")).unwrap();
    let p = bed.problems();
    // Both environments render the site: one problem each.
    assert_eq!(p.len(), 2, "{p:#?}");
    assert!(
        p.iter().all(|e| e.file.ends_with("nginx-site.conf.j2")),
        "{p:#?}"
    );

    let bed = Bed::new();
    bed.write("playbooks/python-web.yml", "- no_such_step\n");
    let p = bed.problems();
    assert_eq!(p.len(), 2, "{p:#?}");
    assert!(p[0].file.ends_with("python-web.yml"), "{}", p[0]);
}

#[test]
fn the_gateway_sources_are_checked_per_delivery() {
    // A token without a username cannot travel to servers (direct delivery); through
    // the relay it never has to.
    let bed = Bed::new();
    bed.write("tok", "secret-t0ken\n");
    bed.write(
        "gateway.toml",
        &format!(
            "{CONFIG}[sources.art]\nkind = \"artifactory\"\nurl = \"http://art.test/artifactory\"\n\
             repository = \"pypi-local\"\ntoken_file = \"tok\"\n[applications.hello]\nsource = \"art\"\n"
        ),
    );
    let p = bed.problems();
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_eq!(p[0].field, "applications.hello.source");
    assert!(p[0].message.contains("username"), "{}", p[0]);
    assert!(!format!("{p:?}").contains("secret-t0ken"));
}

#[test]
fn a_broken_config_is_one_problem_with_its_line() {
    let bed = Bed::new();
    bed.write(
        "gateway.toml",
        &CONFIG.replace("[cli]", "lease_secs = \"x\"\n[cli]"),
    );
    let p = bed.problems();
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_eq!(p[0].line, Some(8));
    assert_eq!(line_of(CONFIG, "ssh_key"), Some(5));
    assert_eq!(line_of("  ssh_key_x = 1\nssh_key= 2\n", "ssh_key"), Some(2));
    assert_eq!(line_of(CONFIG, "uv"), None);
}
