//! Who may do what: bearer tokens (unknown, revoked and expired ones get 401, too many
//! failures from one address 429: `throttle.rs`; last use is written at most once a
//! minute per token), write scopes (deploy, rollback, restart,
//! run, cancel), read scopes (every list and record, `app-logs`), the `run` right, and
//! the audit of refusals.
//!
//! Decision: refusals of write requests are audited one row each (they need a valid
//! token, and each is an attempt to change something).  Refusals that anyone can cause
//! in bulk (401s, and 403s on reads) are audited at most once per (source, reason) per
//! minute; the next row says how many were left out, so a flood of requests grows the
//! database by a bounded amount.  Failed dashboard sign-ins are audited one row each
//! (action `sign-in`, never hidden behind an API refusal's row): the throttle bounds them.
//! A read refused for an environment's or a job's scope is answered as if it did not
//! exist (`input.rs`, `reads.rs`), and audited here all the same.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{JobService, Result, ServiceError};
use crate::gateway::auth::{self, Principal};
use crate::gateway::store::now_ms;

/// One audit row per (source, reason) per this many milliseconds.
const WINDOW_MS: u64 = 60_000;
/// Sources remembered at once; past this, old windows are dropped, then every new
/// source shares one window (so the map stays bounded too).
const MAX_SOURCES: usize = 4096;
/// A token's last use is written when older than this.
const TOUCH_MS: u64 = 60_000;

/// Why a token was refused: the audit's words and the client's.
struct Refusal {
    reason: &'static str,
    message: String,
}

#[derive(Default)]
pub struct RefusalLog {
    windows: Mutex<HashMap<(String, String), Window>>,
}

struct Window {
    started_ms: u64,
    left_out: u64,
}

impl RefusalLog {
    /// Whether to write a row for this refusal now; Some(n): yes, and n were left out
    /// since the last row of this (source, reason).
    pub fn admit(&self, source: &str, reason: &str, now: u64) -> Option<u64> {
        let mut w = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if w.len() >= MAX_SOURCES {
            w.retain(|_, v| now.saturating_sub(v.started_ms) < WINDOW_MS);
        }
        let source = if w.len() >= MAX_SOURCES && !w.contains_key(&(source.into(), reason.into())) {
            "(many sources)"
        } else {
            source
        };
        let key = (source.to_string(), reason.to_string());
        match w.get_mut(&key) {
            Some(win) if now.saturating_sub(win.started_ms) < WINDOW_MS => {
                win.left_out += 1;
                None
            }
            Some(win) => {
                let left_out = std::mem::take(&mut win.left_out);
                win.started_ms = now;
                Some(left_out)
            }
            None => {
                w.insert(
                    key,
                    Window {
                        started_ms: now,
                        left_out: 0,
                    },
                );
                Some(0)
            }
        }
    }
}

impl JobService {
    /// The principal of a bearer token from `source`; refusals are audited (rate-limited)
    /// and counted by the throttle (`throttle.rs`), whose 429 comes before any look at
    /// the token.
    pub async fn authenticate(
        &self,
        token: Option<&str>,
        path: &str,
        source: &str,
    ) -> Result<Principal> {
        let target = format!("{path} from {source}");
        self.throttled(source, "request", &target).await?;
        match self.principal_of(token).await? {
            Ok(p) => Ok(self.touched(p, source).await),
            Err(refusal) => {
                self.throttle.failed(source, now_ms());
                let outcome = format!("refused: {}", refusal.reason);
                self.audit_limited("anonymous", "request", &target, source, &outcome)
                    .await;
                Err(ServiceError::Unauthenticated(refusal.message))
            }
        }
    }

    /// A dashboard sign-in: the token's principal and when the token expires.  Each
    /// sign-in is audited, refused ones too (one row each: the throttle bounds how many an
    /// address can make; a throttled one is audited rate-limited).
    pub async fn sign_in(&self, token: &str, source: &str) -> Result<(Principal, Option<u64>)> {
        let target = format!("dashboard from {source}");
        self.throttled(source, "sign-in", &target).await?;
        let t = match self.principal_of(Some(token)).await? {
            Ok(t) => t,
            Err(refusal) => {
                self.throttle.failed(source, now_ms());
                let outcome = format!("refused: {}", refusal.reason);
                self.audit("anonymous", "sign-in", &target, &outcome).await;
                return Err(ServiceError::Unauthenticated(refusal.message));
            }
        };
        let expires_ms = t.expires_ms;
        let p = self.touched(t, source).await;
        let id = p.token.clone().unwrap_or_default();
        self.audit(&p.user, "sign-in", &format!("{target} (token {id})"), "ok")
            .await;
        Ok((p, expires_ms))
    }

    /// Refuses (429, audited rate-limited) an address whose failures used up its bucket.
    async fn throttled(&self, source: &str, action: &str, target: &str) -> Result<()> {
        let Err(retry_after_secs) = self.throttle.admit(source, now_ms()) else {
            return Ok(());
        };
        let outcome = "refused: too many failed sign-ins";
        self.audit_limited("anonymous", action, target, source, outcome)
            .await;
        Err(ServiceError::Throttled {
            source_addr: source.to_string(),
            retry_after_secs,
        })
    }

    /// The token's row if it is usable now, else why not.
    async fn principal_of(
        &self,
        token: Option<&str>,
    ) -> Result<std::result::Result<crate::gateway::store::TokenRow, Refusal>> {
        let Some(token) = token else {
            return Ok(Err(Refusal {
                reason: "no token",
                message: "a token is needed: run `deploy login URL` or set DEPLOY_TOKEN".into(),
            }));
        };
        let hash = auth::hash(token);
        let Some(t) = self.db().call(move |s| s.token_by_hash(&hash)).await? else {
            let m = "unknown or revoked token";
            return Ok(Err(Refusal {
                reason: m,
                message: m.into(),
            }));
        };
        if t.expires_ms.is_some_and(|e| e <= now_ms()) {
            return Ok(Err(Refusal {
                reason: "expired token",
                message: format!("token {} has expired; ask for a new one", t.id),
            }));
        }
        Ok(Ok(t))
    }

    /// The principal of a usable token, its last use written at most once a minute.
    async fn touched(&self, t: crate::gateway::store::TokenRow, source: &str) -> Principal {
        let now = now_ms();
        if t.last_used_ms
            .is_none_or(|u| now.saturating_sub(u) >= TOUCH_MS)
        {
            let id = t.id.clone();
            if let Err(e) = self.db().call(move |s| s.touch_token(&id, now)).await {
                tracing::warn!("cannot record the use of token {}: {e}", t.id);
            }
        }
        principal(t, source)
    }

    /// Whether a token is usable now: its principal, or why not (revoked, expired).
    pub async fn token_principal(&self, id: &str, source: &str) -> Result<Principal> {
        let tokens = self.db().call(|s| s.tokens()).await?;
        let t = tokens
            .into_iter()
            .find(|t| t.id == id)
            .ok_or_else(|| ServiceError::Unauthenticated(format!("token {id} is gone")))?;
        if t.revoked {
            return Err(ServiceError::Unauthenticated(format!(
                "token {id} was revoked"
            )));
        }
        if t.expires_ms.is_some_and(|e| e <= now_ms()) {
            return Err(ServiceError::Unauthenticated(format!(
                "token {id} has expired"
            )));
        }
        Ok(principal(t, source))
    }

    /// Writes an audit row unless this (source, outcome) already has one this minute.
    async fn audit_limited(
        &self,
        user: &str,
        action: &str,
        target: &str,
        source: &str,
        outcome: &str,
    ) {
        let key = format!("{user} {outcome}");
        let Some(left_out) = self.refusals.admit(source, &key, now_ms()) else {
            return;
        };
        let outcome = match left_out {
            0 => outcome.to_string(),
            n => format!("{outcome} (and {n} more from {source} in the minute before)"),
        };
        self.audit(user, action, target, &outcome).await;
    }

    /// Refuses (and audits, every time) a principal that may not act on `env`.
    pub(super) async fn authorise(
        &self,
        p: &Principal,
        action: &str,
        env: &str,
        target: &str,
    ) -> Result<()> {
        if p.may_act_on(env) {
            return Ok(());
        }
        self.audit(&p.user, action, target, "refused: environment not allowed")
            .await;
        let how = if p.may_read(env) { " (read-only)" } else { "" };
        Err(ServiceError::Forbidden(format!(
            "user {} may not act on environment {env}{how} (allowed: {})",
            p.user,
            if p.envs.is_empty() {
                "none".to_string()
            } else {
                p.envs.join(", ")
            }
        )))
    }

    /// Refuses (and audits, every time) a principal without the `run` right.
    pub(super) async fn may_run(&self, p: &Principal, target: &str) -> Result<()> {
        if p.may_run() {
            return Ok(());
        }
        self.audit(&p.user, "run", target, "refused: no run right")
            .await;
        Err(ServiceError::Forbidden(format!(
            "the token of user {} lacks the `run` right (an admin makes one with `deploy-gateway token create ... --run`)",
            p.user
        )))
    }

    /// The environments of `app` the principal may read, in the inventory file's order;
    /// none at all is a refusal
    /// (audited as a read of `what`), so a caller never asks a backend for nothing.
    pub(super) async fn readable_envs(
        &self,
        p: &Principal,
        app: &crate::inventory::App,
        what: &str,
    ) -> Result<Vec<String>> {
        let envs: Vec<String> = app
            .environments_in_order()
            .into_iter()
            .filter(|e| p.may_read(&e.name))
            .map(|e| e.name.clone())
            .collect();
        if envs.is_empty() {
            let first = app.environments.keys().next().cloned().unwrap_or_default();
            self.readable(p, &first, what).await?;
        }
        Ok(envs)
    }

    /// Refuses (and audits, rate-limited) a principal that may not read `env`.
    pub(super) async fn readable(&self, p: &Principal, env: &str, what: &str) -> Result<()> {
        if p.may_read(env) {
            return Ok(());
        }
        let outcome = "refused: environment not readable";
        self.audit_limited(&p.user, "read", what, &p.source, outcome)
            .await;
        Err(ServiceError::Forbidden(format!(
            "user {} may not read environment {env}",
            p.user
        )))
    }
}

fn principal(t: crate::gateway::store::TokenRow, source: &str) -> Principal {
    Principal {
        token: Some(t.id),
        user: t.user,
        envs: t.envs,
        read_envs: t.read_envs,
        admin: t.admin,
        run: t.run,
        source: source.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_refusal_row_per_source_and_reason_per_minute_counting_the_rest() {
        let log = RefusalLog::default();
        assert_eq!(log.admit("10.0.0.1", "no token", 0), Some(0));
        for t in 1..100 {
            assert_eq!(log.admit("10.0.0.1", "no token", t), None);
        }
        assert_eq!(log.admit("10.0.0.2", "no token", 5), Some(0));
        assert_eq!(log.admit("10.0.0.1", "bad token", 5), Some(0));
        assert_eq!(log.admit("10.0.0.1", "no token", WINDOW_MS + 1), Some(99));
        assert_eq!(log.admit("10.0.0.1", "no token", WINDOW_MS + 2), None);
    }

    #[test]
    fn the_refusal_log_stays_bounded_under_many_sources() {
        let log = RefusalLog::default();
        let written = (0..20_000)
            .filter(|i| log.admit(&format!("10.{i}"), "no token", 1).is_some())
            .count();
        assert!(written <= MAX_SOURCES + 1, "{written}");
        assert!(log.windows.lock().unwrap().len() <= MAX_SOURCES + 1);
    }
}
