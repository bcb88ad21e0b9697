//! `restart`: the release an environment runs, started afresh on every host (a job of
//! its own kind: installs nothing, the engine's `restart` brings the release up in the
//! idle slot, switches after its health check and restarts the other processes).
//!
//! Which release: the gateway's record of each host (the live row of each switch, the
//! ledger for older hosts).  An environment whose hosts run different releases, or
//! nothing, is refused with a conflict naming them: a restart never moves a host to
//! another release.  The same record answers a deploy's `if_newer` (`newer_than_live`).

use std::collections::BTreeMap;

use deploy_wire::api::{JobInfo, JobKind, RestartRequest};

use super::status::record;
use super::{JobService, Order, Result, ServiceError, Wanted};
use crate::gateway::auth::Principal;

impl JobService {
    /// Restarts what `env` runs (same authorisation, lock and audit as a deploy).
    pub async fn restart(&self, p: &Principal, req: RestartRequest) -> Result<JobInfo> {
        let order = Order {
            kind: JobKind::Restart,
            app: req.app,
            env: req.env,
            wanted: Wanted::Live,
            batch: req.batch,
            force: req.force,
            triggered_by: None,
            if_newer: false,
        };
        self.submit(p, order).await
    }

    /// The one release every host of `env` runs by the gateway's record.
    pub(super) async fn live_release(&self, app: &str, env: &str) -> Result<String> {
        let inv = self.jobs.inventory()?;
        let a = inv
            .app(app)
            .map_err(|e| ServiceError::NotFound(e.message))?;
        let (_, hosts) = inv.hosts_for(a, env)?;
        let hosts: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
        let (name, e) = (app.to_string(), env.to_string());
        let rows: Vec<_> = self
            .db()
            .call(move |s| hosts.iter().map(|h| record(s, &name, &e, h)).collect())
            .await?;
        let runs: Vec<(String, Option<String>)> =
            rows.into_iter().map(|r| (r.host, r.version)).collect();
        one_release(app, env, &runs)
    }

    /// For a deploy with `if_newer`: `UpToDate` when every host of `env` runs `version`
    /// by the gateway's record and none ended its last job failed (such a host may serve
    /// anything); otherwise the deploy goes on.
    pub(super) async fn newer_than_live(&self, app: &str, env: &str, version: &str) -> Result<()> {
        let live = match self.live_release(app, env).await {
            Ok(v) => v,
            Err(ServiceError::Conflict(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        if !same_version(&live, version) || self.last_failed(app, env).await?.is_some() {
            return Ok(());
        }
        Err(ServiceError::UpToDate(format!(
            "{app} {version} already runs on every host of {env}; nothing started"
        )))
    }
}

/// Equal as PEP 440 versions (`1.0` is `1.0.0`), else as strings.
fn same_version(a: &str, b: &str) -> bool {
    use crate::versions::Version;
    match (Version::parse(a), Version::parse(b)) {
        (Some(x), Some(y)) => x.cmp(&y) == std::cmp::Ordering::Equal,
        _ => a == b,
    }
}

/// The release all `runs` (host, recorded version) share, or a conflict naming them.
pub fn one_release(app: &str, env: &str, runs: &[(String, Option<String>)]) -> Result<String> {
    let mut by_version: BTreeMap<Option<&str>, Vec<&str>> = BTreeMap::new();
    for (host, version) in runs {
        by_version.entry(version.as_deref()).or_default().push(host);
    }
    match by_version.keys().collect::<Vec<_>>()[..] {
        [Some(v)] => return Ok(v.to_string()),
        [None] | [] => {
            return Err(ServiceError::Conflict(format!(
                "nothing of {app} runs on {env} by the gateway's record; deploy a release first"
            )));
        }
        _ => {}
    }
    let said: Vec<String> = by_version
        .iter()
        .map(|(v, hosts)| format!("{} on {}", v.unwrap_or("nothing"), hosts.join(", ")))
        .collect();
    Err(ServiceError::Conflict(format!(
        "the hosts of {app} on {env} do not run one release ({}); deploy one release to every host, then restart",
        said.join("; ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(v: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
        v.iter()
            .map(|(h, v)| (h.to_string(), v.map(str::to_string)))
            .collect()
    }

    #[test]
    fn versions_are_the_same_as_pep_440_versions() {
        assert!(same_version("1.0", "1.0.0"));
        assert!(!same_version("1.0.0", "1.1.0"));
        assert!(same_version("not-pep-440", "not-pep-440"));
    }

    #[test]
    fn a_restart_needs_one_release_on_every_host_and_names_the_others() {
        let same = runs(&[("web1", Some("1.0")), ("web2", Some("1.0"))]);
        assert_eq!(one_release("hello", "staging", &same).unwrap(), "1.0");
        let mixed = runs(&[("web1", Some("1.0")), ("web2", Some("1.1")), ("web3", None)]);
        let e = one_release("hello", "staging", &mixed)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "the hosts of hello on staging do not run one release (nothing on web3; 1.0 on web1; 1.1 on web2); deploy one release to every host, then restart"
        );
        let none = runs(&[("web1", None)]);
        let e = one_release("hello", "staging", &none).unwrap_err();
        assert!(
            matches!(e, ServiceError::Conflict(m) if m.starts_with("nothing of hello runs on staging"))
        );
    }
}
