//! What each list and record shows to whom: every read is limited to the environments
//! the token may read (its read+write and its read-only ones; all for admins).  Lists are
//! filtered; a job of an environment the token may not read is 404 as if it did not
//! exist, an environment it may not read is 404 `unknown_environment` (`input.rs`), and
//! `versions` refuses before asking the repository anything.

use deploy_wire::api::{
    AppInfo, AuditEntry, EnvironmentInfo, HostInfo, JobInfo, LedgerEntry, VersionInfo,
};

use super::{JobService, Result, ServiceError};
use crate::gateway::auth::Principal;
use crate::inventory::{App, Inventory};

/// The application `name`; unknown: 404 without the inventory's list of every
/// application (a token sees only the applications it may read: `deploy apps`).
fn app<'a>(inv: &'a Inventory, name: &str) -> Result<&'a App> {
    inv.app(name).map_err(|_| {
        ServiceError::NotFound(format!(
            "no application `{name}` that this token may read (`deploy apps` lists them)"
        ))
    })
}

impl JobService {
    /// Applications, each with the environments the principal may read (apps with none
    /// are left out).
    pub fn apps(&self, p: &Principal) -> Result<Vec<AppInfo>> {
        let inv = self.jobs.inventory()?;
        let info = |a: &App| AppInfo {
            name: a.name.clone(),
            package: a.package.clone(),
            environments: a
                .environments_in_order()
                .into_iter()
                .filter(|e| p.may_read(&e.name))
                .map(|e| EnvironmentInfo {
                    name: e.name.clone(),
                    hosts: inv
                        .hosts_for(a, &e.name)
                        .map(|(_, h)| h.iter().map(|h| h.name.clone()).collect())
                        .unwrap_or_default(),
                    confirm: e.confirm,
                })
                .collect(),
        };
        Ok(inv
            .apps
            .values()
            .map(info)
            .filter(|a| !a.environments.is_empty())
            .collect())
    }

    /// Hosts (with their SSH addresses): all for admins, else those of the environments
    /// the principal may read.
    pub fn hosts(&self, p: &Principal) -> Result<Vec<HostInfo>> {
        let inv = self.jobs.inventory()?;
        let pins = crate::pins::HostKeyPins::load(self.jobs.known_hosts())?;
        let mut visible = std::collections::BTreeSet::new();
        for a in inv.apps.values() {
            for e in a.environments.values().filter(|e| p.may_read(&e.name)) {
                if let Ok((_, hosts)) = inv.hosts_for(a, &e.name) {
                    visible.extend(hosts.iter().map(|h| h.name.clone()));
                }
            }
        }
        let info = |h: &crate::inventory::Host| HostInfo {
            name: h.name.clone(),
            address: h.address.clone(),
            port: h.port,
            user: h.user.clone(),
            groups: h.groups.clone(),
            pinned: pins.get(&h.address, h.port).is_some(),
        };
        Ok(inv
            .hosts
            .values()
            .filter(|h| p.admin || visible.contains(&h.name))
            .map(info)
            .collect())
    }

    /// The newest jobs of the environments the principal may read.
    pub async fn jobs_for(&self, p: &Principal, limit: u32) -> Result<Vec<JobInfo>> {
        let scope = p.read_scope();
        Ok(self.db().call(move |s| s.jobs(limit, &scope)).await?)
    }

    /// A job (its record, log or events), if the principal may read its environment; a
    /// job it may not read is answered as one that does not exist (404, the same words),
    /// so its existence is not confirmed (the refusal is audited, rate-limited).
    pub async fn job_for(&self, p: &Principal, id: &str) -> Result<JobInfo> {
        let job = self.job(id).await?;
        // A build belongs to no environment: its console is any signed-in user's to read.
        if job.kind != deploy_wire::api::JobKind::Build
            && self
                .readable(p, &job.env, &format!("job {id}"))
                .await
                .is_err()
        {
            return Err(ServiceError::NotFound(format!("no job {id}")));
        }
        Ok(job)
    }

    /// News of jobs' events (see `Events::news`): when to read again what changed.
    pub fn job_news(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.jobs.events.news()
    }

    /// Follows a job's events after `after` (the principal was checked by [`Self::job_for`]);
    /// refused while the gateway already streams its maximum of jobs.
    pub fn follow_events(
        &self,
        id: String,
        after: u64,
    ) -> Result<tokio::sync::mpsc::Receiver<crate::gateway::events::Tail>> {
        self.jobs.events.follow(id, after).map_err(|_| {
            let max = crate::gateway::events::MAX_FOLLOWERS;
            ServiceError::Unavailable(format!(
                "the gateway already streams {max} jobs' events; retry later"
            ))
        })
    }

    pub async fn ledger_for(
        &self,
        p: &Principal,
        app: Option<String>,
        limit: u32,
    ) -> Result<Vec<LedgerEntry>> {
        let scope = p.read_scope();
        Ok(self
            .db()
            .call(move |s| s.ledger(app.as_deref(), limit, &scope))
            .await?)
    }

    pub async fn audit_for(&self, p: &Principal, limit: u32) -> Result<Vec<AuditEntry>> {
        if !p.admin {
            let message = "the audit trail needs an admin token";
            return Err(ServiceError::Forbidden(message.into()));
        }
        Ok(self.db().call(move |s| s.audit_log(limit)).await?)
    }

    /// The application's versions on its index, with the readable hosts each runs on.
    /// A principal that may read none of its environments is refused before the
    /// repository is asked.
    pub async fn versions(&self, p: &Principal, name: &str) -> Result<Vec<VersionInfo>> {
        let inv = self.jobs.inventory()?;
        let a = app(&inv, name)?;
        self.readable_envs(p, a, &format!("{name} versions"))
            .await?;
        let rows = self.status(p, name, None, false).await?;
        let versions = self.available_versions(a).await?;
        let info = |v: String| VersionInfo {
            running_on: rows
                .iter()
                .filter(|r| r.version.as_deref() == Some(v.as_str()))
                .map(|r| format!("{}/{}", r.env, r.host))
                .collect(),
            version: v,
        };
        Ok(versions.into_iter().map(info).collect())
    }
}
