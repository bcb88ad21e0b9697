//! A Jenkins builder: starts a parameterised job per app, follows it from the queue to
//! its build, streams the build's console and reads its result and archived artifacts.
//!
//! It speaks Jenkins' documented remote access API only:
//! - "Remote Access API" (jenkins.io/doc/book/using/remote-access-api/): `api/json` on any
//!   object; `POST /job/NAME/buildWithParameters?PARAM=value` answers `201 Created` with
//!   `Location: {root}/queue/item/N/` (JENKINS-23235 has the header on the wire); the
//!   queue item's `executable` (`number`, `url`) appears once the build has left the
//!   queue, and a `cancelled: true` item never builds; a build's `api/json` has
//!   `building`, `result` (`SUCCESS`, `UNSTABLE`, `FAILURE`, `ABORTED`, ...),
//!   `artifacts: [{fileName, relativePath}]` and `url`.
//! - "CSRF Protection" (jenkins.io/doc/book/security/csrf-protection/, and CloudBees'
//!   "CSRF Protection Explained"): `GET /crumbIssuer/api/json` gives
//!   `{crumbRequestField, crumb}`, sent as a header on POSTs; since 2.176.2 the crumb is
//!   tied to the web session, so the session cookie it sets goes back with the POST
//!   (forwarded by hand: no cookie store).  With an API token Jenkins no longer needs the
//!   crumb, so a crumb issuer that is switched off (404) is not an error.
//! - "Accessing Progressive Console Output" (the build's `api` page):
//!   `GET .../logText/progressiveText?start=OFFSET` returns the text from byte OFFSET;
//!   `X-Text-Size` is where the next request starts, and `X-More-Data: true` says the
//!   build is still writing.
//!
//! Credentials: HTTP basic with the user and API token on every request, to `base` only
//! (the URLs Jenkins hands back, which name its configured root URL, are shown to people
//! but never requested; redirects are not followed).  Errors are one line with the
//! request's method and path and the status; the token is a [`Secret`] and appears in no
//! message.  They are [`BackendError`]s: retryable when Jenkins could not be reached or
//! answered 5xx/429, permanent for other statuses, answers that do not parse and a bad
//! config.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};

use super::jenkins_api::{
    QueueState, chain, job_path, parse_build, parse_crumb, parse_queue_item, progressive,
    queue_number, session_cookie, usable,
};
use super::{BuildRef, BuildRequest, BuildState, Builder, Progress};
use crate::artifacts::Secret;
use crate::backend::{BackendError, request_kind, status_kind};

/// Between a build's queue item and its job's name in a build id (a URL fragment: the
/// id's first part is the queue item's URL).
const JOB_MARK: &str = "#job=";

/// Every request's deadline (a console chunk or a JSON document is small).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A Jenkins server and the job that builds each app (job parameter `COMMIT`).
#[derive(Debug)]
pub struct Jenkins {
    /// The root URL, without a trailing `/`.
    base: String,
    user: String,
    token: Secret,
    /// app -> job name (`folder/job` for a job in a folder).
    jobs: BTreeMap<String, String>,
    http: reqwest::Client,
    /// Builds started by this process: id (the queue item's URL) -> what we know.
    tracked: Mutex<BTreeMap<String, Tracked>>,
}

/// What a POST carries against CSRF: the crumb's header and the session it belongs to.
struct Csrf {
    field: String,
    crumb: String,
    cookie: Option<String>,
}

#[derive(Debug, Clone)]
struct Tracked {
    job: String,
    build: Option<BuildRef>,
}

impl Jenkins {
    /// `base_url`: Jenkins' root URL (`https://ci.example.com/` or with a context path);
    /// `jobs`: app -> job name.
    pub fn new(
        base_url: String,
        user: String,
        api_token: Secret,
        jobs: BTreeMap<String, String>,
    ) -> Result<Jenkins, BackendError> {
        let base = base_url.trim_end_matches('/').to_string();
        match Url::parse(&base) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => {
                let msg = format!("Jenkins URL {base_url:?} is not an http(s) URL");
                return Err(BackendError::permanent(msg));
            }
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| BackendError::permanent(format!("cannot make an HTTP client: {e}")))?;
        Ok(Jenkins {
            base,
            user,
            token: api_token,
            jobs,
            http,
            tracked: Mutex::new(BTreeMap::new()),
        })
    }

    fn tracked(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Tracked>> {
        self.tracked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request to `base` + `path` with the credentials and the deadline.
    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .basic_auth(&self.user, Some(self.token.expose()))
            .timeout(REQUEST_TIMEOUT)
    }

    /// `e`, said as `<describe>: <what>: <e>`.
    fn about(&self, what: &str, e: BackendError) -> BackendError {
        e.map_message(|m| format!("{}: {what}: {m}", self.describe()))
    }

    /// A request that got no answer, or whose body could not be read (retryable as the
    /// network's failures are).
    fn unanswered(&self, what: &str, e: reqwest::Error) -> BackendError {
        let kind = request_kind(&e);
        BackendError::new(kind, format!("{}: {what}: {}", self.describe(), chain(e)))
    }

    /// Sends, and turns a transport error or a status that is not 2xx into one line.
    async fn send(&self, req: RequestBuilder, what: &str) -> Result<Response, BackendError> {
        let resp = req.send().await.map_err(|e| self.unanswered(what, e))?;
        self.check(resp, what)
    }

    fn check(&self, resp: Response, what: &str) -> Result<Response, BackendError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let hint = match status {
            StatusCode::UNAUTHORIZED => " (the user or API token is wrong)",
            StatusCode::FORBIDDEN => " (the user may not do this, or the crumb was refused)",
            StatusCode::NOT_FOUND => " (no such job, queue item or build)",
            _ => "",
        };
        let msg = format!("{}: {what} answered {status}{hint}", self.describe());
        Err(BackendError::new(status_kind(status), msg))
    }

    async fn get_text(&self, path: &str) -> Result<String, BackendError> {
        let what = format!("GET {path}");
        let resp = self.send(self.request(Method::GET, path), &what).await?;
        resp.text()
            .await
            .map_err(|e| self.unanswered(&format!("reading {what}"), e))
    }

    /// The crumb header and the session cookie to send with a POST; `None` when the
    /// crumb issuer is off (404).
    async fn crumb(&self) -> Result<Option<Csrf>, BackendError> {
        let path = "/crumbIssuer/api/json";
        let what = format!("GET {path}");
        let resp = self
            .request(Method::GET, path)
            .send()
            .await
            .map_err(|e| self.unanswered(&what, e))?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = self.check(resp, &what)?;
        let cookie = session_cookie(resp.headers());
        let body = resp
            .text()
            .await
            .map_err(|e| self.unanswered(&format!("reading {what}"), e))?;
        let (field, crumb) = parse_crumb(&body).map_err(|e| self.about(&what, e))?;
        Ok(Some(Csrf {
            field,
            crumb,
            cookie,
        }))
    }

    async fn start_build(&self, req: &BuildRequest) -> Result<String, BackendError> {
        let job = self.jobs.get(&req.app).ok_or_else(|| {
            BackendError::permanent(format!(
                "{} has no job for app {} in the builder's config",
                self.describe(),
                req.app
            ))
        })?;
        let path = format!("{}/buildWithParameters", job_path(job));
        let post = (self.post(&path).await?).query(&[("COMMIT", req.commit.as_str())]);
        let what = format!("POST {path} (app {}, commit {})", req.app, req.commit);
        let resp = self.send(post, &what).await?;
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let n = queue_number(location).ok_or_else(|| {
            BackendError::permanent(format!(
                "{}: {what} answered {} without a queue item in Location ({location:?})",
                self.describe(),
                resp.status()
            ))
        })?;
        // The id names the job too, so that any gateway can follow it after a restart.
        let id = format!("{}/queue/item/{n}/{JOB_MARK}{job}", self.base);
        let tracked = Tracked {
            job: job.clone(),
            build: None,
        };
        self.tracked().insert(id.clone(), tracked);
        Ok(id)
    }

    /// The queue item's build, or the progress to report while it has none.
    async fn leave_queue(
        &self,
        id: &str,
        offset: u64,
    ) -> Result<Result<BuildRef, Progress>, BackendError> {
        let path = self.queue_path(id);
        let body = self.get_text(&format!("{path}api/json")).await?;
        let item =
            parse_queue_item(&body).map_err(|e| self.about(&format!("queue item {path}"), e))?;
        let state = match item {
            QueueState::Started(b) => return Ok(Ok(b)),
            QueueState::Waiting => BuildState::Queued,
            QueueState::Cancelled(why) => BuildState::Failed(format!(
                "cancelled in the Jenkins queue{}",
                why.map(|w| format!(": {w}")).unwrap_or_default()
            )),
        };
        Ok(Err(Progress {
            state,
            console: String::new(),
            next_offset: offset,
            build: None,
            artifacts: Vec::new(),
        }))
    }

    /// What is known of build `id`: tracked here, else from the id itself.
    fn known(&self, id: &str) -> Result<Tracked, BackendError> {
        if let Some(t) = self.tracked().get(id) {
            return Ok(t.clone());
        }
        let job = id.split_once(JOB_MARK).map(|(_, job)| job.to_string());
        let job = job.ok_or_else(|| {
            BackendError::permanent(format!(
                "{}: {id} is not a build id of this builder",
                self.describe()
            ))
        })?;
        Ok(Tracked { job, build: None })
    }

    /// The queue item's path (`/queue/item/N/`) of build `id`.
    fn queue_path<'i>(&self, id: &'i str) -> &'i str {
        let item = id.split_once(JOB_MARK).map_or(id, |(item, _)| item);
        item.strip_prefix(&self.base).unwrap_or(item)
    }

    /// A POST with the crumb (and its session) when Jenkins issues one.
    async fn post(&self, path: &str) -> Result<RequestBuilder, BackendError> {
        let mut post = self.request(Method::POST, path);
        if let Some(Csrf {
            field,
            crumb,
            cookie,
        }) = self.crumb().await?
        {
            post = post.header(field, crumb);
            if let Some(c) = cookie {
                post = post.header(reqwest::header::COOKIE, c);
            }
        }
        Ok(post)
    }

    async fn cancel_build(&self, id: &str) -> Result<(), BackendError> {
        let t = self.known(id)?;
        let build = match t.build {
            Some(b) => Some(b),
            None => match self.leave_queue(id, 0).await? {
                Ok(b) => Some(b),
                Err(p) if p.state == BuildState::Queued => None,
                Err(_) => return Ok(()), // cancelled already
            },
        };
        let (path, what) = match &build {
            None => {
                let n = queue_number(self.queue_path(id)).unwrap_or_default();
                (
                    format!("/queue/cancelItem?id={n}"),
                    format!("cancelling queue item {n}"),
                )
            }
            Some(b) => (
                format!("{}/{}/stop", job_path(&t.job), b.number),
                format!("stopping build {}", b.number),
            ),
        };
        let resp = (self.post(&path).await?)
            .send()
            .await
            .map_err(|e| self.unanswered(&what, e))?;
        // Jenkins answers a done POST with a redirect (302/303) to the page.
        if resp.status().is_success() || resp.status().is_redirection() {
            return Ok(());
        }
        self.check(resp, &what).map(|_| ())
    }

    async fn poll_build(&self, id: &str, offset: u64) -> Result<Progress, BackendError> {
        let t = self.known(id)?;
        if !self.tracked().contains_key(id) {
            self.tracked().insert(id.to_string(), t.clone());
        }
        let build = match t.build {
            Some(b) => b,
            None => match self.leave_queue(id, offset).await? {
                Err(waiting) => return Ok(waiting),
                Ok(b) => {
                    if let Some(slot) = self.tracked().get_mut(id) {
                        slot.build = Some(b.clone());
                    }
                    b
                }
            },
        };
        let run = format!("{}/{}", job_path(&t.job), build.number);
        let (console, next_offset, more) = self.console(&run, offset).await?;
        let mut p = Progress {
            state: BuildState::Running,
            console,
            next_offset,
            build: Some(build),
            artifacts: Vec::new(),
        };
        if !more {
            let body = self.get_text(&format!("{run}/api/json")).await?;
            let r = parse_build(&body).map_err(|e| self.about(&format!("build {run}"), e))?;
            (p.state, p.artifacts) = r.outcome();
        }
        Ok(p)
    }

    /// Console text from `offset`: (text, next offset, more to come).
    async fn console(&self, run: &str, offset: u64) -> Result<(String, u64, bool), BackendError> {
        let path = format!("{run}/logText/progressiveText");
        let what = format!("GET {path}?start={offset}");
        let req = self
            .request(Method::GET, &path)
            .query(&[("start", offset.to_string())]);
        let resp = self.send(req, &what).await?;
        let headers = resp.headers().clone();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| self.unanswered(&format!("reading {what}"), e))?;
        let (next, more) = progressive(&headers, offset, bytes.len());
        let keep = usable(&bytes, more);
        let next = if keep < bytes.len() {
            offset + keep as u64
        } else {
            next
        };
        let text = String::from_utf8_lossy(&bytes[..keep]).into_owned();
        Ok((text, next, more))
    }
}

impl Builder for Jenkins {
    fn describe(&self) -> String {
        "the CI server".to_string()
    }
    fn start<'a>(&'a self, req: &'a BuildRequest) -> BoxFuture<'a, Result<String, BackendError>> {
        Box::pin(self.start_build(req))
    }
    fn poll<'a>(
        &'a self,
        id: &'a str,
        offset: u64,
    ) -> BoxFuture<'a, Result<Progress, BackendError>> {
        Box::pin(self.poll_build(id, offset))
    }
    fn resume(&self, id: &str, build: Option<BuildRef>) {
        if let Ok(mut t) = self.known(id) {
            t.build = build.or(t.build);
            self.tracked().insert(id.to_string(), t);
        }
    }
    fn cancel<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(self.cancel_build(id))
    }
    fn artifact_sha256<'a>(
        &'a self,
        id: &'a str,
        file: &'a str,
    ) -> BoxFuture<'a, Result<String, BackendError>> {
        Box::pin(self.archived_sha256(id, file))
    }
}

#[path = "jenkins_artifact.rs"]
mod artifact;

#[cfg(test)]
#[path = "jenkins_tests.rs"]
mod tests;
