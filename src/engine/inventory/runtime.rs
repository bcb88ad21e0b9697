//! How an application runs on a server, beyond its package: the unprivileged user its
//! processes run as, the web server's options, its other processes (workers,
//! schedulers), its release hooks and its static files.  The YAML shape, the model and
//! their validation, with file:line:field errors.
//!
//! Commands (of processes and hooks) are shell command lines written by the inventory's
//! author, like a Procfile's: they run under `sh -c`, as the app user, with the release's
//! virtualenv first on `PATH`.  They travel as one quoted argument, never pasted into
//! another command line; line breaks and NUL bytes are refused.

use std::collections::BTreeMap;

use deploy_wire::names;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::check::Check;
use crate::error::InputError;

/// A process of the application besides the web slots (a Celery or RQ worker, a
/// scheduler): `count` copies of `command`, under the process manager, restarted on the
/// live release after every switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub name: String,
    pub command: String,
    pub count: u32,
    /// Seconds between TERM and KILL when it is stopped or restarted.
    pub stop_secs: u32,
}

/// Where a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookScope {
    /// Once per environment per release, on the first host of the rollout (database
    /// migrations); the other hosts wait for it before they switch.
    #[default]
    Once,
    /// On every host, each before its own switch (collectstatic, cache warm-up).
    EveryHost,
}

/// A command run with the release's virtualenv and environment, as the app user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    pub name: String,
    pub command: String,
    pub scope: HookScope,
    pub timeout_secs: u32,
}

/// The application's release hooks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hooks {
    /// After the release is installed, before any traffic moves to it.
    pub before_switch: Vec<Hook>,
    /// After the switch passed its health check.
    pub after_switch: Vec<Hook>,
}

/// Static files nginx serves itself, from the live release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticFiles {
    /// URL prefix, with leading and trailing `/` (`/static/`).
    pub url: String,
    /// Directory inside the release (`static`); hooks get it as `DEPLOY_STATIC_ROOT`.
    pub dir: String,
    /// `Cache-Control: public, max-age=` of the responses.
    pub max_age_secs: u32,
}

/// How the application's processes run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtime {
    /// The unprivileged user every process and hook runs as (default `app-<name>`).
    pub run_as: String,
    /// gunicorn's worker class (`uvicorn.workers.UvicornWorker` for ASGI); None: sync.
    pub worker_class: Option<String>,
    /// gunicorn's `--timeout`.
    pub timeout_secs: u32,
    /// More gunicorn arguments, each passed as one word.
    pub server_args: Vec<String>,
    pub processes: Vec<Process>,
    pub hooks: Hooks,
    pub static_files: Option<StaticFiles>,
}

// ---- the YAML shape ----------------------------------------------------------------

/// The runtime fields of an application entry (they sit beside the other fields of
/// `RawApp`; serde cannot flatten with `deny_unknown_fields`).
pub(super) struct RawRuntime {
    pub(super) run_as: Option<Spanned<String>>,
    pub(super) worker_class: Option<Spanned<String>>,
    pub(super) timeout_secs: Option<u32>,
    pub(super) server_args: Option<Spanned<Vec<String>>>,
    pub(super) processes: BTreeMap<String, Spanned<RawProcess>>,
    pub(super) hooks: Option<Spanned<RawHooks>>,
    pub(super) static_files: Option<Spanned<RawStatic>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProcess {
    #[serde(default)]
    command: Option<Spanned<String>>,
    #[serde(default)]
    count: Option<u32>,
    #[serde(default)]
    stop_secs: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHooks {
    #[serde(default)]
    before_switch: Vec<Spanned<RawHook>>,
    #[serde(default)]
    after_switch: Vec<Spanned<RawHook>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHook {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    command: Option<Spanned<String>>,
    #[serde(default)]
    scope: HookScope,
    #[serde(default)]
    timeout_secs: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStatic {
    url: Spanned<String>,
    #[serde(default)]
    dir: Option<Spanned<String>>,
    #[serde(default)]
    max_age_secs: Option<u32>,
}

// ---- validation --------------------------------------------------------------------

/// A unix user name: `[a-z_][a-z0-9_-]*`, at most 32 characters.
fn check_user(u: &str) -> Result<(), String> {
    let ok = !u.is_empty()
        && u.len() <= 32
        && u.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && u.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !ok {
        return Err(format!(
            "expected a unix user name (lowercase letters, digits, '_', '-'; at most 32), got {u:?}"
        ));
    }
    if u == "root" {
        return Err("the application may not run as root".into());
    }
    Ok(())
}

/// A command line: not empty, one line, no NUL.
fn check_command(c: Option<&Spanned<String>>) -> Result<String, String> {
    match c.map(|c| c.value.trim()) {
        None | Some("") => Err("expected a command (a shell command line)".into()),
        Some(c) if c.contains(['\n', '\r', '\0']) => {
            Err("the command must be one line (no line breaks or NUL bytes)".into())
        }
        Some(c) => Ok(c.to_string()),
    }
}

/// A path inside the release: relative, no `..`, plain characters.
fn check_release_path(p: &str) -> Result<(), String> {
    let ok = !p.is_empty()
        && !p.starts_with('/')
        && p.split('/').all(|s| !s.is_empty() && s != "." && s != "..")
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected a relative path inside the release such as `static`, got {p:?}"
        ))
    }
}

fn check_url_prefix(u: &str) -> Result<(), String> {
    let ok = u.len() > 1
        && u.starts_with('/')
        && u.ends_with('/')
        && u.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected a URL prefix with a leading and a trailing `/` such as /static/, got {u:?}"
        ))
    }
}

impl Check<'_> {
    /// Validates the runtime fields of application `app` (`field` is its dotted path,
    /// `line` the application's line, for fields without a span of their own).
    pub(super) fn runtime(
        &self,
        app: &str,
        field: &str,
        line: u64,
        r: RawRuntime,
    ) -> Result<Runtime, InputError> {
        let at = |l: u64, f: &str, m: String| self.err(l.max(line), format!("{field}.{f}"), m);
        let run_as = match &r.run_as {
            Some(u) => {
                check_user(&u.value).map_err(|m| at(u.referenced.line(), "run_as", m))?;
                u.value.clone()
            }
            None => format!("app-{app}"),
        };
        let worker_class = match &r.worker_class {
            Some(w) => {
                // Dotted Python names: no empty part ("." and ".." are none).
                let ok = w.value.split('.').all(|part| {
                    part.chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                        && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                });
                if !ok {
                    return Err(at(
                        w.referenced.line(),
                        "worker_class",
                        format!(
                            "expected a gunicorn worker class such as sync or uvicorn.workers.UvicornWorker, got {:?}",
                            w.value
                        ),
                    ));
                }
                Some(w.value.clone())
            }
            None => None,
        };
        let server_args = match r.server_args {
            Some(a) => {
                if let Some(bad) = a.value.iter().find(|s| s.contains(['\n', '\r', '\0'])) {
                    return Err(at(
                        a.referenced.line(),
                        "server_args",
                        format!("an argument contains a line break or NUL byte: {bad:?}"),
                    ));
                }
                a.value
            }
            None => vec![],
        };
        let mut processes = Vec::new();
        for (name, p) in r.processes {
            processes.push(self.process(field, line, name, p)?);
        }
        let hooks = match r.hooks {
            Some(h) => self.hooks(field, line, h)?,
            None => Hooks::default(),
        };
        let static_files = match r.static_files {
            Some(s) => Some(self.static_files(field, line, s)?),
            None => None,
        };
        Ok(Runtime {
            run_as,
            worker_class,
            timeout_secs: r.timeout_secs.unwrap_or(30).max(1),
            server_args,
            processes,
            hooks,
            static_files,
        })
    }

    fn process(
        &self,
        field: &str,
        line: u64,
        name: String,
        p: Spanned<RawProcess>,
    ) -> Result<Process, InputError> {
        let pline = p.referenced.line().max(line);
        let pfield = format!("{field}.processes.{name}");
        let err = |f: &str, m: String| self.err(pline, format!("{pfield}{f}"), m);
        names::check_ident("process name", &name).map_err(|e| err("", e.to_string()))?;
        if ["blue", "green"].contains(&name.as_str()) {
            return Err(err(
                "",
                format!("`{name}` names a web slot's program; choose another process name"),
            ));
        }
        if name == "web" {
            return Err(err(
                "",
                "`web` is the blue/green gunicorn process: configure it with wsgi, workers, worker_class and server_args".into(),
            ));
        }
        let p = p.value;
        let command = check_command(p.command.as_ref()).map_err(|m| err(".command", m))?;
        let count = p.count.unwrap_or(1);
        if count == 0 || count > 32 {
            return Err(err(".count", "expected 1 to 32 copies".into()));
        }
        Ok(Process {
            name,
            command,
            count,
            stop_secs: p.stop_secs.unwrap_or(30),
        })
    }

    fn hooks(&self, field: &str, line: u64, h: Spanned<RawHooks>) -> Result<Hooks, InputError> {
        let hline = h.referenced.line().max(line);
        let mut seen = std::collections::BTreeSet::new();
        let mut check =
            |when: &str, list: Vec<Spanned<RawHook>>| -> Result<Vec<Hook>, InputError> {
                let mut out = Vec::new();
                for (i, raw) in list.into_iter().enumerate() {
                    let l = raw.referenced.line().max(hline);
                    let hfield = format!("{field}.hooks.{when}[{i}]");
                    let raw = raw.value;
                    let name = raw.name.unwrap_or_else(|| format!("{when}-{}", i + 1));
                    names::check_ident("hook name", &name)
                        .map_err(|e| self.err(l, format!("{hfield}.name"), e.to_string()))?;
                    if !seen.insert(name.clone()) {
                        return Err(self.err(
                            l,
                            format!("{hfield}.name"),
                            format!("two hooks are named `{name}`; hook names must be unique"),
                        ));
                    }
                    let command = check_command(raw.command.as_ref())
                        .map_err(|m| self.err(l, format!("{hfield}.command"), m))?;
                    out.push(Hook {
                        name,
                        command,
                        scope: raw.scope,
                        timeout_secs: raw.timeout_secs.unwrap_or(600).max(1),
                    });
                }
                Ok(out)
            };
        let h = h.value;
        Ok(Hooks {
            before_switch: check("before_switch", h.before_switch)?,
            after_switch: check("after_switch", h.after_switch)?,
        })
    }

    fn static_files(
        &self,
        field: &str,
        line: u64,
        s: Spanned<RawStatic>,
    ) -> Result<StaticFiles, InputError> {
        let sline = s.referenced.line().max(line);
        let s = s.value;
        check_url_prefix(&s.url.value).map_err(|m| {
            self.err(
                s.url.referenced.line().max(sline),
                format!("{field}.static.url"),
                m,
            )
        })?;
        let dir = match s.dir {
            Some(d) => {
                check_release_path(&d.value).map_err(|m| {
                    self.err(
                        d.referenced.line().max(sline),
                        format!("{field}.static.dir"),
                        m,
                    )
                })?;
                d.value
            }
            None => "static".to_string(),
        };
        Ok(StaticFiles {
            url: s.url.value,
            dir,
            max_age_secs: s.max_age_secs.unwrap_or(3600),
        })
    }
}
