//! Remote commands, built as data: every shell line the engine sends to a server is made
//! here, from validated names and [`crate::shell::quote`]d values, and nothing here does
//! I/O.  The engine decides *when* to run them; [`crate::ssh`] runs them.
//!
//! Conventions: commands run as the inventory's SSH user; those that touch `/etc` or
//! control services use `sudo -n` (never prompting).  File contents travel on stdin, so
//! they never appear in a process list or a log.

use crate::shell::{join, quote};

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
    pub fn env_file(&self) -> String {
        format!("{}/shared/env", self.root)
    }
    pub fn current(&self) -> String {
        format!("{}/current", self.root)
    }
    /// The supervisord program of a slot (`blue`/`green`).
    pub fn slot_program(&self, slot: &str) -> String {
        format!("{}-{slot}", self.app)
    }
    pub fn slot_conf(&self, slot: &str) -> String {
        format!("/etc/supervisor/conf.d/{}.conf", self.slot_program(slot))
    }
    /// Holds the name of the live slot.
    pub fn live_file(&self) -> String {
        format!("{}/live-slot", self.root)
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

/// One remote command: a POSIX shell line and, optionally, bytes for its stdin.
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteCmd {
    pub line: String,
    pub stdin: Option<Vec<u8>>,
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
    pub fn with_stdin(line: impl Into<String>, stdin: Vec<u8>) -> RemoteCmd {
        RemoteCmd {
            line: line.into(),
            stdin: Some(stdin),
        }
    }
}

/// Runs a POSIX script as root: `sudo -n sh -c '<script>' sh args...`.
fn sudo_sh(script: &str, args: &[&str]) -> String {
    let mut line = format!("sudo -n sh -c {} sh", quote(script));
    for a in args {
        line.push(' ');
        line.push_str(&quote(a));
    }
    line
}

/// Prints `yes` if the app's directories exist and belong to `user`, else `no`.
pub fn layout_check(p: &AppPaths, user: &str) -> RemoteCmd {
    RemoteCmd::new(format!(
        "if [ -d {r} ] && [ -d {s} ] && [ \"$(stat -c %U {root})\" = {u} ]; then echo yes; else echo no; fi",
        r = quote(&p.releases()),
        s = quote(&p.shared()),
        root = quote(&p.root),
        u = quote(user)
    ))
}

/// Creates `/srv/apps/<app>/{releases,shared}` owned by `user`.
pub fn layout_create(p: &AppPaths, user: &str) -> RemoteCmd {
    RemoteCmd::new(format!(
        "sudo -n install -d -m 0755 /srv/apps && sudo -n install -d -m 0755 -o {u} -g {u} {root} {r} {s}",
        u = quote(user),
        root = quote(&p.root),
        r = quote(&p.releases()),
        s = quote(&p.shared())
    ))
}

/// Prints `complete` if the release's marker exists, `partial` if only its directory
/// does, `absent` otherwise.
pub fn release_state(p: &AppPaths, version: &str) -> RemoteCmd {
    RemoteCmd::new(format!(
        "if [ -f {m} ]; then echo complete; elif [ -e {d} ]; then echo partial; else echo absent; fi",
        m = quote(&p.marker(version)),
        d = quote(&p.release(version))
    ))
}

/// Builds serialise on a per-app lock file held with `flock`: a build left running on
/// the server by a gateway that died (sshd does not kill it) finishes before the next one
/// touches the release directory.
pub fn build_lock(p: &AppPaths) -> String {
    format!("{}/.deploy-build.lock", p.root)
}

fn locked(p: &AppPaths, line: &str) -> String {
    format!(
        "flock -w 900 {} sh -c {}",
        quote(&build_lock(p)),
        quote(line)
    )
}

/// Which installer builds a release, as far as commands care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tool {
    /// `python3 -m venv` and the venv's pip.
    Pip,
    /// The uv binary shipped under its SHA-256 (see [`uv_path`]).
    Uv { sha256: String },
}

/// Where a shipped uv lives on a server: in the SSH user's home, under its checksum, so
/// a server keeps one copy per uv version whatever the number of applications.  A shell
/// expression (`$HOME` expands remotely); `sha256` must be hex.
pub fn uv_path(sha256: &str) -> String {
    assert!(sha256.chars().all(|c| c.is_ascii_hexdigit()));
    format!("\"$HOME/.cache/deploy/uv-{sha256}/uv\"")
}

/// Prints `present` if the server has this uv (checked against its SHA-256) and can run
/// it, `unsupported <arch>` on a non-x86_64 server, `absent` otherwise.
pub fn uv_probe(sha256: &str) -> RemoteCmd {
    let f = uv_path(sha256);
    RemoteCmd::new(format!(
        "a=$(uname -m); if [ \"$a\" != x86_64 ]; then echo \"unsupported $a\"; \
         elif [ -x {f} ] && echo {sha256}'  '{f} | sha256sum -c --status 2>/dev/null \
         && {f} --version >/dev/null 2>&1; then echo present; else echo absent; fi"
    ))
}

/// Uploads uv (its bytes on stdin), checks the SHA-256 before making it executable and
/// renames it into place, then prints its version.
pub fn uv_upload(sha256: &str, bytes: Vec<u8>) -> RemoteCmd {
    let f = uv_path(sha256);
    RemoteCmd::with_stdin(
        format!(
            "d=$(dirname {f}) && mkdir -p \"$d\" && t=\"$d/uv.tmp.$$\" && cat > \"$t\" \
             && {{ echo {sha256}'  '\"$t\" | sha256sum -c --status || {{ rm -f \"$t\"; echo 'uv upload: checksum mismatch' >&2; exit 1; }}; }} \
             && chmod 0755 \"$t\" && mv -f \"$t\" {f} && {f} --version"
        ),
        bytes,
    )
}

/// Environment every uv command runs with: no config files, no Python downloads, copies
/// rather than links from its cache (a release must not share inodes with the cache).
const UV_ENV: &str = "UV_NO_CONFIG=1 UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=copy";

/// (Re)creates the release's virtualenv, removing what an interrupted build left; prints
/// `already-complete` instead if the release became complete meanwhile.
pub fn venv_create(p: &AppPaths, version: &str, tool: &Tool) -> RemoteCmd {
    let d = quote(&p.release(version));
    let m = quote(&p.marker(version));
    let make = match tool {
        Tool::Pip => format!("python3 -m venv {d}"),
        Tool::Uv { sha256 } => format!(
            "{UV_ENV} {uv} venv --quiet --python python3 {d}",
            uv = uv_path(sha256)
        ),
    };
    RemoteCmd::new(locked(
        p,
        &format!("if [ -f {m} ]; then echo already-complete; exit 0; fi; rm -rf {d} && {make}"),
    ))
}

/// Installs `package==version` into the release, then writes the marker (last, and
/// atomically, so a marker means a complete release).
///
/// The index URL (which may carry credentials) is the first line of stdin: the script
/// reads it into the installer's environment (`PIP_INDEX_URL` / `UV_DEFAULT_INDEX`), so
/// it appears in no command line, process list or file.  With credentials the
/// installer's cache is off, so nothing derived from an authenticated request is kept
/// on disk.
pub fn install(
    p: &AppPaths,
    tool: &Tool,
    index: &crate::artifacts::ServerIndex,
    package: &str,
    version: &str,
) -> RemoteCmd {
    let plain_url = index.url.as_str();
    let with_credentials = index.credentials.is_some();
    let req = format!("{package}=={version}");
    let release = p.release(version);
    let run = match tool {
        Tool::Pip => {
            let pip = format!("{release}/bin/pip");
            let mut args = vec![
                pip.as_str(),
                "install",
                "--no-input",
                "--disable-pip-version-check",
                "--progress-bar",
                "off",
            ];
            if with_credentials {
                args.push("--no-cache-dir");
            }
            let host;
            if plain_url.starts_with("http://") {
                // A plain-http index was asked for explicitly; pip refuses it without this.
                host = crate::inventory::url_host(plain_url)
                    .unwrap_or_default()
                    .to_string();
                args.extend(["--trusted-host", host.as_str()]);
            }
            args.push(&req);
            format!(
                "IFS= read -r PIP_INDEX_URL && export PIP_INDEX_URL && {}",
                join(&args)
            )
        }
        Tool::Uv { sha256 } => {
            let py = format!("{release}/bin/python");
            let mut args = vec!["pip", "install", "--python", py.as_str()];
            if with_credentials {
                args.push("--no-cache");
            }
            args.push(&req);
            format!(
                "IFS= read -r UV_DEFAULT_INDEX && export UV_DEFAULT_INDEX && {UV_ENV} {uv} {}",
                join(&args),
                uv = uv_path(sha256)
            )
        }
    };
    let marker = p.marker(version);
    let marker_tmp = format!("{marker}.tmp");
    let stamp = format!("{package} {version}");
    let line = format!(
        "{run} && printf '%s\\n' {stamp} > {tmp} && mv -f {tmp} {marker}",
        stamp = quote(&stamp),
        tmp = quote(&marker_tmp),
        marker = quote(&marker)
    );
    RemoteCmd::with_stdin(
        locked(p, &line),
        format!("{}\n", index.url_with_credentials().expose()).into_bytes(),
    )
}

/// Prints `present` then the file's bytes, or `absent`.
pub fn read_file(path: &str) -> RemoteCmd {
    let q = quote(path);
    RemoteCmd::new(format!(
        "if [ -f {q} ]; then echo present; cat -- {q}; else echo absent; fi"
    ))
}

/// Writes stdin to `path` atomically (temp file, then rename) with `mode`.  With `root`,
/// as root (for `/etc`); otherwise as the SSH user.
pub fn write_file(path: &str, mode: &str, root: bool, contents: Vec<u8>) -> RemoteCmd {
    let script = "umask 077 && cat > \"$1.deploy-new\" && chmod \"$2\" \"$1.deploy-new\" && mv -f \"$1.deploy-new\" \"$1\"";
    let line = if root {
        sudo_sh(script, &[path, mode])
    } else {
        format!("sh -c {} sh {} {}", quote(script), quote(path), quote(mode))
    };
    RemoteCmd::with_stdin(line, contents)
}

/// Prints the target of `current` (relative or absolute as stored), or nothing.
pub fn read_current(p: &AppPaths) -> RemoteCmd {
    RemoteCmd::new(format!("readlink {} || true", quote(&p.current())))
}

/// Points `current` at the release atomically: a new symlink renamed over the old one.
/// Refuses a release without its marker, so `current` never points at a half-built one.
pub fn switch_current(p: &AppPaths, version: &str) -> RemoteCmd {
    let tmp = format!("{}.deploy-new", p.current());
    RemoteCmd::new(format!(
        "test -f {m} || {{ echo 'release {v} is not complete (no marker); refusing to switch' >&2; exit 1; }}; ln -sfn {target} {tmp} && mv -T -f {tmp} {cur}",
        m = quote(&p.marker(version)),
        v = quote(version),
        target = quote(&format!("releases/{version}")),
        tmp = quote(&tmp),
        cur = quote(&p.current())
    ))
}

/// `supervisorctl status <program>`: prints e.g. `hello-blue RUNNING pid 42, uptime 0:01:02`.
/// Exit status is non-zero when the program is not running; the caller reads the text.
pub fn supervisor_status(program: &str) -> RemoteCmd {
    RemoteCmd::new(format!(
        "sudo -n supervisorctl status {} || true",
        quote(program)
    ))
}

/// Makes supervisord load the program's current config and (re)starts it, so it runs
/// what its config says now.
pub fn supervisor_start_fresh(program: &str) -> RemoteCmd {
    let q = quote(program);
    RemoteCmd::new(format!(
        "sudo -n supervisorctl reread >/dev/null && sudo -n supervisorctl update {q} >/dev/null && sudo -n supervisorctl stop {q} >/dev/null; sudo -n supervisorctl start {q}"
    ))
}

/// Stops the program (graceful: TERM, then KILL after `stopwaitsecs`).
pub fn supervisor_stop(program: &str) -> RemoteCmd {
    RemoteCmd::new(format!(
        "sudo -n supervisorctl stop {} || true",
        quote(program)
    ))
}

/// One HTTP probe on a loopback port of the server (a slot's port, or 80 for nginx);
/// prints the status code (000 if no answer).
pub fn http_probe(port: u16, server_name: &str, path: &str, timeout_secs: u32) -> RemoteCmd {
    RemoteCmd::new(join(&[
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        &timeout_secs.to_string(),
        "-H",
        &format!("Host: {server_name}"),
        &format!("http://127.0.0.1:{port}{path}"),
    ]))
}

/// Reads the live slot name (empty if none yet).
pub fn read_live(p: &AppPaths) -> RemoteCmd {
    RemoteCmd::new(format!("cat {} 2>/dev/null || true", quote(&p.live_file())))
}

/// Records the live slot and points `current` at its release, both atomically.
pub fn set_live(p: &AppPaths, slot: &str, version: &str) -> RemoteCmd {
    let live = p.live_file();
    let tmp = format!("{live}.deploy-new");
    RemoteCmd::new(format!(
        "printf '%s\\n' {slot} > {tmp} && mv -f {tmp} {live} && {switch}",
        slot = quote(slot),
        tmp = quote(&tmp),
        live = quote(&live),
        switch = switch_current(p, version).line
    ))
}

/// Marks a release as failed (its health check failed on this host).
pub fn mark_failed(p: &AppPaths, version: &str) -> RemoteCmd {
    RemoteCmd::new(format!(
        "touch {} 2>/dev/null || true",
        quote(&p.failed_marker(version))
    ))
}

/// Installs a new nginx site config only if the whole nginx configuration still passes
/// `nginx -t` with it; otherwise puts the old file back (or removes the new one) and fails
/// with nginx's message.  Does not reload.
pub fn nginx_install_validated(path: &str, contents: Vec<u8>) -> RemoteCmd {
    // Temp and backup files live beside `sites-enabled`, never in it: nginx includes
    // everything there.
    let script = r#"set -e
p="$1"
side="${p%/*}/../.${p##*/}"
if [ -f "$p" ]; then cp -p "$p" "$side.deploy-old"; else rm -f "$side.deploy-old"; fi
cat > "$side.deploy-new"; chmod 0644 "$side.deploy-new"; mv -f "$side.deploy-new" "$p"
if ! nginx -t 2>"$side.nginx-t"; then
  if [ -f "$side.deploy-old" ]; then mv -f "$side.deploy-old" "$p"; else rm -f "$p"; fi
  cat "$side.nginx-t" >&2
  echo "nginx -t failed; the previous config was put back" >&2
  exit 1
fi
rm -f "$side.deploy-old" "$side.nginx-t""#;
    RemoteCmd::with_stdin(sudo_sh(script, &[path]), contents)
}

/// Graceful reload: new workers take the new config; in-flight requests finish.
pub fn nginx_reload() -> RemoteCmd {
    RemoteCmd::new("sudo -n nginx -s reload")
}

/// Lists release directories, oldest first: `<mtime> <name> complete|partial` per line.
pub fn list_releases(p: &AppPaths) -> RemoteCmd {
    RemoteCmd::new(format!(
        "cd {r} 2>/dev/null || exit 0; for d in */; do d=${{d%/}}; [ \"$d\" = '*' ] && continue; if [ -f \"$d/.deploy-failed\" ]; then echo \"$(stat -c %Y \"$d\") $d failed\"; elif [ -f \"$d/{MARKER}\" ]; then echo \"$(stat -c %Y \"$d/{MARKER}\") $d complete\"; else echo \"$(stat -c %Y \"$d\") $d partial\"; fi; done | sort -n",
        r = quote(&p.releases())
    ))
}

/// Removes the named release directories.
pub fn remove_releases(p: &AppPaths, versions: &[String]) -> RemoteCmd {
    let dirs: Vec<String> = versions.iter().map(|v| p.release(v)).collect();
    RemoteCmd::new(format!("rm -rf -- {}", join(&dirs)))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            p().slot_conf("blue"),
            "/etc/supervisor/conf.d/hello-blue.conf"
        );
        assert_eq!(p().nginx_conf(), "/etc/nginx/sites-enabled/hello.conf");
    }

    fn index(url: &str, credentials: Option<(&str, &str)>) -> crate::artifacts::ServerIndex {
        crate::artifacts::ServerIndex {
            url: url.into(),
            credentials: credentials
                .map(|(u, p)| (u.to_string(), crate::artifacts::Secret::new(p))),
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
        );
        let inner = c
            .line
            .strip_prefix("flock -w 900 /srv/apps/hello/.deploy-build.lock sh -c ")
            .unwrap();
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
             && printf '%s\\n' 'hello-app 1.0.0' > /srv/apps/hello/releases/1.0.0/.deploy-release.tmp \
             && mv -f /srv/apps/hello/releases/1.0.0/.deploy-release.tmp /srv/apps/hello/releases/1.0.0/.deploy-release"
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
    fn http_probe_quotes_the_host_header() {
        let c = http_probe(80, "hello.example.com", "/healthz", 5);
        assert_eq!(
            c.line,
            "curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H 'Host: hello.example.com' http://127.0.0.1:80/healthz"
        );
    }

    #[test]
    fn scripts_are_valid_posix_shell() {
        // `sh -n` parses without running: every command we build must parse.
        let cmds = [
            layout_check(&p(), "deploy"),
            layout_create(&p(), "deploy"),
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
            ),
            install(
                &p(),
                &Tool::Uv {
                    sha256: "0f".repeat(32),
                },
                &index("http://i/", None),
                "a",
                "1",
            ),
            uv_probe(&"0f".repeat(32)),
            uv_upload(&"0f".repeat(32), vec![]),
            read_file("/etc/a b"),
            write_file("/etc/a", "0644", true, vec![]),
            write_file("/srv/a", "0640", false, vec![]),
            read_current(&p()),
            switch_current(&p(), "1.0.0"),
            supervisor_status("hello-blue"),
            supervisor_start_fresh("hello-blue"),
            supervisor_stop("hello-blue"),
            http_probe(8001, "h", "/healthz", 2),
            read_live(&p()),
            set_live(&p(), "green", "1.1.0"),
            mark_failed(&p(), "1.2.0"),
            nginx_install_validated("/etc/nginx/sites-enabled/hello.conf", vec![]),
            nginx_reload(),
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
