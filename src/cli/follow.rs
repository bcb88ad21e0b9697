//! Following a job's story (`release`, `rollback`, `restart`, `run`, `build`, `logs
//! --follow`): the event stream read from `Last-Event-ID`, and re-attached whenever it is
//! lost, for as long as the job may still live.
//!
//! Decisions:
//! - The stream is lost when the gateway cannot be reached, the connection breaks, the
//!   stream ends before its `end` or is silent for the read timeout (the gateway sends a
//!   keep-alive every 15 s), or the gateway answers 408, 429, 502, 503 (also
//!   `store_unavailable`: its database is away) or 504.  Each is retried, resuming after
//!   the last event shown, so every event is shown once and in order whichever gateway
//!   behind the URL answers (they share the job's story through the store).
//! - Waits between tries double from [`BACKOFF_FIRST`] up to [`BACKOFF_CAP`] (5 s).
//! - The job lives on without a follower, so following gives up only after
//!   [`REATTACH_DEFAULT`] (15 minutes; `DEPLOY_REATTACH_SECS` sets it) without contact:
//!   no stream opened for the job and no byte of it (an event, a keep-alive, its end).
//!   Then exit 5, saying the job may still run and how to follow it again.
//! - A 404 once the stream was open means the job is gone (retention pruned it, or the
//!   gateway behind the URL keeps another store): exit [`exit::GONE`], saying so.  A 404
//!   at the first look is no such job (a mistyped id): exit 2 as for any request.  Any
//!   other answer (500, 401, 403, 426, 400...) is a hard error, mapped as every other
//!   request's: asking again gets the same answer.
//! - One note on stderr when the stream is lost (with why) and one when it is
//!   re-attached (after how long, from which event); nothing for each try in between.
//!   Callers decide where a note goes (`--quiet` drops them).
//!
//! Ctrl-C stays the caller's: it races [`Client::follow`] (`interrupt::pressed`), so it
//! detaches at any moment, also while waiting between tries.

use std::time::{Duration, Instant};

use super::{CliError, Client, Result, find_blank_line, parse_frame, root_cause};
use crate::exit;

/// How long following goes on without any contact with the gateway before it gives up.
pub const REATTACH_DEFAULT: Duration = Duration::from_secs(15 * 60);
/// The variable that sets that limit, in whole seconds (for tests and impatient scripts).
pub const REATTACH_ENV: &str = "DEPLOY_REATTACH_SECS";
/// The first wait before trying again; each further wait doubles, up to [`BACKOFF_CAP`].
pub const BACKOFF_FIRST: Duration = Duration::from_millis(250);
pub const BACKOFF_CAP: Duration = Duration::from_secs(5);

/// When following re-attaches and when it gives up.
#[derive(Debug, Clone, Copy)]
pub struct Reattach {
    /// Give up after this long without contact.
    pub limit: Duration,
    pub first: Duration,
    pub cap: Duration,
}

impl Reattach {
    /// The defaults, with the limit from `DEPLOY_REATTACH_SECS` when it is a number.
    pub fn from_env() -> Reattach {
        let limit = std::env::var(REATTACH_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(REATTACH_DEFAULT, Duration::from_secs);
        Reattach {
            limit,
            first: BACKOFF_FIRST,
            cap: BACKOFF_CAP,
        }
    }

    /// The wait before try `n` (0: the first after a loss).
    fn wait(&self, n: u32) -> Duration {
        self.first.saturating_mul(1 << n.min(16)).min(self.cap)
    }
}

/// What following a job shows its caller: each event once, in order, and a note (a line
/// for stderr) when the stream is lost or re-attached.
pub enum Seen<'a> {
    Event { seq: u64, data: &'a str },
    Note(&'a str),
}

/// What is done about an answer that is not the event stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// The gateway (or its database) is away for now: try again.
    Retry,
    /// The job does not exist (any more).
    Gone,
    /// Asking again gets the same answer.
    Stop,
}

fn verdict(status: u16) -> Verdict {
    match status {
        404 => Verdict::Gone,
        408 | 429 | 502 | 503 | 504 => Verdict::Retry,
        _ => Verdict::Stop,
    }
}

/// Why one attempt did not reach the job's end.
enum Failure {
    Lost(String),
    Gone,
    Stop(CliError),
}

impl Client {
    /// Follows a job's events from `after`, showing each once through `seen`, and
    /// re-attaching (with `Last-Event-ID`) whenever the stream is lost, as the module's
    /// docs say.  Returns the job's final state once the gateway sends `end`.
    pub async fn follow(
        &self,
        job: &str,
        mut after: u64,
        seen: &mut dyn FnMut(Seen),
    ) -> Result<String> {
        let mut contact = Instant::now();
        let mut attached = false;
        let mut lost: Option<Instant> = None;
        let mut tries = 0u32;
        loop {
            let failure = match self.open(job, after, attached).await {
                Ok(resp) => {
                    attached = true;
                    contact = Instant::now();
                    if let Some(since) = lost.take() {
                        let secs = since.elapsed().as_secs();
                        let note = format!(
                            "re-attached to job {job} after {secs} s, from event {}",
                            after + 1
                        );
                        seen(Seen::Note(&note));
                    }
                    let mut heard = |at: Instant| {
                        contact = at;
                        tries = 0;
                    };
                    match self.read(resp, &mut after, seen, &mut heard).await {
                        Ok(state) => return Ok(state),
                        Err(f) => f,
                    }
                }
                Err(f) => f,
            };
            let why = match failure {
                Failure::Lost(why) => why,
                Failure::Gone => {
                    let m = format!("job {job} no longer exists on the gateway");
                    return Err(CliError::new(exit::GONE, m));
                }
                Failure::Stop(e) => return Err(e),
            };
            if lost.is_none() {
                lost = Some(Instant::now());
                seen(Seen::Note(&format!(
                    "lost the events of job {job} ({why}); re-attaching (the job goes on)"
                )));
            }
            let silent = contact.elapsed();
            if silent >= self.reattach.limit {
                return Err(CliError::new(
                    exit::UNREACHABLE,
                    format!(
                        "no contact with the gateway about job {job} for {} s ({why}); giving up following, the job may still run: `deploy logs {job} --follow`",
                        silent.as_secs()
                    ),
                ));
            }
            tokio::time::sleep(self.reattach.wait(tries)).await;
            tries = tries.saturating_add(1);
        }
    }

    /// Asks for the job's event stream after `after` (`attached`: it was open before).
    async fn open(
        &self,
        job: &str,
        after: u64,
        attached: bool,
    ) -> std::result::Result<reqwest::Response, Failure> {
        let path = format!("/v1/jobs/{}/events", crate::urls::encode(job));
        let resp = self
            .request(&self.stream_http, reqwest::Method::GET, &path)
            .header("Accept", "text/event-stream")
            .header("Last-Event-ID", after.to_string())
            .send()
            .await
            .map_err(|e| {
                // reqwest's words may hold the URL, never a header: no token here.
                let why = root_cause(&e);
                Failure::Lost(format!("cannot reach the gateway at {}: {why}", self.base))
            })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        match verdict(status) {
            Verdict::Gone if attached => Err(Failure::Gone),
            Verdict::Retry => {
                let body = resp.text().await.unwrap_or_default();
                let code = serde_json::from_str::<deploy_wire::api::ApiError>(&body)
                    .map(|e| format!(" {}", e.code))
                    .unwrap_or_default();
                Err(Failure::Lost(format!(
                    "the gateway answered {status}{code}"
                )))
            }
            Verdict::Gone | Verdict::Stop => match self.check(resp).await {
                Ok(_) => Err(Failure::Stop(CliError::new(
                    exit::FAILED,
                    format!("the gateway answered {status} to the event stream"),
                ))),
                Err(e) => Err(Failure::Stop(e)),
            },
        }
    }

    /// Reads an open stream until the job's `end` (its final state), calling `heard` for
    /// every byte received and `seen` for each event after `after`.
    async fn read(
        &self,
        resp: reqwest::Response,
        after: &mut u64,
        seen: &mut dyn FnMut(Seen),
        heard: &mut dyn FnMut(Instant),
    ) -> std::result::Result<String, Failure> {
        use futures_util::StreamExt;
        let mut stream = resp.bytes_stream();
        let mut buf = Vec::<u8>::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                Failure::Lost(if e.is_timeout() {
                    format!("no data for {} s", self.stream_timeout.as_secs())
                } else {
                    format!("the event stream broke: {}", root_cause(&e))
                })
            })?;
            heard(Instant::now());
            buf.extend_from_slice(&chunk);
            while let Some(pos) = find_blank_line(&buf) {
                let frame: Vec<u8> = buf.drain(..pos).collect();
                let (id, kind, data) = parse_frame(&frame);
                if kind == "end" {
                    return Ok(data);
                }
                if let (Some(seq), "event") = (id, kind.as_str())
                    && seq > *after
                {
                    *after = seq;
                    seen(Seen::Event { seq, data: &data });
                }
            }
        }
        Err(Failure::Lost(
            "the event stream ended before the job did".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn away_is_retried_gone_is_said_and_refusals_stop() {
        for s in [408, 429, 502, 503, 504] {
            assert_eq!(verdict(s), Verdict::Retry, "{s}");
        }
        assert_eq!(verdict(404), Verdict::Gone);
        for s in [400, 401, 403, 409, 410, 426, 500, 501] {
            assert_eq!(verdict(s), Verdict::Stop, "{s}");
        }
    }

    #[test]
    fn waits_double_up_to_the_cap() {
        let r = Reattach {
            limit: REATTACH_DEFAULT,
            first: BACKOFF_FIRST,
            cap: BACKOFF_CAP,
        };
        let waits: Vec<u128> = (0..8).map(|n| r.wait(n).as_millis()).collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
        assert_eq!(r.wait(u32::MAX), BACKOFF_CAP);
    }

    /// One canned answer per connection, in order; the last one repeats.
    #[derive(Clone)]
    enum Answer {
        /// 200 with these SSE frames, then the connection closes.
        Stream(String),
        /// A status with a JSON error body.
        Status(u16, &'static str),
        /// The connection closes without an answer.
        Hangup,
    }

    fn sse(events: &[u64], end: Option<&str>) -> Answer {
        let mut body: String = events
            .iter()
            .map(|s| format!("id: {s}\nevent: event\ndata: {{\"n\":{s}}}\n\n"))
            .collect();
        if let Some(state) = end {
            body.push_str(&format!("event: end\ndata: {state}\n\n"));
        }
        Answer::Stream(body)
    }

    /// A gateway that answers each connection with the next of `answers`; returns its
    /// URL and the `Last-Event-ID` each request carried.
    async fn scripted(answers: Vec<Answer>) -> (String, Arc<Mutex<Vec<String>>>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let asked = Arc::new(Mutex::new(Vec::new()));
        let seen = asked.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while let Ok((mut s, _)) = l.accept().await {
                let answer = answers[n.min(answers.len() - 1)].clone();
                n += 1;
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while find_blank_line(&req).is_none() {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => req.extend_from_slice(&buf[..k]),
                    }
                }
                let head = String::from_utf8_lossy(&req).to_ascii_lowercase();
                let id = head
                    .lines()
                    .find_map(|l| l.strip_prefix("last-event-id:"))
                    .unwrap_or("")
                    .trim()
                    .to_string();
                seen.lock().unwrap().push(id);
                let out = match answer {
                    Answer::Stream(body) => format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n{body}"
                    ),
                    Answer::Status(code, api) => {
                        let body = format!("{{\"code\":\"{api}\",\"message\":\"{api}\"}}");
                        format!(
                            "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        )
                    }
                    Answer::Hangup => String::new(),
                };
                let _ = s.write_all(out.as_bytes()).await;
                let _ = s.shutdown().await;
            }
        });
        (url, asked)
    }

    fn quick(url: &str, limit: Duration) -> Client {
        let mut c = Client::with_stream_timeout(url, None, Duration::from_secs(5));
        c.reattach = Reattach {
            limit,
            first: Duration::from_millis(1),
            cap: Duration::from_millis(5),
        };
        c
    }

    /// Follows `job` on `c`: (the result, the events' numbers shown, the notes).
    async fn follow_all(c: &Client) -> (Result<String>, Vec<u64>, Vec<String>) {
        let (mut events, mut notes) = (Vec::new(), Vec::new());
        let r = c
            .follow("j1", 0, &mut |s| match s {
                Seen::Event { seq, .. } => events.push(seq),
                Seen::Note(t) => notes.push(t.to_string()),
            })
            .await;
        (r, events, notes)
    }

    #[tokio::test]
    async fn a_lost_stream_is_re_attached_through_outages_and_each_event_shown_once() {
        let mut answers = vec![sse(&[1, 2], None)];
        // More failures in a row than the 5 an earlier CLI gave up after.
        answers.extend(std::iter::repeat_n(
            Answer::Status(503, "store_unavailable"),
            8,
        ));
        answers.extend([
            Answer::Hangup,
            Answer::Status(502, "bad_gateway"),
            // A gateway that resends what was shown already: shown once anyway.
            sse(&[2, 3], None),
            Answer::Status(504, "timeout"),
            sse(&[4], Some("interrupted")),
        ]);
        let (url, asked) = scripted(answers).await;
        let (r, events, notes) = follow_all(&quick(&url, Duration::from_secs(30))).await;
        assert_eq!(r.unwrap(), "interrupted");
        assert_eq!(events, [1, 2, 3, 4]);
        let asked = asked.lock().unwrap().clone();
        assert_eq!(asked.len(), 14, "{asked:?}");
        assert_eq!(asked[..2], ["0", "2"]);
        assert_eq!(
            asked[12..],
            ["3", "3"],
            "each try resumes after the last event shown"
        );
        assert_eq!(notes.len(), 4, "{notes:?}");
        assert!(
            notes[0].starts_with("lost the events of job j1 (the event stream ended"),
            "{notes:?}"
        );
        assert!(
            notes[1].starts_with("re-attached to job j1 after "),
            "{notes:?}"
        );
        assert!(notes[1].ends_with("from event 3"), "{notes:?}");
        assert!(notes[2].contains("(the event stream ended"), "{notes:?}");
        assert!(notes[3].ends_with("from event 4"), "{notes:?}");
    }

    #[tokio::test]
    async fn a_job_gone_from_the_gateway_ends_following_with_its_own_code() {
        let (url, _) = scripted(vec![sse(&[1], None), Answer::Status(404, "not_found")]).await;
        let (r, events, notes) = follow_all(&quick(&url, Duration::from_secs(30))).await;
        let e = r.unwrap_err();
        assert_eq!(e.code, exit::GONE, "{}", e.message);
        assert_eq!(e.message, "job j1 no longer exists on the gateway");
        assert_eq!((events.len(), notes.len()), (1, 1), "{notes:?}");
    }

    #[tokio::test]
    async fn a_refusal_or_an_internal_error_is_not_asked_again() {
        for (status, api, code) in [
            (401, "unauthenticated", exit::UNAUTHORISED),
            (404, "not_found", exit::USAGE), // never seen: a mistyped id, not a job gone
            (400, "invalid_request", exit::USAGE),
            (500, "internal", exit::FAILED),
        ] {
            let (url, asked) = scripted(vec![Answer::Status(status, api)]).await;
            let (r, _, notes) = follow_all(&quick(&url, Duration::from_secs(30))).await;
            assert_eq!(r.unwrap_err().code, code, "{status}");
            assert_eq!(asked.lock().unwrap().len(), 1, "{status}");
            assert!(notes.is_empty(), "{notes:?}");
        }
    }

    #[tokio::test]
    async fn an_unreachable_gateway_is_given_up_after_the_limit_without_contact() {
        let (url, asked) = scripted(vec![Answer::Hangup]).await;
        let started = Instant::now();
        let (r, _, notes) = follow_all(&quick(&url, Duration::from_millis(400))).await;
        let e = r.unwrap_err();
        assert_eq!(e.code, exit::UNREACHABLE, "{}", e.message);
        assert!(
            e.message
                .contains("no contact with the gateway about job j1"),
            "{}",
            e.message
        );
        assert!(
            e.message.contains("`deploy logs j1 --follow`"),
            "{}",
            e.message
        );
        assert!(started.elapsed() >= Duration::from_millis(400));
        assert!(asked.lock().unwrap().len() > 5);
        assert_eq!(
            notes.len(),
            1,
            "one note for the loss, none per try: {notes:?}"
        );
    }
}
