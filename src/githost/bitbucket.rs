//! `Bitbucket`: Bitbucket Server / Data Center (and Stash) through its REST API 1.0.
//!
//! Follows Atlassian's published documentation:
//! - "Bitbucket Data Center REST API" (developer.atlassian.com/server/bitbucket/rest/,
//!   group "Repository"): `GET /rest/api/1.0/projects/{projectKey}/repos/{repositorySlug}
//!   /commits/{commitId}` (a commit id or a ref) and `GET .../commits?since=&until=`
//!   (`since` exclusive, `until` inclusive, newest first); a commit has `id`, `author`
//!   (`name`, and `displayName` when Bitbucket knows the user) and `message`.
//! - the same reference's "Paged APIs" section: `start` and `limit` query parameters;
//!   pages carry `size`, `limit`, `isLastPage`, `start`, `nextPageStart`, `values`, and a
//!   client must use `nextPageStart` (not start + size) for the next page.
//! - "HTTP access tokens" (confluence.atlassian.com, Bitbucket Data Center): a personal,
//!   project or repository token goes in `Authorization: Bearer <token>`.
//! - errors are `{"errors": [{"message": ...}]}` with the status.
//!
//! Jira BSERV-4621: older servers list the whole history when `since` or `until` does not
//! resolve, so both ends are resolved first and the list asked by commit id.
//!
//! Errors: the network's failures and 5xx/429 are retryable; a 404 (no such commit, ref
//! or repository) is `Missing`; other statuses (401), bad JSON, bad names and a bad URL
//! in the config are permanent.  Messages say "the git host", never the product or its
//! URL (users never see which product answered).

use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::{StatusCode, Url};
use serde_json::Value;

use super::git::check_reference;
use super::{Commit, GitHost};
use crate::artifacts::Secret;
use crate::backend::{BackendError, request_kind, status_kind};

/// Commits asked per page (Bitbucket may apply a lower hard limit; its `limit` says).
const PAGE: u32 = 100;
/// At most this many pages (100 000 commits at the default page) per question.
const MAX_PAGES: usize = 1000;
const TIMEOUT: Duration = Duration::from_secs(60);

/// A Bitbucket Server / Data Center instance; repositories are `PROJECTKEY/slug`.
#[derive(Debug, Clone)]
pub struct Bitbucket {
    base: String,
    token: Option<Secret>,
    http: reqwest::Client,
}

/// One page of a paged API.
#[derive(Debug, PartialEq)]
pub struct Page {
    pub values: Vec<Commit>,
    /// `None` on the last page.
    pub next_start: Option<u64>,
}

impl Bitbucket {
    /// `base_url`: e.g. `https://bitbucket.example.com` (with its context path, if any).
    /// `token`: an HTTP access token, sent as `Authorization: Bearer`.
    pub fn new(base_url: String, token: Option<Secret>) -> Result<Bitbucket, BackendError> {
        Url::parse(&base_url).map_err(|e| bad(format!("bad Bitbucket URL {base_url}: {e}")))?;
        let http = crate::artifacts::client(reqwest::Client::builder())
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| bad(format!("cannot make an HTTP client: {e}")))?;
        Ok(Bitbucket {
            base: base_url,
            token,
            http,
        })
    }

    /// `{base}/rest/api/1.0/projects/{key}/repos/{slug}/commits[/{commit}]`, each segment
    /// percent-encoded (a ref's `/` too).
    pub fn commits_url(&self, repo: &str, commit: Option<&str>) -> Result<Url, BackendError> {
        let (key, slug) = split_repo(repo).map_err(bad)?;
        let mut url = self.base_url()?;
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|_| bad(format!("{} cannot be a base URL", self.base)))?;
            path.pop_if_empty();
            path.extend([
                "rest", "api", "1.0", "projects", key, "repos", slug, "commits",
            ]);
            if let Some(c) = commit {
                path.push(c);
            }
        }
        Ok(url)
    }

    fn base_url(&self) -> Result<Url, BackendError> {
        Url::parse(&self.base).map_err(|e| bad(format!("bad URL {}: {e}", self.base)))
    }

    /// The request's failure to get an answer, retryable as the network's are.
    fn unreachable(&self, e: reqwest::Error) -> BackendError {
        let kind = request_kind(&e);
        let msg = format!("cannot reach {}: {}", self.describe(), e.without_url());
        BackendError::new(kind, msg)
    }

    /// GETs `url` with the token; the body as JSON, or an error naming the status and
    /// Bitbucket's own message.
    async fn get(
        &self,
        url: Url,
        query: &[(&str, String)],
        what: &str,
    ) -> Result<Value, BackendError> {
        let mut req = self.http.get(url).query(query);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.expose());
        }
        let resp = req
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| {
            let kind = request_kind(&e);
            let msg = format!(
                "reading {what} from {}: {}",
                self.describe(),
                e.without_url()
            );
            BackendError::new(kind, msg)
        })?;
        if !status.is_success() {
            let msg = self.scrub(error_message(&self.describe(), what, status, &body));
            if status == StatusCode::NOT_FOUND {
                return Err(BackendError::missing(msg));
            }
            return Err(BackendError::new(status_kind(status), msg));
        }
        serde_json::from_str(&body)
            .map_err(|e| bad(format!("{} sent bad JSON for {what}: {e}", self.describe())))
    }

    /// `POST {base}/rest/build-status/1.0/commits/{commit}` (the "Build status" REST API).
    async fn post_status(&self, commit: &str, st: &super::BuildStatus) -> Result<(), BackendError> {
        let mut url = self.base_url()?;
        url.path_segments_mut()
            .map_err(|_| bad(format!("{} cannot be a base URL", self.base)))?
            .pop_if_empty()
            .extend(["rest", "build-status", "1.0", "commits", commit]);
        let body = serde_json::json!({
            "state": st.state, "key": st.key, "name": st.name, "url": st.url,
        });
        let mut req = self.http.post(url).json(&body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.expose());
        }
        let resp = req.send().await.map_err(|e| self.unreachable(e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = resp.text().await.unwrap_or_default();
        let what = format!("the build status of {commit}");
        let msg = self.scrub(error_message(&self.describe(), &what, status, &text));
        Err(BackendError::new(status_kind(status), msg))
    }

    fn scrub(&self, s: String) -> String {
        match &self.token {
            Some(t) if !t.expose().is_empty() => s.replace(t.expose(), "***"),
            _ => s,
        }
    }

    async fn commit(&self, repo: &str, reference: &str) -> Result<Commit, BackendError> {
        check_reference(reference)?;
        let url = self.commits_url(repo, Some(reference))?;
        let what = format!("commit {reference} of {repo}");
        let v = self.get(url, &[], &what).await?;
        parse_commit(&v)
            .ok_or_else(|| bad(format!("{} sent no commit for {what}", self.describe())))
    }

    /// Every page of `commits?since=&until=`, following `nextPageStart`.
    async fn list(
        &self,
        repo: &str,
        since: &str,
        until: &str,
    ) -> Result<Vec<Commit>, BackendError> {
        let url = self.commits_url(repo, None)?;
        let what = format!("commits {since}..{until} of {repo}");
        let mut commits = Vec::new();
        let mut start = 0;
        for _ in 0..MAX_PAGES {
            let query = [
                ("since", since.to_string()),
                ("until", until.to_string()),
                ("start", start.to_string()),
                ("limit", PAGE.to_string()),
            ];
            let v = self.get(url.clone(), &query, &what).await?;
            let page = parse_page(&v)
                .map_err(|e| bad(format!("{} sent {e} for {what}", self.describe())))?;
            commits.extend(page.values);
            match page.next_start {
                None => return Ok(commits),
                Some(next) if next > start => start = next,
                Some(next) => {
                    return Err(bad(format!(
                        "{} sent a next page start {next} not after {start} for {what}",
                        self.describe()
                    )));
                }
            }
        }
        Err(bad(format!("{what}: more than {MAX_PAGES} pages")))
    }
}

impl GitHost for Bitbucket {
    fn report_build<'a>(
        &'a self,
        _repo: &'a str,
        commit: &'a str,
        status: &'a super::BuildStatus,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            check_reference(commit)?;
            self.post_status(commit, status).await
        })
    }

    /// The newest commit of `commits` without `until`: Bitbucket lists the default
    /// branch then.
    fn default_head<'a>(&'a self, repo: &'a str) -> BoxFuture<'a, Result<Commit, BackendError>> {
        Box::pin(async move {
            let url = self.commits_url(repo, None)?;
            let what = format!("the default branch of {repo}");
            let v = self.get(url, &[("limit", "1".to_string())], &what).await?;
            let page = parse_page(&v)
                .map_err(|e| bad(format!("{} sent {e} for {what}", self.describe())))?;
            page.values.into_iter().next().ok_or_else(|| {
                BackendError::missing(format!("{} has no commit in {repo}", self.describe()))
            })
        })
    }

    fn describe(&self) -> String {
        // Users never see which product answered (docs/pipeline.md); the config says.
        "the git host".to_string()
    }

    fn resolve<'a>(
        &'a self,
        repo: &'a str,
        reference: &'a str,
    ) -> BoxFuture<'a, Result<Commit, BackendError>> {
        Box::pin(self.commit(repo, reference))
    }

    fn commits_between<'a>(
        &'a self,
        repo: &'a str,
        from: &'a str,
        to: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Commit>, BackendError>> {
        Box::pin(async move {
            let from = self.commit(repo, from).await?;
            let to = self.commit(repo, to).await?;
            self.list(repo, &from.id, &to.id).await
        })
    }
}

/// A permanent failure: a bad name, URL or answer.
fn bad(message: String) -> BackendError {
    BackendError::permanent(message)
}

/// `PROJECTKEY/slug` (a personal project's key is `~user`).
fn split_repo(repo: &str) -> Result<(&str, &str), String> {
    let ok = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~'))
    };
    match repo.split_once('/') {
        Some((key, slug)) if ok(key) && ok(slug) => Ok((key, slug)),
        _ => Err(format!(
            "{repo:?} is not a Bitbucket repository (PROJECTKEY/slug)"
        )),
    }
}

/// A commit object: `id`, author's `displayName` (or `name`), first line of `message`.
pub fn parse_commit(v: &Value) -> Option<Commit> {
    let id = v["id"].as_str()?;
    let author = v["author"]["displayName"]
        .as_str()
        .or_else(|| v["author"]["name"].as_str())
        .unwrap_or_default();
    let message = v["message"].as_str().unwrap_or_default();
    Some(Commit {
        id: id.to_string(),
        author: author.to_string(),
        subject: message.lines().next().unwrap_or_default().to_string(),
    })
}

/// A page of commits: its values and where the next page starts.
fn parse_page(v: &Value) -> Result<Page, String> {
    let values = v["values"]
        .as_array()
        .ok_or("a page without values")?
        .iter()
        .map(|c| parse_commit(c).ok_or("a commit without an id"))
        .collect::<Result<Vec<_>, _>>()?;
    let last = v["isLastPage"]
        .as_bool()
        .ok_or("a page without isLastPage")?;
    let next_start = match last {
        true => None,
        false => Some(
            v["nextPageStart"]
                .as_u64()
                .ok_or("a page that is not the last without nextPageStart")?,
        ),
    };
    Ok(Page { values, next_start })
}

/// `<host> answered <status> for <what>: <Bitbucket's messages>`.
fn error_message(host: &str, what: &str, status: StatusCode, body: &str) -> String {
    let messages: Vec<String> = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            v["errors"].as_array().map(|errs| {
                errs.iter()
                    .filter_map(|e| e["message"].as_str().map(str::to_string))
                    .collect()
            })
        })
        .unwrap_or_default();
    let hint = match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => " (check the gateway's token)",
        _ => "",
    };
    match messages.is_empty() {
        true => format!("{host} answered {status} for {what}{hint}"),
        false => format!(
            "{host} answered {status} for {what}{hint}: {}",
            messages.join("; ")
        ),
    }
}

#[cfg(test)]
#[path = "bitbucket_tests.rs"]
mod tests;
