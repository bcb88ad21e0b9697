//! Rendering: the supervisord and nginx configs from `templates/` (minijinja, strict
//! undefined variables) and the env file, all pure functions of the inventory.
//!
//! Each application has two slots (blue, green) per host; a slot's supervisord program
//! runs one release on its own port, and nginx points at the live slot.  Templates are
//! rendered for both slots at plan time, so a template error stops a job before it
//! touches a host; a re-deploy of the live release renders byte-identical files (which
//! is what makes "nothing changed" detectable).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

use crate::commands::AppPaths;
use crate::commands::app as app_cmd;
use crate::error::InputError;
use crate::inventory::{App, Environment as Env, Process};

pub const NGINX_TEMPLATE: &str = "nginx-site.conf.j2";

/// What templates can use.  Adding a field here is how a template gets a new variable.
#[derive(Serialize, Debug, Clone)]
pub struct Context {
    pub app: AppCtx,
    pub env: EnvCtx,
    pub paths: PathsCtx,
    pub slot: SlotCtx,
    /// The SSH user (who owns the release directories).
    pub user: String,
    /// The application's own unprivileged user: every process runs as it.
    pub run_as: String,
    /// nginx serves these itself, from the live release (None: no static files).
    pub static_files: Option<StaticCtx>,
}

#[derive(Serialize, Debug, Clone)]
pub struct StaticCtx {
    /// URL prefix, `/static/`.
    pub url: String,
    /// The directory, through `current` (so it switches with the live pointer), with a
    /// trailing `/` (for nginx's `alias`).
    pub dir: String,
    pub max_age_secs: u32,
}

/// What the process template (one program per process, `count` copies) can use.
#[derive(Serialize, Debug, Clone)]
pub struct ProcessContext {
    pub app: AppCtx,
    pub env: EnvCtx,
    pub process: ProcessCtx,
    pub run_as: String,
}

#[derive(Serialize, Debug, Clone)]
pub struct ProcessCtx {
    pub name: String,
    /// The process manager's program, `<app>-<process>`.
    pub program: String,
    /// The complete `command=` value (quoted; the release's environment first).
    pub command: String,
    pub count: u32,
    pub stop_secs: u32,
    /// The release it runs.
    pub version: String,
}

/// The two slots of an application on a host.
pub const SLOTS: [&str; 2] = ["blue", "green"];

/// The slot a config is rendered for.
#[derive(Serialize, Debug, Clone)]
pub struct SlotCtx {
    /// `blue` or `green`.
    pub name: String,
    /// The supervisord program, `<app>-<slot>`.
    pub program: String,
    /// Loopback port: the app's `port` for blue, `port + 1` for green (kept for
    /// templates that want one; the shipped ones listen on `socket`).
    pub port: u16,
    /// The unix socket the slot's server listens on (`run/<slot>@<version>.sock`).
    pub socket: String,
    /// The release directory the slot runs.
    pub release_dir: String,
    /// The complete `command=` value: gunicorn with the app's options, as `run_as`, in
    /// the release's environment (quoted by [`crate::commands::app`]).
    pub command: String,
}

/// Port of a slot (index into [`SLOTS`]).
pub fn slot_port(app: &App, slot: usize) -> u16 {
    app.port + slot as u16
}

#[derive(Serialize, Debug, Clone)]
pub struct AppCtx {
    pub name: String,
    pub package: String,
    pub wsgi: String,
    pub port: u16,
    pub workers: u32,
    pub server_names: Vec<String>,
    pub health_path: String,
}

impl AppCtx {
    fn of(app: &App) -> AppCtx {
        AppCtx {
            name: app.name.clone(),
            package: app.package.clone(),
            wsgi: app.wsgi.clone(),
            port: app.port,
            workers: app.workers,
            server_names: app.server_names.clone(),
            health_path: app.health.path.clone(),
        }
    }
}

#[derive(Serialize, Debug, Clone)]
pub struct EnvCtx {
    pub name: String,
}

#[derive(Serialize, Debug, Clone)]
pub struct PathsCtx {
    pub root: String,
    pub current: String,
    pub shared: String,
    pub env_file: String,
    /// The live pointer nginx proxies to (a symlink to the live slot's socket).
    pub live_socket: String,
}

impl Context {
    pub fn new(app: &App, env: &Env, user: &str, slot: usize, version: &str) -> Context {
        let p = AppPaths::new(&app.name);
        let socket = p.slot_socket(SLOTS[slot], version);
        let gunicorn = app_cmd::gunicorn_line(&p, version, &socket, app);
        Context {
            run_as: app.runtime.run_as.clone(),
            static_files: app.runtime.static_files.as_ref().map(|s| StaticCtx {
                url: s.url.clone(),
                dir: format!("{}/{}/", p.current(), s.dir),
                max_age_secs: s.max_age_secs,
            }),
            slot: SlotCtx {
                command: app_cmd::supervisor_command(&p, &app_env(app, version), &gunicorn),
                name: SLOTS[slot].to_string(),
                program: format!("{}-{}", app.name, SLOTS[slot]),
                port: slot_port(app, slot),
                socket,
                release_dir: p.release(version),
            },
            app: AppCtx::of(app),
            env: EnvCtx {
                name: env.name.clone(),
            },
            paths: PathsCtx {
                root: p.root.clone(),
                current: p.current(),
                shared: p.shared(),
                env_file: p.env_file(),
                live_socket: p.live_socket(),
            },
            user: user.to_string(),
        }
    }
}

/// What the app's commands get besides the env file (see [`app_cmd::app_env_prefix`]).
pub fn app_env<'a>(app: &'a App, version: &'a str) -> app_cmd::AppEnv<'a> {
    let p = AppPaths::new(&app.name);
    app_cmd::AppEnv {
        run_as: &app.runtime.run_as,
        version,
        static_root: app
            .runtime
            .static_files
            .as_ref()
            .map(|s| format!("{}/{}", p.release(version), s.dir)),
    }
}

impl ProcessContext {
    pub fn new(app: &App, env: &Env, process: &Process, version: &str) -> ProcessContext {
        let p = AppPaths::new(&app.name);
        let line = app_cmd::process_line(&process.command);
        ProcessContext {
            app: AppCtx::of(app),
            env: EnvCtx {
                name: env.name.clone(),
            },
            process: ProcessCtx {
                name: process.name.clone(),
                program: format!("{}-{}", app.name, process.name),
                command: app_cmd::supervisor_command(&p, &app_env(app, version), &line),
                count: process.count,
                stop_secs: process.stop_secs,
                version: version.to_string(),
            },
            run_as: app.runtime.run_as.clone(),
        }
    }
}

/// The templates of one directory, loaded once per job.
pub struct Templates {
    dir: PathBuf,
    env: Environment<'static>,
}

impl Templates {
    /// Loads the nginx site's template and the process manager's two (a slot's program,
    /// and a worker process's: needed only by applications with processes, an error then)
    /// from `dir`; the process manager names them ([`crate::procman::ProcessManager`]).
    pub fn load(
        dir: &Path,
        slot_template: &str,
        process_template: &str,
    ) -> Result<Templates, InputError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
            .expect("static syntax config");
        env.set_syntax(syntax);
        for (name, required) in [
            (slot_template, true),
            (NGINX_TEMPLATE, true),
            (process_template, false),
        ] {
            let path = dir.join(name);
            if !required && !path.exists() {
                continue; // rendering it is the error, for an application that needs it
            }
            let src = std::fs::read_to_string(&path).map_err(|e| {
                InputError::new(&path, None, "", format!("cannot read template: {e}"))
            })?;
            env.add_template_owned(name.to_string(), src)
                .map_err(|e| template_error(dir, &e))?;
        }
        Ok(Templates {
            dir: dir.to_path_buf(),
            env,
        })
    }

    pub fn render(&self, name: &str, ctx: &impl Serialize) -> Result<String, InputError> {
        let tmpl = self
            .env
            .get_template(name)
            .map_err(|e| template_error(&self.dir, &e))?;
        tmpl.render(minijinja::value::Serde(ctx))
            .map_err(|e| template_error(&self.dir, &e))
    }
}

fn template_error(dir: &Path, e: &minijinja::Error) -> InputError {
    let file = dir.join(e.name().unwrap_or("?"));
    let mut msg = match e.kind() {
        minijinja::ErrorKind::UndefinedError => "undefined variable".to_string(),
        _ => e.kind().to_string(),
    };
    if let Some(detail) = e.detail() {
        msg.push_str(": ");
        msg.push_str(detail);
    }
    // Name the expression that failed, from the template's own source.
    if let (Some(src), Some(range)) = (e.template_source(), e.range())
        && let Some(expr) = src.get(range)
    {
        msg.push_str(&format!(" (in `{expr}`)"));
    }
    msg.push_str("; available: app.{name,package,wsgi,port,workers,server_names,health_path}, env.name, paths.{root,current,shared,env_file,live_socket}, slot.{name,program,port,socket,release_dir,command}, user, run_as, static_files.{url,dir,max_age_secs}; in the process template: process.{name,program,command,count,stop_secs,version}");
    InputError::new(&file, e.line().map(|l| l as u64), "template", msg)
}

/// The env file: one `KEY='value'` line per variable (shell-quoted; sourced by `sh`).
pub fn env_file(vars: &BTreeMap<String, String>) -> String {
    let mut out = String::from("# Managed by deploy: edits are overwritten on the next deploy.\n");
    for (k, v) in vars {
        out.push_str(&format!("{k}={}\n", crate::shell::quote(v)));
    }
    out
}

/// The same text with every value masked: what diffs and events may show.
pub fn redact_env_file(text: &str) -> String {
    text.lines()
        .map(|l| match l.split_once('=') {
            Some((k, _)) if !l.starts_with('#') => format!("{k}=***"),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + if text.ends_with('\n') { "\n" } else { "" }
}

/// A unified diff of `old` (None: file absent) to `new`, or None when equal.
pub fn diff(path: &str, old: Option<&str>, new: &str) -> Option<String> {
    if old == Some(new) {
        return None;
    }
    let old_text = old.unwrap_or("");
    let d = similar::TextDiff::from_lines(old_text, new);
    let from = if old.is_some() {
        format!("a{path}")
    } else {
        "/dev/null".to_string()
    };
    Some(
        d.unified_diff()
            .context_radius(3)
            .header(&from, &format!("b{path}"))
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Inventory;
    use crate::procman::supervisord::{PROCESS_TEMPLATE, SLOT_TEMPLATE as SUPERVISOR_TEMPLATE};

    fn fixture() -> (App, Env) {
        let inv = Inventory::parse(
            Path::new("inv.yml"),
            "hosts: {web1: {address: 10.0.0.1, groups: [web]}}\napplications:\n  hello:\n    package: hello-app\n    index_url: http://index/simple/\n    wsgi: hello_app:app\n    port: 8000\n    server_names: [hello.example.com, www.example.com]\n    environments: {staging: {groups: [web]}}\n",
        )
        .unwrap();
        let app = inv.apps["hello"].clone();
        let env = app.environments["staging"].clone();
        (app, env)
    }

    fn shipped() -> Templates {
        Templates::load(
            &crate::repo_root().join("templates"),
            SUPERVISOR_TEMPLATE,
            PROCESS_TEMPLATE,
        )
        .unwrap()
    }

    #[test]
    fn renders_the_shipped_templates() {
        let (app, env) = fixture();
        let ctx = Context::new(&app, &env, "deploy", 1, "1.2.0");
        let t = shipped();
        let sup = t.render(SUPERVISOR_TEMPLATE, &ctx).unwrap();
        assert!(sup.contains("[program:hello-green]\n"));
        assert!(sup.contains(
            "&& exec /srv/apps/hello/releases/1.2.0/bin/gunicorn --bind unix:/srv/apps/hello/run/green@1.2.0.sock --umask 0 --workers 2 --timeout 30 --access-logfile - hello_app:app'\n"
        ), "{sup}");
        assert!(sup.contains("command=/bin/sh -c 'cd /srv/apps/hello/shared && set -a && . /srv/apps/hello/shared/env && set +a && export DEPLOY_APP=hello DEPLOY_RELEASE=1.2.0 "), "{sup}");
        assert!(sup.contains("user=app-hello\n"), "{sup}");
        let ngx = t.render(NGINX_TEMPLATE, &ctx).unwrap();
        assert!(ngx.contains("server_name hello.example.com www.example.com;"));
        assert!(
            ngx.contains("server unix:/srv/apps/hello/run/live.sock max_fails=0;\n    server unix:/srv/apps/hello/run/live.sock max_fails=0 backup;"),
            "{ngx}"
        );
        // The same site whatever the slot or release: a switch never reloads nginx.
        assert_eq!(
            ngx,
            t.render(
                NGINX_TEMPLATE,
                &Context::new(&app, &env, "deploy", 0, "9.9")
            )
            .unwrap()
        );
        assert!(ngx.ends_with("}\n"));
    }

    #[test]
    fn processes_static_files_and_worker_class_render() {
        let (mut app, env) = fixture();
        app.runtime.worker_class = Some("uvicorn.workers.UvicornWorker".into());
        app.runtime.server_args = vec!["--max-requests".into(), "100 %".into()];
        app.runtime.static_files = Some(crate::inventory::StaticFiles {
            url: "/static/".into(),
            dir: "static".into(),
            max_age_secs: 600,
        });
        let worker = Process {
            name: "worker".into(),
            command: "python -m rq worker high".into(),
            count: 2,
            stop_secs: 20,
        };
        let t = shipped();
        let ctx = Context::new(&app, &env, "deploy", 0, "2.0");
        let sup = t.render(SUPERVISOR_TEMPLATE, &ctx).unwrap();
        // `%` doubled for supervisord; the argument with a space quoted for the shell.
        assert!(
            sup.contains("--worker-class uvicorn.workers.UvicornWorker --timeout 30 --access-logfile - --max-requests '\\''100 %%'\\'' hello_app:app"),
            "{sup}"
        );
        assert!(
            sup.contains("DEPLOY_STATIC_ROOT=/srv/apps/hello/releases/2.0/static "),
            "{sup}"
        );
        let ngx = t.render(NGINX_TEMPLATE, &ctx).unwrap();
        assert!(
            ngx.contains("location ^~ /static/ {\n        alias /srv/apps/hello/current/static/;\n        add_header Cache-Control \"public, max-age=600\" always;"),
            "{ngx}"
        );
        let pctx = ProcessContext::new(&app, &env, &worker, "2.0");
        let p = t.render(PROCESS_TEMPLATE, &pctx).unwrap();
        assert!(p.contains("[program:hello-worker]\n"), "{p}");
        assert!(
            p.contains("numprocs=2\n") && p.contains("stopwaitsecs=20\n"),
            "{p}"
        );
        assert!(p.contains("user=app-hello\n"), "{p}");
        assert!(
            p.contains("&& exec /bin/sh -c '\\''python -m rq worker high'\\'''\n"),
            "{p}"
        );
    }

    #[test]
    fn a_missing_variable_names_template_line_and_expression() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(SUPERVISOR_TEMPLATE),
            "[program:{{ app.name }}]\n",
        )
        .unwrap();
        std::fs::write(dir.path().join(NGINX_TEMPLATE), "# ok\nserver_name {{ app.server_names | join(' ') }};\nlisten {{ app.listen_port }};\n").unwrap();
        let t = Templates::load(dir.path(), SUPERVISOR_TEMPLATE, PROCESS_TEMPLATE).unwrap();
        let (app, env) = fixture();
        let err = t
            .render(
                NGINX_TEMPLATE,
                &Context::new(&app, &env, "deploy", 0, "1.0.0"),
            )
            .unwrap_err();
        assert_eq!(err.file, dir.path().join(NGINX_TEMPLATE));
        assert_eq!(err.line, Some(3));
        assert!(err.message.contains("undefined"), "{err}");
        assert!(err.message.contains("app.listen_port"), "{err}");
    }

    #[test]
    fn env_file_is_quoted_and_redactable() {
        let mut vars = BTreeMap::new();
        vars.insert("GREETING".to_string(), "it's $HOME".to_string());
        vars.insert("TOKEN".to_string(), "s3cr3t".to_string());
        let text = env_file(&vars);
        assert!(text.contains("GREETING='it'\\''s $HOME'\n"));
        let red = redact_env_file(&text);
        assert!(!red.contains("s3cr3t") && !red.contains("HOME"));
        assert!(red.contains("TOKEN=***\n"));
    }

    #[test]
    fn diff_is_none_when_equal_and_unified_otherwise() {
        assert_eq!(diff("/etc/x", Some("a\n"), "a\n"), None);
        let d = diff("/etc/x", Some("a\nb\n"), "a\nc\n").unwrap();
        assert!(
            d.contains("--- a/etc/x")
                && d.contains("+++ b/etc/x")
                && d.contains("-b\n")
                && d.contains("+c\n"),
            "{d}"
        );
        let d = diff("/etc/x", None, "a\n").unwrap();
        assert!(d.contains("--- /dev/null"), "{d}");
    }
}
