//! The store's queries of version 8 of the schema: the CI builds that build jobs follow
//! (the builder's id for the build, its number and page once known, how far its console
//! was read), and the adoption of a build job whose follower stopped.  Part of
//! `queries.rs`'s `Store` impl.

use deploy_wire::api::JobInfo;

use super::queries::{JOB_COLS, SqlStore, job_from_row, next_epoch, orphans_sql};
use super::sql::{Backend, Row, SqlResult, Value, vals};
use super::{Adopt, BuildFollow, Lease, Result};

const COLS: &str = "job_id, app, commit_id, builder_id, number, url, console_offset, queued_ms";

fn follow_from_row(r: &Row) -> SqlResult<BuildFollow> {
    let (number, url) = (r.opt_text(4)?, r.opt_text(5)?);
    Ok(BuildFollow {
        job_id: r.text(0)?,
        app: r.text(1)?,
        commit: r.text(2)?,
        builder_id: r.text(3)?,
        build: number.zip(url),
        offset: r.u64(6)?,
        queued_ms: r.u64(7)?,
    })
}

pub(super) fn set<B: Backend>(s: &SqlStore<B>, f: &BuildFollow) -> Result<()> {
    let (number, url) = f.build.clone().unzip();
    s.write("recording a followed build", |c| {
        c.exec(
            &format!(
                "INSERT INTO build_follows ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (job_id) DO UPDATE SET builder_id = $4, number = $5, url = $6,
                    console_offset = $7"
            ),
            vals![
                &f.job_id,
                &f.app,
                &f.commit,
                &f.builder_id,
                &number,
                &url,
                f.offset,
                f.queued_ms
            ],
        )
        .map(|_| ())
    })
}

pub(super) fn get<B: Backend>(s: &SqlStore<B>, job_id: &str) -> Result<Option<BuildFollow>> {
    s.read("reading a followed build", |c| {
        let sql = format!("SELECT {COLS} FROM build_follows WHERE job_id = $1");
        c.first(&sql, vals![job_id])?
            .as_ref()
            .map(follow_from_row)
            .transpose()
    })
}

pub(super) fn end<B: Backend>(s: &SqlStore<B>, job_id: &str) -> Result<()> {
    s.write("ending a followed build", |c| {
        c.exec(
            "UPDATE build_follows SET ended = 1 WHERE job_id = $1",
            vals![job_id],
        )
        .map(|_| ())
    })
}

/// The newest build of (app, commit) that no running job follows and nobody saw end.
pub(super) fn unfollowed<B: Backend>(
    s: &SqlStore<B>,
    app: &str,
    commit: &str,
) -> Result<Option<BuildFollow>> {
    s.read("looking for a build nobody follows", |c| {
        let sql =
            format!(
            "SELECT {} FROM build_follows f WHERE f.app = $1 AND f.commit_id = $2 AND f.ended = 0
               AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = f.job_id AND j.state = 'running')
             ORDER BY f.queued_ms DESC LIMIT 1",
            COLS.split(", ").map(|c| format!("f.{c}")).collect::<Vec<_>>().join(", ")
        );
        c.first(&sql, vals![app, commit])?
            .as_ref()
            .map(follow_from_row)
            .transpose()
    })
}

/// Claims the running build jobs `from` says (whose follower stopped) for `lease`'s
/// owner with a new epoch; each job is returned to one caller only.
pub(super) fn adopt<B: Backend>(
    s: &SqlStore<B>,
    lease: &Lease,
    from: &Adopt,
) -> Result<Vec<(JobInfo, u64)>> {
    // The condition on the job's row, with its value as parameter `$N`.
    let (cond, param): (&(dyn Fn(usize) -> String + Sync), Option<Value>) = match from {
        Adopt::Expired(before) => (&|n| format!("lease_until < ${n}"), Some((*before).into())),
        Adopt::Owner(owner) => (&|n| format!("owner = ${n}"), Some(owner.as_str().into())),
        Adopt::Orphans(which) => (&|_| orphans_sql(*which), None),
    };
    s.write("adopting build jobs", |c| {
        let pick = format!(
            "SELECT {JOB_COLS} FROM jobs WHERE kind = 'build' AND state = 'running' AND ({})
               AND id IN (SELECT job_id FROM build_follows WHERE ended = 0)",
            cond(1)
        );
        let params: Vec<Value> = param.iter().cloned().collect();
        let jobs: Vec<JobInfo> = (c.query(&pick, &params)?.iter())
            .map(job_from_row)
            .collect::<SqlResult<_>>()?;
        let mut adopted = Vec::new();
        for job in jobs {
            let epoch = next_epoch(c)?;
            let mut p = vals![&lease.owner, lease.until_ms, &job.id, epoch].to_vec();
            p.extend(param.clone());
            let n = c.exec(
                &format!(
                    "UPDATE jobs SET owner = $1, lease_until = $2, epoch = $4, cancel_requested = 0
                     WHERE id = $3 AND state = 'running' AND ({})",
                    cond(5)
                ),
                &p,
            )?;
            if n == 1 {
                adopted.push((job, epoch));
            }
        }
        Ok(adopted)
    })
}
