//! The SQLite queries of versions 2 and 3 of the schema: the live record, the deploy
//! history, tokens (scopes, expiry, last use, the `run` right) and retention.  Part of
//! `sqlite.rs`'s `Store` impl.

use rusqlite::{OptionalExtension, params};

use super::sqlite::{SqliteStore, TOKEN_COLS, token_from_row};
use super::{LiveRow, NewToken, Pruned, Result, now_ms};

pub(super) fn set_live(s: &SqliteStore, rows: &[LiveRow]) -> Result<()> {
    s.with("recording what a host serves", |c| {
        let tx = c.transaction()?;
        {
            let mut st = tx.prepare_cached(
                "INSERT INTO live (app, env, host, version, slot, job_id, user, ts_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (app, env, host) DO UPDATE SET version=?4, slot=?5, job_id=?6,
                 user=?7, ts_ms=?8",
            )?;
            for r in rows {
                st.execute(params![
                    r.app,
                    r.env,
                    r.host,
                    r.version,
                    r.slot,
                    r.job_id,
                    r.user,
                    r.ts_ms as i64
                ])?;
            }
        }
        tx.commit()
    })
}

pub(super) fn live_row(
    s: &SqliteStore,
    app: &str,
    env: &str,
    host: &str,
) -> Result<Option<LiveRow>> {
    s.with("reading what a host serves", |c| {
        c.query_row(
            "SELECT app, env, host, version, slot, job_id, user, ts_ms FROM live
             WHERE app=?1 AND env=?2 AND host=?3",
            params![app, env, host],
            |r| {
                Ok(LiveRow {
                    app: r.get(0)?,
                    env: r.get(1)?,
                    host: r.get(2)?,
                    version: r.get(3)?,
                    slot: r.get(4)?,
                    job_id: r.get(5)?,
                    user: r.get(6)?,
                    ts_ms: r.get::<_, i64>(7)? as u64,
                })
            },
        )
        .optional()
    })
}

pub(super) fn add_deploy(
    s: &SqliteStore,
    app: &str,
    env: &str,
    version: &str,
    job_id: &str,
) -> Result<()> {
    s.with("recording a deploy that succeeded", |c| {
        c.execute(
            "INSERT INTO deploys (app, env, version, job_id, ts_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![app, env, version, job_id, now_ms() as i64],
        )
        .map(|_| ())
    })
}

pub(super) fn deploy_history(
    s: &SqliteStore,
    app: &str,
    env: &str,
    limit: u32,
) -> Result<Vec<String>> {
    s.with("reading the deploy history", |c| {
        let mut st = c.prepare_cached(
            "SELECT version FROM deploys WHERE app=?1 AND env=?2 ORDER BY id DESC LIMIT ?3",
        )?;
        st.query_map(params![app, env, limit], |r| r.get(0))?
            .collect()
    })
}

pub(super) fn create_token(s: &SqliteStore, t: &NewToken) -> Result<()> {
    s.with("adding a token", |c| {
        c.execute(
            "INSERT INTO tokens (id, hash, user, envs, admin, created_ms, read_envs, expires_ms, run)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                t.id,
                t.hash,
                t.user,
                t.envs.join(","),
                t.admin as i64,
                now_ms() as i64,
                t.read_envs.join(","),
                t.expires_ms.map(|v| v as i64),
                t.run as i64
            ],
        )
        .map(|_| ())
    })
}

pub(super) fn touch_token(s: &SqliteStore, id: &str, at_ms: u64) -> Result<()> {
    s.with("recording a token's use", |c| {
        c.execute(
            "UPDATE tokens SET last_used_ms=?2 WHERE id=?1",
            params![id, at_ms as i64],
        )
        .map(|_| ())
    })
}

pub(super) fn token_by_hash(s: &SqliteStore, hash: &str) -> Result<Option<super::TokenRow>> {
    s.with("looking up a token", |c| {
        c.query_row(
            &format!("SELECT {TOKEN_COLS} FROM tokens WHERE hash=?1 AND revoked_ms IS NULL"),
            params![hash],
            token_from_row,
        )
        .optional()
    })
}

pub(super) fn prune(s: &SqliteStore, before_ms: u64) -> Result<Pruned> {
    let before = before_ms as i64;
    s.with("pruning old jobs, events and audit rows", |c| {
        let tx = c.transaction()?;
        let old = "SELECT id FROM jobs WHERE state != 'running' AND COALESCE(finished_ms, created_ms) < ?1";
        let events = tx.execute(&format!("DELETE FROM events WHERE job_id IN ({old})"), params![before])?;
        let jobs = tx.execute(
            "DELETE FROM jobs WHERE state != 'running' AND COALESCE(finished_ms, created_ms) < ?1",
            params![before],
        )?;
        let audit = tx.execute("DELETE FROM audit WHERE ts_ms < ?1", params![before])?;
        tx.commit()?;
        Ok(Pruned {
            jobs: jobs as u64,
            events: events as u64,
            audit: audit as u64,
        })
    })
}
