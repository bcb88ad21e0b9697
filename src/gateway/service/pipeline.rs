//! The pipeline's policy: builds (`deploy build`; `deploy release --ref` builds first),
//! what a release changes (`deploy changes`), promotion of the very file one environment
//! runs to another (`deploy promote`), the difference between two environments
//! (`deploy diff`), and the file each deploy installs, recorded when it is accepted.
//!
//! Decisions:
//! - A build is a job of its own (kind `build`, no environment, one per application at
//!   a time).  `deploy release --ref` is a build (when the commit has none on record
//!   whose file is still on the index) followed by an ordinary deploy of the version it
//!   made: two jobs, each with its own events, so a deploy is the same whatever made
//!   its wheel.
//! - A build's record is keyed by commit; the version comes from the wheel it archived.
//!   A commit is never built twice while its file is on the index.
//! - Every deploy records the wheel's file name and SHA-256 as the index lists them when
//!   the job is accepted; `promote` deploys the version staging runs only when the index
//!   still lists that very file with that very hash.

use deploy_wire::api::{JobInfo, JobKind, JobState, LedgerEntry, LedgerResult};
use deploy_wire::pipeline::{
    BuildRequest, BuildResponse, ChangesResponse, CommitInfo, DiffResponse, EnvRelease,
    PromoteRequest,
};

use super::status::record;
use super::{JobService, Order, Result, ServiceError, Wanted};
use crate::gateway::auth::Principal;
use crate::gateway::build_job;
use crate::gateway::jobs::new_job_id;
use crate::gateway::store::{LockHolder, now_ms};
use crate::githost::Commit;

/// A git host's or an index's failure as the service says it: a ref the git host does
/// not have is the asker's mistake (404, exit 2), anything else the backend's (502).
pub(super) fn from_backend(e: crate::backend::BackendError) -> ServiceError {
    match e.is_missing() {
        true => ServiceError::NotFound(e.to_string()),
        false => ServiceError::Upstream(e),
    }
}

fn info(c: Commit) -> CommitInfo {
    CommitInfo {
        id: c.id,
        author: c.author,
        subject: c.subject,
    }
}

impl JobService {
    /// Builds `req.reference` of an application, unless its commit's build is on record
    /// and its wheel still on the index.
    pub async fn build(&self, p: &Principal, req: BuildRequest) -> Result<BuildResponse> {
        let target = format!("{} {}", req.app, req.reference);
        match &req.env {
            Some(env) => self.authorise(p, "build", env, &target).await?,
            None => self.may_build(p, &req.app, &target).await?,
        }
        let pipeline = self.pipeline()?;
        let (git, repo) = pipeline.git_for(&req.app).map_err(ServiceError::Invalid)?;
        pipeline
            .builder_for(&req.app)
            .map_err(ServiceError::Invalid)?;
        let commit = git
            .resolve(&repo, &req.reference)
            .await
            .map_err(from_backend)?;
        let (a, c) = (req.app.clone(), commit.id.clone());
        let known = self.db().call(move |s| s.build_of_commit(&a, &c)).await?;
        if let Some(b) = known
            && self.index_file(&req.app, &b.version).await?.map(|f| f.1) == Some(b.sha256.clone())
        {
            return Ok(BuildResponse {
                commit: info(commit),
                build: Some(b),
                job: None,
            });
        }
        let inv = self.jobs.inventory()?;
        let app = inv
            .app(&req.app)
            .map_err(|e| ServiceError::NotFound(e.message))?;
        self.jobs.source_for(app).map_err(ServiceError::Invalid)?;
        let job = JobInfo {
            id: new_job_id(),
            kind: JobKind::Build,
            check: false,
            app: req.app.clone(),
            env: String::new(),
            version: commit.id.clone(),
            user: p.user.clone(),
            state: JobState::Running,
            created_ms: now_ms(),
            finished_ms: None,
            error: None,
            triggered_by: None,
        };
        let _claim = match self.jobs.lock(&job).await? {
            Ok(claim) => claim,
            Err(LockHolder { holder, job_id }) => {
                self.audit(&p.user, "build", &target, "refused: locked")
                    .await;
                return Err(ServiceError::Locked {
                    target,
                    holder,
                    job_id,
                });
            }
        };
        self.audit(
            &p.user,
            "build",
            &format!("{target} = {} ({})", commit.id, job.id),
            "accepted",
        )
        .await;
        let order = build_job::order_for(
            &self.jobs,
            &req.app,
            &commit.id,
            self.http.clone(),
            build_job::BUILD_POLL,
        )
        .map_err(ServiceError::Invalid)?;
        self.jobs.spawn_build(job.clone(), order, None);
        Ok(BuildResponse {
            commit: info(commit),
            build: None,
            job: Some(job),
        })
    }

    /// A build without an environment: the principal must act on one of the app's.
    pub(super) async fn may_build(&self, p: &Principal, app: &str, target: &str) -> Result<()> {
        let inv = self.jobs.inventory()?;
        let a = inv
            .app(app)
            .map_err(|e| ServiceError::NotFound(e.message))?;
        match a.environments.keys().find(|e| p.may_act_on(e)) {
            Some(env) => self.authorise(p, "build", env, target).await,
            None => {
                let first = a.environments.keys().next().cloned().unwrap_or_default();
                self.authorise(p, "build", &first, target).await
            }
        }
    }

    fn pipeline(&self) -> Result<&crate::gateway::pipeline_config::Pipeline> {
        self.jobs.pipeline().ok_or_else(|| {
            ServiceError::Invalid("this gateway has no pipeline (no gateway.toml)".into())
        })
    }

    /// The commits between what `env` runs and a candidate (a built version, a ref, or
    /// the newest build).
    pub async fn changes(
        &self,
        p: &Principal,
        app: &str,
        env: &str,
        version: Option<String>,
        reference: Option<String>,
    ) -> Result<ChangesResponse> {
        self.visible_env(p, app, env, &format!("{app}/{env}"))
            .await?;
        let (git, repo) = self
            .pipeline()?
            .git_for(app)
            .map_err(ServiceError::Invalid)?;
        let running = self.env_release(app, env).await?;
        let a = app.to_string();
        let (version, commit, candidate) = match (version, reference) {
            (Some(v), _) => {
                let b = self.db().call(move |s| s.build_of_version(&a, &v)).await?;
                let b = b.ok_or_else(|| {
                    ServiceError::Conflict(format!(
                        "no build of {app} made that version: no commit is recorded for it"
                    ))
                })?;
                (Some(b.version), b.commit, "the version given".to_string())
            }
            (None, Some(r)) => {
                let c = git.resolve(&repo, &r).await.map_err(from_backend)?;
                let a2 = app.to_string();
                let id = c.id.clone();
                let v = self
                    .db()
                    .call(move |s| s.build_of_commit(&a2, &id))
                    .await?
                    .map(|b| b.version);
                (v, c.id, format!("--ref {r}"))
            }
            (None, None) => self.newest_candidate(app, env, git.as_ref(), &repo).await?,
        };
        let commits = match &running.commit {
            Some(from) => git.commits_between(&repo, from, &commit).await,
            None => git.resolve(&repo, &commit).await.map(|c| vec![c]),
        }
        .map_err(from_backend)?;
        Ok(ChangesResponse {
            app: app.to_string(),
            running,
            version,
            commit,
            commits: commits.into_iter().map(info).collect(),
            source: git.describe(),
            candidate,
        })
    }

    /// What two environments run, and the commits `a` has that `b` lacks.
    pub async fn diff(&self, p: &Principal, app: &str, a: &str, b: &str) -> Result<DiffResponse> {
        for env in [a, b] {
            self.visible_env(p, app, env, &format!("{app}/{env}"))
                .await?;
        }
        let (ra, rb) = (
            self.env_release(app, a).await?,
            self.env_release(app, b).await?,
        );
        let commits = match (&ra.commit, &rb.commit, self.pipeline()?.git_for(app)) {
            (Some(ca), Some(cb), Ok((git, repo))) if ca != cb => git
                .commits_between(&repo, cb, ca)
                .await
                .map_err(from_backend)?
                .into_iter()
                .map(info)
                .collect(),
            _ => Vec::new(),
        };
        Ok(DiffResponse {
            app: app.to_string(),
            a: ra,
            b: rb,
            commits,
        })
    }

    /// Deploys to `to` the very file `from` runs (by SHA-256).
    pub async fn promote(&self, p: &Principal, req: PromoteRequest) -> Result<JobInfo> {
        self.promote_as(p, req, None).await
    }

    /// [`Self::promote`], recording what started it (`schedule <id>`).
    pub(super) async fn promote_as(
        &self,
        p: &Principal,
        req: PromoteRequest,
        triggered_by: Option<String>,
    ) -> Result<JobInfo> {
        let target = format!("{} {} -> {}", req.app, req.from, req.to);
        self.env_to_act_on(p, "promote", &req.app, &req.to, &target)
            .await?;
        self.visible_env(p, &req.app, &req.from, &target).await?;
        let from = self.env_release(&req.app, &req.from).await?;
        self.no_failed_hosts(&req.app, &req.from).await?;
        let version = match (&from.version, from.hosts.is_empty()) {
            (Some(v), _) => v.clone(),
            (None, true) => {
                return Err(ServiceError::Conflict(format!(
                    "nothing of {} runs on {} by the gateway's record",
                    req.app, req.from
                )));
            }
            (None, false) => {
                let runs: Vec<String> = from
                    .hosts
                    .iter()
                    .map(|(h, v)| format!("{h}: {v}"))
                    .collect();
                return Err(ServiceError::Conflict(format!(
                    "{} does not run one release of {} ({}); promote when its hosts agree",
                    req.from,
                    req.app,
                    runs.join(", ")
                )));
            }
        };
        let sha = from.sha256.clone().ok_or_else(|| {
            ServiceError::Conflict(format!(
                "no file is recorded for {} {version} on {}",
                req.app, req.from
            ))
        })?;
        match self.index_file(&req.app, &version).await? {
            Some((_, now)) if now == sha => {}
            other => {
                let now = other.map(|f| f.1).unwrap_or_else(|| "no file".into());
                return Err(ServiceError::Conflict(format!(
                    "{} {version} on {} is sha256 {sha}, but the index now has {now}: not the same file, not promoted",
                    req.app, req.from
                )));
            }
        }
        self.audit(
            &p.user,
            "promote",
            &format!("{target} {version} sha256 {sha}"),
            "accepted",
        )
        .await;
        let kind = if req.check {
            JobKind::Check
        } else {
            JobKind::Deploy
        };
        let wanted = Wanted::Version {
            request: version,
            pre: false,
        };
        self.submit(
            p,
            Order {
                kind,
                app: req.app,
                env: req.to,
                wanted,
                batch: req.batch,
                force: None,
                triggered_by,
                if_newer: false,
            },
        )
        .await
    }

    /// Refuses when a host of `env` ended its last job failed (it may serve anything).
    async fn no_failed_hosts(&self, app: &str, env: &str) -> Result<()> {
        match self.last_failed(app, env).await? {
            Some(r) => Err(ServiceError::Conflict(format!(
                "{} on {env} ended its last job {} ({}); fix it before promoting",
                r.host, r.result, r.job_id
            ))),
            None => Ok(()),
        }
    }

    /// The ledger row of a host of `env` whose last job ended failed (cancelled jobs
    /// excepted), if any.
    pub(super) async fn last_failed(&self, app: &str, env: &str) -> Result<Option<LedgerEntry>> {
        let a = app.to_string();
        let scope = crate::gateway::store::Scope::All;
        let rows = self
            .db()
            .call(move |s| s.ledger(Some(&a), 500, &scope))
            .await?;
        let mut seen = std::collections::BTreeSet::new();
        Ok(rows.into_iter().filter(|r| r.env == env).find(|r| {
            seen.insert(r.host.clone())
                && !r.result.is_good()
                && r.result != LedgerResult::Cancelled
        }))
    }

    /// What `env` runs by the gateway's record, with the commit and file of its release.
    pub(super) async fn env_release(&self, app: &str, env: &str) -> Result<EnvRelease> {
        let inv = self.jobs.inventory()?;
        let a = inv
            .app(app)
            .map_err(|e| ServiceError::NotFound(e.message))?;
        let (_, hosts) = inv.hosts_for(a, env)?;
        let hosts: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
        let (name, e) = (app.to_string(), env.to_string());
        self.db()
            .call(move |s| {
                let rows: Vec<_> = hosts
                    .iter()
                    .map(|h| record(s, &name, &e, h))
                    .collect::<std::result::Result<_, _>>()?;
                let runs: Vec<(String, String)> = rows
                    .iter()
                    .filter_map(|r| Some((r.host.clone(), r.version.clone()?)))
                    .collect();
                let one = (runs.len() == rows.len())
                    .then(|| runs.first().map(|r| r.1.clone()))
                    .flatten()
                    .filter(|v| runs.iter().all(|r| &r.1 == v));
                let job = rows.first().and_then(|r| r.job_id.clone());
                let (sha256, commit) = match (&one, job) {
                    (Some(v), Some(j)) => match s.job_artifact(&j)? {
                        Some(a) => (Some(a.sha256), a.commit),
                        None => (s.version_artifact(&name, v)?.map(|f| f.1), None),
                    },
                    _ => (None, None),
                };
                Ok(EnvRelease {
                    env: e,
                    hosts: runs,
                    version: one,
                    commit,
                    sha256,
                })
            })
            .await
            .map_err(ServiceError::from)
    }

    /// The wheel (file name, SHA-256) the app's index lists for `version`, if any.
    async fn index_file(&self, app: &str, version: &str) -> Result<Option<(String, String)>> {
        let inv = self.jobs.inventory()?;
        let a = inv
            .app(app)
            .map_err(|e| ServiceError::NotFound(e.message))?;
        let src = self.jobs.source_for(a).map_err(ServiceError::Invalid)?;
        let files = crate::artifacts::list_files(&self.http, src.as_ref(), &a.package)
            .await
            .map_err(from_backend)?;
        let wanted = crate::versions::Version::parse(version);
        let same = |f: &crate::artifacts::DistFile| {
            let v = crate::artifacts::version_of(&f.filename, &a.package);
            match (
                &wanted,
                v.as_deref().and_then(crate::versions::Version::parse),
            ) {
                (Some(w), Some(x)) => w.cmp(&x).is_eq(),
                _ => v.as_deref() == Some(version),
            }
        };
        let mut files: Vec<_> = files.into_iter().filter(|f| !f.yanked && same(f)).collect();
        files.sort_by_key(|f| !f.filename.ends_with(".whl"));
        Ok(files
            .into_iter()
            .next()
            .and_then(|f| Some((f.filename, f.sha256?))))
    }

    /// The file a deploy will install, read from the index now (None for other kinds, or
    /// when the index lists no hash or cannot be read: the hosts then install unpinned).
    /// The same pair pins the hosts' installs and goes into the ledger.
    pub(super) async fn deploy_file(&self, job: &JobInfo) -> Option<(String, String)> {
        if job.kind != JobKind::Deploy {
            return None;
        }
        self.index_file(&job.app, &job.version)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!("not pinning the file of {} {}: {e}", job.app, job.version);
                None
            })
    }

    /// Records the file a deploy installs (`deploy`: [`Self::deploy_file`]'s, the one its
    /// hosts are pinned to) or, for a rollback or a restart, the one last recorded for its
    /// version.  Never fails the job.
    pub(super) async fn record_artifact(&self, job: &JobInfo, deploy: Option<(String, String)>) {
        let found = match job.kind {
            JobKind::Deploy => deploy,
            JobKind::Rollback | JobKind::Restart => {
                let (a, v) = (job.app.clone(), job.version.clone());
                self.db()
                    .call(move |s| s.version_artifact(&a, &v))
                    .await
                    .ok()
                    .flatten()
            }
            _ => None,
        };
        if let Some((file, sha)) = found {
            let id = job.id.clone();
            if let Err(e) = self
                .db()
                .call(move |s| s.set_job_artifact(&id, &file, &sha))
                .await
            {
                tracing::error!("cannot record the file of job {}: {e}", job.id);
            }
        }
    }
}
