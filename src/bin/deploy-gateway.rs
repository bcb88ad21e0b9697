//! `deploy-gateway`: the bastion-side binary: `serve` (the HTTP API and job runner),
//! `token` (create/list/revoke API tokens), `trust-host` (the explicit act of pinning a
//! host key) and `apply` (run the engine directly, printing events).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use deploy::engine::{self, EngineConfig, JobSpec};
use deploy::gateway::auth;
use deploy::gateway::config::GatewayConfig;
use deploy::gateway::store::Store;
use deploy::inventory::Inventory;
use deploy::pins::HostKeyPins;
use deploy::ssh::{self, SshOptions};
use deploy::wire::{Event, EventKind, JobStatus};

/// Exit codes (documented in README.md).
const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;

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

#[derive(Subcommand)]
enum TokenCmd {
    /// Create a token; it is printed once and only its hash is stored.
    Create {
        #[arg(long)]
        user: String,
        /// Environments the token may act on (comma-separated; `*` for all).
        #[arg(long, value_delimiter = ',', required_unless_present = "admin")]
        env: Vec<String>,
        /// May act on every environment and read the audit trail.
        #[arg(long)]
        admin: bool,
    },
    /// List tokens (ids, users, environments; never the tokens).
    List,
    /// Revoke a token by its id.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the HTTP API (runs until SIGINT/SIGTERM).
    Serve {
        #[arg(long, short = 'c', default_value = "gateway.toml")]
        config: PathBuf,
    },
    /// Manage API tokens.
    Token {
        #[arg(long, short = 'c', default_value = "gateway.toml", global = true)]
        config: PathBuf,
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// Deploy a release now, from this machine, printing every step.
    Apply {
        #[command(flatten)]
        files: Files,
        /// Application name.
        app: String,
        /// Version to deploy (exact, PEP 440).
        version: String,
        /// Environment.
        #[arg(long, short = 'e')]
        env: String,
        /// Report what would change (with diffs) and change nothing.
        #[arg(long)]
        check: bool,
        /// SSH private key the gateway logs in with.
        #[arg(long, default_value = "~/.ssh/id_ed25519")]
        key: String,
        /// Directory of playbooks.
        #[arg(long, default_value = "playbooks")]
        playbooks: PathBuf,
        /// Directory of templates.
        #[arg(long, default_value = "templates")]
        templates: PathBuf,
        /// Print events as JSON lines instead of text.
        #[arg(long)]
        json: bool,
        /// Limit for one remote command, in seconds.
        #[arg(long, default_value_t = 900)]
        command_timeout: u64,
        /// A static Linux x86_64 uv binary to ship for applications with `installer: uv`
        /// (pinned by its SHA-256 when `--uv-sha256` is given).
        #[arg(long)]
        uv: Option<PathBuf>,
        #[arg(long, requires = "uv")]
        uv_sha256: Option<String>,
    },
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
            let cfg = GatewayConfig::load(&config).map_err(usage)?;
            deploy::gateway::serve(cfg)
                .await
                .map_err(|e| (EXIT_FAILED, e))?;
            Ok(0)
        }
        Cmd::Token { config, cmd } => {
            let cfg = GatewayConfig::load(&config).map_err(usage)?;
            let store = Store::open(&cfg.database).map_err(|e| {
                (
                    EXIT_FAILED,
                    format!("cannot open {}: {e}", cfg.database.display()),
                )
            })?;
            let db = |e: rusqlite::Error| (EXIT_FAILED, e.to_string());
            match cmd {
                TokenCmd::Create { user, env, admin } => {
                    deploy::wire::names::check_ident("user", &user).map_err(usage)?;
                    for e in &env {
                        if e != "*" {
                            deploy::wire::names::check_ident("environment", e).map_err(usage)?;
                        }
                    }
                    let (id, token) =
                        auth::new_token().map_err(|e| (EXIT_FAILED, e.to_string()))?;
                    store
                        .add_token(&id, &auth::hash(&token), &user, &env, admin)
                        .map_err(db)?;
                    store
                        .audit("admin", "token create", &format!("{id} for {user}"), "ok")
                        .map_err(db)?;
                    eprintln!(
                        "token {id} for {user} (environments: {}{}); shown once, store it now:",
                        env.join(","),
                        if admin { ", admin" } else { "" }
                    );
                    println!("{token}");
                }
                TokenCmd::List => {
                    println!(
                        "{:<10} {:<16} {:<24} {:<6} state",
                        "id", "user", "environments", "admin"
                    );
                    for t in store.tokens().map_err(db)? {
                        println!(
                            "{:<10} {:<16} {:<24} {:<6} {}",
                            t.id,
                            t.user,
                            t.envs.join(","),
                            t.admin,
                            if t.revoked { "revoked" } else { "active" }
                        );
                    }
                }
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
        Cmd::Apply {
            files,
            app,
            version,
            env,
            check,
            key,
            playbooks,
            templates,
            json,
            command_timeout,
            uv,
            uv_sha256,
        } => {
            let uv = match uv {
                Some(p) => Some(engine::UvTool::load(&p, uv_sha256.as_deref()).map_err(usage)?),
                None => None,
            };
            let (inventory, known_hosts) = files.resolve()?;
            let inv = Inventory::load(&inventory).map_err(usage)?;
            let pins = HostKeyPins::load(&known_hosts).map_err(usage)?;
            let key = ssh::load_key(&expand(&key)).map_err(usage)?;
            let cfg = EngineConfig {
                playbooks_dir: playbooks,
                templates_dir: templates,
                key: Arc::new(key),
                pins,
                ssh: SshOptions::default(),
                command_timeout: Duration::from_secs(command_timeout),
                uv,
            };
            let spec = JobSpec {
                app,
                env,
                version,
                check,
                no_install: false,
                batch: None,
                index: None,
            };
            let plan = engine::plan(&inv, &cfg, &spec).map_err(usage)?;
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
            let printer = tokio::spawn(async move {
                while let Some(ev) = rx.recv().await {
                    if json {
                        println!("{}", serde_json::to_string(&ev).expect("events serialize"));
                    } else if let Some(line) = text_line(&ev) {
                        println!("{line}");
                    }
                }
            });
            let result = engine::run(plan, Arc::new(cfg), Arc::new(tx)).await;
            let _ = printer.await;
            Ok(if result.status == JobStatus::Succeeded {
                0
            } else {
                EXIT_FAILED
            })
        }
        Cmd::TrustHost {
            files,
            host,
            yes,
            replace,
        } => {
            let (inventory, known_hosts) = files.resolve()?;
            let inv = Inventory::load(&inventory).map_err(usage)?;
            let h = inv
                .hosts
                .get(&host)
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
                        format!(
                            "a different key is pinned ({p}); check the server, then use --replace"
                        ),
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
    }
}

/// One human line per event (output lines of long commands are indented).
fn text_line(ev: &Event) -> Option<String> {
    Some(match &ev.kind {
        EventKind::JobStarted {
            app,
            env,
            version,
            hosts,
            check,
            ..
        } => format!(
            "{} {app} {version} to {env} on {} host(s){}",
            if *check { "CHECK" } else { "DEPLOY" },
            hosts.len(),
            if *check { " (nothing will change)" } else { "" }
        ),
        EventKind::HostStarted { .. }
        | EventKind::StepStarted { .. }
        | EventKind::PhaseStarted { .. } => return None,
        EventKind::PhaseFinished {
            phase,
            host,
            status,
            reason,
            elapsed_ms,
        } => format!(
            "job: {phase}{} {:<8} {reason} ({elapsed_ms} ms)",
            host.as_ref()
                .map(|h| format!(" on {h}"))
                .unwrap_or_default(),
            status.as_str()
        ),
        EventKind::Connected {
            host, elapsed_ms, ..
        } => format!("{host}: connected in {elapsed_ms} ms"),
        EventKind::Output { host, line, .. } => format!("{host}:   | {line}"),
        EventKind::StepFinished {
            host,
            step,
            status,
            reason,
            diff,
            elapsed_ms,
        } => {
            let mut s = format!(
                "{host}: {step:<10} {:<8} {reason} ({elapsed_ms} ms)",
                status.as_str()
            );
            if let Some(d) = diff {
                for l in d.lines() {
                    s.push_str(&format!("\n{host}:     {l}"));
                }
            }
            s
        }
        EventKind::HostFinished {
            host,
            status,
            changed,
            elapsed_ms,
            error,
        } => format!(
            "{host}: {} ({changed} changed, {:.1}s){}",
            status.as_str().to_uppercase(),
            *elapsed_ms as f64 / 1000.0,
            error.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
        ),
        EventKind::JobFinished {
            status,
            elapsed_ms,
            hosts_ok,
            hosts_changed,
            hosts_failed,
        } => format!(
            "{} in {:.1}s: {hosts_changed} changed, {hosts_ok} ok, {hosts_failed} failed",
            status.as_str().to_uppercase(),
            *elapsed_ms as f64 / 1000.0
        ),
    })
}
