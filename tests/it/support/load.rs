//! Load as browsers and load balancers make it: HTTP/1.1 clients that keep their
//! connection open and send GETs and POSTs on it back to back.  A request that fails
//! (connection closed without a response, a reset, a status other than 200) counts as
//! failed; the client then opens a new connection and goes on.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{HOST, Server};

/// What the clients saw.
#[derive(Debug, Default)]
pub struct Seen {
    pub sent: u64,
    pub failed: u64,
    /// Connections opened (a reused connection carries many requests).
    pub connections: u64,
    pub samples: Vec<String>,
}

impl Seen {
    /// Prints what the clients saw through `what` (and how long it took since `since`)
    /// and fails unless no request failed and more than `min_sent` were answered.
    pub fn assert_no_failure(&self, what: &str, since: Instant, min_sent: u64) {
        eprintln!(
            "load through {what}: sent {}, failed {}, connections {} ({:?})",
            self.sent,
            self.failed,
            self.connections,
            since.elapsed()
        );
        assert_eq!(
            self.failed, 0,
            "failed requests through {what}: {:?}",
            self.samples
        );
        assert!(
            self.sent > min_sent,
            "too few requests through {what}: {self:?}"
        );
    }
}

pub struct KeepAliveLoad {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Seen>>,
}

/// The site the clients load: nginx's virtual host, the page they GET, and (every other
/// request) a JSON POST to `/orders`.
#[derive(Clone, Copy, Debug)]
pub struct Site {
    pub host: &'static str,
    pub get: &'static str,
}

/// The sample app (tests/sample-app): `/` and `POST /orders`.
pub const HELLO: Site = Site {
    host: HOST,
    get: "/",
};

impl KeepAliveLoad {
    /// `per_server` clients on each server's nginx, alternating GET and POST, as fast
    /// as they are answered.
    pub fn start(servers: &[Server], per_server: usize) -> KeepAliveLoad {
        Self::paced(servers, per_server, Duration::ZERO)
    }

    /// The same, each client waiting `pause` between requests (less CPU for the rest).
    pub fn paced(servers: &[Server], per_server: usize, pause: Duration) -> KeepAliveLoad {
        Self::on_site(HELLO, servers, per_server, pause)
    }

    /// The same on another application's `site`.
    pub fn on_site(
        site: Site,
        servers: &[Server],
        per_server: usize,
        pause: Duration,
    ) -> KeepAliveLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for s in servers {
            for _ in 0..per_server {
                let (stop, port) = (stop.clone(), s.http_port);
                threads.push(std::thread::spawn(move || client(site, port, &stop, pause)));
            }
        }
        KeepAliveLoad { stop, threads }
    }

    pub fn stop(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = Seen::default();
        for t in self.threads {
            let s = t.join().unwrap();
            total.sent += s.sent;
            total.failed += s.failed;
            total.connections += s.connections;
            total.samples.extend(s.samples.into_iter().take(5));
        }
        total
    }
}

fn client(site: Site, port: u16, stop: &AtomicBool, pause: Duration) -> Seen {
    let mut seen = Seen::default();
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut conn: Option<BufReader<TcpStream>> = None;
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        if conn.is_none() {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => {
                    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
                    seen.connections += 1;
                    conn = Some(BufReader::new(s));
                }
                Err(e) => {
                    seen.sent += 1;
                    seen.failed += 1;
                    seen.samples.push(format!("{port}: connect: {e}"));
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            }
        }
        i += 1;
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
        let post = i.is_multiple_of(2);
        seen.sent += 1;
        let r = request(site, conn.as_mut().unwrap(), post, i);
        match r {
            Ok((200, false)) => {}
            // nginx ends a connection after `keepalive_requests`, saying so: not a failure.
            Ok((200, true)) => conn = None,
            other => {
                seen.failed += 1;
                if seen.samples.len() < 5 {
                    let method = if post { "POST" } else { "GET" };
                    seen.samples
                        .push(format!("{port}: {method} #{i}: {other:?}"));
                }
                conn = None;
            }
        }
    }
    seen
}

/// One request on a kept-alive connection; the response is read whole (Content-Length
/// or chunked), so the connection can carry the next one.
fn request(
    site: Site,
    c: &mut BufReader<TcpStream>,
    post: bool,
    i: u64,
) -> std::io::Result<(u16, bool)> {
    let (host, get) = (site.host, site.get);
    let req = if post {
        let body = format!("{{\"order\": {i}}}");
        format!(
            "POST /orders HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    } else {
        format!("GET {get} HTTP/1.1\r\nHost: {host}\r\n\r\n")
    };
    c.get_mut().write_all(req.as_bytes())?;
    let mut line = String::new();
    if c.read_line(&mut line)? == 0 {
        return Err(std::io::Error::other(
            "connection closed without a response",
        ));
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (mut length, mut chunked, mut close) = (None, false, false);
    loop {
        line.clear();
        c.read_line(&mut line)?;
        let l = line.trim_end().to_ascii_lowercase();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.strip_prefix("content-length:") {
            length = v.trim().parse::<usize>().ok();
        } else if l.starts_with("transfer-encoding:") && l.contains("chunked") {
            chunked = true;
        } else if l.starts_with("connection:") && l.contains("close") {
            close = true;
        }
    }
    if chunked {
        loop {
            line.clear();
            c.read_line(&mut line)?;
            let n = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0; n + 2];
            c.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
        }
    } else if let Some(n) = length {
        let mut body = vec![0; n];
        c.read_exact(&mut body)?;
    }
    Ok((status, close))
}

/// The pids of nginx's current worker processes on a server: a reload replaces them all.
/// (Workers of an earlier reload still finishing their connections are titled "worker
/// process is shutting down" and are not counted.)
pub fn nginx_workers(container: &str) -> String {
    super::exec(
        container,
        "pgrep -xf 'nginx: worker process' | sort | tr '\\n' ' '",
    )
}
