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
//! message.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde::Deserialize;

use super::{BuildRef, BuildRequest, BuildState, Builder, Progress};
use crate::artifacts::Secret;

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
    ) -> Result<Jenkins, String> {
        let base = base_url.trim_end_matches('/').to_string();
        match Url::parse(&base) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => return Err(format!("Jenkins URL {base_url:?} is not an http(s) URL")),
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
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

    /// Sends, and turns a transport error or a status that is not 2xx into one line.
    async fn send(&self, req: RequestBuilder, what: &str) -> Result<Response, String> {
        let resp = req
            .send()
            .await
            .map_err(|e| format!("{}: {what}: {}", self.describe(), chain(e)))?;
        self.check(resp, what)
    }

    fn check(&self, resp: Response, what: &str) -> Result<Response, String> {
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
        Err(format!(
            "{}: {what} answered {status}{hint}",
            self.describe()
        ))
    }

    async fn get_text(&self, path: &str) -> Result<String, String> {
        let what = format!("GET {path}");
        let resp = self.send(self.request(Method::GET, path), &what).await?;
        resp.text()
            .await
            .map_err(|e| format!("{}: reading {what}: {}", self.describe(), chain(e)))
    }

    /// The crumb header and the session cookie to send with a POST; `None` when the
    /// crumb issuer is off (404).
    async fn crumb(&self) -> Result<Option<Csrf>, String> {
        let path = "/crumbIssuer/api/json";
        let what = format!("GET {path}");
        let resp = self
            .request(Method::GET, path)
            .send()
            .await
            .map_err(|e| format!("{}: {what}: {}", self.describe(), chain(e)))?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = self.check(resp, &what)?;
        let cookie = session_cookie(resp.headers());
        let body = resp
            .text()
            .await
            .map_err(|e| format!("{}: reading {what}: {}", self.describe(), chain(e)))?;
        let (field, crumb) =
            parse_crumb(&body).map_err(|e| format!("{}: {what}: {e}", self.describe()))?;
        Ok(Some(Csrf {
            field,
            crumb,
            cookie,
        }))
    }

    async fn start_build(&self, req: &BuildRequest) -> Result<String, String> {
        let job = self.jobs.get(&req.app).ok_or_else(|| {
            format!(
                "{} has no job for app {} in the builder's config",
                self.describe(),
                req.app
            )
        })?;
        let crumb = self.crumb().await?;
        let path = format!("{}/buildWithParameters", job_path(job));
        let mut post = self
            .request(Method::POST, &path)
            .query(&[("COMMIT", req.commit.as_str())]);
        if let Some(Csrf {
            field,
            crumb,
            cookie,
        }) = crumb
        {
            post = post.header(field, crumb);
            if let Some(c) = cookie {
                post = post.header(reqwest::header::COOKIE, c);
            }
        }
        let what = format!("POST {path} (app {}, commit {})", req.app, req.commit);
        let resp = self.send(post, &what).await?;
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let n = queue_number(location).ok_or_else(|| {
            format!(
                "{}: {what} answered {} without a queue item in Location ({location:?})",
                self.describe(),
                resp.status()
            )
        })?;
        let id = format!("{}/queue/item/{n}/", self.base);
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
    ) -> Result<Result<BuildRef, Progress>, String> {
        let path = id.strip_prefix(&self.base).unwrap_or(id);
        let body = self.get_text(&format!("{path}api/json")).await?;
        let item = parse_queue_item(&body)
            .map_err(|e| format!("{}: queue item {path}: {e}", self.describe()))?;
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

    async fn poll_build(&self, id: &str, offset: u64) -> Result<Progress, String> {
        let t = self.tracked().get(id).cloned().ok_or_else(|| {
            format!(
                "{} did not start build {id} (builds are followed by the process that started them)",
                self.describe()
            )
        })?;
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
            let r =
                parse_build(&body).map_err(|e| format!("{}: build {run}: {e}", self.describe()))?;
            (p.state, p.artifacts) = r.outcome();
        }
        Ok(p)
    }

    /// Console text from `offset`: (text, next offset, more to come).
    async fn console(&self, run: &str, offset: u64) -> Result<(String, u64, bool), String> {
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
            .map_err(|e| format!("{}: reading {what}: {}", self.describe(), chain(e)))?;
        let (next, more) = progressive(&headers, offset, bytes.len());
        Ok((String::from_utf8_lossy(&bytes).into_owned(), next, more))
    }
}

impl Builder for Jenkins {
    fn describe(&self) -> String {
        format!("Jenkins at {}", self.base)
    }
    fn start<'a>(&'a self, req: &'a BuildRequest) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(self.start_build(req))
    }
    fn poll<'a>(&'a self, id: &'a str, offset: u64) -> BoxFuture<'a, Result<Progress, String>> {
        Box::pin(self.poll_build(id, offset))
    }
}

/// A job's path: `/job/NAME`, each folder its own `/job/SEGMENT`, percent-encoded.
fn job_path(job: &str) -> String {
    job.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| format!("/job/{}", crate::artifacts::percent_encode(s)))
        .collect()
}

/// A reqwest error with its causes, on one line (no URL: it is said by the caller).
fn chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut s = e.to_string();
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(&e);
    while let Some(c) = cur {
        s.push_str(&format!(": {c}"));
        cur = c.source();
    }
    s
}

/// `N` of a `.../queue/item/N/` Location.
fn queue_number(location: &str) -> Option<u64> {
    let (_, rest) = location.split_once("/queue/item/")?;
    rest.trim_end_matches('/').parse().ok()
}

/// The `name=value` pairs of `Set-Cookie` headers, as one `Cookie` header value.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    let pairs: Vec<&str> = headers
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .map(str::trim)
        .filter(|p| p.contains('='))
        .collect();
    (!pairs.is_empty()).then(|| pairs.join("; "))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Crumb {
    crumb_request_field: String,
    crumb: String,
}

/// `(header name, crumb)` from `/crumbIssuer/api/json`.
fn parse_crumb(body: &str) -> Result<(String, String), String> {
    let c: Crumb = serde_json::from_str(body).map_err(|e| format!("not a crumb: {e}"))?;
    if c.crumb_request_field.is_empty() || c.crumb.is_empty() {
        return Err("an empty crumb".into());
    }
    Ok((c.crumb_request_field, c.crumb))
}

#[derive(Debug, PartialEq, Eq)]
enum QueueState {
    Waiting,
    Cancelled(Option<String>),
    Started(BuildRef),
}

#[derive(Deserialize)]
struct QueueItem {
    /// Not used, but every queue item has one (so an unrelated JSON is an error).
    #[serde(rename = "id")]
    _id: u64,
    #[serde(default)]
    cancelled: bool,
    #[serde(default)]
    why: Option<String>,
    #[serde(default)]
    executable: Option<Executable>,
}

#[derive(Deserialize)]
struct Executable {
    number: u64,
    #[serde(default)]
    url: String,
}

fn parse_queue_item(body: &str) -> Result<QueueState, String> {
    let q: QueueItem = serde_json::from_str(body).map_err(|e| format!("not a queue item: {e}"))?;
    Ok(match (q.executable, q.cancelled) {
        (Some(e), _) => QueueState::Started(BuildRef {
            number: e.number.to_string(),
            url: e.url,
        }),
        (None, true) => QueueState::Cancelled(q.why),
        (None, false) => QueueState::Waiting,
    })
}

/// From progressiveText's headers: the next offset (`X-Text-Size`; without it, the
/// offset plus what was read) and whether more is coming (`X-More-Data: true`).
fn progressive(headers: &HeaderMap, offset: u64, read: usize) -> (u64, bool) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let next = header("X-Text-Size")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(offset + read as u64);
    let more = header("X-More-Data").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    (next, more)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Artifact {
    file_name: String,
}

#[derive(Deserialize)]
struct BuildJson {
    #[serde(default)]
    building: bool,
    #[serde(default)]
    result: Option<String>,
    #[serde(default)]
    artifacts: Vec<Artifact>,
}

fn parse_build(body: &str) -> Result<BuildJson, String> {
    serde_json::from_str(body).map_err(|e| format!("not a build: {e}"))
}

impl BuildJson {
    /// The state this build is in, and its artifacts when it succeeded.
    fn outcome(self) -> (BuildState, Vec<String>) {
        match (self.building, self.result.as_deref()) {
            (true, _) | (false, None) => (BuildState::Running, Vec::new()),
            (false, Some("SUCCESS")) => (
                BuildState::Succeeded,
                self.artifacts.into_iter().map(|a| a.file_name).collect(),
            ),
            (false, Some(r)) => (BuildState::Failed(format!("Jenkins says {r}")), Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn crumbs_parse_and_empty_ones_are_refused() {
        let body = r#"{"_class":"hudson.security.csrf.DefaultCrumbIssuer","crumb":"ab12","crumbRequestField":"Jenkins-Crumb"}"#;
        assert_eq!(
            parse_crumb(body),
            Ok(("Jenkins-Crumb".to_string(), "ab12".to_string()))
        );
        assert!(parse_crumb(r#"{"crumb":"","crumbRequestField":"X"}"#).is_err());
        assert!(parse_crumb("<html>").is_err());
    }

    #[test]
    fn queue_items_wait_start_or_are_cancelled() {
        let waiting = r#"{"_class":"hudson.model.Queue$WaitingItem","id":7,"why":"In the quiet period","executable":null}"#;
        assert_eq!(parse_queue_item(waiting), Ok(QueueState::Waiting));
        let started = r#"{"_class":"hudson.model.Queue$LeftItem","id":7,"cancelled":false,
            "executable":{"_class":"hudson.model.FreeStyleBuild","number":42,"url":"http://ci/job/app/42/"}}"#;
        assert_eq!(
            parse_queue_item(started),
            Ok(QueueState::Started(BuildRef {
                number: "42".into(),
                url: "http://ci/job/app/42/".into()
            }))
        );
        let cancelled =
            r#"{"_class":"hudson.model.Queue$LeftItem","id":7,"cancelled":true,"executable":null}"#;
        assert_eq!(parse_queue_item(cancelled), Ok(QueueState::Cancelled(None)));
        assert!(parse_queue_item("[]").is_err());
        assert!(parse_queue_item("<html>").is_err());
    }

    #[test]
    fn progressive_headers_give_the_next_offset_and_whether_more_comes() {
        let mut h = HeaderMap::new();
        h.insert("X-Text-Size", HeaderValue::from_static("1234"));
        h.insert("X-More-Data", HeaderValue::from_static("true"));
        assert_eq!(progressive(&h, 1000, 234), (1234, true));
        h.remove("X-More-Data");
        assert_eq!(progressive(&h, 1000, 234), (1234, false));
        assert_eq!(progressive(&HeaderMap::new(), 10, 5), (15, false));
    }

    #[test]
    fn build_results_map_to_states_with_artifacts_on_success() {
        let ok = r#"{"building":false,"result":"SUCCESS","url":"http://ci/job/a/3/",
            "artifacts":[{"displayPath":"x","fileName":"hello_app-1.0.0-py3-none-any.whl","relativePath":"dist/hello_app-1.0.0-py3-none-any.whl"}]}"#;
        let (s, a) = parse_build(ok).map(BuildJson::outcome).unwrap();
        assert_eq!(s, BuildState::Succeeded);
        assert_eq!(a, ["hello_app-1.0.0-py3-none-any.whl"]);
        let running = r#"{"building":true,"result":null,"artifacts":[]}"#;
        assert_eq!(
            parse_build(running).map(BuildJson::outcome).unwrap().0,
            BuildState::Running
        );
        for r in ["FAILURE", "ABORTED", "UNSTABLE"] {
            let body = format!(r#"{{"building":false,"result":"{r}"}}"#);
            let (s, a) = parse_build(&body).map(BuildJson::outcome).unwrap();
            assert_eq!(s, BuildState::Failed(format!("Jenkins says {r}")));
            assert!(a.is_empty());
        }
        assert!(parse_build("{").is_err());
    }

    #[test]
    fn paths_encode_jobs_and_queue_locations_parse() {
        assert_eq!(job_path("hello app"), "/job/hello%20app");
        assert_eq!(job_path("team/hello"), "/job/team/job/hello");
        assert_eq!(queue_number("http://ci/queue/item/17/"), Some(17));
        assert_eq!(queue_number("http://ci/job/x/"), None);
    }

    #[test]
    fn session_cookies_are_forwarded_without_attributes() {
        let mut h = HeaderMap::new();
        h.append(
            "set-cookie",
            HeaderValue::from_static("JSESSIONID.abc=node01; Path=/; HttpOnly"),
        );
        h.append("set-cookie", HeaderValue::from_static("other=1"));
        assert_eq!(
            session_cookie(&h).as_deref(),
            Some("JSESSIONID.abc=node01; other=1")
        );
        assert_eq!(session_cookie(&HeaderMap::new()), None);
    }

    #[tokio::test]
    async fn an_unreachable_jenkins_is_one_line_naming_the_request() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let j = Jenkins::new(
            format!("http://127.0.0.1:{port}"),
            "svc".into(),
            Secret::new("s3cret-token"),
            BTreeMap::from([("hello".to_string(), "hello-build".to_string())]),
        )
        .unwrap();
        let req = BuildRequest {
            app: "hello".into(),
            commit: "0123abcd".into(),
        };
        let e = j.start(&req).await.unwrap_err();
        assert!(
            e.starts_with(&format!(
                "Jenkins at http://127.0.0.1:{port}: GET /crumbIssuer/api/json: "
            )),
            "{e}"
        );
        assert!(!e.contains('\n') && !e.contains("s3cret"), "{e}");
    }

    #[test]
    fn the_token_stays_out_of_debug_and_needs_a_job() {
        let j = Jenkins::new(
            "http://ci.example/".into(),
            "svc".into(),
            Secret::new("s3cret-token"),
            BTreeMap::new(),
        )
        .unwrap();
        assert!(!format!("{j:?} {}", j.describe()).contains("s3cret"));
        assert!(Jenkins::new("ci".into(), "u".into(), Secret::new("t"), BTreeMap::new()).is_err());
    }
}
