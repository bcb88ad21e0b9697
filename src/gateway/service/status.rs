//! `status`: which release each host serves by the gateway's record (the live row
//! written on each `switched` event; the ledger for hosts switched before that record
//! existed) and, with `live`, what the host itself says (`engine::observe`), with the
//! host's flags: what needs a look, one sentence each (the record and the host
//! disagree; the host's own problems, `HostView::problems`: a slot that runs but is not
//! live, a live slot that fails its health check).  The CLI prints them as `!!` lines
//! and the dashboard beside the host: both show these words, made once here.

use std::sync::Arc;

use deploy_wire::api::{HealthCheck, HostRelease, ObservedHost, ProcessState};

use super::{JobService, Result, ServiceError};
use crate::engine::observe::{HostView, Observed};
use crate::error::BackendError;
use crate::gateway::auth::Principal;
use crate::gateway::sites::observe as sites;
use crate::gateway::store::Store;

/// The wire form of a host's answer (or of why it gave none).
pub fn observed_host(view: &std::result::Result<HostView, BackendError>) -> ObservedHost {
    match view {
        Ok(v) => ObservedHost {
            live_slot: v.live_slot.clone(),
            version: v.version.clone(),
            processes: v
                .processes
                .iter()
                .map(|p| ProcessState {
                    name: p.name.clone(),
                    state: p.state.clone(),
                    pid: p.pid,
                    release: p.release.clone(),
                    slot: p.slot.clone(),
                })
                .collect(),
            health: v.health.as_ref().map(|h| HealthCheck {
                ok: h.ok,
                said: h.said.clone(),
            }),
            unreachable: None,
            wheel_sha256: v.wheel_sha256.clone(),
            env_sha256: v.env_sha256.clone(),
        },
        Err(e) => ObservedHost {
            unreachable: Some(e.to_string()),
            ..ObservedHost::default()
        },
    }
}

/// Do the record and the host disagree?  Only a host that answered can: its version
/// differs from the recorded one, or its live slot from the recorded slot (when the
/// record has one).  An unreachable host is shown as such, not as a disagreement.
pub fn disagrees(record: &HostRelease, seen: &ObservedHost) -> bool {
    if seen.unreachable.is_some() {
        return false;
    }
    let slot_differs = match (&record.slot, &seen.live_slot) {
        (Some(r), Some(s)) => r != s,
        (Some(_), None) => true,
        _ => false,
    };
    record.version != seen.version || slot_differs
}

/// The words of a disagreement: what the record says and what the host serves.
pub fn disagreement(record: &HostRelease, seen: &ObservedHost) -> String {
    let say = |version: &Option<String>, slot: &Option<String>| match (version, slot) {
        (Some(v), Some(s)) => format!("{v} ({s})"),
        (Some(v), None) => v.clone(),
        (None, _) => "nothing".to_string(),
    };
    format!(
        "the gateway's record says {}, the host serves {}",
        say(&record.version, &record.slot),
        say(&seen.version, &seen.live_slot)
    )
}

/// What the ledger recorded for each version a host serves: version -> SHA-256.
pub type Ledger = std::collections::HashMap<String, String>;

/// The flag of a host whose live release installed another wheel than the ledger
/// recorded for that release.  None when they agree, or when either is unknown (a
/// release installed before hosts kept the hash says nothing, and is not flagged).
pub fn wheel_differs(seen: &ObservedHost, ledger: &Ledger) -> Option<String> {
    let version = seen.version.as_ref()?;
    let host = seen.wheel_sha256.as_ref()?;
    let recorded = ledger.get(version)?;
    (!host.eq_ignore_ascii_case(recorded)).then(|| {
        format!(
            "the host's wheel of {version} is sha256 {host}, the ledger recorded sha256 {recorded}: not the file the gateway checked"
        )
    })
}

/// One host's record: the live row, else the ledger's last good deploy.
pub(super) fn record(
    s: &dyn Store,
    app: &str,
    env: &str,
    host: &str,
) -> crate::gateway::store::Result<HostRelease> {
    let base = HostRelease {
        env: env.to_string(),
        host: host.to_string(),
        ..HostRelease::default()
    };
    if let Some(l) = s.live_row(app, env, host)? {
        return Ok(HostRelease {
            version: Some(l.version),
            deployed_by: Some(l.user),
            deployed_at_ms: Some(l.ts_ms),
            job_id: Some(l.job_id),
            slot: Some(l.slot),
            ..base
        });
    }
    Ok(match s.live(app, env, host)? {
        Some(l) => HostRelease {
            version: Some(l.version),
            deployed_by: Some(l.user),
            deployed_at_ms: Some(l.ts_ms),
            job_id: Some(l.job_id),
            ..base
        },
        None => base,
    })
}

impl JobService {
    /// The environments of `app` a status shows: `env` if readable (404
    /// `unknown_environment` if not, or if unknown: `input.rs`), else every readable one
    /// (403 if none).
    async fn status_envs(
        &self,
        p: &Principal,
        app: &str,
        env: Option<&str>,
    ) -> Result<Vec<String>> {
        let inv = self.jobs.inventory()?;
        let a = inv
            .app(app)
            .map_err(|e| ServiceError::NotFound(e.message))?;
        if let Some(env) = env {
            self.visible_env(p, app, env, &format!("{app}/{env} status"))
                .await?;
            return Ok(vec![env.to_string()]);
        }
        self.readable_envs(p, a, &format!("{app} status")).await
    }

    /// Which release each host of `app` serves (of `env`, or of every environment the
    /// principal may read); with `live`, what each host says, and whether they disagree.
    pub async fn status(
        &self,
        p: &Principal,
        app: &str,
        env: Option<&str>,
        live: bool,
    ) -> Result<Vec<HostRelease>> {
        let envs = self.status_envs(p, app, env).await?;
        let inv = self.jobs.inventory()?;
        let a = inv
            .app(app)
            .map_err(|e| ServiceError::NotFound(e.message))?;
        let mut pairs = Vec::new();
        for e in &envs {
            let (_, hosts) = inv.hosts_for(a, e)?;
            pairs.extend(hosts.iter().map(|h| (e.clone(), h.name.clone())));
        }
        let name = app.to_string();
        let mut rows: Vec<HostRelease> = self
            .db()
            .call(move |s| pairs.iter().map(|(e, h)| record(s, &name, e, h)).collect())
            .await?;
        if live {
            let cfg = Arc::new(self.jobs.engine_config()?);
            for e in &envs {
                let seen = sites::observe(&self.jobs, &inv, cfg.clone(), app, e).await?;
                let ledger = self.ledger_of(app, &seen).await?;
                mark(&mut rows, e, &seen, &ledger);
            }
        }
        Ok(rows)
    }
}

impl JobService {
    /// The ledger's SHA-256 of each release the hosts serve.
    async fn ledger_of(&self, app: &str, seen: &[Observed]) -> Result<Ledger> {
        let mut versions: Vec<String> = seen
            .iter()
            .filter_map(|o| o.view.as_ref().ok()?.version.clone())
            .collect();
        versions.sort();
        versions.dedup();
        let app = app.to_string();
        let found = self
            .db()
            .call(move |s| {
                let mut out = Ledger::new();
                for v in versions {
                    if let Some((_, sha)) = s.version_artifact(&app, &v)? {
                        out.insert(v, sha);
                    }
                }
                Ok::<_, crate::gateway::store::StoreError>(out)
            })
            .await?;
        Ok(found)
    }
}

/// The flag of a host whose live release's environment differs from another host's
/// of the same release in the environment (the build of one host was not the others'):
/// names the first host that differs.  None when all agree or either is unknown.
pub fn env_differs(
    host: &str,
    seen: &ObservedHost,
    others: &[(String, ObservedHost)],
) -> Option<String> {
    let version = seen.version.as_ref()?;
    let mine = seen.env_sha256.as_ref()?;
    let (other, theirs) = others.iter().find_map(|(name, o)| {
        let theirs = o.env_sha256.as_ref()?;
        (name != host && o.version.as_ref() == Some(version) && theirs != mine)
            .then_some((name, theirs))
    })?;
    Some(format!(
        "the environment of {version} here (sha256 {mine}) differs from {other}'s (sha256 {theirs}): not the same build"
    ))
}

/// Puts each host's answer on its row, with its flags.
fn mark(rows: &mut [HostRelease], env: &str, seen: &[Observed], ledger: &Ledger) {
    let all: Vec<(String, ObservedHost)> = seen
        .iter()
        .map(|o| (o.host.clone(), observed_host(&o.view)))
        .collect();
    for o in seen {
        if let Some(r) = rows.iter_mut().find(|r| r.env == env && r.host == o.host) {
            let host = observed_host(&o.view);
            r.disagrees = disagrees(r, &host);
            r.flags = Vec::new();
            if r.disagrees {
                r.flags.push(disagreement(r, &host));
            }
            if let Ok(v) = &o.view {
                r.flags.extend(v.problems());
            }
            r.flags.extend(wheel_differs(&host, ledger));
            r.flags.extend(env_differs(&o.host, &host, &all));
            r.observed = Some(host);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::observe::{Health, Process};

    fn recorded(version: &str, slot: Option<&str>) -> HostRelease {
        HostRelease {
            env: "production".into(),
            host: "web1".into(),
            version: Some(version.into()),
            slot: slot.map(str::to_string),
            ..HostRelease::default()
        }
    }

    fn view(
        version: Option<&str>,
        slot: Option<&str>,
    ) -> std::result::Result<HostView, BackendError> {
        Ok(HostView {
            live_slot: slot.map(str::to_string),
            version: version.map(str::to_string),
            processes: vec![Process {
                name: "hello-blue".into(),
                state: "running".into(),
                pid: Some(42),
                release: version.map(str::to_string),
                slot: Some("blue".into()),
                unknown: false,
            }],
            health: None,
            releases: vec![],
            wheel_sha256: None,
            env_sha256: None,
        })
    }

    #[test]
    fn a_host_disagrees_when_its_version_or_slot_differs_from_the_record() {
        let rec = recorded("2.0", Some("blue"));
        let same = observed_host(&view(Some("2.0"), Some("blue")));
        assert!(!disagrees(&rec, &same));
        assert_eq!(same.processes[0].pid, Some(42));
        assert!(disagrees(
            &rec,
            &observed_host(&view(Some("3.0"), Some("blue")))
        ));
        assert!(disagrees(
            &rec,
            &observed_host(&view(Some("2.0"), Some("green")))
        ));
        assert!(disagrees(&rec, &observed_host(&view(None, None))));
        // A record from the ledger has no slot: only the version counts.
        let old = recorded("2.0", None);
        assert!(!disagrees(
            &old,
            &observed_host(&view(Some("2.0"), Some("green")))
        ));
        // Nothing recorded, yet the host serves something.
        let none = HostRelease::default();
        assert!(disagrees(
            &none,
            &observed_host(&view(Some("1.0"), Some("blue")))
        ));
    }

    #[test]
    fn an_unreachable_host_is_shown_with_why_and_not_as_a_disagreement() {
        let seen = observed_host(&Err(BackendError::retryable("web1 stopped answering")));
        assert_eq!(seen.unreachable.as_deref(), Some("web1 stopped answering"));
        assert!(!disagrees(&recorded("2.0", Some("blue")), &seen));
    }

    fn mark_no_ledger(rows: &mut [HostRelease], env: &str, seen: &[Observed]) {
        mark(rows, env, seen, &Ledger::new());
    }

    #[test]
    fn a_host_whose_wheel_differs_from_the_ledger_is_flagged_and_an_unknown_one_is_not() {
        let mut rows = vec![recorded("2.0", Some("blue"))];
        let mut v = view(Some("2.0"), Some("blue")).unwrap();
        let ledger: Ledger = [("2.0".to_string(), "aa".repeat(32))].into();
        let one = |v: &HostView| {
            vec![Observed {
                host: "web1".into(),
                view: Ok(v.clone()),
            }]
        };
        // Installed before hosts kept the hash: unknown, not flagged.
        mark(&mut rows, "production", &one(&v), &ledger);
        assert!(rows[0].flags.is_empty(), "{:?}", rows[0]);
        assert_eq!(rows[0].observed.as_ref().unwrap().wheel_sha256, None);
        v.wheel_sha256 = Some("aa".repeat(32));
        mark(&mut rows, "production", &one(&v), &ledger);
        assert!(rows[0].flags.is_empty(), "{:?}", rows[0]);
        assert_eq!(
            rows[0].observed.as_ref().unwrap().wheel_sha256,
            Some("aa".repeat(32))
        );
        v.wheel_sha256 = Some("bb".repeat(32));
        mark(&mut rows, "production", &one(&v), &ledger);
        assert_eq!(
            rows[0].flags,
            [format!(
                "the host's wheel of 2.0 is sha256 {}, the ledger recorded sha256 {}: not the file the gateway checked",
                "bb".repeat(32),
                "aa".repeat(32)
            )]
        );
        // Nothing recorded for the release in the ledger: nothing to compare with.
        mark(&mut rows, "production", &one(&v), &Ledger::new());
        assert!(rows[0].flags.is_empty(), "{:?}", rows[0]);
    }

    #[test]
    fn hosts_of_one_release_whose_environments_differ_are_flagged_and_unknown_ones_are_not() {
        let row = |host: &str| HostRelease {
            host: host.into(),
            ..recorded("2.0", Some("blue"))
        };
        let mut rows = vec![row("web1"), row("web2"), row("web3")];
        let with = |host: &str, env: Option<String>| {
            let mut v = view(Some("2.0"), Some("blue")).unwrap();
            v.env_sha256 = env;
            Observed {
                host: host.into(),
                view: Ok(v),
            }
        };
        let (a, b) = ("aa".repeat(32), "bb".repeat(32));
        let seen = [
            with("web1", Some(a.clone())),
            with("web2", Some(a.clone())),
            with("web3", None),
        ];
        mark(&mut rows, "production", &seen, &Ledger::new());
        assert!(rows.iter().all(|r| r.flags.is_empty()), "{rows:?}");
        assert_eq!(
            rows[0].observed.as_ref().unwrap().env_sha256,
            Some(a.clone())
        );
        let seen = [
            with("web1", Some(a.clone())),
            with("web2", Some(b.clone())),
            with("web3", None),
        ];
        mark(&mut rows, "production", &seen, &Ledger::new());
        assert_eq!(
            rows[0].flags,
            [format!(
                "the environment of 2.0 here (sha256 {a}) differs from web2's (sha256 {b}): not the same build"
            )]
        );
        assert_eq!(
            rows[1].flags,
            [format!(
                "the environment of 2.0 here (sha256 {b}) differs from web1's (sha256 {a}): not the same build"
            )]
        );
        assert!(rows[2].flags.is_empty(), "unknown: not flagged");
    }

    #[test]
    fn each_flag_of_a_host_is_one_sentence_on_its_row() {
        let mut rows = vec![recorded("2.0", Some("blue"))];
        let healthy = Health {
            ok: true,
            said: "GET /healthz answered 200".into(),
        };
        let seen = |view: std::result::Result<HostView, BackendError>| {
            vec![Observed {
                host: "web1".into(),
                view,
            }]
        };
        let mut v = view(Some("2.0"), Some("blue")).unwrap();
        v.health = Some(healthy.clone());
        mark_no_ledger(&mut rows, "production", &seen(Ok(v.clone())));
        assert!(rows[0].flags.is_empty(), "{:?}", rows[0]);
        assert_eq!(
            rows[0]
                .observed
                .as_ref()
                .unwrap()
                .health
                .as_ref()
                .unwrap()
                .said,
            healthy.said
        );
        assert_eq!(
            rows[0].observed.as_ref().unwrap().processes[0]
                .slot
                .as_deref(),
            Some("blue")
        );
        // Green runs 1.0 but is not live; the live slot answers 502; the record says 1.9.
        v.processes.push(Process {
            name: "hello-green".into(),
            state: "running".into(),
            pid: Some(7),
            release: Some("1.0".into()),
            slot: Some("green".into()),
            unknown: false,
        });
        v.health = Some(Health {
            ok: false,
            said: "GET /healthz answered 502, expected 200".into(),
        });
        rows[0].version = Some("1.9".into());
        mark_no_ledger(&mut rows, "production", &seen(Ok(v)));
        assert!(rows[0].disagrees);
        assert_eq!(
            rows[0].flags,
            [
                "the gateway's record says 1.9 (blue), the host serves 2.0 (blue)",
                "slot green runs 1.0 (pid 7) but is not live: left running by an interrupted job; \
                 the next deploy, rollback or restart stops it",
                "the live slot blue (2.0) fails its health check: GET /healthz answered 502, expected 200",
            ]
        );
        // An unreachable host has no flag: it says why it did not answer instead.
        mark_no_ledger(
            &mut rows,
            "production",
            &seen(Err(BackendError::retryable("web1 stopped answering"))),
        );
        assert!(
            rows[0].flags.is_empty() && !rows[0].disagrees,
            "{:?}",
            rows[0]
        );
    }
}
