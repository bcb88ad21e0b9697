//! The store's queries of version 4 of the schema: the pipeline's part of the ledger
//! (builds: commit -> CI build -> wheel and SHA-256; the file each job installed).
//! Part of `queries.rs`'s `Store` impl.

use deploy_wire::pipeline::{ArtifactRef, BuildRecord};

use super::Result;
use super::queries::SqlStore;
use super::sql::{Backend, Row, SqlResult, vals};

const BUILD_COLS: &str = "app, commit_id, number, url, version, file, sha256, job_id, ts_ms";

fn build_from_row(r: &Row) -> SqlResult<BuildRecord> {
    Ok(BuildRecord {
        app: r.text(0)?,
        commit: r.text(1)?,
        number: r.text(2)?,
        url: r.text(3)?,
        version: r.text(4)?,
        file: r.text(5)?,
        sha256: r.text(6)?,
        job_id: r.text(7)?,
        ts_ms: r.u64(8)?,
    })
}

pub(super) fn add_build<B: Backend>(s: &SqlStore<B>, b: &BuildRecord) -> Result<()> {
    s.write("recording a build", |c| {
        c.exec(
            &format!(
                "INSERT INTO builds ({BUILD_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            ),
            vals![
                &b.app, &b.commit, &b.number, &b.url, &b.version, &b.file, &b.sha256, &b.job_id,
                b.ts_ms
            ],
        )
        .map(|_| ())
    })
}

/// The newest build of `app` matching `column = value` (`commit_id` or `version`).
pub(super) fn build_by<B: Backend>(
    s: &SqlStore<B>,
    app: &str,
    column: &'static str,
    value: &str,
) -> Result<Option<BuildRecord>> {
    s.read("reading a build", |c| {
        c.first(
            &format!(
                "SELECT {BUILD_COLS} FROM builds WHERE app = $1 AND {column} = $2 ORDER BY id DESC LIMIT 1"
            ),
            vals![app, value],
        )?
        .as_ref()
        .map(build_from_row)
        .transpose()
    })
}

pub(super) fn builds<B: Backend>(
    s: &SqlStore<B>,
    app: &str,
    limit: u32,
) -> Result<Vec<BuildRecord>> {
    s.read("reading builds", |c| {
        c.query(
            &format!("SELECT {BUILD_COLS} FROM builds WHERE app = $1 ORDER BY id DESC LIMIT $2"),
            vals![app, limit],
        )?
        .iter()
        .map(build_from_row)
        .collect()
    })
}

pub(super) fn set_job_artifact<B: Backend>(
    s: &SqlStore<B>,
    job_id: &str,
    file: &str,
    sha: &str,
) -> Result<()> {
    s.write("recording a job's artifact", |c| {
        c.exec(
            "INSERT INTO job_artifacts (job_id, file, sha256) VALUES ($1, $2, $3)
             ON CONFLICT (job_id) DO UPDATE SET file = $2, sha256 = $3",
            vals![job_id, file, sha],
        )
        .map(|_| ())
    })
}

/// The file a job installed, with the build that made it: the newest build of that
/// version whose wheel has that very SHA-256 (a build whose file differs from the one
/// installed is no link in the ledger).
pub(super) fn job_artifact<B: Backend>(
    s: &SqlStore<B>,
    job_id: &str,
) -> Result<Option<ArtifactRef>> {
    s.read("reading a job's artifact", |c| {
        let Some(r) = c.first(
            "SELECT a.file, a.sha256,
                (SELECT b.commit_id FROM builds b WHERE b.app = j.app AND b.version = j.version
                 AND b.sha256 = a.sha256 ORDER BY b.id DESC LIMIT 1),
                (SELECT b.number FROM builds b WHERE b.app = j.app AND b.version = j.version
                 AND b.sha256 = a.sha256 ORDER BY b.id DESC LIMIT 1)
             FROM job_artifacts a JOIN jobs j ON j.id = a.job_id WHERE a.job_id = $1",
            vals![job_id],
        )?
        else {
            return Ok(None);
        };
        Ok(Some(ArtifactRef {
            file: r.text(0)?,
            sha256: r.text(1)?,
            commit: r.opt_text(2)?,
            build: r.opt_text(3)?,
        }))
    })
}

/// The file most recently recorded for a version of an application (any job).
pub(super) fn version_artifact<B: Backend>(
    s: &SqlStore<B>,
    app: &str,
    version: &str,
) -> Result<Option<(String, String)>> {
    s.read("reading a version's artifact", |c| {
        c.first(
            "SELECT a.file, a.sha256 FROM job_artifacts a JOIN jobs j ON j.id = a.job_id
             WHERE j.app = $1 AND j.version = $2 ORDER BY j.created_ms DESC LIMIT 1",
            vals![app, version],
        )?
        .map(|r| Ok((r.text(0)?, r.text(1)?)))
        .transpose()
    })
}
