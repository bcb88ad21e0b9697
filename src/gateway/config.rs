//! The gateway's own configuration (`gateway.toml`): where it listens, its state file,
//! the inventory, playbooks and templates, its SSH key and pinned host keys, and which CLI
//! versions it accepts, the artifact sources (with their credentials) each application
//! installs from, and the pinned uv binary.  Relative paths are relative to the config
//! file's directory.
//!
//! Credentials are never written in the file itself: a source names an environment
//! variable (`password_env`) or a file (`password_file`) holding each secret.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::artifacts::{ArtifactSource, Artifactory, Auth, Secret, SimpleIndex};
use crate::error::InputError;

use super::pipeline_config::{AppPipeline, Pipeline, RawBuilder, RawGit};
use super::store::Location;

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub path: PathBuf,
    pub listen: String,
    /// The state: a SQLite file, or a PostgreSQL database several gateways share.
    pub database: Location,
    /// How long a gateway's claim on its running jobs lasts unless renewed (a third of
    /// it, every time); a job whose gateway died is taken over after at most this.
    pub lease_secs: u64,
    /// How long a CI build may wait in the builder's queue before its job fails and its
    /// queue item is cancelled (`build_queue_timeout_secs`, default 30 minutes).
    pub build_queue_timeout_secs: u64,
    /// This gateway among those sharing a database: its leases' owner, the same across
    /// restarts (so a restart frees its own jobs at once); default `HOST:CONFIG-PATH`.
    pub gateway_id: String,
    /// The network segment this process reaches (`site = "eu"`): it runs the hosts of
    /// that site (the inventory's `site`) and hands every other host to its site's
    /// runners; None: it runs the hosts with no site (`gateway::sites`).
    pub site: Option<String>,
    /// How long a host handed to another site waits for a runner of that site to take
    /// it before the host fails (`site_wait_secs`, 120 by default).
    pub site_wait_secs: u64,
    pub inventory: PathBuf,
    pub known_hosts: PathBuf,
    pub ssh_key: PathBuf,
    pub playbooks: PathBuf,
    pub templates: PathBuf,
    pub command_timeout_secs: u64,
    pub cli: CliVersions,
    /// Artifact sources by name.
    pub sources: BTreeMap<String, Arc<dyn ArtifactSource>>,
    /// Per application: the name of its source (`[applications.APP] source = "..."`).
    /// An application without one installs from the inventory's `index_url`.
    pub app_sources: BTreeMap<String, String>,
    /// The uv binary the engine ships to servers (`[uv]`), if any.
    pub uv: Option<UvConfig>,
    /// Where the relay keeps downloaded files (by SHA-256).
    pub relay_cache: PathBuf,
    /// The relay cache's bound: past it, the least recently used files go.
    pub relay_cache_max_mb: u64,
    /// Finished jobs, their events and audit rows older than this are pruned.
    pub retention_days: u64,
    /// Git hosts, builders and notifiers, and which each application uses.
    pub pipeline: Pipeline,
    /// `[sign_in]`: how many failed authentications an address may make (the job
    /// service's throttle).
    pub sign_in: super::service::SignInLimits,
}

/// `[uv]`: a uv binary for the servers, pinned by its SHA-256.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UvConfig {
    /// A static (musl) Linux x86_64 uv executable.
    pub binary: PathBuf,
    /// Its SHA-256 (hex); the gateway refuses to start if the file differs.
    pub sha256: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    /// `simple` (any PyPI simple index) or `artifactory`.
    kind: String,
    /// simple: the index URL; artifactory: the base URL ending in `/artifactory`.
    url: String,
    /// The same as the servers reach it (direct delivery), when it differs.
    #[serde(default)]
    servers_url: Option<String>,
    /// artifactory: the repository key.
    #[serde(default)]
    repository: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password_env: Option<String>,
    #[serde(default)]
    password_file: Option<PathBuf>,
    #[serde(default)]
    token_env: Option<String>,
    #[serde(default)]
    token_file: Option<PathBuf>,
    #[serde(default)]
    api_key_env: Option<String>,
    #[serde(default)]
    api_key_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAppCfg {
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    git: Option<String>,
    #[serde(default)]
    repository: Option<String>,
    #[serde(default)]
    builder: Option<String>,
    #[serde(default)]
    build_job: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CliVersions {
    /// Older CLIs are refused with 426 Upgrade Required.
    pub oldest: String,
    /// Older CLIs (but not older than `oldest`) get a one-line notice.
    pub newest: String,
    /// Printed by a refused CLI; `{version}` becomes `newest`.
    pub upgrade_command: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default = "default_listen")]
    listen: String,
    /// A file path (SQLite) or `postgres://user@host:port/dbname`.
    database: String,
    #[serde(default)]
    database_password_env: Option<String>,
    #[serde(default)]
    database_password_file: Option<PathBuf>,
    #[serde(default = "default_lease_secs")]
    lease_secs: u64,
    #[serde(default = "default_build_queue_timeout_secs")]
    build_queue_timeout_secs: u64,
    #[serde(default)]
    gateway_id: Option<String>,
    #[serde(default)]
    site: Option<String>,
    #[serde(default = "default_site_wait_secs")]
    site_wait_secs: u64,
    inventory: PathBuf,
    known_hosts: PathBuf,
    ssh_key: PathBuf,
    #[serde(default = "default_playbooks")]
    playbooks: PathBuf,
    #[serde(default = "default_templates")]
    templates: PathBuf,
    #[serde(default = "default_timeout")]
    command_timeout_secs: u64,
    cli: CliVersions,
    #[serde(default)]
    sources: BTreeMap<String, RawSource>,
    #[serde(default)]
    applications: BTreeMap<String, RawAppCfg>,
    #[serde(default)]
    git: BTreeMap<String, RawGit>,
    #[serde(default)]
    builders: BTreeMap<String, RawBuilder>,
    #[serde(default)]
    notify: Option<toml::Value>,
    #[serde(default)]
    uv: Option<UvConfig>,
    #[serde(default)]
    relay_cache: Option<PathBuf>,
    #[serde(default = "default_relay_cache_max_mb")]
    relay_cache_max_mb: u64,
    #[serde(default)]
    retention: Retention,
    #[serde(default)]
    sign_in: super::service::SignInLimits,
}

/// `[retention]`: how long finished jobs, their events and the audit trail are kept.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Retention {
    #[serde(default = "default_retention_days")]
    days: u64,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            days: default_retention_days(),
        }
    }
}

fn default_build_queue_timeout_secs() -> u64 {
    30 * 60
}

fn default_site_wait_secs() -> u64 {
    120
}

fn default_lease_secs() -> u64 {
    30
}
fn default_relay_cache_max_mb() -> u64 {
    2048
}
fn default_retention_days() -> u64 {
    90
}

fn default_listen() -> String {
    "127.0.0.1:8700".into()
}
fn default_playbooks() -> PathBuf {
    "playbooks".into()
}
fn default_templates() -> PathBuf {
    "templates".into()
}
fn default_timeout() -> u64 {
    900
}

/// Where the Debian package puts the config (and its systemd unit reads it).
pub const PACKAGE_PATH: &str = "/etc/deploy-gateway/gateway.toml";

impl GatewayConfig {
    /// `--config` when given; else `./gateway.toml` when there is one, else the
    /// package's [`PACKAGE_PATH`].
    pub fn path_or_default(config: Option<PathBuf>) -> PathBuf {
        let here = PathBuf::from("gateway.toml");
        config.unwrap_or_else(|| match here.exists() {
            true => here,
            false => PathBuf::from(PACKAGE_PATH),
        })
    }

    pub fn load(path: &Path) -> Result<GatewayConfig, InputError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            InputError::new(
                path,
                None,
                "",
                format!("cannot read the gateway config: {e}"),
            )
        })?;
        let raw: Raw = toml::from_str(&text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start].lines().count().max(1) as u64);
            InputError::new(path, line, "", e.message().to_string())
        })?;
        for (field, v) in [
            ("cli.oldest", &raw.cli.oldest),
            ("cli.newest", &raw.cli.newest),
        ] {
            if !deploy_wire::api::is_semver(v) {
                return Err(InputError::new(
                    path,
                    None,
                    field,
                    format!("expected a semver version, got {v:?}"),
                ));
            }
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let abs = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let line_of = |needle: &str| {
            text.find(needle)
                .map(|i| text[..i].lines().count() as u64 + 1)
        };
        let mut sources: BTreeMap<String, Arc<dyn ArtifactSource>> = BTreeMap::new();
        for (name, raw) in raw.sources {
            let field = format!("sources.{name}");
            let line = line_of(&format!("[sources.{name}]"));
            let src = build_source(raw, &abs)
                .map_err(|(f, m)| InputError::new(path, line, format!("{field}{f}"), m))?;
            sources.insert(name, src);
        }
        let mut app_sources = BTreeMap::new();
        let mut app_pipelines = BTreeMap::new();
        for (app, a) in raw.applications {
            app_pipelines.insert(
                app.clone(),
                AppPipeline {
                    git: a.git,
                    repository: a.repository,
                    builder: a.builder,
                    build_job: a.build_job,
                },
            );
            let Some(source) = a.source else { continue };
            if !sources.contains_key(&source) {
                let known: Vec<&str> = sources.keys().map(String::as_str).collect();
                return Err(InputError::new(
                    path,
                    line_of(&format!("[applications.{app}]")),
                    format!("applications.{app}.source"),
                    format!(
                        "no source `{}`; known: {}",
                        source,
                        if known.is_empty() {
                            "(none: add a [sources.NAME] table)".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            }
            app_sources.insert(app, source);
        }
        let uv = match raw.uv {
            None => None,
            Some(u) => {
                let u = UvConfig {
                    binary: abs(u.binary),
                    sha256: u.sha256.to_ascii_lowercase(),
                };
                if u.sha256.len() != 64 || !u.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(InputError::new(
                        path,
                        line_of("[uv]"),
                        "uv.sha256",
                        "expected the binary's SHA-256 as 64 hex digits",
                    ));
                }
                Some(u)
            }
        };
        if raw.retention.days == 0 {
            return Err(InputError::new(
                path,
                line_of("[retention]"),
                "retention.days",
                "expected at least 1 day",
            ));
        }
        let secret_of = |env, file, what: &str| secret(env, file, what, &abs);
        let password = secret_of(
            raw.database_password_env,
            raw.database_password_file,
            "database_password",
        )
        .map_err(|(f, m)| InputError::new(path, None, f.trim_start_matches('.'), m))?;
        let database = Location::from_config(&raw.database, password, &abs)
            .map_err(|m| InputError::new(path, line_of("database"), "database", m))?;
        raw.sign_in
            .check()
            .map_err(|m| InputError::new(path, line_of("[sign_in]"), "sign_in", m))?;
        if raw.lease_secs < 3 {
            return Err(InputError::new(
                path,
                line_of("lease_secs"),
                "lease_secs",
                "expected at least 3 (seconds)",
            ));
        }
        if let Some(site) = &raw.site {
            deploy_wire::names::check_ident("site", site)
                .map_err(|e| InputError::new(path, line_of("site"), "site", e.to_string()))?;
        }
        // Caches live beside a SQLite file, else in `state/` beside the config.
        let state_dir = match database.file() {
            Some(f) => f.parent().unwrap_or(Path::new(".")).to_path_buf(),
            None => base.join("state"),
        };
        let pipeline = super::pipeline_config::build(
            raw.git,
            raw.builders,
            app_pipelines,
            raw.notify,
            base,
            &state_dir.join("git-cache"),
            &secret_of,
        )
        .map_err(|(table, (field, m))| InputError::new(path, line_of(&table), field, m))?;
        let relay_cache = match raw.relay_cache {
            Some(p) => abs(p),
            None => state_dir.join("relay-cache"),
        };
        Ok(GatewayConfig {
            path: path.to_path_buf(),
            listen: raw.listen,
            database,
            lease_secs: raw.lease_secs,
            build_queue_timeout_secs: raw.build_queue_timeout_secs,
            gateway_id: raw.gateway_id.unwrap_or_else(|| {
                let file = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
                format!("{}:{}", super::jobs::hostname(), file.display())
            }),
            site: raw.site,
            site_wait_secs: raw.site_wait_secs,
            inventory: abs(raw.inventory),
            known_hosts: abs(raw.known_hosts),
            ssh_key: abs(raw.ssh_key),
            playbooks: abs(raw.playbooks),
            templates: abs(raw.templates),
            command_timeout_secs: raw.command_timeout_secs,
            cli: raw.cli,
            sources,
            app_sources,
            uv,
            relay_cache,
            relay_cache_max_mb: raw.relay_cache_max_mb,
            retention_days: raw.retention.days,
            pipeline,
            sign_in: raw.sign_in,
        })
    }

    /// An application's artifact source: the one the config names, else the inventory's
    /// `index_url` as an unauthenticated simple index.
    pub fn source_for(
        &self,
        app: &crate::inventory::App,
    ) -> Result<Arc<dyn ArtifactSource>, String> {
        if let Some(s) = self.app_sources.get(&app.name) {
            return Ok(self.sources[s].clone());
        }
        match &app.index_url {
            Some(url) => Ok(Arc::new(SimpleIndex {
                url: url.clone(),
                servers_url: None,
                auth: Auth::None,
            })),
            None => Err(format!(
                "application `{}` has no artifact source: give it `index_url` in the inventory or `[applications.{}] source = \"...\"` in {}",
                app.name,
                app.name,
                self.path.display()
            )),
        }
    }

    pub fn upgrade_command(&self) -> String {
        self.cli
            .upgrade_command
            .replace("{version}", &self.cli.newest)
    }
}

/// Reads one secret from an environment variable or a file (trailing newline dropped).
fn secret(
    env: Option<String>,
    file: Option<PathBuf>,
    what: &str,
    abs: &dyn Fn(PathBuf) -> PathBuf,
) -> Result<Option<Secret>, (String, String)> {
    match (env, file) {
        (Some(_), Some(_)) => Err((
            format!(".{what}_env"),
            format!("give either {what}_env or {what}_file, not both"),
        )),
        (Some(var), None) => match std::env::var(&var) {
            Ok(v) if !v.is_empty() => Ok(Some(Secret::new(v))),
            _ => Err((
                format!(".{what}_env"),
                format!("the environment variable {var} is not set (it should hold the {what})"),
            )),
        },
        (None, Some(f)) => {
            let f = abs(f);
            let v = std::fs::read_to_string(&f).map_err(|e| {
                (
                    format!(".{what}_file"),
                    format!("cannot read {}: {e}", f.display()),
                )
            })?;
            Ok(Some(Secret::new(v.trim_end_matches(['\n', '\r']))))
        }
        (None, None) => Ok(None),
    }
}

fn build_source(
    raw: RawSource,
    abs: &dyn Fn(PathBuf) -> PathBuf,
) -> Result<Arc<dyn ArtifactSource>, (String, String)> {
    for (f, u) in [
        (".url", Some(&raw.url)),
        (".servers_url", raw.servers_url.as_ref()),
    ] {
        if let Some(u) = u {
            crate::inventory::check_index_url(u).map_err(|m| (f.to_string(), m))?;
        }
    }
    let password = secret(raw.password_env, raw.password_file, "password", abs)?;
    let token = secret(raw.token_env, raw.token_file, "token", abs)?;
    let api_key = secret(raw.api_key_env, raw.api_key_file, "api_key", abs)?;
    let auth = match (password, token, api_key) {
        (None, None, None) => Auth::None,
        (Some(p), None, None) => match &raw.username {
            Some(u) => Auth::Basic {
                user: u.clone(),
                password: p,
            },
            None => {
                return Err((
                    ".username".into(),
                    "a password needs a username (basic auth)".into(),
                ));
            }
        },
        (None, Some(t), None) => Auth::Bearer(t),
        (None, None, Some(k)) => Auth::ApiKey(k),
        _ => {
            return Err((
                String::new(),
                "give one credential: a password, a token or an API key".into(),
            ));
        }
    };
    match raw.kind.as_str() {
        "simple" => {
            if raw.repository.is_some() {
                return Err((
                    ".repository".into(),
                    "only an artifactory source has a repository".into(),
                ));
            }
            if matches!(auth, Auth::ApiKey(_)) {
                return Err((
                    ".api_key_env".into(),
                    "an API key is Artifactory's; a simple index takes a password or a token"
                        .into(),
                ));
            }
            Ok(Arc::new(SimpleIndex {
                url: raw.url,
                servers_url: raw.servers_url,
                auth,
            }))
        }
        "artifactory" => {
            let repository = raw.repository.ok_or((
                ".repository".to_string(),
                "an artifactory source needs the repository key (e.g. pypi-local)".to_string(),
            ))?;
            deploy_wire::names::check_ident("repository", &repository.to_ascii_lowercase())
                .map_err(|e| (".repository".to_string(), e.to_string()))?;
            Ok(Arc::new(Artifactory {
                base: raw.url,
                repository,
                servers_base: raw.servers_url,
                user: raw.username,
                auth,
            }))
        }
        other => Err((
            ".kind".into(),
            format!("expected `simple` or `artifactory`, got {other:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "database = \"state/g.db\"\ninventory = \"inv.yml\"\nknown_hosts = \"kh\"\nssh_key = \"k\"\n\
        [cli]\noldest = \"0.1.0\"\nnewest = \"0.1.0\"\nupgrade_command = \"x\"\n";

    fn load(extra: &str) -> Result<GatewayConfig, InputError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("gateway.toml");
        std::fs::write(&p, format!("{BASE}{extra}")).unwrap();
        std::fs::write(dir.path().join("tok"), "t0ken-from-file\n").unwrap();
        GatewayConfig::load(&p)
    }

    fn app(name: &str) -> crate::inventory::App {
        let inv = crate::inventory::Inventory::parse(
            Path::new("i.yml"),
            &format!(
                "hosts: {{w: {{address: a, groups: [g]}}}}\napplications:\n  {name}:\n    package: p\n    wsgi: m:a\n    port: 8000\n    server_names: [x.test]\n    environments: {{s: {{groups: [g]}}}}\n"
            ),
        )
        .unwrap();
        inv.apps[name].clone()
    }

    #[test]
    fn sources_with_secrets_from_files_and_apps_pointing_at_them() {
        let c = load(
            "[sources.art]\nkind = \"artifactory\"\nurl = \"https://a.test/artifactory\"\nrepository = \"pypi-local\"\n\
             username = \"svc\"\ntoken_file = \"tok\"\n[applications.hello]\nsource = \"art\"\n",
        )
        .unwrap();
        let s = c.source_for(&app("hello")).unwrap();
        assert_eq!(
            s.simple_url(),
            "https://a.test/artifactory/api/pypi/pypi-local/simple/"
        );
        assert_eq!(s.secrets()[0].expose(), "t0ken-from-file");
        assert!(!format!("{s:?}").contains("t0ken"));
        assert!(c.relay_cache.ends_with("state/relay-cache"));
        assert_eq!((c.relay_cache_max_mb, c.retention_days), (2048, 90));
        // No source and no index_url: a clear error naming both ways out.
        let e = c.source_for(&app("other")).err().unwrap();
        assert!(
            e.contains("index_url") && e.contains("[applications.other]"),
            "{e}"
        );
    }

    #[test]
    fn bad_sources_name_the_field_and_never_the_secret() {
        let e = load("[sources.a]\nkind = \"simple\"\nurl = \"http://i/simple\"\ntoken_env = \"DEPLOY_TEST_UNSET_VAR\"\n")
            .err()
            .unwrap();
        assert_eq!(e.field, "sources.a.token_env");
        assert!(e.message.contains("DEPLOY_TEST_UNSET_VAR"), "{e}");
        assert_eq!(e.line, Some(9), "the line of [sources.a]");
        let e = load("[sources.a]\nkind = \"artifactory\"\nurl = \"http://i/\"\n")
            .err()
            .unwrap();
        assert_eq!(e.field, "sources.a.repository");
        let e = load("[sources.a]\nkind = \"nexus\"\nurl = \"http://i/\"\n")
            .err()
            .unwrap();
        assert!(e.message.contains("`simple` or `artifactory`"), "{e}");
        let e =
            load("[sources.a]\nkind = \"simple\"\nurl = \"http://i/\"\npassword_file = \"tok\"\n")
                .err()
                .unwrap();
        assert_eq!(e.field, "sources.a.username");
        assert!(!e.to_string().contains("t0ken"));
        let e = load("[applications.hello]\nsource = \"nope\"\n")
            .err()
            .unwrap();
        assert!(e.message.contains("no source `nope`"), "{e}");
        let e = load("[uv]\nbinary = \"uv\"\nsha256 = \"abc\"\n")
            .err()
            .unwrap();
        assert_eq!(e.field, "uv.sha256");
    }
}
