//! `deploy-gateway`: the bastion-side binary: `serve` (the HTTP API and job runner),
//! `token` (create/list/revoke API tokens), `trust-host` (the explicit act of pinning a
//! host key), `apply` (one job through the job service, printing events) and
//! `check-config` (everything `serve` loads, checked, nothing started); exit codes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use deploy::engine;
use deploy::gateway::apply::{self, Database, Output};
use deploy::gateway::config::GatewayConfig;
use deploy::gateway::jobs::{self, Artifacts, DEFAULT_LEASE, Settings};
use deploy::gateway::service::ServiceError;
use deploy::gateway::store::{Db, Location, StoreError};
use deploy::gateway::tokens;
use deploy::inventory::Inventory;
use deploy::pins::HostKeyPins;
use deploy::ssh::{self, SshOptions};
use deploy::wire::api::{DeployRequest, JobState};

/// Exit codes (documented in README.md).
const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;
/// `apply`: another job runs on that application and environment.
const EXIT_LOCKED: u8 = 6;

#[derive(Parser)]
#[command(
    name = "deploy-gateway",
    version,
    about = "The deploy gateway: engine, API and admin commands (runs on the bastion)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args)]
struct Files {
    /// Gateway config; when given, the inventory and pinned keys are the ones it names.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Inventory file (hosts, applications, environments).
    #[arg(long, short = 'i', default_value = "inventory/inventory.yml")]
    inventory: PathBuf,
    /// Pinned host keys (`[address]:port SHA256:...` per line).
    #[arg(long, default_value = "inventory/known_hosts")]
    known_hosts: PathBuf,
}

#[derive(clap::Args)]
struct ApplyArgs {
    #[command(flatten)]
    files: Files,
    /// The gateway's state database (default: the one `--config` names).
    #[arg(long)]
    database: Option<PathBuf>,
    /// Application name.
    app: String,
    /// Version to deploy (PEP 440; `latest` and specifiers resolve against the index).
    version: String,
    /// Environment.
    #[arg(long, short = 'e')]
    env: String,
    /// Report what would change (with diffs) and change nothing.
    #[arg(long)]
    check: bool,
    /// SSH private key to log in with [default: the config's, else ~/.ssh/id_ed25519].
    #[arg(long)]
    key: Option<String>,
    /// Directory of playbooks [default: the config's, else ./playbooks].
    #[arg(long)]
    playbooks: Option<PathBuf>,
    /// Directory of templates [default: the config's, else ./templates].
    #[arg(long)]
    templates: Option<PathBuf>,
    /// Print events as JSON lines instead of text.
    #[arg(long)]
    json: bool,
    /// Limit for one remote command, in seconds [default: the config's, else 900].
    #[arg(long)]
    command_timeout: Option<u64>,
    /// A static Linux x86_64 uv binary to ship for applications with `installer: uv`
    /// (pinned by its SHA-256 when `--uv-sha256` is given) [default: the config's].
    #[arg(long)]
    uv: Option<PathBuf>,
    #[arg(long, requires = "uv")]
    uv_sha256: Option<String>,
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Create a token; it is printed once and only its hash is stored.
    Create {
        #[arg(long)]
        user: String,
        /// Environments the token may read and act on (comma-separated; `*` for all).
        #[arg(long, value_delimiter = ',', required_unless_present_any = ["admin", "read"])]
        env: Vec<String>,
        /// Environments the token may only read (comma-separated; `*` for all): jobs,
        /// logs, status, versions, ledger, hosts; no deploy, rollback or cancel.
        #[arg(long, value_delimiter = ',')]
        read: Vec<String>,
        /// May act on every environment and read the audit trail.
        #[arg(long)]
        admin: bool,
        /// May run one-off commands (`deploy run`) as the app user, in the environments
        /// it may act on (a right of its own; admins always may).
        #[arg(long)]
        run: bool,
        /// Lifetime: `90d`, `12h` or `30m`; after it the token is refused (401).
        #[arg(long)]
        expires: Option<String>,
    },
    /// List tokens (ids, users, environments, expiry, last use; never the tokens).
    List,
    /// Revoke a token by its id.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the HTTP API (runs until SIGINT/SIGTERM).
    Serve {
        /// [default: ./gateway.toml if there is one, else /etc/deploy-gateway/gateway.toml]
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
    },
    /// Run a site's runner: no API; it runs the hosts of its site (the inventory's
    /// `site`) that jobs of other gateway processes hand over through the shared
    /// PostgreSQL database (runs until SIGINT/SIGTERM).
    Runner {
        /// [default: ./gateway.toml if there is one, else /etc/deploy-gateway/gateway.toml]
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
        /// The site this runner reaches (default: the config's `site`).
        #[arg(long)]
        site: Option<String>,
    },
    /// Check the config, the inventory, playbooks, templates (rendered for every
    /// application and environment), the SSH key and the pinned host keys, starting
    /// nothing and opening no database.  Exit codes: 0 ok, 2 problems (each printed as
    /// `file:line: field: message`).
    CheckConfig {
        /// [default: ./gateway.toml if there is one, else /etc/deploy-gateway/gateway.toml]
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
    },
    /// Manage API tokens.
    Token {
        /// [default: ./gateway.toml if there is one, else /etc/deploy-gateway/gateway.toml]
        #[arg(long, short = 'c', global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// Deploy a release now, from this machine, printing every step.
    ///
    /// With the gateway's database (`--config`, or `--database`) the job takes the same
    /// (application, environment) lock as the gateway's jobs, as user `apply:$USER`, and
    /// is written to its audit trail; a running job there makes it exit with 6.  Without
    /// either it runs without that lock, and says so.  Exit codes: 0 succeeded, 1 failed
    /// or cancelled (Ctrl-C cancels), 2 bad input, 6 locked.
    Apply(Box<ApplyArgs>),
    /// Show a host's SSH key fingerprint and pin it (the explicit act of trusting it).
    TrustHost {
        #[command(flatten)]
        files: Files,
        /// Host name from the inventory.
        host: String,
        /// Pin without asking (after checking the fingerprint another way).
        #[arg(long)]
        yes: bool,
        /// Replace an existing, different pin (after a server was rebuilt).
        #[arg(long)]
        replace: bool,
    },
}

fn expand(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The gateway logs its requests and jobs; the admin commands only what goes wrong.
    let level = match cli.cmd {
        Cmd::Serve { .. } | Cmd::Runner { .. } => tracing::Level::INFO,
        _ => tracing::Level::WARN,
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .init();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    match rt.block_on(dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err((code, msg)) => {
            eprintln!("deploy-gateway: {msg}");
            ExitCode::from(code)
        }
    }
}

type Outcome = Result<u8, (u8, String)>;

fn usage<E: std::fmt::Display>(e: E) -> (u8, String) {
    (EXIT_USAGE, e.to_string())
}

impl Files {
    /// (inventory, known_hosts), from the config if one is given.
    fn resolve(&self) -> Result<(PathBuf, PathBuf), (u8, String)> {
        match &self.config {
            Some(c) => {
                let cfg = GatewayConfig::load(c).map_err(usage)?;
                Ok((cfg.inventory, cfg.known_hosts))
            }
            None => Ok((self.inventory.clone(), self.known_hosts.clone())),
        }
    }
}

async fn dispatch(cli: Cli) -> Outcome {
    match cli.cmd {
        Cmd::Serve { config } => {
            let cfg =
                GatewayConfig::load(&GatewayConfig::path_or_default(config)).map_err(usage)?;
            deploy::gateway::serve(cfg)
                .await
                .map_err(|e| (EXIT_FAILED, e.to_string()))?;
            Ok(0)
        }
        Cmd::Runner { config, site } => {
            let mut cfg =
                GatewayConfig::load(&GatewayConfig::path_or_default(config)).map_err(usage)?;
            if let Some(site) = site {
                deploy_wire::names::check_ident("site", &site)
                    .map_err(|e| usage(format!("--site: {e}")))?;
                cfg.site = Some(site);
            }
            if cfg.site.is_none() {
                return Err(usage(
                    "a runner needs a site: `--site NAME` or `site = \"NAME\"` in its config",
                ));
            }
            deploy::gateway::run_runner(cfg)
                .await
                .map_err(|e| (EXIT_FAILED, e.to_string()))?;
            Ok(0)
        }
        Cmd::CheckConfig { config } => Ok(deploy::gateway::check_config::run(
            &GatewayConfig::path_or_default(config),
        )),
        Cmd::Token { config, cmd } => run_token(&GatewayConfig::path_or_default(config), cmd),
        Cmd::Apply(a) => run_apply(*a).await,
        Cmd::TrustHost {
            files,
            host,
            yes,
            replace,
        } => trust_host(&files, &host, yes, replace).await,
    }
}

/// `token create|list|revoke`, on the database the config names.
fn run_token(config: &std::path::Path, cmd: TokenCmd) -> Outcome {
    let cfg = GatewayConfig::load(config).map_err(usage)?;
    let store = Db::open(&cfg.database).map_err(|e| (EXIT_FAILED, e.to_string()))?;
    let db = |e: StoreError| (EXIT_FAILED, e.to_string());
    match cmd {
        TokenCmd::Create {
            user,
            env,
            read,
            admin,
            run,
            expires,
        } => {
            let scope = tokens::Scopes {
                user,
                envs: env,
                read,
                admin,
                run,
                expires,
            };
            let inv = Inventory::load(&cfg.inventory).map_err(usage)?;
            let known = inv
                .apps
                .values()
                .flat_map(|a| a.environments.keys().cloned())
                .collect();
            tokens::create(&store, scope, &known)?
        }
        TokenCmd::List => tokens::list(&store).map_err(|e| (EXIT_FAILED, e.to_string()))?,
        TokenCmd::Revoke { id } => {
            if !store.revoke_token(&id).map_err(db)? {
                return Err((EXIT_FAILED, format!("no active token {id}")));
            }
            store
                .audit("admin", "token revoke", &id, "ok")
                .map_err(db)?;
            println!("revoked {id}");
        }
    }
    Ok(0)
}

/// Shows a host's key and pins it (after asking, unless `yes`).
async fn trust_host(files: &Files, host: &str, yes: bool, replace: bool) -> Outcome {
    let (inventory, known_hosts) = files.resolve()?;
    let inv = Inventory::load(&inventory).map_err(usage)?;
    let h = inv
        .hosts
        .get(host)
        .ok_or_else(|| usage(format!("no host `{host}` in {}", inventory.display())))?;
    let mut pins = HostKeyPins::load(&known_hosts).map_err(usage)?;
    let fp = ssh::fetch_fingerprint(&h.address, h.port, &SshOptions::default())
        .await
        .map_err(|e| (EXIT_FAILED, e.to_string()))?;
    println!("{host} ({}:{}) offers host key {fp}", h.address, h.port);
    match pins.get(&h.address, h.port) {
        Some(p) if p == fp => {
            println!("already pinned");
            return Ok(0);
        }
        Some(p) if !replace => {
            return Err((
                EXIT_FAILED,
                format!("a different key is pinned ({p}); check the server, then use --replace"),
            ));
        }
        _ => {}
    }
    if !yes {
        eprint!(
            "Pin this key? Compare it with the server's console (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub). [y/N] "
        );
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer).map_err(usage)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Err((EXIT_FAILED, "not pinned".into()));
        }
    }
    pins.pin(&h.address, h.port, &fp).map_err(|e| {
        (
            EXIT_FAILED,
            format!("cannot write {}: {e}", known_hosts.display()),
        )
    })?;
    println!("pinned in {}", known_hosts.display());
    Ok(0)
}

async fn run_apply(a: ApplyArgs) -> Outcome {
    let (settings, database) = apply_settings(&a)?;
    let req = DeployRequest {
        app: a.app,
        env: a.env,
        version: a.version,
        check: a.check,
        batch: None,
        pre: false,
        force: None,
        if_newer: false,
    };
    let output = if a.json { Output::Json } else { Output::Text };
    match apply::run(settings, database, req, output).await {
        Ok(JobState::Succeeded) => Ok(0),
        Ok(_) => Ok(EXIT_FAILED),
        Err(e) => Err(apply_error(e)),
    }
}

/// What `apply` runs with: flags first, then the config (when given), then defaults; and
/// the database: `--database`, else the config's, else a private one.
fn apply_settings(f: &ApplyArgs) -> Result<(Settings, Database), (u8, String)> {
    let files = &f.files;
    let cfg = match &files.config {
        Some(c) => Some(Arc::new(GatewayConfig::load(c).map_err(usage)?)),
        None => None,
    };
    let uv = match (&f.uv, cfg.as_ref().and_then(|c| c.uv.as_ref())) {
        (Some(p), _) => Some(engine::UvTool::load(p, f.uv_sha256.as_deref()).map_err(usage)?),
        (None, Some(u)) => Some(engine::UvTool::load(&u.binary, Some(&u.sha256)).map_err(usage)?),
        (None, None) => None,
    };
    let (inventory, known_hosts) = match &cfg {
        Some(c) => (c.inventory.clone(), c.known_hosts.clone()),
        None => (files.inventory.clone(), files.known_hosts.clone()),
    };
    let key = match (&f.key, &cfg) {
        (Some(k), _) => expand(k),
        (None, Some(c)) => c.ssh_key.clone(),
        (None, None) => expand("~/.ssh/id_ed25519"),
    };
    let or_cfg = |flag: Option<PathBuf>, pick: fn(&GatewayConfig) -> PathBuf, default: &str| {
        flag.or_else(|| cfg.as_deref().map(pick))
            .unwrap_or_else(|| default.into())
    };
    let settings = Settings {
        inventory,
        known_hosts,
        playbooks: or_cfg(f.playbooks.clone(), |c| c.playbooks.clone(), "playbooks"),
        templates: or_cfg(f.templates.clone(), |c| c.templates.clone(), "templates"),
        command_timeout: Duration::from_secs(
            f.command_timeout
                .or(cfg.as_ref().map(|c| c.command_timeout_secs))
                .unwrap_or(900),
        ),
        ssh: SshOptions::default(),
        key: Arc::new(ssh::load_key(&key).map_err(usage)?),
        uv,
        lease: cfg
            .as_ref()
            .map_or(DEFAULT_LEASE, |c| Duration::from_secs(c.lease_secs)),
        owner: jobs::one_off_owner(),
        site: cfg.as_ref().and_then(|c| c.site.clone()),
        site_wait: Duration::from_secs(cfg.as_ref().map_or(120, |c| c.site_wait_secs)),
        artifacts: match &cfg {
            Some(c) => Artifacts::Gateway(c.clone()),
            None => Artifacts::Inventory,
        },
    };
    let database = match (&f.database, &cfg) {
        (Some(d), _) => Database::Shared(Location::Sqlite(d.clone())),
        (None, Some(c)) => Database::Shared(c.database.clone()),
        (None, None) => Database::Private,
    };
    Ok((settings, database))
}

/// `apply`'s exit code and message for a job that did not start.
fn apply_error(e: ServiceError) -> (u8, String) {
    let code = match &e {
        ServiceError::Locked { .. } => EXIT_LOCKED,
        ServiceError::Invalid(_)
        | ServiceError::NotFound(_)
        | ServiceError::UnknownEnvironment(_)
        | ServiceError::Conflict(_) => EXIT_USAGE,
        _ => EXIT_FAILED,
    };
    (code, e.to_string())
}
