//! Redirects with credentials: a source's credentials (whatever headers it adds:
//! `Authorization`, Artifactory's `X-JFrog-Art-Api`, ...) go only to the source's own
//! origin.  reqwest strips `Authorization` on a cross-origin redirect but keeps custom
//! headers, so clients that talk to sources never follow redirects by themselves
//! ([`client`]); [`send`] follows them here, adding credentials hop by hop.

use reqwest::{ClientBuilder, Response, StatusCode, Url};

use super::ArtifactSource;
use crate::backend::{BackendError, request_kind};

/// At most this many redirects per request.
const MAX_HOPS: usize = 10;

/// A client builder for talking to sources: redirects are left to [`send`].
pub fn client(builder: ClientBuilder) -> ClientBuilder {
    builder.redirect(reqwest::redirect::Policy::none())
}

/// Is `url` on the source's own origin (scheme, host, port)?
pub fn same_origin(url: &Url, src: &dyn ArtifactSource) -> bool {
    Url::parse(&src.simple_url()).is_ok_and(|s| s.origin() == url.origin())
}

/// GETs `url` of `src`, following redirects: credentials only on the source's origin.
/// `accept`: the `Accept` header, if any.  Errors say what failed, never a credential;
/// the network's failures are retryable, a bad URL or redirect is not.
pub async fn send(
    http: &reqwest::Client,
    src: &dyn ArtifactSource,
    url: &str,
    accept: Option<&str>,
) -> Result<Response, BackendError> {
    let mut url =
        Url::parse(url).map_err(|e| BackendError::permanent(format!("bad URL {url}: {e}")))?;
    for _ in 0..=MAX_HOPS {
        let mut req = http.get(url.clone());
        if same_origin(&url, src) {
            req = src.authorize(req);
        }
        if let Some(a) = accept {
            req = req.header("Accept", a);
        }
        let resp = req.send().await.map_err(|e| {
            let kind = request_kind(&e);
            let msg = format!("cannot reach {}: {}", src.describe(), e.without_url());
            BackendError::new(kind, msg)
        })?;
        if !is_redirect(resp.status()) {
            return Ok(resp);
        }
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                let msg = format!("{} redirected {url} without a Location", src.describe());
                BackendError::permanent(msg)
            })?;
        url = url.join(location).map_err(|e| {
            let msg = format!("{} redirected {url} to a bad URL: {e}", src.describe());
            BackendError::permanent(msg)
        })?;
    }
    Err(BackendError::permanent(format!(
        "{} redirected more than {MAX_HOPS} times",
        src.describe()
    )))
}

fn is_redirect(s: StatusCode) -> bool {
    matches!(s.as_u16(), 301 | 302 | 303 | 307 | 308)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifacts::{Artifactory, Auth, Secret};
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-route HTTP server: answers every request with `answer(port)` and keeps
    /// each request's head.
    async fn server(answer: fn(u16) -> String) -> (u16, Arc<Mutex<Vec<String>>>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = vec![0u8; 8192];
                let n = s.read(&mut buf).await.unwrap_or(0);
                log.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).to_lowercase());
                let _ = s.write_all(answer(port).as_bytes()).await;
            }
        });
        (port, seen)
    }

    fn artifactory(port: u16, auth: Auth) -> Artifactory {
        Artifactory {
            base: format!("http://127.0.0.1:{port}/artifactory"),
            repository: "pypi-local".into(),
            servers_base: None,
            user: None,
            auth,
        }
    }

    #[tokio::test]
    async fn credentials_never_follow_a_redirect_to_another_origin() {
        // The other origin: records what it is sent.
        let (other, seen_there) = server(|_| {
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok".into()
        })
        .await;
        static OTHER: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
        OTHER.store(other, std::sync::atomic::Ordering::SeqCst);
        // The source: redirects everything there.
        let (port, seen_here) = server(|_| {
            let to = OTHER.load(std::sync::atomic::Ordering::SeqCst);
            format!(
                "HTTP/1.1 302 Found\r\nlocation: http://localhost:{to}/cdn/x.whl\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
        })
        .await;
        let http = client(reqwest::Client::builder()).build().unwrap();
        for auth in [
            Auth::ApiKey(Secret::new("api-key-123")),
            Auth::Bearer(Secret::new("token-456")),
            Auth::Basic {
                user: "svc".into(),
                password: Secret::new("pw-789"),
            },
        ] {
            let src = artifactory(port, auth);
            let url = format!("{}hello-app/", src.simple_url());
            let resp = send(&http, &src, &url, None).await.unwrap();
            assert_eq!(resp.status(), 200);
        }
        let here = seen_here.lock().unwrap().join("\n");
        assert!(
            here.contains("x-jfrog-art-api: api-key-123")
                && here.contains("authorization: bearer token-456")
                && here.contains("authorization: basic"),
            "the source itself gets its credentials: {here}"
        );
        let there = seen_there.lock().unwrap().clone();
        assert_eq!(there.len(), 3, "{there:?}");
        for head in there {
            assert!(head.starts_with("get /cdn/x.whl"), "{head}");
            assert!(
                !head.contains("x-jfrog-art-api") && !head.contains("authorization"),
                "a credential went to another origin: {head}"
            );
        }
    }

    /// An index answering every request with this status line and no body.
    macro_rules! answering {
        ($status:literal) => {{
            let (port, _) = server(|_| {
                concat!(
                    "HTTP/1.1 ",
                    $status,
                    "\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                )
                .to_string()
            })
            .await;
            artifactory(port, Auth::None)
        }};
    }

    #[tokio::test]
    async fn an_index_that_is_down_or_busy_is_retryable_and_one_that_refuses_is_not() {
        use crate::artifacts::{get, list_files};
        let http = client(reqwest::Client::builder()).build().unwrap();
        for src in [
            answering!("503 Service Unavailable"),
            answering!("429 Too Many Requests"),
        ] {
            let e = list_files(&http, &src, "hello-app").await.unwrap_err();
            assert!(e.is_retryable(), "{e}");
            assert!(
                e.to_string()
                    .starts_with(&format!("{} answered ", src.describe()))
            );
        }
        let src = answering!("401 Unauthorized");
        let e = list_files(&http, &src, "hello-app").await.unwrap_err();
        assert!(!e.is_retryable(), "{e}");
        assert!(
            e.to_string()
                .contains("refused the gateway's credentials (401 Unauthorized)")
        );
        let src = answering!("404 Not Found");
        assert_eq!(list_files(&http, &src, "hello-app").await.unwrap(), vec![]);
        let url = format!(
            "{}hello-app/hello_app-1.0-py3-none-any.whl",
            src.simple_url()
        );
        let e = get(&http, &src, &url).await.unwrap_err();
        assert!(!e.is_retryable(), "{e}");
        assert!(e.to_string().contains("answered 404 Not Found"), "{e}");

        // Nobody listening: retryable, and the message is what it was.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let src = artifactory(port, Auth::None);
        let e = list_files(&http, &src, "hello-app").await.unwrap_err();
        assert!(e.is_retryable(), "{e}");
        assert!(
            e.to_string()
                .starts_with(&format!("cannot reach {}: ", src.describe())),
            "{e}"
        );
    }
}
