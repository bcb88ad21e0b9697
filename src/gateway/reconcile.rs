//! After a restart: a job the previous gateway left running may have switched hosts it
//! never heard about (a command finishes on the server after its gateway died).  For
//! each interrupted deploy, the hosts of its application and environment are asked what
//! they serve ([`crate::engine::observe`]) and the live record is set to their answers,
//! so `deploy status` names what runs, not what the dead gateway last heard.  Parts of
//! the job that site runners still run (`sites`) are waited for first: their runners
//! stop them at their next renewal, and until then a command may still change a host.

use std::sync::Arc;

use deploy_wire::api::JobKind;

use super::jobs::Jobs;
use super::store::{LiveRow, StoreError, now_ms};
use crate::error::InputError;

/// How long a reconcile waits for the job's parts on site runners to stop (a runner
/// drops them at its next renewal: a third of its lease).
const SETTLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Why a job's hosts were not read.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The inventory or the engine's files (key, pins) are broken.
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("no such job")]
    NoSuchJob,
}

/// Reconciles the interrupted jobs in the background (the API is already serving).
pub fn spawn(jobs: Jobs, ids: Vec<String>) {
    tokio::spawn(async move {
        for id in ids {
            match reconcile(&jobs, &id).await {
                Ok(n) => {
                    tracing::info!("job {id}: the live record of {n} host(s) read from the hosts")
                }
                Err(e) => tracing::warn!("job {id}: cannot read its hosts after the restart: {e}"),
            }
        }
    });
}

/// Returns how many hosts answered (and were recorded).
pub async fn reconcile(jobs: &Jobs, id: &str) -> Result<usize, ReconcileError> {
    let job_id = id.to_string();
    let job = jobs
        .db
        .call(move |s| s.job(&job_id))
        .await?
        .ok_or(ReconcileError::NoSuchJob)?;
    if matches!(job.kind, JobKind::Check | JobKind::Run) {
        return Ok(0);
    }
    // Parts on other sites' runners go on until their runners see the job ended.
    if !super::sites::settle(&jobs.db, id, SETTLE_LIMIT).await {
        tracing::warn!("job {id}: parts of it still run on site runners; reading its hosts anyway");
    }
    let inv = jobs.inventory()?;
    let cfg = Arc::new(jobs.engine_config()?);
    let seen = super::sites::observe::observe(jobs, &inv, cfg, &job.app, &job.env).await?;
    let rows: Vec<LiveRow> = seen
        .into_iter()
        .filter_map(|o| {
            let view = o.view.ok()?;
            Some(LiveRow {
                app: job.app.clone(),
                env: job.env.clone(),
                host: o.host,
                version: view.version?,
                slot: view.live_slot?,
                job_id: job.id.clone(),
                user: job.user.clone(),
                ts_ms: now_ms(),
            })
        })
        .collect();
    let n = rows.len();
    jobs.db.call(move |s| s.set_live(&rows)).await?;
    Ok(n)
}
