//! Remote commands, built as data: every shell line the engine sends to a server is made
//! here, from validated names and [`crate::shell::quote`]d values, and nothing here does
//! I/O.  The engine decides *when* to run them; [`crate::ssh`] runs them.
//!
//! Conventions: commands run as the inventory's SSH user; those that touch `/etc` or
//! control services use `sudo -n` (never prompting).  File contents travel on stdin, so
//! they never appear in a process list or a log.
//!
//! By role: [`release`] (directories, virtualenvs, installs, markers), [`files`] (files
//! and the live pointers), [`nginx`] (site config, reload, HTTP probes).  Process-manager
//! commands belong to their backend in [`crate::procman`].

pub mod app;
pub mod batch;
pub mod env_ship;
pub mod files;
pub mod nginx;
pub mod release;

pub use app::{AppEnv, run_as_app};
pub use files::*;
pub use nginx::*;
pub use release::*;

use crate::shell::quote;

/// Where an application lives on a server (see DESIGN.md, "On a server").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPaths {
    pub app: String,
    pub root: String,
}

/// Name of the completion marker written last into a release directory.
pub const MARKER: &str = ".deploy-release";

impl AppPaths {
    pub fn new(app: &str) -> AppPaths {
        AppPaths {
            app: app.to_string(),
            root: format!("/srv/apps/{app}"),
        }
    }
    pub fn releases(&self) -> String {
        format!("{}/releases", self.root)
    }
    pub fn release(&self, version: &str) -> String {
        format!("{}/releases/{version}", self.root)
    }
    pub fn marker(&self, version: &str) -> String {
        format!("{}/{MARKER}", self.release(version))
    }
    pub fn shared(&self) -> String {
        format!("{}/shared", self.root)
    }
    /// The one directory the app user may write (its `HOME`).
    pub fn data_dir(&self) -> String {
        format!("{}/shared/data", self.root)
    }
    pub fn env_file(&self) -> String {
        format!("{}/shared/env", self.root)
    }
    /// The process manager's log files of the app's programs: `deploy:<run_as>` 0750,
    /// so only the app's user (and the deploy user) may read them.
    pub fn logs(&self) -> String {
        format!("{}/logs", self.root)
    }
    pub fn current(&self) -> String {
        format!("{}/current", self.root)
    }
    /// Before the socket switch: held the name of the live slot (read once, to take
    /// over servers deployed that way, then removed).
    pub fn legacy_live_file(&self) -> String {
        format!("{}/live-slot", self.root)
    }
    /// The slots' sockets and the live pointer.
    pub fn run_dir(&self) -> String {
        format!("{}/run", self.root)
    }
    /// The socket a slot's server listens on while it runs `version`.
    pub fn slot_socket(&self, slot: &str, version: &str) -> String {
        format!("{}/{}", self.run_dir(), slot_socket_name(slot, version))
    }
    /// **The** live pointer: a symlink to the live slot's socket, which nginx connects
    /// through for every request.  Renaming a new link over it is the switch.
    pub fn live_socket(&self) -> String {
        format!("{}/live.sock", self.run_dir())
    }
    /// Written into a release whose health check failed: prune removes it first and never
    /// counts it as a kept release.
    pub fn failed_marker(&self, version: &str) -> String {
        format!("{}/.deploy-failed", self.release(version))
    }
    pub fn nginx_conf(&self) -> String {
        format!("/etc/nginx/sites-enabled/{}.conf", self.app)
    }
}

/// `<slot>@<version>.sock`: the live pointer's target names the slot and the release.
pub fn slot_socket_name(slot: &str, version: &str) -> String {
    format!("{slot}@{version}.sock")
}

/// Parses a live pointer's target (`green@1.1.0.sock`, maybe with a directory).
pub fn parse_slot_socket(target: &str) -> Option<(String, String)> {
    let name = target.trim().rsplit('/').next()?;
    let (slot, version) = name.strip_suffix(".sock")?.split_once('@')?;
    (!slot.is_empty() && !version.is_empty()).then(|| (slot.to_string(), version.to_string()))
}

/// One remote command: a POSIX shell line and, optionally, bytes for its stdin.
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteCmd {
    pub line: String,
    /// Shared, not copied: the same bytes go to every host.
    pub stdin: Option<bytes::Bytes>,
}

impl std::fmt::Debug for RemoteCmd {
    // stdin may hold secrets (the env file): never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteCmd")
            .field("line", &self.line)
            .field(
                "stdin",
                &self.stdin.as_ref().map(|b| format!("<{} bytes>", b.len())),
            )
            .finish()
    }
}

impl RemoteCmd {
    pub fn new(line: impl Into<String>) -> RemoteCmd {
        RemoteCmd {
            line: line.into(),
            stdin: None,
        }
    }
    pub fn with_stdin(line: impl Into<String>, stdin: impl Into<bytes::Bytes>) -> RemoteCmd {
        RemoteCmd {
            line: line.into(),
            stdin: Some(stdin.into()),
        }
    }
}

/// Runs a POSIX script as root: `sudo -n sh -c '<script>' sh args...`.
pub(crate) fn sudo_sh(script: &str, args: &[&str]) -> String {
    let mut line = format!("sudo -n sh -c {} sh", quote(script));
    for a in args {
        line.push(' ');
        line.push_str(&quote(a));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procman::{ProcessManager, Supervisord, Systemd};

    fn p() -> AppPaths {
        AppPaths::new("hello")
    }

    #[test]
    fn paths_follow_the_design() {
        assert_eq!(p().release("1.0.0"), "/srv/apps/hello/releases/1.0.0");
        assert_eq!(
            p().marker("1.0.0"),
            "/srv/apps/hello/releases/1.0.0/.deploy-release"
        );
        assert_eq!(p().current(), "/srv/apps/hello/current");
        assert_eq!(p().nginx_conf(), "/etc/nginx/sites-enabled/hello.conf");
    }

    fn index(url: &str, credentials: Option<(&str, &str)>) -> crate::index::ServerIndex {
        crate::index::ServerIndex {
            url: url.into(),
            credentials: credentials.map(|(u, p)| (u.to_string(), crate::index::Secret::new(p))),
        }
    }

    #[test]
    fn install_pins_the_version_writes_the_marker_last_and_reads_the_index_from_stdin() {
        let url = "http://u:s3cret@index:8080/simple/";
        let c = install(
            &p(),
            &Tool::Pip,
            &index("http://index:8080/simple/", Some(("u", "s3cret"))),
            "hello-app",
            "1.0.0",
            None,
        );
        let inner = c
            .line
            .strip_prefix("{ flock -w 900 /srv/apps/hello/.deploy-build.lock sh -c ")
            .and_then(|l| l.split_once("; } || { rc=$?;"))
            .unwrap()
            .0;
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {inner}"))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "IFS= read -r PIP_INDEX_URL && export PIP_INDEX_URL && \
             /srv/apps/hello/releases/1.0.0/bin/pip install --no-input --disable-pip-version-check --progress-bar off \
             --no-cache-dir --trusted-host index hello-app==1.0.0 \
             && h=$(cd /srv/apps/hello/releases/1.0.0 && find . -path '*/site-packages/*' -type f ! -name '*.pyc' -print0 \
             | LC_ALL=C sort -z | xargs -0r sha256sum | sha256sum | cut -c1-64) \
             && printf '%s env=%s\\n' 'hello-app 1.0.0' \"$h\" > /srv/apps/hello/releases/1.0.0/.deploy-release.tmp \
             && mv -f /srv/apps/hello/releases/1.0.0/.deploy-release.tmp /srv/apps/hello/releases/1.0.0/.deploy-release \
             && echo \"deploy-env $h\""
        );
        assert!(!c.line.contains("s3cret"), "the credential is not in argv");
        assert_eq!(c.stdin.as_deref(), Some(format!("{url}\n").as_bytes()));
        assert!(!format!("{c:?}").contains("s3cret"));
        let c = install(
            &p(),
            &Tool::Pip,
            &index("https://repo/simple/", None),
            "hello-app",
            "1.0.0",
            None,
        );
        assert!(!c.line.contains("--trusted-host"));
        assert!(!c.line.contains("--no-cache-dir"));
    }

    #[test]
    fn uv_lives_under_its_checksum_and_installs_with_the_index_from_stdin() {
        let sha = "ab".repeat(32);
        let uv = Tool::Uv {
            sha256: sha.clone(),
        };
        let c = install(
            &p(),
            &uv,
            &index("http://i/simple/", None),
            "hello-app",
            "1.0.0",
            None,
        );
        assert!(c.line.contains("read -r UV_DEFAULT_INDEX"));
        assert!(c.line.contains(&format!(".cache/deploy/uv-{sha}/uv")));
        assert!(
            c.line
                .contains("--python /srv/apps/hello/releases/1.0.0/bin/python")
        );
        let v = venv_create(&p(), "1.0.0", &uv);
        assert!(v.line.contains("venv --quiet --python python3"));
        let up = uv_upload(&sha, vec![1, 2, 3]);
        assert!(up.line.contains("sha256sum -c"));
        assert_eq!(up.stdin.as_deref(), Some(&[1u8, 2, 3][..]));
    }

    #[test]
    fn switch_is_an_atomic_rename_guarded_by_the_marker() {
        let c = switch_current(&p(), "1.1.0");
        assert!(
            c.line
                .starts_with("test -f /srv/apps/hello/releases/1.1.0/.deploy-release ||")
        );
        assert!(c.line.ends_with(
            "ln -sfn releases/1.1.0 /srv/apps/hello/current.deploy-new && mv -T -f /srv/apps/hello/current.deploy-new /srv/apps/hello/current"
        ));
    }

    #[test]
    fn file_contents_travel_on_stdin_not_in_the_command_line() {
        let c = write_file(
            "/srv/apps/hello/shared/env",
            "0640",
            false,
            b"SECRET='x'\n".to_vec(),
        );
        assert!(!c.line.contains("SECRET"));
        assert_eq!(c.stdin.as_deref(), Some(&b"SECRET='x'\n"[..]));
        assert!(
            !format!("{c:?}").contains("SECRET"),
            "Debug must not print stdin"
        );
        let c = write_file("/etc/x y.conf", "0644", true, vec![]);
        assert!(c.line.starts_with("sudo -n sh -c '"));
        assert!(c.line.ends_with(" sh '/etc/x y.conf' 0644"));
    }

    #[test]
    fn http_probe_quotes_the_host_header_and_never_globs() {
        let c = http_probe(None, "hello.example.com", "/healthz", 5);
        assert_eq!(
            c.line,
            "curl -s -g -o /dev/null -w '%{http_code}' --max-time 5 -H 'Host: hello.example.com' http://127.0.0.1:80/healthz"
        );
        let c = http_probe(
            Some("/srv/apps/hello/run/green@1.1.0.sock"),
            "h",
            "/a{b,c}[1-2]",
            2,
        );
        assert!(
            c.line.ends_with(
                "--unix-socket /srv/apps/hello/run/green@1.1.0.sock 'http://localhost/a{b,c}[1-2]'"
            ),
            "{}",
            c.line
        );
        assert_eq!(health_host("*.example.com"), "health-check.example.com");
        assert_eq!(health_host("www.example.*"), "www.example.health-check");
        assert_eq!(health_host("hello.test"), "hello.test");
    }

    #[test]
    fn the_live_pointer_names_its_slot_and_release() {
        assert_eq!(p().live_socket(), "/srv/apps/hello/run/live.sock");
        assert_eq!(
            p().slot_socket("green", "1.1.0"),
            "/srv/apps/hello/run/green@1.1.0.sock"
        );
        assert_eq!(
            parse_slot_socket("green@1.1.0.sock"),
            Some(("green".into(), "1.1.0".into()))
        );
        assert_eq!(
            parse_slot_socket("/x/run/blue@2.0rc1.sock\n"),
            Some(("blue".into(), "2.0rc1".into()))
        );
        assert_eq!(parse_slot_socket(""), None);
        assert_eq!(parse_slot_socket("live.sock"), None);
    }

    #[test]
    fn scripts_are_valid_posix_shell() {
        // `sh -n` parses without running: every command we build must parse.
        let cmds = [
            app::layout_check(&p(), "deploy", "app-hello"),
            app::layout_create(&p(), "deploy", "app-hello"),
            app::write_env_file(&p(), "app-hello", vec![]),
            app::hook_markers(&p(), "1.0.0"),
            app::mark_hook(&p(), "1.0.0", "migrate"),
            app::static_open("/srv/apps/hello/releases/1.0.0/static", "app-hello"),
            app::static_seal(
                "/srv/apps/hello/releases/1.0.0/static",
                "deploy",
                "app-hello",
            ),
            release_state(&p(), "1.0.0"),
            venv_create(&p(), "1.0.0", &Tool::Pip),
            venv_create(
                &p(),
                "1.0.0",
                &Tool::Uv {
                    sha256: "0f".repeat(32),
                },
            ),
            install(
                &p(),
                &Tool::Pip,
                &index("http://i/", Some(("u", "p"))),
                "a",
                "1",
                None,
            ),
            install(
                &p(),
                &Tool::Uv {
                    sha256: "0f".repeat(32),
                },
                &index("http://i/", None),
                "a",
                "1",
                None,
            ),
            uv_probe(&"0f".repeat(32)),
            uv_upload(&"0f".repeat(32), vec![]),
            read_file("/etc/a b"),
            write_file("/etc/a", "0644", true, vec![]),
            write_file("/srv/a", "0640", false, vec![]),
            read_current(&p()),
            switch_current(&p(), "1.0.0"),
            Supervisord.status_all(),
            Supervisord.start_fresh("hello-blue", 3),
            Supervisord.stop("hello-blue"),
            Supervisord.at_boot("hello-blue", true),
            Systemd.start_fresh("deploy-hello-blue", 3),
            Systemd.stop("deploy-hello-blue"),
            Systemd.at_boot("deploy-hello-blue", false),
            Systemd.apply("deploy-hello-worker", 2, true),
            Systemd.watch("/l", "deploy-hello-worker", 2, 3),
            Systemd.remove("deploy-hello-worker"),
            Systemd.app_programs("hello"),
            Systemd.status_all(),
            http_probe(
                Some("/srv/apps/hello/run/blue@1.0.sock"),
                "h",
                "/healthz",
                2,
            ),
            read_live(&p()),
            set_live(&p(), "green", "1.1.0"),
            mark_failed(&p(), "1.2.0"),
            nginx_install_and_reload("/etc/nginx/sites-enabled/hello.conf", vec![]),
            list_releases(&p()),
            remove_releases(&p(), &["1.0.0".into(), "0.9".into()]),
        ];
        for c in cmds {
            let st = std::process::Command::new("sh")
                .arg("-n")
                .arg("-c")
                .arg(&c.line)
                .status()
                .unwrap();
            assert!(st.success(), "does not parse: {}", c.line);
        }
    }
}
