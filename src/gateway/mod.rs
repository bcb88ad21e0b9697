//! The gateway: the HTTP API (axum) in front of the engine, its state, auth and the
//! CLI version handshake.  `serve` runs until SIGINT/SIGTERM.

pub mod api;
pub mod auth;
pub mod config;
pub mod jobs;
pub mod relay;
pub mod store;

use std::sync::Arc;

use config::GatewayConfig;
use jobs::Jobs;
use store::Store;

/// Starts the gateway: opens (and migrates) the state file, marks jobs of a previous run
/// interrupted, and serves the API until a shutdown signal.
pub async fn serve(cfg: GatewayConfig) -> Result<(), String> {
    let store = Store::open(&cfg.database)
        .map_err(|e| format!("cannot open {}: {e}", cfg.database.display()))?;
    let key = crate::ssh::load_key(&cfg.ssh_key)?;
    // Fail early on a broken inventory, with its file and line.
    crate::inventory::Inventory::load(&cfg.inventory).map_err(|e| e.to_string())?;
    let uv = match &cfg.uv {
        Some(u) => Some(crate::engine::UvTool::load(&u.binary, Some(&u.sha256))?),
        None => None,
    };
    let cfg = Arc::new(cfg);
    let jobs = Jobs::new(store, cfg.clone(), Arc::new(key), uv);
    let interrupted = jobs.recover()?;
    for id in &interrupted {
        eprintln!(
            "deploy-gateway: job {id} was interrupted by a gateway stop; its lock is released"
        );
    }
    let app = api::router(api::AppState::new(cfg.clone(), jobs));
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
    eprintln!(
        "deploy-gateway: listening on http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown())
        .await
        .map_err(|e| e.to_string())
}

async fn shutdown() {
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    eprintln!(
        "deploy-gateway: shutting down; running jobs will be marked interrupted on the next start"
    );
}
