//! A real headless Chromium for tests: chromedriver and a small synchronous WebDriver client.
//!
//! Debian's `chromium` and `chromium-driver` are required: a missing binary fails the
//! test (never a skip). Each command is one HTTP/1.1 exchange with chromedriver on a free
//! local port (it answers no HTTP/1.0, sends `Content-Length` and does not close the
//! connection), so plain `std::net` is enough.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The W3C key under which WebDriver returns an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// Chromedriver plus one headless Chromium session; both end on drop.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    log: PathBuf,
    profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session; logs under `out_dir`.
    pub fn start(out_dir: &Path) -> Browser {
        for bin in [CHROMEDRIVER, CHROMIUM] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: install Debian's `chromium` and `chromium-driver` \
                 (apt-get install chromium chromium-driver)"
            );
        }
        std::fs::create_dir_all(out_dir).expect("create the browser's out_dir");
        let log = out_dir.join("chromedriver.log");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .arg("--enable-chrome-logs") // Chromium's own stderr in the log too (why it exited, say)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {CHROMEDRIVER}: {e}"));
        let profile = tempfile::tempdir().expect("a Chromium profile directory");
        // The session is empty until created: a panic from here on still kills chromedriver.
        let session = String::new();
        let mut browser = Browser {
            driver,
            port,
            session,
            log,
            profile,
        };

        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = browser.driver.try_wait() {
                browser.fail("chromedriver start", &format!("it exited: {status}"));
            }
            if let Ok((200, v)) = http(port, "GET", "/status", "", Duration::from_secs(2))
                && v["value"]["ready"] == true
            {
                break;
            }
            if Instant::now() > deadline {
                browser.fail("chromedriver start", "GET /status not ready after 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }

        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(), // root, and no user namespaces in a container
            "--disable-gpu".into(), // no display, no GPU
            "--disable-dev-shm-usage".into(), // /dev/shm may be tiny in a container
            "--window-size=1280,1000".into(),
            format!("--user-data-dir={}", browser.profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "timeouts": {"pageLoad": 60_000, "script": 30_000},
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let created = browser.call("POST", "/session", &caps.to_string());
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| browser.fail("POST /session", &format!("no sessionId in {created}")))
            .to_string();
        browser.cdp("Performance.enable", json!({}));
        // --window-size sizes the window, whose (emulated) toolbars take ~140 px: pin the viewport.
        let viewport =
            json!({"width": 1280, "height": 1000, "deviceScaleFactor": 1, "mobile": false});
        browser.cdp("Emulation.setDeviceMetricsOverride", viewport);
        browser
    }

    pub fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url }));
    }

    pub fn refresh(&self) {
        self.post("/refresh", json!({}));
    }

    pub fn current_url(&self) -> String {
        self.get_string("/url")
    }

    pub fn title(&self) -> String {
        self.get_string("/title")
    }

    /// The page source (GET /source).
    pub fn source(&self) -> String {
        self.get_string("/source")
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) and returns its result.
    pub fn execute(&self, script: &str, args: Value) -> Value {
        let args = if args.is_null() { json!([]) } else { args };
        self.post("/execute/sync", json!({ "script": script, "args": args }))
    }

    /// Text of the first element matching `css` (None if none).
    pub fn text(&self, css: &str) -> Option<String> {
        self.texts(css).into_iter().next()
    }

    /// Texts of every element matching `css`.
    pub fn texts(&self, css: &str) -> Vec<String> {
        // One script, not find + get text: a page that re-renders cannot leave a stale element.
        let v = self.execute(
            "return Array.from(document.querySelectorAll(arguments[0]), e => e.innerText);",
            json!([css]),
        );
        v.as_array()
            .into_iter()
            .flatten()
            .map(|t| t.as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Types `text` into the element matching `css` (clears it first).
    pub fn fill(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.post(&format!("/element/{id}/clear"), json!({}));
        self.post(&format!("/element/{id}/value"), json!({ "text": text }));
    }

    pub fn click(&self, css: &str) {
        let id = self.element(css);
        self.post(&format!("/element/{id}/click"), json!({}));
    }

    /// Waits up to `timeout` for `css` to match an element; true if it did.
    pub fn wait_for(&self, css: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.find(css).is_none() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        true
    }

    /// A PNG screenshot of the viewport, written to `path`.
    pub fn screenshot(&self, path: &Path) {
        let png = base64_decode(&self.get_string("/screenshot"));
        std::fs::write(path, png)
            .unwrap_or_else(|e| panic!("write the screenshot {}: {e}", path.display()));
    }

    /// Every cookie the browser holds for the current page (WebDriver cookie objects).
    pub fn cookies(&self) -> Vec<Value> {
        let cookies = self.cmd("GET", "/cookie", "");
        cookies.as_array().cloned().unwrap_or_default()
    }

    pub fn delete_cookies(&self) {
        self.cmd("DELETE", "/cookie", "");
    }

    /// Chrome DevTools `Performance.getMetrics`: name -> value (JSHeapUsedSize, Nodes, ...).
    pub fn metrics(&self) -> HashMap<String, f64> {
        let v = self.cdp("Performance.getMetrics", json!({}));
        let metrics = v["metrics"].as_array().into_iter().flatten();
        metrics
            .filter_map(|m| Some((m["name"].as_str()?.to_string(), m["value"].as_f64()?)))
            .collect()
    }

    fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.post("/goog/cdp/execute", json!({ "cmd": cmd, "params": params }))
    }

    /// The element id of the first match of `css`; panics if none.
    fn element(&self, css: &str) -> String {
        self.find(css)
            .unwrap_or_else(|| self.fail(&format!("find {css:?}"), "no element matches"))
    }

    fn find(&self, css: &str) -> Option<String> {
        let body = json!({ "using": "css selector", "value": css }).to_string();
        let path = format!("/session/{}/element", self.session);
        match self.try_call("POST", &path, &body) {
            Ok(v) => match v[ELEMENT].as_str() {
                Some(id) => Some(id.to_string()),
                None => self.fail(&format!("POST {path}"), &format!("no element id in {v}")),
            },
            Err((code, _)) if code == "no such element" => None,
            Err((_, detail)) => self.fail(&format!("POST {path} {css:?}"), &detail),
        }
    }

    /// A command on the session: `path` is relative to `/session/{id}`.
    fn cmd(&self, method: &str, path: &str, body: &str) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    fn post(&self, path: &str, body: Value) -> Value {
        self.cmd("POST", path, &body.to_string())
    }

    fn get_string(&self, path: &str) -> String {
        self.cmd("GET", path, "")
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn call(&self, method: &str, path: &str, body: &str) -> Value {
        self.try_call(method, path, body)
            .unwrap_or_else(|(_, detail)| self.fail(&format!("{method} {path}"), &detail))
    }

    /// The response's `value`, or (WebDriver error code, a description) on failure.
    fn try_call(&self, method: &str, path: &str, body: &str) -> Result<Value, (String, String)> {
        match http(self.port, method, path, body, COMMAND_TIMEOUT) {
            Ok((200, mut v)) => Ok(v["value"].take()),
            Ok((status, v)) => {
                let code = v["value"]["error"].as_str().unwrap_or("?").to_string();
                let message = v["value"]["message"].as_str().unwrap_or_default();
                Err((code.clone(), format!("HTTP {status}: {code}: {message}")))
            }
            Err(e) => Err((String::new(), format!("talking to chromedriver: {e}"))),
        }
    }

    fn fail(&self, what: &str, detail: &str) -> ! {
        let tail = log_tail(&self.log);
        panic!(
            "WebDriver {what} failed: {detail}\n--- tail of {} ---\n{tail}",
            self.log.display()
        )
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = http(self.port, "DELETE", &path, "", Duration::from_secs(10));
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// One HTTP/1.1 exchange with chromedriver: (status, JSON body).
fn http(
    port: u16,
    method: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> io::Result<(u16, Value)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(timeout))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    // Chromedriver answers `Connection: close` yet keeps the socket open: read Content-Length.
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line.split(' ').nth(1).and_then(|s| s.parse().ok());
    let status = status.ok_or_else(|| io::Error::other(format!("no HTTP status in {line:?}")))?;
    let mut length = None;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap_or_default();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse().ok();
        }
    }
    let length = length.ok_or_else(|| io::Error::other("no Content-Length (chunked?)"))?;
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let value = serde_json::from_slice(&body).map_err(|e| {
        io::Error::other(format!(
            "not JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        ))
    })?;
    Ok((status, value))
}

/// Standard base64 (line breaks ignored).
fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    let joined: String = text.split_ascii_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(joined)
        .unwrap_or_else(|e| panic!("screenshot: not base64: {e}"))
}

/// The last few KB of chromedriver's log, for panic messages.
fn log_tail(log: &Path) -> String {
    let bytes = std::fs::read(log).unwrap_or_default();
    String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(4000)..]).into_owned()
}
