//! Retention: finished jobs, their events and notifications, and audit rows older than
//! `[retention] days` are pruned at start-up and then every hour, and so are expired
//! dashboard sessions.  The ledger, the live record and the deploy history (what
//! rollbacks choose from) are kept.

use std::time::Duration;

use super::store::{Db, Pruned, StoreError, now_ms};

/// How often the gateway prunes.
pub const EVERY: Duration = Duration::from_secs(3600);

/// One pass: removes what is older than `days`, and the sessions that have expired.
pub async fn prune(db: &Db, days: u64) -> Result<Pruned, StoreError> {
    let now = now_ms();
    let before = now.saturating_sub(days.saturating_mul(86_400_000));
    let pruned = db
        .call(move |s| {
            let mut pruned = s.prune(before)?;
            pruned.sessions = s.prune_sessions(now)?;
            Ok(pruned)
        })
        .await?;
    if pruned != Pruned::default() {
        tracing::info!(
            "retention ({days} days): pruned {} job(s), {} event(s), {} notification(s), {} audit row(s), {} expired session(s)",
            pruned.jobs,
            pruned.events,
            pruned.deliveries,
            pruned.audit,
            pruned.sessions
        );
    }
    Ok(pruned)
}

/// Prunes now and then every [`EVERY`], for the gateway's life.
pub fn spawn(db: Db, days: u64) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        loop {
            tick.tick().await; // the first tick is at once
            if let Err(e) = prune(&db, days).await {
                tracing::error!("retention: {e}");
            }
        }
    });
}
