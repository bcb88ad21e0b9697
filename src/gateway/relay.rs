//! The artifact relay: a small PyPI simple index inside the gateway for servers that
//! cannot reach the artifact repository.  It is served over the host's own SSH
//! connection (a remote forward, see [`crate::ssh::Connection::remote_forward`]), never
//! on a listening socket of the gateway.
//!
//! - `GET /simple/<project>/` lists the project's files as the source lists them (the
//!   gateway adds its own credentials upstream), with links back to the relay and each
//!   file's `#sha256=`, so the server's installer checks the hash too.
//! - `GET /files/<sha256>/<filename>` serves a listed file from the cache, downloading
//!   it first if needed.  A download is verified against the index's SHA-256 before it
//!   enters the cache; a mismatch is refused (502) and reported as an event, and nothing
//!   is kept.  Concurrent requests for one file wait for a single download, so N
//!   servers installing the same wheel cost one download from the repository.
//!
//! Every route is under a secret path prefix made for the job (`/<secret>/simple/`):
//! the forward listens on the server's loopback, where any local process could connect,
//! and without the secret (which travels only inside the install command's line on the
//! SSH channel) it gets 404, not the gateway's view of the repository.
//!
//! Files the index lists without a SHA-256 are left out of the relay's listing (they
//! could not be verified), with an event saying so.
//!
//! A job's relay fetches each project's listing once and keeps it for the job: every host
//! of the job resolves against the same snapshot of the repository (a release published
//! mid-rollout cannot make hosts differ), and N hosts cost one listing request.  Files are
//! streamed from the cache, never held in memory whole.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use deploy_wire::{Event, EventKind, Stream};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::artifacts::{self, ArtifactSource, DistFile};
use crate::backend::BackendError;
use crate::engine::EventSink;

pub use super::relay_cache::RelayCache;

/// A listing that takes longer than this fails (it holds the job's listing lock).
const LISTING_TIMEOUT: Duration = Duration::from_secs(120);

/// One job's relay: a source, the shared cache, and where its events go.
#[derive(Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

struct Inner {
    source: Arc<dyn ArtifactSource>,
    http: reqwest::Client,
    cache: Arc<RelayCache>,
    /// Files listed so far in this job, by SHA-256.
    files: Mutex<HashMap<String, DistFile>>,
    /// Each project's listing, fetched once per job (held while fetching, so concurrent
    /// hosts wait for the first fetch).
    listings: tokio::sync::Mutex<HashMap<String, Arc<Vec<DistFile>>>>,
    sink: Arc<dyn EventSink>,
    /// The job's path prefix (hex, random).
    secret: String,
}

#[derive(Clone)]
struct Ctx {
    inner: Arc<Inner>,
    host: String,
}

impl Ctx {
    fn say(&self, line: String) {
        self.inner.sink.emit(Event::now(EventKind::Output {
            host: self.host.clone(),
            step: "install".into(),
            stream: Stream::Stderr,
            line: format!("relay: {line}"),
        }));
    }
}

impl Relay {
    pub fn new(
        source: Arc<dyn ArtifactSource>,
        http: reqwest::Client,
        cache: Arc<RelayCache>,
        sink: Arc<dyn EventSink>,
    ) -> Relay {
        Relay {
            inner: Arc::new(Inner {
                source,
                http,
                cache,
                files: Mutex::new(HashMap::new()),
                listings: Default::default(),
                sink,
                secret: super::auth::new_token()
                    .map(|(_, t)| t.trim_start_matches("dpl_").replace('_', ""))
                    .unwrap_or_else(|_| format!("{:x}", super::store::now_ms())),
            }),
        }
    }

    /// The relay's HTTP routes, for one host.
    pub fn router(&self, host: &str) -> Router {
        let routes = Router::new()
            .route("/simple/", get(root))
            .route("/simple/{project}/", get(project))
            .route("/files/{sha256}/{filename}", get(file))
            .with_state(Ctx {
                inner: self.inner.clone(),
                host: host.to_string(),
            });
        Router::new().nest(&format!("/{}", self.inner.secret), routes)
    }
}

impl crate::engine::Relay for Relay {
    fn acceptor(&self, host: &str) -> crate::ssh::Acceptor {
        let router = self.router(host);
        Arc::new(move |io| {
            let svc = hyper_util::service::TowerToHyperService::new(router.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(io), svc)
                    .await;
            });
        })
    }
    fn index_path(&self) -> String {
        format!("/{}/simple/", self.inner.secret)
    }
}

fn err(status: StatusCode, msg: String) -> Response {
    (status, msg).into_response()
}

async fn root() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html")],
        "<!DOCTYPE html><html><body></body></html>\n",
    )
        .into_response()
}

async fn project(State(cx): State<Ctx>, Path(project): Path<String>) -> Response {
    let name = artifacts::normalize(&project);
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return err(StatusCode::NOT_FOUND, format!("no project {project:?}"));
    }
    let files = {
        let mut listings = cx.inner.listings.lock().await;
        match listings.get(&name) {
            Some(f) => f.clone(),
            None => {
                let src = cx.inner.source.as_ref();
                let listing = artifacts::list_files(&cx.inner.http, src, &name);
                let listed = tokio::time::timeout(LISTING_TIMEOUT, listing)
                    .await
                    .unwrap_or_else(|_| {
                        Err(BackendError::retryable(format!(
                            "listing {name} on {} took over {}s",
                            src.describe(),
                            LISTING_TIMEOUT.as_secs()
                        )))
                    });
                match listed {
                    Ok(f) => {
                        let f = Arc::new(f);
                        listings.insert(name.clone(), f.clone());
                        f
                    }
                    Err(e) => {
                        cx.say(format!("cannot list {name}: {e}"));
                        return err(StatusCode::BAD_GATEWAY, e.to_string());
                    }
                }
            }
        }
    };
    if files.is_empty() {
        return err(StatusCode::NOT_FOUND, format!("no project {name}"));
    }
    let mut html = format!(
        "<!DOCTYPE html>\n<html><head><title>Links for {name}</title></head><body>\n<h1>Links for {name}</h1>\n"
    );
    let mut unverifiable = Vec::new();
    {
        let mut known = cx.inner.files.lock().unwrap();
        for f in files.iter().cloned() {
            let Some(sha) = f
                .sha256
                .clone()
                .filter(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()))
            else {
                unverifiable.push(f.filename);
                continue;
            };
            if !artifacts::is_file_name(&f.filename) {
                continue;
            }
            let rp = f
                .requires_python
                .as_deref()
                .map(|r| format!(" data-requires-python=\"{}\"", artifacts::escape(r)))
                .unwrap_or_default();
            let yanked = if f.yanked { " data-yanked=\"\"" } else { "" };
            html.push_str(&format!(
                "<a href=\"../../files/{sha}/{fname}#sha256={sha}\"{rp}{yanked}>{fname}</a><br/>\n",
                fname = f.filename
            ));
            known.insert(sha, f);
        }
    }
    if !unverifiable.is_empty() {
        cx.say(format!(
            "left out {} file(s) of {name} that the index lists without a SHA-256: {}",
            unverifiable.len(),
            unverifiable.join(", ")
        ));
    }
    html.push_str("</body></html>\n");
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

async fn file(State(cx): State<Ctx>, Path((sha256, filename)): Path<(String, String)>) -> Response {
    let sha256 = sha256.to_ascii_lowercase();
    let listed = cx.inner.files.lock().unwrap().get(&sha256).cloned();
    let Some(f) = listed.filter(|f| f.filename == filename) else {
        return err(
            StatusCode::NOT_FOUND,
            format!("{filename} with sha256 {sha256} was not listed by this relay"),
        );
    };
    match fetch_verified(&cx, &f, &sha256).await {
        Ok(path) => match stream_file(&path).await {
            Ok(r) => r,
            Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
        Err(msg) => {
            cx.say(msg.clone());
            err(StatusCode::BAD_GATEWAY, msg)
        }
    }
}

/// A cached file as a streamed response, in 64 KiB chunks.
async fn stream_file(path: &std::path::Path) -> std::io::Result<Response> {
    use tokio::io::AsyncReadExt;
    let file = tokio::fs::File::open(path).await?;
    let len = file.metadata().await?.len();
    let chunks = futures_util::stream::unfold(Some(file), |file| async move {
        let mut f = file?;
        let mut buf = vec![0u8; 64 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(axum::body::Bytes::from(buf)), Some(f)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        axum::body::Body::from_stream(chunks),
    )
        .into_response())
}

/// The cached file, downloaded and verified first if needed (one download at a time per
/// file; whoever waited finds it cached).
async fn fetch_verified(cx: &Ctx, f: &DistFile, sha256: &str) -> Result<PathBuf, String> {
    let cache = &cx.inner.cache;
    let path = cache.path(sha256);
    if path.is_file() {
        cache.touch(&path);
        return Ok(path);
    }
    let lock = cache.lock(sha256);
    let _held = lock.lock().await;
    if path.is_file() {
        cache.touch(&path);
        return Ok(path);
    }
    let dir = path.parent().expect("cache paths have a parent");
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let tmp = dir.join(format!("{sha256}.part"));
    let result = download(cx, f, &tmp).await;
    let (have, size) = match result {
        Ok(x) => x,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
    };
    if have != sha256 {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(format!(
            "refused {}: its SHA-256 is {have}, but {} lists {sha256}",
            f.filename,
            cx.inner.source.describe()
        ));
    }
    tokio::fs::rename(&tmp, &path)
        .await
        .map_err(|e| format!("cannot store {}: {e}", path.display()))?;
    cx.say(format!(
        "fetched {} ({size} bytes, sha256 verified) from {}",
        f.filename,
        cx.inner.source.describe()
    ));
    let (cache, keep) = (cx.inner.cache.clone(), path.clone());
    let evicted = tokio::task::spawn_blocking(move || cache.evict(&keep))
        .await
        .unwrap_or(0);
    if evicted > 0 {
        cx.say(format!(
            "relay cache over its bound: removed {evicted} bytes of the least recently used files"
        ));
    }
    Ok(path)
}

async fn download(cx: &Ctx, f: &DistFile, tmp: &std::path::Path) -> Result<(String, u64), String> {
    let resp = artifacts::get(&cx.inner.http, cx.inner.source.as_ref(), &f.url)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = tokio::fs::File::create(tmp)
        .await
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk =
            chunk.map_err(|e| format!("downloading {}: {}", f.filename, e.without_url()))?;
        hasher.update(&chunk);
        size += chunk.len() as u64;
        out.write_all(&chunk)
            .await
            .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    }
    out.flush().await.map_err(|e| e.to_string())?;
    crate::gateway::metrics::get().relay_bytes(size);
    Ok((hex::encode(hasher.finalize()), size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Relay as _;
    use tower::ServiceExt;

    #[tokio::test]
    async fn only_the_jobs_secret_path_reaches_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let source = Arc::new(crate::artifacts::SimpleIndex {
            url: "http://127.0.0.1:9/simple/".into(),
            servers_url: None,
            auth: crate::artifacts::Auth::None,
        });
        let sink = Arc::new(crate::engine::Collect::default());
        let cache = Arc::new(RelayCache::new(dir.path().to_path_buf(), 1 << 20));
        let relay = Relay::new(source, reqwest::Client::new(), cache, sink);
        let other = Relay::new(
            Arc::new(crate::artifacts::SimpleIndex {
                url: "http://127.0.0.1:9/simple/".into(),
                servers_url: None,
                auth: crate::artifacts::Auth::None,
            }),
            reqwest::Client::new(),
            Arc::new(RelayCache::new(dir.path().to_path_buf(), 1 << 20)),
            Arc::new(crate::engine::Collect::default()),
        );
        let path = relay.index_path();
        assert!(path.len() > 40 && path.ends_with("/simple/"), "{path}");
        assert_ne!(path, other.index_path(), "one secret per job");
        let get = |uri: &str| {
            axum::http::Request::get(uri)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let r = relay.router("web1").oneshot(get(&path)).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        for guess in ["/simple/", "/simple/hello-app/", "/files/00/x.whl"] {
            let r = relay.router("web1").oneshot(get(guess)).await.unwrap();
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{guess}");
        }
        let r = relay
            .router("web1")
            .oneshot(get(&other.index_path()))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "another job's secret");
    }

    #[tokio::test]
    async fn a_stalled_upstream_fails_the_listing_and_frees_the_jobs_lock() {
        // An upstream that accepts and never answers.
        let stalled = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = stalled.local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let source = Arc::new(crate::artifacts::SimpleIndex {
            url: format!("http://127.0.0.1:{port}/simple/"),
            servers_url: None,
            auth: crate::artifacts::Auth::None,
        });
        // The gateway's relay client has a read timeout (60 s); a short one here.
        let http = reqwest::Client::builder()
            .read_timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let cache = Arc::new(RelayCache::new(dir.path().to_path_buf(), 1 << 20));
        let relay = Relay::new(
            source,
            http,
            cache,
            Arc::new(crate::engine::Collect::default()),
        );
        let uri = format!("{}hello-app/", relay.index_path());
        for _ in 0..2 {
            let t = std::time::Instant::now();
            let req = axum::http::Request::get(&uri)
                .body(axum::body::Body::empty())
                .unwrap();
            let r = relay.router("web1").oneshot(req).await.unwrap();
            assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
            assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        }
        drop(stalled);
    }
}
