//! The generic JSON webhook: `POST`s a notice as JSON, signed with HMAC-SHA256 of the
//! exact body under a shared secret.
//!
//! Headers:
//! - `Content-Type: application/json`
//! - `X-Deploy-Event: job.started | job.succeeded | job.failed | job.cancelled`
//! - `X-Deploy-Delivery: <key>` and `Idempotency-Key: "<key>"`: the delivery's key
//!   (`<job>.<notice>.<route>`: letters, digits, `-` and `.`), unique per notice and
//!   receiver and the same on every attempt, from whichever gateway makes it.
//!   Deliveries are at least once, so a receiver that has seen a key drops the request
//!   (answering 2xx).  `Idempotency-Key` is the IETF draft's header
//!   (draft-ietf-httpapi-idempotency-key-header), whose value is a Structured Field
//!   String, hence the quotes; `X-Deploy-Delivery` is the same key bare
//! - `X-Deploy-Signature: sha256=<hex>`: HMAC-SHA256 (RFC 2104) of the raw body bytes;
//!   receivers compute it over the body exactly as received, before parsing it.
//!
//! Body (one JSON object; no URL of any kind in it):
//!
//! ```json
//! {
//!   "event": "job.succeeded",
//!   "delivery": "18c2f3a-1a2b3c4d.succeeded.webhook-3f9a1c2b7d4e",
//!   "job_id": "18c2f3a-1a2b3c4d",
//!   "kind": "deploy",
//!   "app": "hello",
//!   "env": "staging",
//!   "version": "1.2.0",
//!   "user": "alice",
//!   "state": "succeeded",
//!   "started_ms": 1764147600000,
//!   "ts_ms": 1764147660000,
//!   "commits": [{"id": "3f1c...", "author": "Bob", "subject": "ACME-12: faster index"}]
//! }
//! ```
//!
//! `state` is `running` for `job.started`, else the end (`succeeded`, `failed`,
//! `cancelled`); times are Unix milliseconds (`ts_ms`: when the event happened);
//! `commits` (newest first) is empty when the release's commits are not known.
//! Any 2xx answer is a delivery; no answer, a timeout, a 5xx, 429 or 408 is retried by
//! the gateway's outbox; any other status is not (the receiver refused it: a bad
//! signature is bad on every attempt).

use std::fmt;

use futures_util::future::BoxFuture;
use reqwest::Url;
use serde_json::json;

use super::{Notice, Notifier, hmac, host_of, request_error, status_error};
use crate::artifacts::Secret;
use crate::backend::BackendError;

/// A signed JSON webhook.
pub struct Webhook {
    pub url: Url,
    /// The HMAC key shared with the receiver.
    pub secret: Secret,
    pub http: reqwest::Client,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("host", &host_of(&self.url))
            .field("secret", &self.secret)
            .finish()
    }
}

/// The body for `notice` (see the module doc).
pub fn body(notice: &Notice) -> serde_json::Value {
    let commits: Vec<_> = notice
        .commits
        .iter()
        .map(|c| json!({"id": c.id, "author": c.author, "subject": c.subject}))
        .collect();
    json!({
        "event": notice.event.event(),
        "delivery": notice.delivery,
        "job_id": notice.job_id,
        "kind": notice.job_kind,
        "app": notice.app,
        "env": notice.env,
        "version": notice.version,
        "user": notice.user,
        "state": notice.event.state(),
        "started_ms": notice.started_ms,
        "ts_ms": notice.ts_ms,
        "commits": commits,
    })
}

impl Webhook {
    async fn post(&self, notice: &Notice) -> Result<(), BackendError> {
        let body = serde_json::to_vec(&body(notice))
            .map_err(|e| BackendError::permanent(e.to_string()))?;
        let sig = hmac::signature(self.secret.expose().as_bytes(), &body);
        let resp = self
            .http
            .post(self.url.clone())
            .header("Content-Type", "application/json")
            .header("X-Deploy-Event", notice.event.event())
            .header("Idempotency-Key", format!("\"{}\"", notice.delivery))
            .header("X-Deploy-Delivery", &notice.delivery)
            .header("X-Deploy-Signature", sig)
            .body(body)
            .send()
            .await
            .map_err(request_error)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = resp.text().await.unwrap_or_default();
        Err(status_error(status, &text, &self.secrets()))
    }
}

impl Notifier for Webhook {
    fn describe(&self) -> String {
        format!("webhook ({})", host_of(&self.url))
    }

    fn send<'a>(&'a self, notice: &'a Notice) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(self.post(notice))
    }

    fn secrets(&self) -> Vec<Secret> {
        vec![self.secret.clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::githost::Commit;
    use crate::notify::{NoticeKind, fake};

    #[test]
    fn body_has_the_documented_shape_and_no_url() {
        let mut n = fake::notice(
            NoticeKind::Started,
            vec![Commit {
                id: "c1".into(),
                author: "Bob".into(),
                subject: "ACME-12: faster".into(),
            }],
        );
        n.delivery = "d1".into();
        let b = body(&n);
        assert_eq!(b["event"], "job.started");
        assert_eq!(b["state"], "running");
        assert_eq!(b["delivery"], "d1");
        assert_eq!(b["job_id"], "abc");
        assert_eq!(b["kind"], "deploy");
        assert_eq!(b["commits"][0]["subject"], "ACME-12: faster");
        assert_eq!(b.as_object().map(|o| o.len()), Some(12));
        assert!(!b.to_string().contains("http"));
    }

    #[test]
    fn debug_and_describe_hide_the_secret() {
        let w = Webhook {
            url: Url::parse("https://hooks.example.com/in?token=abc").unwrap(),
            secret: Secret::new("hush-hush"),
            http: reqwest::Client::new(),
        };
        assert_eq!(w.secrets()[0].expose(), "hush-hush");
        let shown = format!("{w:?} {}", w.describe());
        assert!(!shown.contains("hush-hush") && !shown.contains("token=abc"));
        assert_eq!(w.describe(), "webhook (hooks.example.com)");
    }
}
