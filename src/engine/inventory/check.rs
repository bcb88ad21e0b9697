//! Validation of a parsed inventory, one function per section (host, application,
//! environment); every error names the file, the line and the field.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use deploy_wire::names;
use serde_saphyr::Spanned;

use super::raw::{RawApp, RawEnvironment, RawHost};
use super::runtime::RawRuntime;
use super::{
    App, BatchSize, Environment, Health, Host, OnHalt, ProcessManagerKind, Rollout, check_env,
    check_index_url,
};
use crate::error::InputError;

/// Validation, one function per section of the file; every error names the file, the
/// line and the field.
pub(super) struct Check<'a> {
    pub(super) path: &'a Path,
}

impl Check<'_> {
    pub(super) fn err(&self, line: u64, field: String, msg: String) -> InputError {
        InputError::new(self.path, Some(line), field, msg)
    }

    pub(super) fn host(&self, name: String, h: Spanned<RawHost>) -> Result<Host, InputError> {
        let line = h.referenced.line();
        let field = format!("hosts.{name}");
        let h = h.value;
        names::check_ident("host name", &name)
            .map_err(|e| self.err(line, field.clone(), e.to_string()))?;
        names::check_hostname("address", &h.address.value, false).map_err(|e| {
            self.err(
                h.address.referenced.line(),
                format!("{field}.address"),
                e.to_string(),
            )
        })?;
        names::check_ident("user", &h.user.value).map_err(|e| {
            self.err(
                h.user.referenced.line().max(line),
                format!("{field}.user"),
                e.to_string(),
            )
        })?;
        if h.groups.value.is_empty() {
            return Err(self.err(
            line,
            format!("{field}.groups"),
            format!(
                "host `{name}` is in no group, so no environment can reach it; add `groups: [...]`"
            ),
        ));
        }
        for g in &h.groups.value {
            names::check_ident("group name", g).map_err(|e| {
                self.err(
                    h.groups.referenced.line(),
                    format!("{field}.groups"),
                    e.to_string(),
                )
            })?;
        }
        if let Some(site) = &h.site {
            names::check_ident("site", &site.value).map_err(|e| {
                self.err(
                    site.referenced.line().max(line),
                    format!("{field}.site"),
                    e.to_string(),
                )
            })?;
        }
        Ok(Host {
            name,
            address: h.address.value,
            port: h.port,
            user: h.user.value,
            groups: h.groups.value,
            site: h.site.map(|s| s.value),
        })
    }

    pub(super) fn app(
        &self,
        name: String,
        a: Spanned<RawApp>,
        groups: &BTreeSet<String>,
        hosts: &BTreeMap<String, Host>,
    ) -> Result<App, InputError> {
        let line = a.referenced.line();
        let field = format!("applications.{name}");
        let a = a.value;
        names::check_ident("application name", &name)
            .map_err(|e| self.err(line, field.clone(), e.to_string()))?;
        names::check_package(&a.package.value).map_err(|e| {
            self.err(
                a.package.referenced.line(),
                format!("{field}.package"),
                e.to_string(),
            )
        })?;
        if let Some(u) = &a.index_url {
            check_index_url(&u.value)
                .map_err(|m| self.err(u.referenced.line(), format!("{field}.index_url"), m))?;
        }
        names::check_ident("playbook name", &a.playbook.value).map_err(|e| {
            self.err(
                a.playbook.referenced.line().max(line),
                format!("{field}.playbook"),
                e.to_string(),
            )
        })?;
        names::check_entry_point(&a.wsgi.value).map_err(|e| {
            self.err(
                a.wsgi.referenced.line(),
                format!("{field}.wsgi"),
                e.to_string(),
            )
        })?;
        if a.port < 1024 || a.port == u16::MAX {
            return Err(self.err(
                line,
                format!("{field}.port"),
                format!(
                    "port {} is out of range: use 1024-65534 (the green slot uses port + 1)",
                    a.port
                ),
            ));
        }
        if a.workers == 0 || a.workers > 64 {
            return Err(self.err(
                line,
                format!("{field}.workers"),
                "expected 1 to 64 workers".into(),
            ));
        }
        if a.server_names.value.is_empty() {
            return Err(self.err(
                a.server_names.referenced.line(),
                format!("{field}.server_names"),
                "expected at least one server name".into(),
            ));
        }
        for s in &a.server_names.value {
            let fits = names::check_hostname("server name", s, true)
                .map_err(|e| e.to_string())
                .and_then(|()| fits_nginx_hash(s));
            fits.map_err(|message| {
                self.err(
                    a.server_names.referenced.line(),
                    format!("{field}.server_names"),
                    message,
                )
            })?;
        }
        let hp = &a.health.path;
        if !hp.value.starts_with('/')
            || !hp.value.chars().all(|c| c.is_ascii_graphic())
            || hp.value.contains(['\'', '"', '\\', '`', '$'])
        {
            return Err(self.err(
                hp.referenced.line().max(line),
                format!("{field}.health.path"),
                format!("expected a URL path such as /healthz, got {:?}", hp.value),
            ));
        }
        check_env(&a.env.value)
            .map_err(|m| self.err(a.env.referenced.line().max(line), format!("{field}.env"), m))?;
        if a.keep_releases.value == 0 {
            return Err(self.err(
                a.keep_releases.referenced.line().max(line),
                format!("{field}.keep_releases"),
                "expected at least 1".into(),
            ));
        }
        if !(1..=300).contains(&a.settle_secs.value) {
            return Err(self.err(
                a.settle_secs.referenced.line().max(line),
                format!("{field}.settle_secs"),
                format!("expected 1 to 300 seconds, got {}", a.settle_secs.value),
            ));
        }
        let runtime = self.runtime(
            &name,
            &field,
            line,
            RawRuntime {
                run_as: a.run_as,
                worker_class: a.worker_class,
                timeout_secs: a.timeout_secs,
                server_args: a.server_args,
                processes: a.processes,
                hooks: a.hooks,
                static_files: a.static_files,
            },
        )?;
        let mut environments: BTreeMap<String, Environment> = BTreeMap::new();
        for (env_name, e) in a.environments {
            let eline = e.referenced.line();
            let env = self.environment(&field, env_name, e, groups, a.process_manager)?;
            if let Some((other, host)) = shared_host(&environments, &env, hosts) {
                return Err(self.err(
                    eline,
                    format!("{field}.environments.{}.groups", env.name),
                    format!(
                        "environments `{other}` and `{}` both select host `{host}`: on one host they would share one directory, slots and nginx site; give the second its own application entry (its own name, port and server_names)",
                        env.name
                    ),
                ));
            }
            environments.insert(env.name.clone(), env);
        }
        Ok(App {
            name,
            package: a.package.value,
            index_url: a.index_url.map(|u| u.value),
            installer: a.installer,
            process_manager: a.process_manager,
            playbook: a.playbook.value,
            wsgi: a.wsgi.value,
            port: a.port,
            workers: a.workers,
            server_names: a.server_names.value,
            health: Health {
                path: a.health.path.value,
                expect_status: a.health.expect_status,
                timeout_secs: a.health.timeout_secs.max(1),
                retries: a.health.retries.max(1),
                interval_ms: a.health.interval_ms,
            },
            env: a.env.value,
            keep_releases: a.keep_releases.value,
            drain_secs: a.drain_secs,
            settle_secs: a.settle_secs.value,
            environments,
            runtime,
        })
    }

    fn environment(
        &self,
        field: &str,
        env_name: String,
        e: Spanned<RawEnvironment>,
        groups: &BTreeSet<String>,
        app_pm: ProcessManagerKind,
    ) -> Result<Environment, InputError> {
        let eline = e.referenced.line();
        let efield = format!("{field}.environments.{env_name}");
        let e = e.value;
        names::check_ident("environment name", &env_name)
            .map_err(|x| self.err(eline, efield.clone(), x.to_string()))?;
        if e.groups.value.is_empty() {
            return Err(self.err(
                e.groups.referenced.line().max(eline),
                format!("{efield}.groups"),
                "expected at least one group".into(),
            ));
        }
        for g in &e.groups.value {
            if !groups.contains(g) {
                let known: Vec<&str> = groups.iter().map(String::as_str).collect();
                return Err(self.err(
                    e.groups.referenced.line().max(eline),
                    format!("{efield}.groups"),
                    format!(
                        "no host is in group `{g}`; known groups: {}",
                        if known.is_empty() {
                            "(none)".into()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            }
        }
        if e.parallel == 0 {
            return Err(self.err(
                eline,
                format!("{efield}.parallel"),
                "expected at least 1".into(),
            ));
        }
        check_env(&e.env.value).map_err(|m| {
            self.err(
                e.env.referenced.line().max(eline),
                format!("{efield}.env"),
                m,
            )
        })?;
        let mut rollout = Rollout::default();
        if let Some(r) = e.rollout {
            if let Some(b) = r.batch {
                rollout.batch = BatchSize::parse(&b.value).map_err(|m| {
                    self.err(
                        b.referenced.line().max(eline),
                        format!("{efield}.rollout.batch"),
                        m,
                    )
                })?;
            }
            rollout.canary = r.canary.unwrap_or(rollout.canary);
            rollout.pause_secs = r.pause_secs.unwrap_or(0);
            rollout.max_failed = r.max_failed.unwrap_or(0);
            rollout.on_halt = r.on_halt.unwrap_or(OnHalt::Rollback);
        }
        let mut windows = Vec::new();
        if let Some(w) = &e.windows {
            for text in &w.value {
                let window = crate::schedule::Window::parse(text).map_err(|m| {
                    self.err(
                        w.referenced.line().max(eline),
                        format!("{efield}.windows"),
                        format!("{text:?}: {m}"),
                    )
                })?;
                windows.push(window);
            }
        }
        Ok(Environment {
            windows,
            rollout,
            confirm: e.confirm.unwrap_or_else(|| env_name.starts_with("prod")),
            name: env_name,
            groups: e.groups.value,
            parallel: e.parallel,
            env: e.env.value,
            delivery: e.delivery,
            process_manager: e.process_manager.unwrap_or(app_pm),
            line: eline,
        })
    }
}

/// Decision: two environments of one application may not share a host (they would
/// overwrite each other's release directories, slots and nginx site).  The first
/// environment already checked that selects a host `env` selects, with that host.
fn shared_host(
    checked: &BTreeMap<String, Environment>,
    env: &Environment,
    hosts: &BTreeMap<String, Host>,
) -> Option<(String, String)> {
    let selects = |e: &Environment, h: &Host| h.groups.iter().any(|g| e.groups.contains(g));
    checked.values().find_map(|other| {
        hosts
            .values()
            .find(|h| selects(other, h) && selects(env, h))
            .map(|h| (other.name.clone(), h.name.clone()))
    })
}

/// The longest server name nginx holds with its default `server_names_hash_bucket_size`
/// (64 on amd64 and arm64; Debian's nginx.conf leaves it so): a name takes a pointer,
/// its length plus 2 rounded up to 8, and the bucket ends with a pointer, so
/// 8 + 48 + 8 = 64.  A longer one passes a host with one site and fails `nginx -t` on
/// any host with two (measured on the test image: 46 passes, 48 fails).  Refused at
/// load, where the file and line can be named, rather than at a deploy's `nginx -t`.
pub const NGINX_MAX_SERVER_NAME: usize = 46;

fn fits_nginx_hash(name: &str) -> Result<(), String> {
    if name.len() <= NGINX_MAX_SERVER_NAME {
        return Ok(());
    }
    Err(format!(
        "server name of {} characters: nginx's default server_names_hash_bucket_size (64) holds names of at most {NGINX_MAX_SERVER_NAME}",
        name.len()
    ))
}
