//! JIRA: a comment on each issue named in the released commits' subjects.
//!
//! Uses JIRA's REST API v2, "add comment" (JIRA Server/Data Center and Cloud):
//! `POST {base}/rest/api/2/issue/{issueKey}/comment` with `{"body": "<text>"}`, answered
//! `201` with the comment (<https://developer.atlassian.com/server/jira/platform/jira-rest-api-example-add-comment-8946422>).
//! Authentication is HTTP basic with a user and an API token (Cloud, or Server with a
//! password), or `Authorization: Bearer` with a personal access token (Data Center).
//! Errors come back as `{"errorMessages": [...], "errors": {}}` (404 for an unknown
//! issue, 401 for bad credentials).
//!
//! Issue keys are what matches `[A-Z][A-Z0-9]+-[0-9]+` (as a whole word) in the commits'
//! subjects, each once.  By default only a job's end is commented (the route's
//! `events`); a notice with no issue key is not wanted.  A retried notice does not
//! comment again on an issue that already has its comment; a notice is retried when any
//! issue's failure is retryable (an unknown issue's 404 alone is not).

use std::collections::HashSet;
use std::fmt;
use std::sync::Mutex;

use futures_util::future::BoxFuture;
use reqwest::Url;
use serde_json::json;

use super::{Notice, Notifier, host_of, request_error, status_error};
use crate::artifacts::Secret;
use crate::backend::{BackendError, ErrorKind};
use crate::githost::Commit;

/// At most this many issues are commented per notice.
const MAX_ISSUES: usize = 20;
/// At most this many commits are listed in a comment.
const MAX_COMMITS: usize = 20;
/// Comments remembered (for retries) before the memory is cleared.
const MAX_REMEMBERED: usize = 10_000;

/// How to authenticate to JIRA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JiraAuth {
    /// User (e-mail on Cloud) and API token or password.
    Basic { user: String, token: Secret },
    /// A personal access token.
    Bearer(Secret),
}

/// Comments on JIRA issues.
pub struct Jira {
    /// The site's base URL (`https://acme.atlassian.net`, `https://jira.acme.com/jira`).
    pub base: Url,
    pub auth: JiraAuth,
    pub http: reqwest::Client,
    /// (delivery, issue) pairs already commented, so a retry skips them.
    done: Mutex<HashSet<(String, String)>>,
}

impl fmt::Debug for Jira {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jira")
            .field("host", &host_of(&self.base))
            .field("auth", &self.auth)
            .finish()
    }
}

impl Jira {
    pub fn new(base: Url, auth: JiraAuth, http: reqwest::Client) -> Jira {
        Jira {
            base,
            auth,
            http,
            done: Mutex::new(HashSet::new()),
        }
    }

    fn comment_url(&self, key: &str) -> String {
        format!(
            "{}/rest/api/2/issue/{key}/comment",
            self.base.as_str().trim_end_matches('/')
        )
    }

    fn is_done(&self, delivery: &str, key: &str) -> bool {
        self.done
            .lock()
            .is_ok_and(|d| d.contains(&(delivery.to_string(), key.to_string())))
    }

    fn remember(&self, delivery: &str, key: &str) {
        if let Ok(mut d) = self.done.lock() {
            if d.len() >= MAX_REMEMBERED {
                d.clear();
            }
            d.insert((delivery.to_string(), key.to_string()));
        }
    }

    fn forget(&self, delivery: &str) {
        if let Ok(mut d) = self.done.lock() {
            d.retain(|(id, _)| id != delivery);
        }
    }

    async fn comment(&self, key: &str, body: &str) -> Result<(), BackendError> {
        let req = self
            .http
            .post(self.comment_url(key))
            .json(&json!({ "body": body }));
        let req = match &self.auth {
            JiraAuth::Basic { user, token } => req.basic_auth(user, Some(token.expose())),
            JiraAuth::Bearer(t) => req.bearer_auth(t.expose()),
        };
        let resp = req.send().await.map_err(request_error)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = resp.text().await.unwrap_or_default();
        Err(status_error(status, &text, &self.secrets()))
    }

    async fn post(&self, notice: &Notice) -> Result<(), BackendError> {
        let body = comment_text(notice);
        let mut errors = Vec::new();
        let mut kind = ErrorKind::Permanent;
        for key in issue_keys(&notice.commits) {
            if self.is_done(&notice.delivery, &key) {
                continue;
            }
            match self.comment(&key, &body).await {
                Ok(()) => self.remember(&notice.delivery, &key),
                Err(e) => {
                    if e.is_retryable() {
                        kind = ErrorKind::Retryable;
                    }
                    errors.push(format!("{key}: {e}"));
                }
            }
        }
        if errors.is_empty() {
            self.forget(&notice.delivery);
            Ok(())
        } else {
            Err(BackendError::new(kind, errors.join("; ")))
        }
    }
}

impl Notifier for Jira {
    fn describe(&self) -> String {
        format!("jira ({})", host_of(&self.base))
    }

    fn wants(&self, notice: &Notice) -> bool {
        !issue_keys(&notice.commits).is_empty()
    }

    fn send<'a>(&'a self, notice: &'a Notice) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(self.post(notice))
    }

    fn secrets(&self) -> Vec<Secret> {
        match &self.auth {
            JiraAuth::Basic { token, .. } | JiraAuth::Bearer(token) => vec![token.clone()],
        }
    }
}

/// The comment: the notice's line, then the release's commits.
pub fn comment_text(notice: &Notice) -> String {
    let mut text = notice.line();
    if !notice.commits.is_empty() {
        text.push_str("\nCommits:");
        for c in notice.commits.iter().take(MAX_COMMITS) {
            let short: String = c.id.chars().take(10).collect();
            text.push_str(&format!("\n- {short} {} ({})", c.subject, c.author));
        }
        if notice.commits.len() > MAX_COMMITS {
            let more = notice.commits.len() - MAX_COMMITS;
            text.push_str(&format!("\n- ... and {more} more"));
        }
    }
    text
}

/// The issue keys in the commits' subjects, each once, in order, at most [`MAX_ISSUES`].
pub fn issue_keys(commits: &[Commit]) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for k in commits.iter().flat_map(|c| keys_in(&c.subject)) {
        if !keys.contains(&k) && keys.len() < MAX_ISSUES {
            keys.push(k);
        }
    }
    keys
}

/// Whole words matching `[A-Z][A-Z0-9]+-[0-9]+` in `s`.
fn keys_in(s: &str) -> Vec<String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let starts_word = i == 0 || !b[i - 1].is_ascii_alphanumeric();
        if starts_word && b[i].is_ascii_uppercase() {
            let mut j = i + 1;
            while j < b.len() && (b[j].is_ascii_uppercase() || b[j].is_ascii_digit()) {
                j += 1;
            }
            if j - i >= 2 && b.get(j) == Some(&b'-') {
                let mut k = j + 1;
                while k < b.len() && b[k].is_ascii_digit() {
                    k += 1;
                }
                if k > j + 1 && b.get(k).is_none_or(|c| !c.is_ascii_alphanumeric()) {
                    out.push(s[i..k].to_string());
                    i = k;
                    continue;
                }
            }
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::{NoticeKind, fake};

    fn commit(subject: &str) -> Commit {
        Commit {
            id: "0123456789abcdef".into(),
            author: "Bob".into(),
            subject: subject.into(),
        }
    }

    #[test]
    fn finds_issue_keys_as_whole_words() {
        let cs = [
            commit("ACME-12: faster index; see also OPS2-7"),
            commit("fix(ACME-12) again, not xACME-3 nor ACME-4b nor A-1 nor acme-5"),
            commit("[WEB-100] feature/ACME-13-thing"),
            commit("no issue here: 12-34, -5, ACME-"),
        ];
        assert_eq!(
            issue_keys(&cs),
            ["ACME-12", "OPS2-7", "WEB-100", "ACME-13"].map(String::from)
        );
    }

    #[test]
    fn wants_only_notices_with_issues_and_hides_the_token() {
        let j = Jira::new(
            Url::parse("https://jira.acme.com/jira/").unwrap(),
            JiraAuth::Basic {
                user: "bot".into(),
                token: Secret::new("tok-123"),
            },
            reqwest::Client::new(),
        );
        let mut n = fake::notice(NoticeKind::Succeeded, vec![commit("chore")]);
        assert!(!j.wants(&n));
        n.commits.push(commit("ACME-12 fix"));
        assert!(j.wants(&n));
        assert_eq!(
            j.comment_url("ACME-12"),
            "https://jira.acme.com/jira/rest/api/2/issue/ACME-12/comment"
        );
        assert_eq!(j.secrets()[0].expose(), "tok-123");
        assert!(!format!("{j:?} {}", j.describe()).contains("tok-123"));
        let text = comment_text(&n);
        assert!(text.starts_with("deploy: hello 1.2.0 to staging by alice succeeded"));
        assert!(text.contains("\n- 0123456789 ACME-12 fix (Bob)"));
    }
}
