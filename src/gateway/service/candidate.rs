//! `deploy changes`' default candidate: the newest one, what another environment runs
//! when that is a newer build, else the build nearest the head of the default branch,
//! and which of the two it is, in words for the output (issue 26: never merely the
//! build run last, which may be an old tag's).

use deploy_wire::pipeline::EnvRelease;

use super::pipeline::from_backend;
use super::{JobService, Result, ServiceError};

/// How many of the newest builds `changes` looks at for its candidate.
const CANDIDATES: u32 = 10;

impl JobService {
    /// The newest candidate for `env` (version, commit, which in words): what another
    /// environment of the app runs when that is a build of a newer version than `env`
    /// runs (several: the newest version), else the build nearest the head of the
    /// default branch among the newest [`CANDIDATES`].  Never merely the build run last:
    /// that may be an old tag's.
    pub(super) async fn newest_candidate(
        &self,
        app: &str,
        env: &str,
        git: &dyn crate::githost::GitHost,
        repo: &str,
    ) -> Result<(Option<String>, String, String)> {
        use crate::versions::Version;
        let inv = self.jobs.inventory()?;
        let others: Vec<String> = inv
            .app(app)
            .map_err(|e| ServiceError::NotFound(e.message))?
            .environments
            .keys()
            .filter(|e| e.as_str() != env)
            .cloned()
            .collect();
        let parse = |v: &Option<String>| v.as_deref().and_then(Version::parse);
        let mut newest = parse(&self.env_release(app, env).await?.version);
        let mut best: Option<EnvRelease> = None;
        for other in others {
            let r = self.env_release(app, &other).await?;
            let v = parse(&r.version);
            if r.commit.is_some() && v.is_some() && (newest.is_none() || v > newest) {
                newest = v;
                best = Some(r);
            }
        }
        if let Some(r) = best {
            let which = format!("what {} runs", r.env);
            return Ok((r.version, r.commit.unwrap_or_default(), which));
        }
        let a = app.to_string();
        let builds = self.db().call(move |s| s.builds(&a, CANDIDATES)).await?;
        let head = git.default_head(repo).await.map_err(from_backend)?;
        let mut nearest: Option<(usize, &deploy_wire::pipeline::BuildRecord)> = None;
        for b in &builds {
            // On the default branch: nothing of the build's commit is missing from it.
            let off = git.commits_between(repo, &head.id, &b.commit).await;
            if !off.map_err(from_backend)?.is_empty() {
                continue;
            }
            let behind = git.commits_between(repo, &b.commit, &head.id).await;
            let behind = behind.map_err(from_backend)?.len();
            if nearest.is_none_or(|(n, _)| behind < n) {
                nearest = Some((behind, b));
            }
        }
        match nearest {
            Some((_, b)) => Ok((
                Some(b.version.clone()),
                b.commit.clone(),
                "the newest build of the default branch".to_string(),
            )),
            None => Err(ServiceError::Conflict(format!(
                "no other environment runs a newer build of {app} and no build of its default branch is on record; give a VERSION or --ref"
            ))),
        }
    }
}
