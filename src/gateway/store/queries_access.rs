//! The store's queries of versions 2 and 3 of the schema: the live record, the deploy
//! history, tokens (scopes, expiry, last use, the `run` right) and retention (with the
//! notifications of the jobs it prunes).  Part of
//! `queries.rs`'s `Store` impl.

use super::queries::SqlStore;
use super::sql::{Backend, Row, SqlResult, vals};
use super::{LiveRow, NewToken, Pruned, Result, TokenRow, now_ms};

const TOKEN_COLS: &str =
    "id, \"user\", envs, admin, created_ms, revoked_ms, read_envs, expires_ms, last_used_ms, run";

fn list(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn token_from_row(r: &Row) -> SqlResult<TokenRow> {
    Ok(TokenRow {
        id: r.text(0)?,
        user: r.text(1)?,
        envs: list(&r.text(2)?),
        admin: r.flag(3)?,
        created_ms: r.u64(4)?,
        revoked: r.opt_int(5)?.is_some(),
        read_envs: list(&r.text(6)?),
        expires_ms: r.opt_u64(7)?,
        last_used_ms: r.opt_u64(8)?,
        run: r.flag(9)?,
    })
}

pub(super) fn set_live<B: Backend>(s: &SqlStore<B>, rows: &[LiveRow]) -> Result<()> {
    s.write("recording what a host serves", |c| {
        for r in rows {
            c.exec(
                "INSERT INTO live (app, env, host, version, slot, job_id, \"user\", ts_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (app, env, host) DO UPDATE SET version = $4, slot = $5, job_id = $6,
                 \"user\" = $7, ts_ms = $8",
                vals![
                    &r.app, &r.env, &r.host, &r.version, &r.slot, &r.job_id, &r.user, r.ts_ms
                ],
            )?;
        }
        Ok(())
    })
}

pub(super) fn live_row<B: Backend>(
    s: &SqlStore<B>,
    app: &str,
    env: &str,
    host: &str,
) -> Result<Option<LiveRow>> {
    s.read("reading what a host serves", |c| {
        let Some(r) = c.first(
            "SELECT app, env, host, version, slot, job_id, \"user\", ts_ms FROM live
             WHERE app = $1 AND env = $2 AND host = $3",
            vals![app, env, host],
        )?
        else {
            return Ok(None);
        };
        Ok(Some(LiveRow {
            app: r.text(0)?,
            env: r.text(1)?,
            host: r.text(2)?,
            version: r.text(3)?,
            slot: r.text(4)?,
            job_id: r.text(5)?,
            user: r.text(6)?,
            ts_ms: r.u64(7)?,
        }))
    })
}

pub(super) fn add_deploy<B: Backend>(
    s: &SqlStore<B>,
    app: &str,
    env: &str,
    version: &str,
    job_id: &str,
) -> Result<()> {
    s.write("recording a deploy that succeeded", |c| {
        c.exec(
            "INSERT INTO deploys (app, env, version, job_id, ts_ms) VALUES ($1, $2, $3, $4, $5)",
            vals![app, env, version, job_id, now_ms()],
        )
        .map(|_| ())
    })
}

pub(super) fn deploy_history<B: Backend>(
    s: &SqlStore<B>,
    app: &str,
    env: &str,
    limit: u32,
) -> Result<Vec<String>> {
    s.read("reading the deploy history", |c| {
        c.texts(
            "SELECT version FROM deploys WHERE app = $1 AND env = $2 ORDER BY id DESC LIMIT $3",
            vals![app, env, limit],
        )
    })
}

pub(super) fn create_token<B: Backend>(s: &SqlStore<B>, t: &NewToken) -> Result<()> {
    s.write("adding a token", |c| {
        c.exec(
            "INSERT INTO tokens (id, hash, \"user\", envs, admin, created_ms, read_envs, expires_ms, run)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            vals![
                &t.id,
                &t.hash,
                &t.user,
                t.envs.join(","),
                t.admin,
                now_ms(),
                t.read_envs.join(","),
                t.expires_ms,
                t.run
            ],
        )
        .map(|_| ())
    })
}

pub(super) fn touch_token<B: Backend>(s: &SqlStore<B>, id: &str, at_ms: u64) -> Result<()> {
    s.write("recording a token's use", |c| {
        c.exec(
            "UPDATE tokens SET last_used_ms = $2 WHERE id = $1",
            vals![id, at_ms],
        )
        .map(|_| ())
    })
}

pub(super) fn token_by_hash<B: Backend>(s: &SqlStore<B>, hash: &str) -> Result<Option<TokenRow>> {
    s.read("looking up a token", |c| {
        c.first(
            &format!("SELECT {TOKEN_COLS} FROM tokens WHERE hash = $1 AND revoked_ms IS NULL"),
            vals![hash],
        )?
        .as_ref()
        .map(token_from_row)
        .transpose()
    })
}

pub(super) fn tokens<B: Backend>(s: &SqlStore<B>) -> Result<Vec<TokenRow>> {
    s.read("listing tokens", |c| {
        c.query(
            &format!("SELECT {TOKEN_COLS} FROM tokens ORDER BY created_ms"),
            &[],
        )?
        .iter()
        .map(token_from_row)
        .collect()
    })
}

pub(super) fn revoke_token<B: Backend>(s: &SqlStore<B>, id: &str) -> Result<bool> {
    s.write("revoking a token", |c| {
        c.exec(
            "UPDATE tokens SET revoked_ms = $2 WHERE id = $1 AND revoked_ms IS NULL",
            vals![id, now_ms()],
        )
        .map(|n| n > 0)
    })
}

pub(super) fn prune<B: Backend>(s: &SqlStore<B>, before_ms: u64) -> Result<Pruned> {
    s.write("pruning old jobs, events and audit rows", |c| {
        let old = "SELECT id FROM jobs WHERE state != 'running' AND COALESCE(finished_ms, created_ms) < $1";
        let events = c.exec(
            &format!("DELETE FROM events WHERE job_id IN ({old})"),
            vals![before_ms],
        )?;
        let deliveries = c.exec(
            &format!("DELETE FROM outbox WHERE job_id IN ({old})"),
            vals![before_ms],
        )?;
        // The parts a job handed to other sites, and their events, go with it.
        c.exec(
            &format!(
                "DELETE FROM site_events WHERE part_id IN
                   (SELECT id FROM site_parts WHERE job_id IN ({old}))"
            ),
            vals![before_ms],
        )?;
        c.exec(
            &format!("DELETE FROM site_parts WHERE job_id IN ({old})"),
            vals![before_ms],
        )?;
        let jobs = c.exec(
            "DELETE FROM jobs WHERE state != 'running' AND COALESCE(finished_ms, created_ms) < $1",
            vals![before_ms],
        )?;
        let audit = c.exec("DELETE FROM audit WHERE ts_ms < $1", vals![before_ms])?;
        Ok(Pruned {
            jobs,
            events,
            audit,
            deliveries,
            sessions: 0,
        })
    })
}
