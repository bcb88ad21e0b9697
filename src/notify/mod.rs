//! Notifications: one backend role ([`Notifier`]) told when a job starts and ends.
//!
//! Per application and environment, the gateway's `[[notify]]` routes ([`config::parse`])
//! pick notifiers; each [`Notice`] to each route is a delivery, which the gateway keeps
//! in its store's outbox (`gateway/outbox.rs`) and attempts through [`deliver::attempt`]
//! until it is delivered or its [`Retry`] gives up, reporting every attempt.  A notifier
//! never blocks, fails or slows a deploy.
//!
//! At least once, with an idempotency key: a delivery may be sent twice (a gateway that
//! died between sending and recording), always with the same key ([`Notice::delivery`]:
//! `<job>.<notice>.<route>`), by which a receiver drops the repeat.  The webhook sends
//! it as `Idempotency-Key` (and `X-Deploy-Delivery`, and `delivery` in the body).  Slack's
//! incoming webhooks take no such key: a repeat shows twice.  JIRA's add-comment has none
//! either: the notifier remembers which issues a delivery commented on (`jira.rs`), so a
//! retry by the same gateway comments once; after a crash, a comment may appear twice.
//!
//! One file per kind of receiver:
//! - [`webhook`]: a generic JSON webhook, signed with HMAC-SHA256 ([`hmac`]); the body's
//!   JSON shape is documented there.
//! - [`slack`]: a Slack incoming webhook (`{"text": ...}`), the URL being the secret.
//! - [`jira`]: a comment on each JIRA issue named in the released commits' subjects.
//! - [`fake`]: records notices, fails on demand (tests).
//!
//! Secrets (the webhook's key, Slack's URL, JIRA's token) are [`Secret`]s: they never
//! appear in `Debug`, [`Notifier::describe`], errors or delivery outcomes.
//!
//! A failed attempt is a [`BackendError`]: retryable when the receiver could not be
//! reached, timed out or answered 5xx/429/408 (the outbox tries again later), permanent
//! when it answered another status (the delivery ends: asking again gets the same
//! "no").

pub mod config;
pub mod deliver;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod hmac;
pub mod jira;
pub mod slack;
pub mod webhook;

pub use config::{Filter, Route, parse};
pub use deliver::{DeliveryOutcome, Report, Retry};

use std::fmt;
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::artifacts::Secret;
use crate::backend::{BackendError, request_kind, status_kind};
use crate::githost::Commit;

/// Each HTTP request of a notifier gives up after this long.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What happened to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoticeKind {
    Started,
    Succeeded,
    Failed,
    Cancelled,
}

impl NoticeKind {
    pub const ALL: [NoticeKind; 4] = [
        NoticeKind::Started,
        NoticeKind::Succeeded,
        NoticeKind::Failed,
        NoticeKind::Cancelled,
    ];

    /// The name in `gateway.toml`'s `events` (`started`, ...).
    pub fn name(self) -> &'static str {
        match self {
            NoticeKind::Started => "started",
            NoticeKind::Succeeded => "succeeded",
            NoticeKind::Failed => "failed",
            NoticeKind::Cancelled => "cancelled",
        }
    }

    /// The event's name on the wire (`job.started`, ...).
    pub fn event(self) -> &'static str {
        match self {
            NoticeKind::Started => "job.started",
            NoticeKind::Succeeded => "job.succeeded",
            NoticeKind::Failed => "job.failed",
            NoticeKind::Cancelled => "job.cancelled",
        }
    }

    /// The job's state after this event (`running`, `succeeded`, ...).
    pub fn state(self) -> &'static str {
        match self {
            NoticeKind::Started => "running",
            other => other.name(),
        }
    }

    /// Is this the job's end?
    pub fn is_end(self) -> bool {
        self != NoticeKind::Started
    }

    pub fn from_name(s: &str) -> Option<NoticeKind> {
        NoticeKind::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// One thing to tell: a job started or ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub event: NoticeKind,
    pub job_id: String,
    /// `deploy`, `rollback`, `restart`, ...
    pub job_kind: String,
    pub app: String,
    pub env: String,
    pub version: String,
    /// Who asked for the job.
    pub user: String,
    /// The commits the release adds, newest first, when known.
    pub commits: Vec<Commit>,
    /// When the job started (Unix milliseconds).
    pub started_ms: u64,
    /// When this event happened (Unix milliseconds).
    pub ts_ms: u64,
    /// This delivery's idempotency key, `<job>.<notice>.<route>`: one per notice and
    /// route, the same for every attempt from any gateway (receivers drop repeats by it).
    pub delivery: String,
}

impl Notice {
    /// A short human line: `deploy: hello 1.2.0 to staging by alice succeeded (job abc)`.
    pub fn line(&self) -> String {
        let what = match self.event {
            NoticeKind::Started => "started",
            NoticeKind::Succeeded => "succeeded",
            NoticeKind::Failed => "failed",
            NoticeKind::Cancelled => "was cancelled",
        };
        format!(
            "{}: {} {} to {} by {} {what} (job {})",
            self.job_kind, self.app, self.version, self.env, self.user, self.job_id
        )
    }
}

/// One backend role: tells a receiver about jobs.
pub trait Notifier: Send + Sync + fmt::Debug {
    /// What it is, for messages and outcomes (never a secret).
    fn describe(&self) -> String;
    /// Does it have anything to say about this notice (beyond the route's filter)?
    fn wants(&self, _notice: &Notice) -> bool {
        true
    }
    /// One attempt at delivering `notice`.  Errors are short and secret-free, and say
    /// whether another attempt may succeed.
    fn send<'a>(&'a self, notice: &'a Notice) -> BoxFuture<'a, Result<(), BackendError>>;
    /// Every secret it holds ([`deliver::attempt`] scrubs them from errors anyway).
    fn secrets(&self) -> Vec<Secret>;
}

/// The HTTP client notifiers share: no redirects (a secret-bearing request goes only
/// where it was configured to), [`REQUEST_TIMEOUT`] per request.
pub fn http_client() -> Result<reqwest::Client, BackendError> {
    crate::artifacts::client(reqwest::Client::builder())
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| BackendError::permanent(format!("cannot build an HTTP client: {e}")))
}

/// The host (and port) of a URL, for `describe()`: never its path, query or user info.
pub fn host_of(url: &reqwest::Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => "?".into(),
    }
}

/// A failed response as a short line: the status and the body's first line (at most
/// 120 characters), with `secrets` replaced by `***`; retryable for 5xx, 429 and 408.
pub fn status_error(status: reqwest::StatusCode, body: &str, secrets: &[Secret]) -> BackendError {
    let first = body.lines().map(str::trim).find(|l| !l.is_empty());
    let mut line: String = first.unwrap_or("").chars().take(120).collect();
    line = scrub(&line, secrets);
    let message = if line.is_empty() {
        format!("answered {status}")
    } else {
        format!("answered {status}: {line}")
    };
    BackendError::new(status_kind(status), message)
}

/// `text` with every secret replaced by `***`.
pub fn scrub(text: &str, secrets: &[Secret]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if !s.expose().is_empty() {
            out = out.replace(s.expose(), "***");
        }
    }
    out
}

/// A reqwest error without its URL (which may be the secret); retryable as the
/// network's failures are.
pub fn request_error(e: reqwest::Error) -> BackendError {
    let (timeout, kind) = (e.is_timeout(), request_kind(&e));
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    if timeout {
        msg = format!("timed out: {msg}");
    }
    BackendError::new(kind, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_lines() {
        assert_eq!(NoticeKind::from_name("failed"), Some(NoticeKind::Failed));
        assert_eq!(NoticeKind::from_name("done"), None);
        assert_eq!(NoticeKind::Started.state(), "running");
        assert_eq!(NoticeKind::Cancelled.event(), "job.cancelled");
        let n = fake::notice(NoticeKind::Succeeded, vec![]);
        assert_eq!(
            n.line(),
            "deploy: hello 1.2.0 to staging by alice succeeded (job abc)"
        );
    }

    #[test]
    fn status_errors_are_short_and_scrubbed() {
        let s = [Secret::new("s3cret")];
        let body = "\n  token s3cret is wrong\nsecond line";
        let e = status_error(reqwest::StatusCode::UNAUTHORIZED, body, &s);
        assert_eq!(
            e.to_string(),
            "answered 401 Unauthorized: token *** is wrong"
        );
        assert!(!e.is_retryable() && !format!("{e:?}").contains("s3cret"));
        let long = "x".repeat(500);
        let e = status_error(reqwest::StatusCode::BAD_GATEWAY, &long, &s);
        assert!(e.to_string().len() < 160 && e.is_retryable());
        let e = status_error(reqwest::StatusCode::NOT_FOUND, "", &s);
        assert_eq!(e.to_string(), "answered 404 Not Found");
        assert!(!e.is_retryable());
        let e = status_error(reqwest::StatusCode::SERVICE_UNAVAILABLE, "busy", &s);
        assert!(e.is_retryable());
    }
}
