//! The CLI's HTTP client: the gateway URL and token, the version handshake on every
//! response, JSON errors mapped to the CLI's exit codes, a job's event stream followed
//! and re-attached until the job's end (`follow.rs`), and other SSE streams (a process's
//! log) read once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deploy_wire::api::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::exit;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[path = "follow.rs"]
mod follow;
pub use follow::Seen;

/// An event stream that sends no byte for this long is considered dead (and re-attached).
pub const STREAM_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// A failure, with the exit code it maps to.  Never holds the token.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
}

impl CliError {
    pub fn new(code: u8, message: impl Into<String>) -> CliError {
        CliError {
            code,
            message: message.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, CliError>;

pub struct Client {
    pub base: String,
    token: Option<String>,
    http: reqwest::Client,
    stream_http: reqwest::Client,
    stream_timeout: Duration,
    /// When following a job re-attaches and when it gives up.
    reattach: follow::Reattach,
}

static NOTICE_SHOWN: AtomicBool = AtomicBool::new(false);

/// No notice of a newer CLI from now on (`--quiet`: nothing on success).
pub fn no_notices() {
    NOTICE_SHOWN.store(true, Ordering::Relaxed);
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Client {
        Client::with_stream_timeout(base, token, STREAM_READ_TIMEOUT)
    }

    /// A client whose event stream gives up on silence after `read_timeout`.
    pub fn with_stream_timeout(
        base: &str,
        token: Option<String>,
        read_timeout: Duration,
    ) -> Client {
        let base = base.trim_end_matches('/').to_string();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client");
        let stream_http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(read_timeout)
            .build()
            .expect("http client");
        Client {
            base,
            token,
            http,
            stream_http,
            stream_timeout: read_timeout,
            reattach: follow::Reattach::from_env(),
        }
    }

    fn request(
        &self,
        http: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let mut r = http
            .request(method, format!("{}{path}", self.base))
            .header(CLIENT_VERSION_HEADER, VERSION);
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        r
    }

    fn unreachable(&self, e: reqwest::Error) -> CliError {
        // reqwest's message can include the URL, never headers: no token here.
        let cause = root_cause(&e);
        let why = if self.base.starts_with("https://") && speaks_plain_http(&cause) {
            let plain = self.base.replacen("https://", "http://", 1);
            format!(
                "this port speaks plain HTTP, not HTTPS (use {plain}, or put TLS in front of the gateway)"
            )
        } else {
            cause
        };
        CliError::new(
            exit::UNREACHABLE,
            format!("cannot reach the gateway at {}: {why}", self.base),
        )
    }

    /// Handshake notice and error mapping, common to every response.
    async fn check(&self, resp: reqwest::Response) -> Result<reqwest::Response> {
        let h = resp.headers();
        if let Some(newest) = h.get(CLI_NEWEST_HEADER).and_then(|v| v.to_str().ok())
            && handshake(VERSION, "0.0.0", newest) == Handshake::Outdated
            && !NOTICE_SHOWN.swap(true, Ordering::Relaxed)
        {
            let cmd = h
                .get(CLI_UPGRADE_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            eprintln!(
                "deploy: a newer CLI is available ({newest}; you have {VERSION}); upgrade with: {cmd}"
            );
        }
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        let err: ApiError = serde_json::from_str(&body).unwrap_or(ApiError {
            code: "http".into(),
            message: format!(
                "the gateway answered {status}: {}",
                body.chars().take(200).collect::<String>()
            ),
            upgrade_command: None,
            holder: None,
            job_id: None,
        });
        let code = match status.as_u16() {
            426 => {
                let cmd = err.upgrade_command.clone().unwrap_or_default();
                return Err(CliError::new(
                    exit::TOO_OLD,
                    format!("{}\nupgrade with:\n    {cmd}", err.message),
                ));
            }
            401 | 403 => exit::UNAUTHORISED,
            // Too many failed sign-ins from this address: the token is the problem.
            429 if err.code == codes::TOO_MANY_FAILURES => exit::UNAUTHORISED,
            503 => exit::UNREACHABLE,
            409 if err.code == codes::LOCKED => exit::LOCKED,
            409 if err.code == codes::CLOSED => exit::CLOSED,
            // `--if-newer` and the version runs everywhere: nothing to do is success.
            409 if err.code == codes::UP_TO_DATE => exit::OK,
            400 | 404 | 409 => exit::USAGE,
            _ => exit::FAILED,
        };
        Err(CliError::new(code, err.message))
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let resp = self
            .request(&self.http, reqwest::Method::GET, path)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let resp = self.check(resp).await?;
        resp.json()
            .await
            .map_err(|e| CliError::new(exit::FAILED, format!("bad answer from the gateway: {e}")))
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        // It may start a job: from here Ctrl-C detaches instead of ending the CLI.
        crate::interrupt::detachable();
        let resp = self
            .request(&self.http, reqwest::Method::POST, path)
            .json(body)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let resp = self.check(resp).await?;
        resp.json()
            .await
            .map_err(|e| CliError::new(exit::FAILED, format!("bad answer from the gateway: {e}")))
    }

    /// A DELETE whose answer has no body.
    pub async fn delete(&self, path: &str) -> Result<()> {
        let resp = self
            .request(&self.http, reqwest::Method::DELETE, path)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.check(resp).await.map(|_| ())
    }

    /// Reads the Server-Sent Events at `path` once (no resume), calling `on_frame(event,
    /// data)` for each; true when the gateway ended it with `end`, false when it broke.
    pub async fn stream(&self, path: &str, on_frame: &mut dyn FnMut(&str, &str)) -> Result<bool> {
        use futures_util::StreamExt;
        let resp = self
            .request(&self.stream_http, reqwest::Method::GET, path)
            .header("Accept", "text/event-stream")
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let mut stream = self.check(resp).await?.bytes_stream();
        let mut buf = Vec::<u8>::new();
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else {
                return Ok(false);
            };
            buf.extend_from_slice(&chunk);
            while let Some(pos) = find_blank_line(&buf) {
                let frame: Vec<u8> = buf.drain(..pos).collect();
                let (_, kind, data) = parse_frame(&frame);
                if kind == "end" {
                    return Ok(true);
                }
                on_frame(&kind, &data);
            }
        }
        Ok(false)
    }
}

/// One SSE frame: (id, event name, data).
fn parse_frame(frame: &[u8]) -> (Option<u64>, String, String) {
    let frame = String::from_utf8_lossy(frame).replace("\r\n", "\n");
    let (mut id, mut kind, mut data) = (None, "message".to_string(), String::new());
    for line in frame.lines() {
        if let Some(v) = line.strip_prefix("id:") {
            id = v.trim().parse::<u64>().ok();
        } else if let Some(v) = line.strip_prefix("event:") {
            kind = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    (id, kind, data)
}

fn find_blank_line(buf: &[u8]) -> Option<usize> {
    let a = buf.windows(2).position(|w| w == b"\n\n").map(|p| p + 2);
    let b = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

/// rustls's words for a TLS handshake answered in plain text (an HTTP server's reply).
fn speaks_plain_http(cause: &str) -> bool {
    cause.contains("InvalidContentType") || cause.contains("corrupt message")
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A gateway whose event stream sends its headers and then nothing, ever.
    async fn stalled_gateway() -> (String, std::sync::Arc<std::sync::atomic::AtomicU32>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let connects = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let seen = connects.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut s, _)) = l.accept().await {
                seen.fetch_add(1, Ordering::SeqCst);
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n";
                let _ = s.write_all(head.as_bytes()).await;
                held.push(s); // half-open: never a byte more, never closed
            }
        });
        (url, connects)
    }

    #[tokio::test]
    async fn https_to_a_plain_http_port_is_named_as_such() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        let c = Client::new(&format!("https://127.0.0.1:{port}"), None);
        let e = c.get::<serde_json::Value>("/v1/apps").await.unwrap_err();
        assert_eq!(e.code, exit::UNREACHABLE);
        assert!(
            e.message.contains("this port speaks plain HTTP")
                && e.message.contains(&format!("use http://127.0.0.1:{port}")),
            "{}",
            e.message
        );
    }

    #[tokio::test]
    async fn a_silent_event_stream_is_dropped_and_opened_again_while_the_gateway_answers() {
        let (url, connects) = stalled_gateway().await;
        let mut c = Client::with_stream_timeout(&url, None, Duration::from_millis(300));
        c.reattach = follow::Reattach {
            limit: Duration::from_millis(500),
            first: Duration::from_millis(10),
            cap: Duration::from_millis(50),
        };
        let mut notes = Vec::new();
        let mut seen = |s: Seen| {
            if let Seen::Note(t) = s {
                notes.push(t.to_string());
            }
        };
        let followed = c.follow("j1", 0, &mut seen);
        // Each stream opens (the gateway answers: contact), then stays silent: it is
        // dropped after the read timeout and opened again, past the limit, which counts
        // time without contact only.
        let r = tokio::time::timeout(Duration::from_millis(2500), followed).await;
        assert!(r.is_err(), "still following: {r:?}");
        assert!(connects.load(Ordering::SeqCst) >= 4);
        assert!(notes[0].contains("(no data for 0 s)"), "{notes:?}");
        assert!(notes[1].starts_with("re-attached to job j1"), "{notes:?}");
    }

    #[test]
    fn frames_parse_with_id_event_and_data() {
        let (id, kind, data) = parse_frame(b"id: 7\nevent: event\ndata: {\"a\":1}\n\n");
        assert_eq!(
            (id, kind.as_str(), data.as_str()),
            (Some(7), "event", "{\"a\":1}")
        );
    }
}
