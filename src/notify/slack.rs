//! A Slack incoming webhook: `POST {"text": "<one human line>"}` to the webhook's URL.
//!
//! Follows Slack's "Sending messages using incoming webhooks"
//! (<https://api.slack.com/messaging/webhooks>): the URL itself is the credential, so it
//! is a [`Secret`] (only its host is ever shown: `slack (hooks.slack.com)`); the body is
//! JSON with a `text` field in which `&`, `<` and `>` are escaped as Slack's formatting
//! asks; Slack answers `200 ok`, and otherwise a status with a short error string
//! (`invalid_payload`, `no_service`, `channel_not_found`, `channel_is_archived`, ...:
//! <https://api.slack.com/changelog/2016-05-17-changes-to-errors-for-incoming-webhooks>),
//! which the error carries.

use std::fmt;

use futures_util::future::BoxFuture;
use serde_json::json;

use super::{Notice, Notifier, request_error, status_error};
use crate::artifacts::Secret;
use crate::backend::BackendError;

/// A Slack-compatible incoming webhook.
pub struct Slack {
    /// The webhook URL (the secret).
    pub url: Secret,
    /// Its host, for `describe()`.
    pub host: String,
    pub http: reqwest::Client,
}

impl Slack {
    /// A webhook at `url`; the error (permanent: a bad config) never shows the URL.
    pub fn new(url: Secret, http: reqwest::Client) -> Result<Slack, BackendError> {
        let parsed = reqwest::Url::parse(url.expose())
            .map_err(|_| BackendError::permanent("the webhook URL is not a valid URL"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            let msg = "the webhook URL must be an http(s) URL with a host";
            return Err(BackendError::permanent(msg));
        }
        let host = super::host_of(&parsed);
        Ok(Slack { url, host, http })
    }

    async fn post(&self, notice: &Notice) -> Result<(), BackendError> {
        let resp = self
            .http
            .post(self.url.expose())
            .json(&json!({ "text": text(notice) }))
            .send()
            .await
            .map_err(request_error)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = resp.text().await.unwrap_or_default();
        Err(status_error(status, &body, &self.scrub_list()))
    }

    /// What an error must not show: the URL, its path (a careless server may echo it)
    /// and the path's long segments (the tokens).
    fn scrub_list(&self) -> Vec<Secret> {
        let mut list = vec![self.url.clone()];
        if let Ok(u) = reqwest::Url::parse(self.url.expose()) {
            if u.path().len() > 1 {
                list.push(Secret::new(u.path()));
            }
            let long = u.path().split('/').filter(|s| s.len() >= 12);
            list.extend(long.map(Secret::new));
        }
        list
    }
}

impl fmt::Debug for Slack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slack")
            .field("host", &self.host)
            .field("url", &self.url)
            .finish()
    }
}

/// The message: the notice's line, escaped for Slack.
pub fn text(notice: &Notice) -> String {
    escape(&notice.line())
}

/// Slack's three control characters, escaped.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Notifier for Slack {
    fn describe(&self) -> String {
        format!("slack ({})", self.host)
    }

    fn send<'a>(&'a self, notice: &'a Notice) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(self.post(notice))
    }

    fn secrets(&self) -> Vec<Secret> {
        vec![self.url.clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::{NoticeKind, fake};

    #[test]
    fn text_is_one_escaped_line() {
        let mut n = fake::notice(NoticeKind::Failed, vec![]);
        n.user = "<bob & co>".into();
        assert_eq!(
            text(&n),
            "deploy: hello 1.2.0 to staging by &lt;bob &amp; co&gt; failed (job abc)"
        );
    }

    #[test]
    fn the_url_is_never_shown() {
        let url = "https://hooks.slack.com/services/T000/B000/XXXXsecret";
        let s = Slack::new(Secret::new(url), reqwest::Client::new()).unwrap();
        assert_eq!(s.secrets()[0].expose(), url);
        assert_eq!(s.describe(), "slack (hooks.slack.com)");
        assert!(!format!("{s:?}").contains("XXXXsecret"));
        let e = Slack::new(Secret::new("not a url XXXXsecret"), reqwest::Client::new());
        let e = e.unwrap_err();
        assert!(!format!("{e} {e:?}").contains("XXXXsecret") && !e.is_retryable());
    }
}
