//! The SQLite queries of version 4 of the schema: the pipeline's part of the ledger
//! (builds: commit -> CI build -> wheel and SHA-256; the file each job installed).
//! Part of `sqlite.rs`'s `Store` impl.

use deploy_wire::pipeline::{ArtifactRef, BuildRecord};
use rusqlite::{OptionalExtension, Row, params};

use super::Result;
use super::sqlite::SqliteStore;

const BUILD_COLS: &str = "app, commit_id, number, url, version, file, sha256, job_id, ts_ms";

fn build_from_row(r: &Row<'_>) -> rusqlite::Result<BuildRecord> {
    Ok(BuildRecord {
        app: r.get(0)?,
        commit: r.get(1)?,
        number: r.get(2)?,
        url: r.get(3)?,
        version: r.get(4)?,
        file: r.get(5)?,
        sha256: r.get(6)?,
        job_id: r.get(7)?,
        ts_ms: r.get::<_, i64>(8)? as u64,
    })
}

pub(super) fn add_build(s: &SqliteStore, b: &BuildRecord) -> Result<()> {
    s.with("recording a build", |c| {
        c.execute(
            &format!("INSERT INTO builds ({BUILD_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)"),
            params![
                b.app,
                b.commit,
                b.number,
                b.url,
                b.version,
                b.file,
                b.sha256,
                b.job_id,
                b.ts_ms as i64
            ],
        )
        .map(|_| ())
    })
}

/// The newest build of `app` matching `column = value` (`commit_id` or `version`).
pub(super) fn build_by(
    s: &SqliteStore,
    app: &str,
    column: &'static str,
    value: &str,
) -> Result<Option<BuildRecord>> {
    s.with("reading a build", |c| {
        c.query_row(
            &format!(
                "SELECT {BUILD_COLS} FROM builds WHERE app=?1 AND {column}=?2 ORDER BY id DESC LIMIT 1"
            ),
            params![app, value],
            build_from_row,
        )
        .optional()
    })
}

pub(super) fn builds(s: &SqliteStore, app: &str, limit: u32) -> Result<Vec<BuildRecord>> {
    s.with("reading builds", |c| {
        let mut st = c.prepare(&format!(
            "SELECT {BUILD_COLS} FROM builds WHERE app=?1 ORDER BY id DESC LIMIT ?2"
        ))?;
        st.query_map(params![app, limit], build_from_row)?.collect()
    })
}

pub(super) fn set_job_artifact(s: &SqliteStore, job_id: &str, file: &str, sha: &str) -> Result<()> {
    s.with("recording a job's artifact", |c| {
        c.execute(
            "INSERT OR REPLACE INTO job_artifacts (job_id, file, sha256) VALUES (?1, ?2, ?3)",
            params![job_id, file, sha],
        )
        .map(|_| ())
    })
}

/// The file a job installed, with the build that made it (joined on the version).
pub(super) fn job_artifact(s: &SqliteStore, job_id: &str) -> Result<Option<ArtifactRef>> {
    s.with("reading a job's artifact", |c| {
        c.query_row(
            "SELECT a.file, a.sha256,
                (SELECT b.commit_id FROM builds b WHERE b.app = j.app AND b.version = j.version
                 ORDER BY b.id DESC LIMIT 1),
                (SELECT b.number FROM builds b WHERE b.app = j.app AND b.version = j.version
                 ORDER BY b.id DESC LIMIT 1)
             FROM job_artifacts a JOIN jobs j ON j.id = a.job_id WHERE a.job_id = ?1",
            params![job_id],
            |r| {
                Ok(ArtifactRef {
                    file: r.get(0)?,
                    sha256: r.get(1)?,
                    commit: r.get(2)?,
                    build: r.get(3)?,
                })
            },
        )
        .optional()
    })
}

/// The file most recently recorded for a version of an application (any job).
pub(super) fn version_artifact(
    s: &SqliteStore,
    app: &str,
    version: &str,
) -> Result<Option<(String, String)>> {
    s.with("reading a version's artifact", |c| {
        c.query_row(
            "SELECT a.file, a.sha256 FROM job_artifacts a JOIN jobs j ON j.id = a.job_id
             WHERE j.app = ?1 AND j.version = ?2 ORDER BY j.created_ms DESC LIMIT 1",
            params![app, version],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
    })
}
