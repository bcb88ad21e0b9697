//! The `[[notify]]` routes of `gateway.toml`: which notifier hears about which jobs.
//!
//! ```toml
//! [[notify]]
//! kind = "webhook"                  # webhook | slack | jira
//! url = "https://ci.acme.com/deploy-hook"
//! secret_env = "DEPLOY_HOOK_KEY"    # or secret_file: the HMAC key (required)
//! apps = ["hello"]                  # absent or empty: every application
//! envs = ["production"]             # absent or empty: every environment
//! events = ["started", "succeeded", "failed", "cancelled"]   # the default
//! attempts = 10                     # the default: 10 attempts, waiting
//! retry_ms = 2000                   #   2 s after the first failure, doubling,
//! max_retry_secs = 600              #   at most 10 minutes (`deliver::Retry`)
//!
//! [[notify]]
//! kind = "slack"
//! url_file = "/etc/deploy/slack-url"   # or url_env: the webhook URL is the secret
//!
//! [[notify]]
//! kind = "jira"
//! url = "https://acme.atlassian.net"
//! user = "deploy-bot@acme.com"      # with it: basic auth; without: a bearer token
//! token_env = "JIRA_TOKEN"          # or token_file (required)
//! # events default to ["succeeded", "failed"]
//! ```
//!
//! Secrets come only from an environment variable or a file (relative paths are from
//! the config's directory; a trailing newline is dropped).  Errors name the field
//! (`notify[2].url: ...`, entries counted from 0) and never a secret's value.
//!
//! Each route has an id ([`Route::id`]: its kind and a hash of its entry, retry fields
//! aside), the same on every gateway that reads the same entry and after a restart:
//! the outbox's rows name their route by it, so a pending delivery is sent by the route
//! it was written for (or, once the entry is changed or removed, by none).

use std::path::Path;
use std::sync::Arc;

use reqwest::Url;
use toml::Value;
use toml::value::Table;

use super::jira::{Jira, JiraAuth};
use super::slack::Slack;
use super::webhook::Webhook;
use super::{Notice, NoticeKind, Notifier, Retry};
use crate::artifacts::Secret;

/// Which notices a route takes.  Empty lists match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub apps: Vec<String>,
    pub envs: Vec<String>,
    pub events: Vec<NoticeKind>,
}

impl Filter {
    pub fn matches(&self, n: &Notice) -> bool {
        (self.apps.is_empty() || self.apps.contains(&n.app))
            && (self.envs.is_empty() || self.envs.contains(&n.env))
            && (self.events.is_empty() || self.events.contains(&n.event))
    }
}

/// A filter and the notifier it feeds.
#[derive(Debug, Clone)]
pub struct Route {
    /// `<kind>-<12 hex digits>`: a hash of the entry (which holds no secret, only where
    /// to find one), so the same on every gateway and across restarts; `-2`, `-3`, ...
    /// for repeated entries.
    pub id: String,
    pub filter: Filter,
    pub notifier: Arc<dyn Notifier>,
    pub retry: Retry,
}

const COMMON: &[&str] = &["kind", "apps", "envs", "events"];
const RETRY: &[&str] = &["attempts", "retry_ms", "max_retry_secs"];
const WEBHOOK: &[&str] = &["url", "secret_env", "secret_file"];
const SLACK: &[&str] = &["url_env", "url_file"];
const JIRA: &[&str] = &["url", "user", "token_env", "token_file"];

/// The routes of `value`: either the whole `gateway.toml` (its `notify` key, absent =
/// none) or the `notify` array itself.  `base_dir` resolves relative secret files.
pub fn parse(value: &Value, base_dir: &Path) -> Result<Vec<Route>, String> {
    let entries = match value {
        Value::Table(t) => match t.get("notify") {
            None => return Ok(Vec::new()),
            Some(Value::Array(a)) => a,
            Some(_) => return Err("notify: expected an array of tables ([[notify]])".into()),
        },
        Value::Array(a) => a,
        _ => return Err("notify: expected an array of tables ([[notify]])".into()),
    };
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let http = super::http_client().map_err(|e| e.to_string())?;
    let mut routes = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let at = format!("notify[{i}]");
        let Value::Table(t) = entry else {
            return Err(format!("{at}: expected a table"));
        };
        let mut r = route(t, &at, base_dir, &http)?;
        let n = routes
            .iter()
            .filter(|o: &&Route| same_entry(&o.id, &r.id))
            .count();
        if n > 0 {
            r.id = format!("{}-{}", r.id, n + 1);
        }
        routes.push(r);
    }
    Ok(routes)
}

fn same_entry(id: &str, first: &str) -> bool {
    id == first || id.strip_prefix(first).is_some_and(|n| n.starts_with('-'))
}

/// A route's id: its kind and the first 12 hex digits of the SHA-256 of its entry's
/// fields (names and values, sorted; the retry fields left out, so that tuning them
/// keeps the route's pending deliveries).
fn route_id(kind: &str, t: &Table) -> String {
    use sha2::{Digest, Sha256};
    let mut fields: Vec<(&String, String)> = t
        .iter()
        .filter(|(k, _)| !RETRY.contains(&k.as_str()))
        .map(|(k, v)| (k, v.to_string()))
        .collect();
    fields.sort();
    let mut h = Sha256::new();
    for (k, v) in fields {
        h.update(format!("{k}={v}\n").as_bytes());
    }
    format!("{kind}-{}", &hex::encode(h.finalize())[..12])
}

/// `attempts`, `retry_ms` and `max_retry_secs` over [`Retry`]'s defaults.
fn retry(t: &Table, at: &str) -> Result<Retry, String> {
    let mut r = Retry::default();
    let number = |key: &str, max: i64| -> Result<Option<u64>, String> {
        match t.get(key) {
            None => Ok(None),
            Some(Value::Integer(n)) if (1..=max).contains(n) => Ok(Some(*n as u64)),
            Some(_) => Err(format!(
                "{at}.{key}: expected a whole number from 1 to {max}"
            )),
        }
    };
    if let Some(n) = number("attempts", 100)? {
        r.attempts = n as u32;
    }
    if let Some(ms) = number("retry_ms", 86_400_000)? {
        r.base_delay = std::time::Duration::from_millis(ms);
    }
    if let Some(secs) = number("max_retry_secs", 86_400)? {
        r.max_delay = std::time::Duration::from_secs(secs);
    }
    Ok(r)
}

/// One `[[notify]]` entry.
fn route(t: &Table, at: &str, base: &Path, http: &reqwest::Client) -> Result<Route, String> {
    let kind = string(t, "kind", at)?.ok_or_else(|| {
        format!("{at}.kind: missing: give kind = \"webhook\", \"slack\" or \"jira\"")
    })?;
    let (own, default_events): (&[&str], &[NoticeKind]) = match kind.as_str() {
        "webhook" => (WEBHOOK, &NoticeKind::ALL),
        "slack" => (SLACK, &NoticeKind::ALL),
        "jira" => (JIRA, &[NoticeKind::Succeeded, NoticeKind::Failed]),
        other => {
            return Err(format!(
                "{at}.kind: unknown kind `{other}`: expected webhook, slack or jira"
            ));
        }
    };
    if kind == "slack" && t.contains_key("url") {
        return Err(format!(
            "{at}.url: a Slack webhook URL is a secret: give url_env or url_file instead"
        ));
    }
    let known = |k: &str| COMMON.contains(&k) || RETRY.contains(&k) || own.contains(&k);
    if let Some(k) = t.keys().find(|k| !known(k)) {
        let valid: Vec<_> = COMMON.iter().chain(RETRY).chain(own).copied().collect();
        return Err(format!(
            "{at}.{k}: unknown field for kind {kind} (valid: {})",
            valid.join(", ")
        ));
    }
    let mut filter = Filter {
        apps: list(t, "apps", at)?,
        envs: list(t, "envs", at)?,
        events: events(t, at)?,
    };
    if filter.events.is_empty() {
        filter.events = default_events.to_vec();
    }
    let notifier: Arc<dyn Notifier> = match kind.as_str() {
        "webhook" => Arc::new(webhook(t, at, base, http)?),
        "slack" => Arc::new(slack(t, at, base, http)?),
        _ => Arc::new(jira(t, at, base, http)?),
    };
    Ok(Route {
        id: route_id(&kind, t),
        filter,
        notifier,
        retry: retry(t, at)?,
    })
}

fn webhook(t: &Table, at: &str, base: &Path, http: &reqwest::Client) -> Result<Webhook, String> {
    let url = url(t, at)?;
    let secret = secret(t, "secret", at, base)?.ok_or_else(|| {
        format!("{at}.secret_env: missing: a webhook is signed; give secret_env or secret_file")
    })?;
    Ok(Webhook {
        url,
        secret,
        http: http.clone(),
    })
}

fn slack(t: &Table, at: &str, base: &Path, http: &reqwest::Client) -> Result<Slack, String> {
    let url = secret(t, "url", at, base)?
        .ok_or_else(|| format!("{at}.url_env: missing: give url_env or url_file"))?;
    let field = if t.contains_key("url_env") {
        "url_env"
    } else {
        "url_file"
    };
    Slack::new(url, http.clone()).map_err(|e| format!("{at}.{field}: {e}"))
}

fn jira(t: &Table, at: &str, base: &Path, http: &reqwest::Client) -> Result<Jira, String> {
    let url = url(t, at)?;
    let token = secret(t, "token", at, base)?
        .ok_or_else(|| format!("{at}.token_env: missing: give token_env or token_file"))?;
    let auth = match string(t, "user", at)? {
        Some(user) if !user.is_empty() => JiraAuth::Basic { user, token },
        Some(_) => return Err(format!("{at}.user: empty")),
        None => JiraAuth::Bearer(token),
    };
    Ok(Jira::new(url, auth, http.clone()))
}

/// `url`: required, http(s) with a host.  The message does not repeat the value.
fn url(t: &Table, at: &str) -> Result<Url, String> {
    let raw = string(t, "url", at)?.ok_or_else(|| format!("{at}.url: missing"))?;
    let u = Url::parse(&raw).map_err(|e| format!("{at}.url: not a valid URL ({e})"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(format!("{at}.url: must be an http(s) URL with a host"));
    }
    Ok(u)
}

fn string(t: &Table, key: &str, at: &str) -> Result<Option<String>, String> {
    match t.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{at}.{key}: expected a string")),
    }
}

fn list(t: &Table, key: &str, at: &str) -> Result<Vec<String>, String> {
    let Some(v) = t.get(key) else {
        return Ok(Vec::new());
    };
    let err = || format!("{at}.{key}: expected a list of non-empty strings");
    let Value::Array(items) = v else {
        return Err(err());
    };
    items
        .iter()
        .map(|i| match i {
            Value::String(s) if !s.is_empty() => Ok(s.clone()),
            _ => Err(err()),
        })
        .collect()
}

fn events(t: &Table, at: &str) -> Result<Vec<NoticeKind>, String> {
    let names = list(t, "events", at)?;
    if t.contains_key("events") && names.is_empty() {
        return Err(format!("{at}.events: empty: leave it out for the default"));
    }
    names
        .iter()
        .map(|n| {
            NoticeKind::from_name(n).ok_or_else(|| {
                format!("{at}.events: unknown event `{n}`: expected started, succeeded, failed or cancelled")
            })
        })
        .collect()
}

/// `<what>_env` or `<what>_file` (not both); `None` when neither is given.
fn secret(t: &Table, what: &str, at: &str, base: &Path) -> Result<Option<Secret>, String> {
    let (env_key, file_key) = (format!("{what}_env"), format!("{what}_file"));
    let env = string(t, &env_key, at)?;
    let file = string(t, &file_key, at)?;
    match (env, file) {
        (Some(_), Some(_)) => Err(format!(
            "{at}.{env_key}: give either {env_key} or {file_key}, not both"
        )),
        (Some(var), None) => match std::env::var(&var) {
            Ok(v) if !v.trim().is_empty() => Ok(Some(Secret::new(v.trim()))),
            _ => Err(format!(
                "{at}.{env_key}: the environment variable {var} is not set (it should hold the {what})"
            )),
        },
        (None, Some(f)) => {
            let path = base.join(&f);
            let v = std::fs::read_to_string(&path)
                .map_err(|e| format!("{at}.{file_key}: cannot read {}: {e}", path.display()))?;
            let v = v.trim_end_matches(['\n', '\r']);
            if v.trim().is_empty() {
                return Err(format!("{at}.{file_key}: {} is empty", path.display()));
            }
            Ok(Some(Secret::new(v)))
        }
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
