//! `app-logs`: a process's log streamed from the hosts of an environment (or one of
//! them) through the gateway ([`crate::engine::app_logs`]).  The read scope suffices;
//! every request is one audit row; at most [`MAX_LOG_STREAMS`] are open at once.  The
//! stream ends when every host's `tail` ended, or, when followed, with its client or
//! when the gateway stops.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use deploy_wire::api::LogLine;
use tokio::sync::{mpsc, watch};

use super::{JobService, Result, ServiceError};
use crate::engine::app_logs::{self, LogEvent, Source, TailSpec};
use crate::gateway::auth::Principal;
use crate::inventory::{App, Host};

/// Log streams open at once, over all clients.
pub const MAX_LOG_STREAMS: usize = 64;
/// Lines from the end when the request names none, and the most it may name.
pub const DEFAULT_LINES: u32 = 50;
pub const MAX_LINES: u32 = 10_000;
/// Lines buffered between the hosts and a client (more are left out, and counted).
const BUFFER: usize = 1024;
/// The web process, whose log is the live slot's.
pub const WEB: &str = "web";

/// What a client asks for.
#[derive(Debug, Clone, Default)]
pub struct LogsRequest {
    pub env: String,
    /// One host of the environment; None: all.
    pub host: Option<String>,
    /// `web` (default) or one of the application's processes.
    pub process: Option<String>,
    pub lines: Option<u32>,
    pub follow: bool,
}

/// The lines of an open log stream; dropping it ends the stream (and the remote tails).
pub struct LogStream {
    rx: mpsc::Receiver<LogEvent>,
    /// The gateway is stopping (see [`JobService::end_log_streams`]).
    end: watch::Receiver<bool>,
    ended: bool,
    _open: Open,
}

impl LogStream {
    /// The next line; None once every host's `tail` ended, or after the notice that the
    /// gateway stops.
    pub async fn next(&mut self) -> Option<LogLine> {
        if self.ended {
            return None;
        }
        let e = tokio::select! {
            e = self.rx.recv() => e?,
            _ = self.end.wait_for(|end| *end) => {
                self.ended = true;
                return Some(LogLine {
                    host: "gateway".into(),
                    copy: None,
                    line: "the gateway is stopping; the log stream ends".into(),
                    notice: true,
                });
            }
        };
        Some(LogLine {
            host: e.host,
            copy: e.copy,
            line: e.line,
            notice: e.notice,
        })
    }
}

/// Counts one open stream while it lives.
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The source of `process`, or the application's processes when it has none of that name.
fn source(app: &App, process: &str) -> Result<Source> {
    if process == WEB {
        return Ok(Source::Web);
    }
    let known = &app.runtime.processes;
    match known.iter().find(|p| p.name == process) {
        Some(p) => Ok(Source::Process {
            name: p.name.clone(),
            copies: p.count,
        }),
        None => {
            let mut names = vec![WEB.to_string()];
            names.extend(known.iter().map(|p| p.name.clone()));
            Err(ServiceError::NotFound(format!(
                "application {} has no process `{process}`; its processes: {}",
                app.name,
                names.join(", ")
            )))
        }
    }
}

/// Every host of the environment, or the one asked for (unknown: the known ones).
fn pick_hosts(all: &[&Host], wanted: Option<&str>, env: &str) -> Result<Vec<Host>> {
    let Some(w) = wanted else {
        return Ok(all.iter().map(|h| (*h).clone()).collect());
    };
    match all.iter().find(|h| h.name == w) {
        Some(h) => Ok(vec![(*h).clone()]),
        None => {
            let names: Vec<&str> = all.iter().map(|h| h.name.as_str()).collect();
            Err(ServiceError::NotFound(format!(
                "environment {env} has no host {w}; its hosts: {}",
                names.join(", ")
            )))
        }
    }
}

impl JobService {
    /// Opens a log stream of `app` (see the module).
    pub async fn app_logs(&self, p: &Principal, app: &str, q: LogsRequest) -> Result<LogStream> {
        let inv = self.jobs.inventory()?;
        let a = inv
            .app(app)
            .map_err(|e| ServiceError::NotFound(e.message))?;
        self.visible_env(p, app, &q.env, &format!("{app}/{} logs", q.env))
            .await?;
        let (e, all) = inv.hosts_for(a, &q.env)?;
        let kind = e.process_manager;
        let hosts = pick_hosts(&all, q.host.as_deref(), &q.env)?;
        let process = q.process.as_deref().unwrap_or(WEB);
        let source = source(a, process)?;
        let lines = q.lines.unwrap_or(DEFAULT_LINES);
        if lines > MAX_LINES {
            let m = format!("at most {MAX_LINES} lines from the end (asked: {lines})");
            return Err(ServiceError::Invalid(m));
        }
        let open = self.open_stream()?;
        let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
        let what = format!(
            "{app}/{} {process} on {} (-n {lines}{})",
            q.env,
            names.join(","),
            if q.follow { " -f" } else { "" }
        );
        self.audit(&p.user, "app-logs", &what, "accepted").await;
        let spec = TailSpec {
            app: a.name.clone(),
            source,
            lines,
            follow: q.follow,
        };
        let cfg = Arc::new(self.jobs.engine_config()?);
        let pm = crate::procman::for_kind(kind);
        let (tx, rx) = mpsc::channel(BUFFER);
        tokio::spawn(app_logs::tail(cfg, hosts, pm, spec, tx));
        Ok(LogStream {
            rx,
            end: self.end_logs.subscribe(),
            ended: false,
            _open: open,
        })
    }

    /// Ends every log stream, open or opened later (the gateway stops: a followed log
    /// would keep its connection, and the gateway, from closing).
    pub fn end_log_streams(&self) {
        self.end_logs.send_replace(true);
    }

    /// Counts a new stream, or refuses it at the limit.
    fn open_stream(&self) -> Result<Open> {
        let was = self.log_streams.fetch_add(1, Ordering::SeqCst);
        let open = Open(self.log_streams.clone());
        if was >= MAX_LOG_STREAMS {
            return Err(ServiceError::Unavailable(format!(
                "the gateway already streams {MAX_LOG_STREAMS} logs; retry later"
            )));
        }
        Ok(open)
    }
}
