//! Commands on the application's side of the wall: its unprivileged user and the
//! directories it may read or write, and running a command line as that user in a
//! release's environment (hooks, `deploy run`, the script a program runs).
//!
//! The wall (decided here, documented in ARCHITECTURE.md): the app user `run_as` owns
//! nothing but `shared/data`; `/srv/apps/<app>` is `deploy:<run_as>` 0751 (other users may
//! only traverse it, to reach a socket), `releases/` and `shared/` 0750 (the app reads,
//! never writes), the env file 0640, `run/` 1771 (the app creates its sockets; the sticky
//! bit keeps it from replacing the live pointer), `logs/` 0750 (the process manager, as
//! root, writes the programs' logs there; the app reads its own, no other app's user
//! can).  nginx's user joins the app's group to read static files.  The deploy user's
//! home is closed to others (0700 for group and others: no app user lists it).

use super::{AppPaths, RemoteCmd, sudo_sh};
use crate::shell::quote;

/// The user nginx runs as (Debian's).
pub const NGINX_USER: &str = "www-data";

/// Prints `yes` if the layout exists with the ownership and modes of the wall above and
/// `run_as` exists, else `no`.
pub fn layout_check(p: &AppPaths, user: &str, run_as: &str) -> RemoteCmd {
    let stat = |path: &str, want: &str| {
        format!(
            "[ \"$(stat -c %U:%G:%a {} 2>/dev/null)\" = {} ]",
            quote(path),
            quote(want)
        )
    };
    let checks = [
        format!("id -u {} >/dev/null 2>&1", quote(run_as)),
        stat(&p.root, &format!("{user}:{run_as}:751")),
        stat(&p.releases(), &format!("{user}:{run_as}:750")),
        stat(&p.shared(), &format!("{user}:{run_as}:750")),
        stat(&p.run_dir(), &format!("{user}:{run_as}:1771")),
        stat(&p.data_dir(), &format!("{run_as}:{run_as}:750")),
        stat(&p.logs(), &format!("{user}:{run_as}:750")),
        // The deploy user's home (this runs as that user): closed to others.
        "[ \"$(stat -c %a \"$HOME\" | cut -c2-)\" = 00 ]".to_string(),
        format!(
            "{{ [ ! -e {env} ] || [ \"$(stat -c %G {env})\" = {g} ]; }}",
            env = quote(&p.env_file()),
            g = quote(run_as)
        ),
    ];
    RemoteCmd::new(format!(
        "if {}; then echo yes; else echo no; fi",
        checks.join(" && ")
    ))
}

/// Creates the app user (no login, no password, no sudo; its home is `shared/data`) and
/// the layout with the wall's ownership and modes, and closes the deploy user's home;
/// also repairs a layout made before the app had a user of its own (or its logs a
/// directory of their own).  Idempotent.
pub fn layout_create(p: &AppPaths, user: &str, run_as: &str) -> RemoteCmd {
    let script = r#"set -e
u="$1" a="$2" root="$3" data="$3/shared/data" env="$3/shared/env" www="$4"
getent group "$a" >/dev/null || groupadd --system "$a"
id -u "$a" >/dev/null 2>&1 || useradd --system --gid "$a" --home-dir "$data" --no-create-home --shell /usr/sbin/nologin "$a"
if id -u "$www" >/dev/null 2>&1; then usermod -a -G "$a" "$www"; fi
install -d -m 0755 /srv/apps
install -d -m 0751 -o "$u" -g "$a" "$root"
install -d -m 0750 -o "$u" -g "$a" "$root/releases" "$root/shared"
install -d -m 1771 -o "$u" -g "$a" "$root/run"
install -d -m 0750 -o "$a" -g "$a" "$data"
install -d -m 0750 -o "$u" -g "$a" "$root/logs"
chown "$u:$a" "$root" "$root/releases" "$root/shared" "$root/run" "$root/logs"
chmod 0751 "$root"; chmod 0750 "$root/releases" "$root/shared" "$root/logs"; chmod 1771 "$root/run"
home=$(getent passwd "$u" | cut -d: -f6); if [ -d "$home" ]; then chmod go-rwx "$home"; fi
if [ -e "$env" ]; then chown "$u:$a" "$env"; chmod 0640 "$env"; fi"#;
    RemoteCmd::new(sudo_sh(script, &[user, run_as, &p.root, NGINX_USER]))
}

/// Writes the env file (stdin) atomically, `deploy:<run_as>` 0640: the app reads it,
/// only the deploy user writes it.
pub fn write_env_file(p: &AppPaths, run_as: &str, contents: Vec<u8>) -> RemoteCmd {
    let script = "umask 077 && cat > \"$1.deploy-new\" && chmod 0640 \"$1.deploy-new\" && sudo -n chgrp \"$2\" \"$1.deploy-new\" && mv -f \"$1.deploy-new\" \"$1\"";
    RemoteCmd::with_stdin(
        format!(
            "sh -c {} sh {} {}",
            quote(script),
            quote(&p.env_file()),
            quote(run_as)
        ),
        contents,
    )
}

/// What a command run as the app user gets besides the env file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppEnv<'a> {
    pub run_as: &'a str,
    pub version: &'a str,
    /// `DEPLOY_STATIC_ROOT`, when the app has static files.
    pub static_root: Option<String>,
}

/// The environment line of the app's processes and commands: the env file's variables,
/// then `DEPLOY_APP`, `DEPLOY_RELEASE`, `DEPLOY_RELEASE_DIR`, (`DEPLOY_STATIC_ROOT`),
/// `HOME` (`shared/data`) and `PATH` with the release's virtualenv first.  A POSIX
/// script prefix ending in `&&`.
pub fn app_env_prefix(p: &AppPaths, e: &AppEnv) -> String {
    let release = p.release(e.version);
    let mut exports = vec![
        format!("DEPLOY_APP={}", quote(&p.app)),
        format!("DEPLOY_RELEASE={}", quote(e.version)),
        format!("DEPLOY_RELEASE_DIR={}", quote(&release)),
        format!("HOME={}", quote(&p.data_dir())),
    ];
    if let Some(s) = &e.static_root {
        exports.push(format!("DEPLOY_STATIC_ROOT={}", quote(s)));
    }
    exports.push(format!(
        "PATH={}/bin:/usr/local/bin:/usr/bin:/bin",
        quote(&release)
    ));
    format!(
        "cd {shared} && set -a && . {env} && set +a && export {exports} &&",
        shared = quote(&p.shared()),
        env = quote(&p.env_file()),
        exports = exports.join(" ")
    )
}

/// The release a program file was written for: the `DEPLOY_RELEASE` of its script (see
/// [`app_env_prefix`]), however often quoted.  `start` writes a slot's file and starts it in
/// one batch, so a slot that runs, runs the release its file names; `status --live` reads
/// what a process really runs from its own environment instead
/// ([`process_releases`]).  None: no file, or none that names a release.
pub fn release_in_program(file: &str) -> Option<String> {
    let rest = &file[file.find("DEPLOY_RELEASE=")? + "DEPLOY_RELEASE=".len()..];
    // Quoted once for the script and again for the file (`'\''1.0!2'\''`): the quotes
    // go, the version's own characters stay.
    let rest = rest.trim_start_matches(['\'', '\\', '"']);
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '!' | '_' | '-')))
        .unwrap_or(rest.len());
    let v = &rest[..end];
    deploy_wire::names::check_version(v).ok()?;
    Some(v.to_string())
}

/// Runs `command` (a shell command line from the inventory or the user's quoted argv)
/// as the app user in the release's environment, with no TTY and no stdin.  The
/// command line is one quoted argument of `sh -c`; nothing is pasted.
pub fn run_as_app(p: &AppPaths, e: &AppEnv, command: &str) -> RemoteCmd {
    let script = format!(
        "{} exec /bin/sh -c {}",
        app_env_prefix(p, e),
        quote(command)
    );
    RemoteCmd::new(format!(
        "sudo -n -u {} -- /bin/sh -c {} </dev/null",
        quote(e.run_as),
        quote(&script)
    ))
}

/// Where the markers of the hooks that ran for a release live (one empty file per hook).
pub fn hooks_dir(p: &AppPaths, version: &str) -> String {
    format!("{}/.deploy-hooks", p.release(version))
}

/// Prints the names of the hooks that ran for the release, one per line.
pub fn hook_markers(p: &AppPaths, version: &str) -> RemoteCmd {
    RemoteCmd::new(format!(
        "ls -1A {} 2>/dev/null || true",
        quote(&hooks_dir(p, version))
    ))
}

/// Records that hook `name` ran for the release.
pub fn mark_hook(p: &AppPaths, version: &str, name: &str) -> RemoteCmd {
    let dir = hooks_dir(p, version);
    RemoteCmd::new(format!(
        "mkdir -p {d} && touch {d}/{n}",
        d = quote(&dir),
        n = quote(name)
    ))
}

/// A hook's command as the app user, ended after `timeout_secs` (TERM, then KILL 10 s
/// later).
pub fn hook(p: &AppPaths, e: &AppEnv, command: &str, timeout_secs: u32) -> RemoteCmd {
    let line = format!(
        "exec timeout -k 10 {timeout_secs} /bin/sh -c {}",
        quote(command)
    );
    run_as_app(p, e, &line)
}

/// The static directory of a release, writable by the app user while hooks run (they
/// collect static files into it).
pub fn static_open(dir: &str, run_as: &str) -> RemoteCmd {
    RemoteCmd::new(sudo_sh(
        "install -d -m 0755 -o \"$2\" -g \"$2\" \"$1\" && chown -R \"$2:$2\" \"$1\"",
        &[dir, run_as],
    ))
}

/// Gives the static directory back to the deploy user (the app reads, never writes;
/// prune can remove it).  Never fails if it does not exist.
pub fn static_seal(dir: &str, user: &str, run_as: &str) -> RemoteCmd {
    RemoteCmd::new(sudo_sh(
        "if [ -e \"$1\" ]; then chown -R \"$2:$3\" \"$1\" && chmod -R go-w \"$1\"; fi",
        &[dir, user, run_as],
    ))
}

/// Prints `<pid> <release>` for each pid: the `DEPLOY_RELEASE` the process really
/// runs with (from its environment, so it is what runs, not what a file says).  Read as
/// `run_as`, the processes' own user: reading another user's environment needs
/// `CAP_SYS_PTRACE`, which root inside a container may lack.
pub fn process_releases(run_as: &str, pids: &[u32]) -> RemoteCmd {
    let script = r#"for p in "$@"; do r=$(tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | sed -n 's/^DEPLOY_RELEASE=//p' | head -n 1); echo "$p $r"; done"#;
    let mut line = format!("sudo -n -u {} -- sh -c {} sh", quote(run_as), quote(script));
    for p in pids {
        line.push_str(&format!(" {p}"));
    }
    RemoteCmd::new(line)
}

/// The script a program of the app runs (a slot's server, a process): `exec_line` in
/// the release's environment, `<env prefix> exec <exec_line>`, for `/bin/sh -c`.  The
/// process manager quotes it into its program file
/// ([`crate::procman::ProcessManager::command_line`]) and runs it as `run_as`.
pub fn program_script(p: &AppPaths, e: &AppEnv, exec_line: &str) -> String {
    format!("{} exec {exec_line}", app_env_prefix(p, e))
}

/// The web server of a slot: gunicorn from the release on the slot's socket (mode 0777
/// through `--umask 0`, so nginx may connect), with the app's options.
pub fn gunicorn_line(
    p: &AppPaths,
    version: &str,
    socket: &str,
    app: &crate::inventory::App,
) -> String {
    let r = &app.runtime;
    let mut args = vec![
        format!("{}/bin/gunicorn", p.release(version)),
        "--bind".into(),
        format!("unix:{socket}"),
        "--umask".into(),
        "0".into(),
        "--workers".into(),
        app.workers.to_string(),
    ];
    if let Some(k) = &r.worker_class {
        args.extend(["--worker-class".into(), k.clone()]);
    }
    args.extend(["--timeout".into(), r.timeout_secs.to_string()]);
    args.extend(["--access-logfile".into(), "-".into()]);
    args.extend(r.server_args.iter().cloned());
    args.push(app.wsgi.clone());
    crate::shell::join(&args)
}

/// A process's command line (from the inventory, a shell line) under `sh -c`.
pub fn process_line(command: &str) -> String {
    format!("/bin/sh -c {}", quote(command))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_runs_as_the_app_user_with_its_env_and_is_quoted_once() {
        let p = AppPaths::new("shop");
        let e = AppEnv {
            run_as: "app-shop",
            version: "1.0.0",
            static_root: Some(p.release("1.0.0") + "/static"),
        };
        let c = run_as_app(&p, &e, "python -m django migrate; echo 'done'");
        assert!(
            c.line.starts_with("sudo -n -u app-shop -- /bin/sh -c '"),
            "{}",
            c.line
        );
        assert!(
            c.line
                .contains("DEPLOY_STATIC_ROOT=/srv/apps/shop/releases/1.0.0/static")
        );
        assert!(c.line.contains("PATH=/srv/apps/shop/releases/1.0.0/bin:"));
        // A real shell unquotes the script whole, and the command inside it once more.
        let printed = std::process::Command::new("sh")
            .arg("-c")
            .arg(
                c.line
                    .replace("sudo -n -u app-shop -- /bin/sh -c", "printf %s"),
            )
            .output()
            .unwrap();
        let script = String::from_utf8_lossy(&printed.stdout).to_string();
        let tail = script.rsplit_once(" exec /bin/sh -c ").unwrap().1;
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {tail}"))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "python -m django migrate; echo 'done'"
        );
    }

    #[test]
    fn a_program_file_names_the_release_its_script_runs() {
        let p = AppPaths::new("hello");
        for version in ["1.2.0", "1.0!2"] {
            let e = AppEnv {
                run_as: "app-hello",
                version,
                static_root: None,
            };
            let script = program_script(&p, &e, "gunicorn");
            let file = format!(
                "[program:hello-blue]\ncommand=/bin/sh -c {}\n",
                quote(&script)
            );
            assert_eq!(
                release_in_program(&file).as_deref(),
                Some(version),
                "{file}"
            );
        }
        assert_eq!(
            release_in_program("[program:hello-blue]\ncommand=true\n"),
            None
        );
        assert_eq!(release_in_program("DEPLOY_RELEASE=$(reboot)"), None);
    }

    #[test]
    fn the_layout_check_names_every_part_of_the_wall() {
        let c = layout_check(&AppPaths::new("shop"), "deploy", "app-shop");
        for want in [
            "deploy:app-shop:751",
            "deploy:app-shop:1771",
            "app-shop:app-shop:750",
            "id -u app-shop",
        ] {
            assert!(c.line.contains(want), "{want}: {}", c.line);
        }
    }
}
