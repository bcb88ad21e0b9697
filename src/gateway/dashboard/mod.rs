//! The dashboard: read-only HTML pages under `/ui` (the matrix of what runs where, jobs
//! and a live job page, the ledger, schedules and freezes, the audit trail for admins),
//! served by the gateway beside the API.  This file owns the route table, the session
//! check (the [`Viewer`] extractor: a page without a valid session answers the sign-in
//! page, 401), sign-in and sign-out, the static assets and the security headers every
//! response gets.  Pages (`pages.rs`) call the same job service as the API, so every page
//! obeys the token's environment scopes; `view.rs` and `lines.rs` turn data into HTML.
//!
//! Decisions: a token is exchanged once, by a POSTed form, for a session cookie
//! (`session.rs`: kept in the store, so any gateway on the database serves it, and a
//! restart signs nobody out); it never travels in a URL and is never put in a page or
//! the log.  The
//! CSP allows scripts, styles and connections from the gateway only and no inline
//! script; pages cannot be framed.  The scripts (`assets/job.js`: the job page's live
//! log; `assets/live.js`: running times and the parts of the matrix and the job list
//! that change when a job starts or ends, `live.rs`) only make pages live; every page
//! works without them.  Every page, error pages included, has the same navigation
//! (`nav.rs`).

mod lines;
mod live;
mod nav;
mod pages;
mod session;
mod view;

pub use nav::{Who, who};
pub use session::Sessions;

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, Form, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::api::{ApiErr, AppState};
use super::auth::Principal;
use super::service::ServiceError;
use super::store::now_ms;

/// The dashboard's routes (merged into the gateway's router by `api::router`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(pages::matrix))
        .route("/ui/jobs", get(pages::jobs))
        .route("/ui/jobs/{id}", get(pages::job))
        .route("/ui/jobs/{id}/events", get(pages::job_events))
        .route("/ui/jobs/{id}/log", get(pages::job_log))
        .route("/ui/ledger", get(pages::ledger))
        .route("/ui/audit", get(pages::audit))
        .route("/ui/schedules", get(pages::schedules))
        .route("/ui/changes", get(live::changes))
        .route("/ui/sign-in", get(sign_in_page).post(sign_in))
        .route("/ui/sign-out", post(sign_out))
        .route("/ui/static/{file}", get(asset))
        .route("/ui/{*rest}", get(nav::not_found))
        .layer(axum::middleware::from_fn(nav::with_seen_by))
        .layer(axum::middleware::map_response(security_headers))
}

/// The signed-in user of a page: from the session cookie, checked against its token on
/// every request (a revoked or expired token ends the session).
pub struct Viewer(pub Principal);

/// A page for someone not signed in: the sign-in page (401), which comes back here after.
pub struct SignIn {
    next: String,
}

impl IntoResponse for SignIn {
    fn into_response(self) -> Response {
        let page = sign_in_html(&self.next, None);
        (StatusCode::UNAUTHORIZED, page).into_response()
    }
}

impl FromRequestParts<AppState> for Viewer {
    /// The sign-in page (no session, or its token is no longer valid), or an error page
    /// (the store could not be asked: 503 while it is away).
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Viewer, Response> {
        let next = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        let rejected = || SignIn { next: next.clone() }.into_response();
        let cookie = parts
            .headers
            .get(header::COOKIE)
            .and_then(|v| v.to_str().ok());
        let id = session::from_cookie_header(cookie).ok_or_else(rejected)?;
        let found = st.sessions.get(id, now_ms()).await;
        let s = found.map_err(|e| PageErr::from(e).into_response())?;
        let s = s.ok_or_else(rejected)?;
        let source = source_of(parts);
        match st.svc.token_principal(&s.token_id, &source).await {
            Ok(p) => {
                nav::seen_by(&p);
                Ok(Viewer(p))
            }
            Err(ServiceError::Unauthenticated(_)) => {
                if let Err(e) = st.sessions.remove(id).await {
                    tracing::warn!("cannot end a session whose token is gone: {e}");
                }
                Err(rejected())
            }
            Err(e) => Err(PageErr(e).into_response()),
        }
    }
}

/// Where a request came from (an address; `unknown` in in-process tests).
struct Source(String);

impl<S: Send + Sync> FromRequestParts<S> for Source {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Source, Infallible> {
        Ok(Source(source_of(parts)))
    }
}

fn source_of(parts: &Parts) -> String {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// An error as a page: the API's status and message for the same error.
pub struct PageErr(ServiceError);

impl From<ServiceError> for PageErr {
    fn from(e: ServiceError) -> PageErr {
        PageErr(e)
    }
}

impl From<super::store::StoreError> for PageErr {
    fn from(e: super::store::StoreError) -> PageErr {
        PageErr(e.into())
    }
}

impl IntoResponse for PageErr {
    fn into_response(self) -> Response {
        let ApiErr(status, body, _) = ApiErr::from(self.0);
        let title = status.canonical_reason().unwrap_or("Error");
        let viewer = nav::viewer();
        let ctx = serde_json::json!({ "title": title, "message": body.message, "viewer": viewer });
        (status, html(view::render("error.html", ctx))).into_response()
    }
}

fn html(body: String) -> axum::response::Html<String> {
    axum::response::Html(body)
}

/// Where a sign-in may send the browser back to: a dashboard page, nothing else.
fn safe_next(next: &str) -> &str {
    let ok = next.starts_with("/ui/") && !next.starts_with("/ui/sign-") && !next.contains("//");
    if ok { next } else { "/ui/" }
}

fn sign_in_html(next: &str, message: Option<&str>) -> axum::response::Html<String> {
    let hours = session::SESSION_MS / 3_600_000;
    let ctx = minijinja::context! {
        title => "Sign in", next => safe_next(next), message, hours, viewer => (),
    };
    html(view::render("sign_in.html", ctx))
}

async fn sign_in_page() -> axum::response::Html<String> {
    sign_in_html("/ui/", None)
}

#[derive(Deserialize)]
struct SignInForm {
    token: String,
    #[serde(default)]
    next: String,
}

/// POST /ui/sign-in: the token for a session cookie, then back to the page asked for.
async fn sign_in(
    State(st): State<AppState>,
    Source(source): Source,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    if !same_origin(&headers) {
        let page = sign_in_html(&form.next, Some(CROSS_SITE));
        return (StatusCode::FORBIDDEN, page).into_response();
    }
    let now = now_ms();
    let (p, token_expires) = match st.svc.sign_in(form.token.trim(), &source).await {
        Ok(found) => found,
        Err(e @ ServiceError::Unauthenticated(_)) => {
            let page = sign_in_html(&form.next, Some(&e.to_string()));
            return (StatusCode::UNAUTHORIZED, page).into_response();
        }
        Err(e @ ServiceError::Throttled { .. }) => {
            let ApiErr(status, _, wait) = ApiErr::from(e);
            let page = sign_in_html(
                &form.next,
                Some(&format!(
                    "too many failed sign-ins from this address; try again in {} s",
                    wait.unwrap_or(1)
                )),
            );
            let mut resp = (status, page).into_response();
            if let Some(secs) = wait {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            return resp;
        }
        Err(e) => return PageErr(e).into_response(),
    };
    let expires = token_expires.map_or(now + session::SESSION_MS, |t| {
        t.min(now + session::SESSION_MS)
    });
    let token_id = p.token.clone().unwrap_or_default();
    let id = match st.sessions.create(&token_id, expires, now).await {
        Ok(id) => id,
        Err(session::SessionError::Store(e)) => return PageErr::from(e).into_response(),
        Err(e) => return PageErr(ServiceError::Internal(e.to_string())).into_response(),
    };
    let https = headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let cookie = session::set_cookie(&id, expires - now, https);
    let mut resp = Redirect::to(safe_next(&form.next)).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// POST /ui/sign-out: ends the session in the store (for every gateway) and in the
/// browser.
async fn sign_out(State(st): State<AppState>, headers: HeaderMap) -> Response {
    if !same_origin(&headers) {
        return (StatusCode::FORBIDDEN, CROSS_SITE).into_response();
    }
    let cookie = headers.get(header::COOKIE).and_then(|v| v.to_str().ok());
    if let Some(id) = session::from_cookie_header(cookie)
        && let Err(e) = st.sessions.remove(id).await
    {
        return PageErr::from(e).into_response();
    }
    let mut resp = Redirect::to("/ui/sign-in").into_response();
    if let Ok(v) = HeaderValue::from_str(&session::clear_cookie()) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

const CROSS_SITE: &str = "a sign-in or sign-out sent from another site is refused";

/// Whether a browser's POST comes from a page of this gateway: its `Origin` (browsers send
/// one with every POST) names the host it was sent to (`X-Forwarded-Host` behind a proxy,
/// else `Host`).  Without `Origin` (not a browser) there is no other site to fear.
fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(origin) = text("origin") else {
        return true;
    };
    let host = text("x-forwarded-host").or(text("host")).unwrap_or("");
    let authority = origin.split_once("://").map_or("", |(_, a)| a);
    !host.is_empty() && authority.eq_ignore_ascii_case(host)
}

/// The static assets, built into the binary.
async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "dashboard.css" => (
            include_str!("assets/dashboard.css"),
            "text/css; charset=utf-8",
        ),
        "job.js" => (
            include_str!("assets/job.js"),
            "text/javascript; charset=utf-8",
        ),
        "live.js" => (
            include_str!("assets/live.js"),
            "text/javascript; charset=utf-8",
        ),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

/// The headers of every dashboard response.  `Referrer-Policy: same-origin`, not
/// `no-referrer`: with the latter a browser's form POST says `Origin: null`, and the
/// sign-in's origin check could not tell the gateway's own page from another site.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
    connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    for (name, value) in [
        ("content-security-policy", CSP),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
        ("cache-control", "no-store"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_post_from_another_site_is_refused() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        let same = headers(&[("host", "gw:8700"), ("origin", "http://gw:8700")]);
        assert!(same_origin(&same));
        assert!(same_origin(&headers(&[("host", "gw:8700")])), "curl");
        for bad in [
            headers(&[("host", "gw:8700"), ("origin", "https://evil.test")]),
            headers(&[("host", "gw:8700"), ("origin", "null")]),
            headers(&[
                ("host", "127.0.0.1:1"),
                ("origin", "https://deploy.example"),
                ("x-forwarded-host", "other"),
            ]),
        ] {
            assert!(!same_origin(&bad), "{bad:?}");
        }
        let proxied = headers(&[
            ("host", "127.0.0.1:8700"),
            ("x-forwarded-host", "deploy.example"),
            ("origin", "https://deploy.example"),
        ]);
        assert!(same_origin(&proxied));
    }

    #[test]
    fn a_sign_in_only_sends_the_browser_back_to_a_dashboard_page() {
        assert_eq!(safe_next("/ui/jobs?app=hello"), "/ui/jobs?app=hello");
        for bad in [
            "https://evil.test/",
            "//evil.test/ui/",
            "/ui//evil",
            "/v1/jobs",
            "/ui/sign-out",
            "",
        ] {
            assert_eq!(safe_next(bad), "/ui/", "{bad}");
        }
    }
}
