//! The CLI's HTTP client: the gateway URL and token, the version handshake on every
//! response, JSON errors mapped to the CLI's exit codes, and the SSE event stream with
//! resume (`Last-Event-ID`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deploy_wire::api::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::exit;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

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
}

static NOTICE_SHOWN: AtomicBool = AtomicBool::new(false);

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Client {
        let base = base.trim_end_matches('/').to_string();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client");
        let stream_http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .expect("http client");
        Client {
            base,
            token,
            http,
            stream_http,
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
        CliError::new(
            exit::UNREACHABLE,
            format!(
                "cannot reach the gateway at {}: {}",
                self.base,
                root_cause(&e)
            ),
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
            409 if err.code == codes::LOCKED => exit::LOCKED,
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

    /// Follows a job's events from `after`, calling `on_event(seq, json)` for each, and
    /// reconnecting with `Last-Event-ID` when the stream drops.  Returns the job's final
    /// state once the gateway sends `end`.
    pub async fn follow(
        &self,
        job: &str,
        mut after: u64,
        on_event: &mut dyn FnMut(u64, &str),
    ) -> Result<String> {
        use futures_util::StreamExt;
        let mut failures = 0u32;
        loop {
            let attempt = async {
                let resp = self
                    .request(
                        &self.stream_http,
                        reqwest::Method::GET,
                        &format!("/v1/jobs/{job}/events"),
                    )
                    .header("Accept", "text/event-stream")
                    .header("Last-Event-ID", after.to_string())
                    .send()
                    .await
                    .map_err(|e| self.unreachable(e))?;
                let resp = self.check(resp).await?;
                let mut stream = resp.bytes_stream();
                let mut buf = Vec::<u8>::new();
                while let Some(chunk) = stream.next().await {
                    let Ok(chunk) = chunk else { break };
                    buf.extend_from_slice(&chunk);
                    while let Some(pos) = find_blank_line(&buf) {
                        let frame: Vec<u8> = buf.drain(..pos).collect();
                        let frame = String::from_utf8_lossy(&frame).replace("\r\n", "\n");
                        let (mut id, mut kind, mut data) =
                            (None, "message".to_string(), String::new());
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
                        if kind == "end" {
                            return Ok(Some(data));
                        }
                        if let (Some(seq), "event") = (id, kind.as_str())
                            && seq > after
                        {
                            after = seq;
                            on_event(seq, &data);
                        }
                    }
                }
                Ok::<_, CliError>(None)
            };
            match attempt.await {
                Ok(Some(state)) => return Ok(state),
                Ok(None) => failures = 0, // the stream dropped: resume at once
                Err(e) if e.code == exit::UNREACHABLE && failures < 30 => failures += 1,
                Err(e) => return Err(e),
            }
            tokio::time::sleep(Duration::from_millis(if failures == 0 {
                100
            } else {
                1000
            }))
            .await;
        }
    }
}

fn find_blank_line(buf: &[u8]) -> Option<usize> {
    let a = buf.windows(2).position(|w| w == b"\n\n").map(|p| p + 2);
    let b = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
