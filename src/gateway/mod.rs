//! The gateway: its state ([`state`]: the store, the job runner, the job service) and
//! `serve`, which holds a SQLite database's gateway lock (or, on PostgreSQL, this
//! gateway's id), binds, recovers the jobs of a previous run (SQLite: every dead
//! runner's; PostgreSQL: only its own, others' are left to their leases), and serves
//! the API until SIGINT/SIGTERM.

pub mod api;
pub mod apply;
pub mod auth;
pub mod build_job;
pub mod check_config;
pub mod config;
pub mod dashboard;
pub mod events;
pub mod job_life;
pub mod jobs;
pub mod lockfile;
pub mod metrics;
pub mod notices;
pub mod outbox;
pub mod pipeline_config;
pub mod reconcile;
pub mod relay;
pub mod relay_cache;
pub mod retention;
pub mod scheduler;
pub mod service;
pub mod settings;
pub mod sites;
pub mod store;
pub mod tokens;

use std::path::Path;
use std::sync::Arc;

use config::GatewayConfig;
use jobs::{Jobs, Settings};
use lockfile::{GatewayLock, LockError, NoApplyAlive};
use service::JobService;
use store::{Db, Lease, Orphans, StoreError};

use crate::error::InputError;

/// Why the gateway did not start, or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The inventory (or another input) is broken: its file and line.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The SSH key or the uv binary could not be loaded (the message names the file).
    #[error("{0}")]
    Load(String),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    /// On a shared database, another live gateway has this gateway's id.
    #[error(
        "another gateway with the id {0:?} is running on this database: each gateway sharing it needs its own `gateway_id` (the default is HOST:CONFIG-PATH)"
    )]
    IdTaken(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Opens (and migrates) the state database, checks the inventory, loads the key and uv,
/// and builds the API's state.  Takes no lock and recovers nothing (see [`serve`]).
pub fn state(cfg: GatewayConfig) -> Result<api::AppState, StartError> {
    let db = Db::open(&cfg.database)?;
    let key = crate::ssh::load_key(&cfg.ssh_key).map_err(StartError::Load)?;
    // Fail early on a broken inventory, with its file and line.
    crate::inventory::Inventory::load(&cfg.inventory)?;
    let uv = match &cfg.uv {
        Some(u) => Some(
            crate::engine::UvTool::load(&u.binary, Some(&u.sha256)).map_err(StartError::Load)?,
        ),
        None => None,
    };
    let cfg = Arc::new(cfg);
    let jobs = Jobs::new(db, Settings::gateway(cfg.clone(), key, uv));
    let svc = JobService::new(jobs).with_sign_in_limits(cfg.sign_in);
    Ok(api::AppState::new(svc, &cfg.cli))
}

/// Runs the gateway: on SQLite the lock first (a second gateway on this file stops
/// here, touching nothing), then the listener, then recovery, then the API.  On
/// PostgreSQL there is no lock file: the gateway holds its id, frees only its own
/// previous life's jobs (others may be running theirs), and expired leases of dead
/// gateways are taken over (`job_life`).
pub async fn serve(cfg: GatewayConfig) -> Result<(), StartError> {
    let mut lock = match cfg.database.file() {
        Some(file) => Some(GatewayLock::acquire(file)?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: cfg.listen.clone(),
            source,
        })?;
    let addr = listener.local_addr()?;
    let (file, days) = (
        cfg.database.file().map(Path::to_path_buf),
        cfg.retention_days,
    );
    let state = state(cfg)?;
    match &file {
        Some(file) => recover(state.svc.jobs(), file).await?,
        None => recover_own(state.svc.jobs()).await?,
    }
    job_life::spawn(state.svc.jobs().clone(), true);
    sites::runner::spawn(state.svc.jobs().clone());
    if let Some(outbox) = state.svc.jobs().outbox() {
        outbox.spawn();
    }
    retention::spawn(state.svc.db().clone(), days);
    scheduler::spawn(state.svc.clone());
    if let Some(lock) = &mut lock {
        lock.announce(&addr.to_string())?;
    }
    tracing::info!(
        "gateway {} on {}",
        state.svc.jobs().owner(),
        if file.is_some() {
            "SQLite"
        } else {
            "PostgreSQL (shared)"
        }
    );
    tracing::info!("listening on http://{addr}");
    let svc = state.svc.clone();
    let app = api::router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    // Followed logs never end by themselves: they end when the gateway stops.  On a
    // shared database its running jobs' leases end now, so that another gateway takes
    // them over (and reads their hosts) within a second, or this one when it restarts;
    // on SQLite they are recovered at the next start.
    let stopping = async move {
        shutdown().await;
        if svc.db().shared() {
            let ended = Lease {
                owner: svc.jobs().owner().to_string(),
                until_ms: 0,
            };
            match svc.db().call(move |s| s.renew_leases(&ended)).await {
                Ok(ids) if !ids.is_empty() => tracing::warn!(
                    "the leases of {} running job(s) released for another gateway to take over",
                    ids.len()
                ),
                Ok(_) => {}
                Err(e) => tracing::error!("releasing this gateway's leases: {e}"),
            }
        }
        svc.end_log_streams();
    };
    Ok(axum::serve(listener, app)
        .with_graceful_shutdown(stopping)
        .await?)
}

/// Runs a site's runner (`deploy-gateway runner`): no API, no scheduler; it claims the
/// parts of its site that other processes' jobs hand over (`sites`), on the shared
/// database only.  Its previous life's parts are marked lost first.  At SIGINT/SIGTERM
/// its leases end at once, so the jobs waiting for its parts learn it within a second.
pub async fn run_runner(cfg: GatewayConfig) -> Result<(), StartError> {
    if cfg.database.file().is_some() {
        return Err(StartError::Input(InputError::new(
            &cfg.path,
            None,
            "database",
            "a runner shares the front door's PostgreSQL database (`database = \"postgres://…\"`); SQLite is one gateway's own",
        )));
    }
    let site = cfg.site.clone().unwrap_or_default();
    let state = state(cfg)?;
    let jobs = state.svc.jobs().clone();
    recover_own(&jobs).await?;
    let owner = jobs.owner().to_string();
    let lost = jobs.db.call(move |s| s.lose_parts_of(&owner)).await?;
    for id in &lost {
        tracing::warn!("part {id} was running when this runner stopped: marked lost");
    }
    job_life::spawn(jobs.clone(), false);
    sites::runner::spawn(jobs.clone());
    tracing::info!(
        "runner {} of site {site:?} on PostgreSQL (shared)",
        jobs.owner()
    );
    shutdown().await;
    let ended = Lease {
        owner: jobs.owner().to_string(),
        until_ms: 0,
    };
    if let Err(e) = jobs.db.call(move |s| s.renew_leases(&ended)).await {
        tracing::error!("releasing this runner's leases: {e}");
    }
    Ok(())
}

/// Marks the jobs of a previous run interrupted and frees their locks: every running
/// job when no `apply` is alive, else only the gateways' (a live `apply` owns its job).
async fn recover(jobs: &Jobs, database: &Path) -> Result<(), StartError> {
    let no_apply = NoApplyAlive::check(database)?;
    let which = match &no_apply {
        Some(_) => Orphans::All,
        None => Orphans::Gateway,
    };
    let ids = jobs.recover(which).await?;
    drop(no_apply);
    for id in &ids {
        tracing::warn!("job {id} was interrupted by a gateway stop; its lock is released");
    }
    reconcile::spawn(jobs.clone(), ids);
    Ok(())
}

/// On a shared database: holds this gateway's id (a second gateway with the same id
/// stops here), then marks the jobs of its own previous life interrupted.
async fn recover_own(jobs: &Jobs) -> Result<(), StartError> {
    let owner = jobs.owner().to_string();
    let held = (jobs.db).call(move |s| s.hold_identity(&owner)).await?;
    if !held {
        return Err(StartError::IdTaken(jobs.owner().to_string()));
    }
    let ids = jobs.recover_own().await?;
    for id in &ids {
        tracing::warn!("job {id} was interrupted by this gateway's stop; its lock is released");
    }
    reconcile::spawn(jobs.clone(), ids);
    Ok(())
}

async fn shutdown() {
    let term = async {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut s) = signal(SignalKind::terminate()) {
            s.recv().await;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("shutting down; running jobs stop here");
}
