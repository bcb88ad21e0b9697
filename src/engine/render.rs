//! Rendering: the process manager's program files and the nginx site from `templates/`
//! (minijinja, strict undefined variables) and the env file, all pure functions of the
//! inventory and the process manager (which names its templates, its programs and
//! quotes the command they run).
//!
//! Each application has two slots (blue, green) per host; a slot's program runs one
//! release on its own socket, and nginx points at the live slot.  Templates are
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
use crate::procman::ProcessManager;

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
    pub paths: PathsCtx,
    pub run_as: String,
}

#[derive(Serialize, Debug, Clone)]
pub struct ProcessCtx {
    pub name: String,
    /// The process manager's program (`hello-worker`).
    pub program: String,
    /// The command the program file runs: the release's environment, then the
    /// process's command, quoted by the process manager.
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
    /// The process manager's program (`hello-blue`).
    pub program: String,
    /// Loopback port: the app's `port` for blue, `port + 1` for green (kept for
    /// templates that want one; the shipped ones listen on `socket`).
    pub port: u16,
    /// The unix socket the slot's server listens on (`run/<slot>@<version>.sock`).
    pub socket: String,
    /// The release directory the slot runs.
    pub release_dir: String,
    /// The command the program file runs: gunicorn with the app's options in the
    /// release's environment ([`crate::commands::app::program_script`]), quoted by the
    /// process manager ([`ProcessManager::command_line`]).
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
    /// Seconds a program must stay up after it started to count as running.
    pub settle_secs: u32,
    /// The directory of its programs' logs (closed to other users).
    pub log_dir: String,
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
            settle_secs: app.settle_secs,
            log_dir: AppPaths::new(&app.name).logs(),
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
    /// The one directory the app user may write (its `HOME`, `shared/data`).
    pub data_dir: String,
    /// Where the slots create their sockets (`run/`).
    pub run_dir: String,
}

impl PathsCtx {
    fn of(p: &AppPaths) -> PathsCtx {
        PathsCtx {
            root: p.root.clone(),
            current: p.current(),
            shared: p.shared(),
            env_file: p.env_file(),
            live_socket: p.live_socket(),
            data_dir: p.data_dir(),
            run_dir: p.run_dir(),
        }
    }
}

impl Context {
    pub fn new(
        pm: &dyn ProcessManager,
        app: &App,
        env: &Env,
        user: &str,
        slot: usize,
        version: &str,
    ) -> Context {
        let p = AppPaths::new(&app.name);
        let socket = p.slot_socket(SLOTS[slot], version);
        let gunicorn = app_cmd::gunicorn_line(&p, version, &socket, app);
        let script = app_cmd::program_script(&p, &app_env(app, version), &gunicorn);
        Context {
            run_as: app.runtime.run_as.clone(),
            static_files: app.runtime.static_files.as_ref().map(|s| StaticCtx {
                url: s.url.clone(),
                dir: format!("{}/{}/", p.current(), s.dir),
                max_age_secs: s.max_age_secs,
            }),
            slot: SlotCtx {
                command: pm.command_line(&script),
                name: SLOTS[slot].to_string(),
                program: pm.program(&app.name, SLOTS[slot]),
                port: slot_port(app, slot),
                socket,
                release_dir: p.release(version),
            },
            app: AppCtx::of(app),
            env: EnvCtx {
                name: env.name.clone(),
            },
            paths: PathsCtx::of(&p),
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
    pub fn new(
        pm: &dyn ProcessManager,
        app: &App,
        env: &Env,
        process: &Process,
        version: &str,
    ) -> ProcessContext {
        let p = AppPaths::new(&app.name);
        let line = app_cmd::process_line(&process.command);
        let script = app_cmd::program_script(&p, &app_env(app, version), &line);
        ProcessContext {
            app: AppCtx::of(app),
            env: EnvCtx {
                name: env.name.clone(),
            },
            process: ProcessCtx {
                name: process.name.clone(),
                program: pm.program(&app.name, &process.name),
                command: pm.command_line(&script),
                count: process.count,
                stop_secs: process.stop_secs,
                version: version.to_string(),
            },
            paths: PathsCtx::of(&p),
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
    /// Loads the nginx site's template and the two `pm` names (a slot's program, and a
    /// worker process's: needed only by applications with processes, an error then) from
    /// `dir`.
    pub fn load(dir: &Path, pm: &dyn ProcessManager) -> Result<Templates, InputError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
            .expect("static syntax config");
        env.set_syntax(syntax);
        for (name, required) in [
            (pm.template(), true),
            (NGINX_TEMPLATE, true),
            (pm.process_template(), false),
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
    msg.push_str("; available: app.{name,package,wsgi,port,workers,server_names,health_path,settle_secs,log_dir}, env.name, paths.{root,current,shared,env_file,live_socket,data_dir,run_dir}, slot.{name,program,port,socket,release_dir,command}, user, run_as, static_files.{url,dir,max_age_secs}; in the process template: process.{name,program,command,count,stop_secs,version}, paths, app, env, run_as");
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
#[path = "render_tests.rs"]
mod tests;
