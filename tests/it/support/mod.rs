//! Test support: a testbed of real servers (Docker containers made by `ci/testbed.sh`, or
//! QEMU VMs with systemd as PID 1: [`vm`]) and helpers to deploy to them with the engine and to look at them from outside; the
//! gateway as a real process or as in-process state, on the store `DEPLOY_TEST_STORE`
//! names (SQLite, or PostgreSQL through [`pg`]).
//!
//! Docker is required: a missing engine or image fails the test (never a skip).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use deploy::engine::{self, Collect, EngineConfig, JobResult, JobSpec};
use deploy::inventory::Inventory;
use deploy::pins::HostKeyPins;
use deploy::procman::ProcessManager;
use deploy::ssh::{self, SshOptions};
use deploy::wire::{Event, EventKind, StepStatus};
use serde::Deserialize;

pub mod browser;
pub mod front;
pub mod git;
pub mod jenkins;
pub mod load;
pub mod pg;
pub mod proxy;
pub mod reboot;
pub mod sites;
pub mod vm;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The store the gateways of a test run keep their state in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestStore {
    /// `database = "state/gateway.db"` in the gateway's directory (the default).
    Sqlite,
    /// A fresh database per gateway on the test PostgreSQL server ([`pg::new_database`]).
    Postgres,
}

/// `DEPLOY_TEST_STORE`: `postgres`, or `sqlite` (also when unset or empty).
pub fn test_store() -> TestStore {
    match std::env::var("DEPLOY_TEST_STORE").as_deref() {
        Err(_) | Ok("") | Ok("sqlite") => TestStore::Sqlite,
        Ok("postgres") => TestStore::Postgres,
        Ok(other) => panic!("DEPLOY_TEST_STORE={other:?}: expected `sqlite` or `postgres`"),
    }
}

/// A name for this test's database: the test binary and the test's name.
fn test_tag() -> String {
    let bin = std::env::args()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let bin = bin
        .rsplit_once('-')
        .map_or(bin.as_str(), |(b, _)| b)
        .to_string();
    let thread = std::thread::current();
    let test = thread
        .name()
        .unwrap_or("")
        .rsplit("::")
        .next()
        .unwrap_or("");
    match test {
        "" | "main" => bin,
        t => format!("{bin}_{t}"),
    }
}

/// gateway.toml's top-level lines that name the database: the SQLite file in `state/`,
/// or `database` (a PostgreSQL URL, made for this test unless `shared` names one) with
/// its password's environment variable. Returns the lines and the URL.
fn database_config(shared: Option<&str>) -> (String, Option<String>) {
    let url = match (shared, test_store()) {
        (Some(url), _) => url.to_string(),
        (None, TestStore::Sqlite) => return ("database = \"state/gateway.db\"\n".into(), None),
        (None, TestStore::Postgres) => pg::new_database(&test_tag()),
    };
    let lines = format!(
        "database = {url:?}\ndatabase_password_env = \"{}\"\n",
        pg::PASSWORD_ENV
    );
    (lines, Some(url))
}

/// What a gateway started in `dir` (by [`Gateway`] or [`gateway_state`]) has stored, in
/// bytes: its SQLite file and WAL, or its PostgreSQL database's size.
pub fn database_size(dir: &Path) -> u64 {
    match database_url_of(&dir.join("gateway.toml")) {
        Some(url) => pg::size(&url),
        None => ["gateway.db", "gateway.db-wal"]
            .iter()
            .filter_map(|f| std::fs::metadata(dir.join("state").join(f)).ok())
            .map(|m| m.len())
            .sum(),
    }
}

/// The PostgreSQL URL a gateway.toml names, if it names one.
pub fn database_url_of(config: &Path) -> Option<String> {
    let text = std::fs::read_to_string(config).unwrap();
    let value: toml::Table = toml::from_str(&text).unwrap();
    let db = value.get("database")?.as_str()?;
    (db.starts_with("postgres://") || db.starts_with("postgresql://")).then(|| db.to_string())
}

#[derive(Deserialize, Debug, Clone)]
pub struct Server {
    pub name: String,
    pub container: String,
    pub ssh_port: u16,
    pub http_port: u16,
    /// A VM server's QEMU (its `container` is then `vm:deploy-tb-NAME-webI`); None for a
    /// container.
    #[serde(default)]
    pub vm: Option<vm::Vm>,
}

#[derive(Deserialize, Debug)]
struct Json {
    network: String,
    index_container: String,
    index_port: u16,
    artifactory_port: u16,
    uv_binary: PathBuf,
    servers: Vec<Server>,
    #[serde(default)]
    db_container: Option<String>,
    #[serde(default)]
    db_password: Option<String>,
    servers_index_url: String,
    servers_artifactory_url: String,
    #[serde(default)]
    servers_db: Option<String>,
}

pub struct Testbed {
    pub name: String,
    pub dir: tempfile::TempDir,
    pub network: String,
    pub index_container: String,
    pub index_port: u16,
    /// ci/artifactory_stub.py in the index container (`:8081` on the servers' side).
    pub artifactory_port: u16,
    /// The pinned uv for servers (ci/testbed.sh packages).
    pub uv_binary: PathBuf,
    pub servers: Vec<Server>,
    /// With [`Testbed::up_with_db`]: the PostgreSQL container (alias `db` on the servers'
    /// network; role and database `shop`) and the role's password.
    pub db: Option<(String, String)>,
    /// How the servers reach the pypiserver (the inventory's `index_url`), the Artifactory
    /// stub and the database (`host:port`): `index`/`db` on the containers' network,
    /// `10.0.2.2:<published port>` from VMs.
    pub servers_index_url: String,
    pub servers_artifactory_url: String,
    pub servers_db: Option<String>,
}

fn require_docker() {
    let ok = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .map(|o| o.status.success());
    assert!(
        matches!(ok, Ok(true)),
        "these tests need a running Docker engine (CI={}); start dockerd and run ci/image/build.sh",
        std::env::var("CI").unwrap_or_default()
    );
}

impl Testbed {
    /// Starts `n` servers and an index, named after `test` (plus this process id).
    pub fn up(test: &str, n: usize) -> Testbed {
        Self::up_with(test, n, false)
    }

    /// With `isolated`, the servers have no route to the index (relay tests).
    pub fn up_with(test: &str, n: usize, isolated: bool) -> Testbed {
        Self::up_opts(
            test,
            n,
            if isolated { &["--isolated"] } else { &[] },
            std::process::id(),
        )
    }

    /// With a PostgreSQL server all servers share (`ci/testbed.sh up --postgres`).
    pub fn up_with_db(test: &str, n: usize) -> Testbed {
        Self::up_opts(test, n, &["--postgres"], std::process::id())
    }

    /// Servers whose `/srv` is a tmpfs of `size` (`64m`): a disk a test can fill
    /// (`ci/testbed.sh up --srv-tmpfs`).
    pub fn up_with_small_srv(test: &str, n: usize, size: &str) -> Testbed {
        Self::up_opts(test, n, &["--srv-tmpfs", size], std::process::id())
    }

    /// Servers that come back from `docker restart` as a rebooted machine does: same
    /// ports, empty `/run` (`ci/testbed.sh up --rebootable`); see [`Testbed::reboot`].
    pub fn up_rebootable(test: &str, n: usize) -> Testbed {
        Self::up_opts(test, n, &["--rebootable"], std::process::id())
    }

    /// Servers that are containers with systemd as PID 1, the inventory's environment on
    /// `process_manager: systemd` (`ci/testbed.sh up --systemd`), plus `options`
    /// (`--postgres`, `--rebootable`).
    pub fn up_systemd(test: &str, n: usize, options: &[&str]) -> Testbed {
        let mut all = vec!["--systemd"];
        all.extend_from_slice(options);
        Self::up_opts(test, n, &all, std::process::id())
    }

    /// `options`: `ci/testbed.sh up`'s (`--vm`: the servers are QEMU VMs, [`vm`]);
    /// `owner`: the process whose death lets `ci/testbed.sh gc` remove the bed (this
    /// process, unless a test says otherwise).
    fn up_opts(test: &str, n: usize, options: &[&str], owner: u32) -> Testbed {
        require_docker();
        if options.contains(&"--vm") {
            vm::require_qemu();
        }
        let name = format!("{}-{}", test.replace('_', "-"), std::process::id());
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(root().join("ci/testbed.sh"))
            .args(["up", &name, &n.to_string()])
            .arg(dir.path())
            .args(["--owner", &owner.to_string()])
            .args(options)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "testbed up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let j: Json = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("testbed.json")).unwrap(),
        )
        .unwrap();
        Testbed {
            name,
            dir,
            network: j.network,
            index_container: j.index_container,
            index_port: j.index_port,
            artifactory_port: j.artifactory_port,
            uv_binary: j.uv_binary,
            servers: j.servers,
            db: j.db_container.zip(j.db_password),
            servers_index_url: j.servers_index_url,
            servers_artifactory_url: j.servers_artifactory_url,
            servers_db: j.servers_db,
        }
    }

    /// Runs SQL in the shared database (as its superuser, over the local socket) and
    /// returns the rows, `|`-separated.
    pub fn sql(&self, query: &str) -> String {
        let (db, _) = self.db.as_ref().expect("a testbed with a database");
        let out = Command::new("docker")
            .args([
                "exec", "-u", "postgres", db, "psql", "-X", "-d", "shop", "-tAc", query,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{query}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `[uv]` for gateway.toml: the test bed's uv, pinned by its SHA-256.
    pub fn uv_config(&self) -> String {
        let sha = deploy::engine::UvTool::load(&self.uv_binary, None)
            .unwrap()
            .sha256;
        format!("[uv]\nbinary = {:?}\nsha256 = \"{sha}\"\n", self.uv_binary)
    }

    /// The Artifactory stub's credentials (user, password, token, api_key).
    pub fn artifactory_credential(&self, key: &str) -> String {
        let text = std::fs::read_to_string(self.path("artifactory.credentials")).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key} in artifactory.credentials"))
            .to_string()
    }

    /// The Artifactory stub's access log ("METHOD PATH STATUS" lines).
    pub fn artifactory_log(&self) -> String {
        exec(&self.index_container, "cat /stub/access.log")
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    pub fn inventory_text(&self) -> String {
        std::fs::read_to_string(self.path("inventory.yml")).unwrap()
    }

    /// Rewrites the inventory (tests vary it) and returns its path.
    pub fn set_inventory(&self, text: &str) -> PathBuf {
        std::fs::write(self.path("inventory.yml"), text).unwrap();
        self.path("inventory.yml")
    }

    pub fn config(&self) -> EngineConfig {
        EngineConfig {
            playbooks_dir: root().join("playbooks"),
            templates_dir: root().join("templates"),
            key: Arc::new(ssh::load_key(&self.path("id_ed25519")).unwrap()),
            pins: HostKeyPins::load(&self.path("known_hosts")).unwrap(),
            ssh: SshOptions {
                connect_timeout: Duration::from_secs(5),
                ..Default::default()
            },
            command_timeout: Duration::from_secs(300),
            uv: Some(engine::UvTool::load(&self.uv_binary, None).unwrap()),
            fence: None,
            elsewhere: None,
        }
    }

    /// The test bed's inventory and engine config back on pip (the product's default
    /// installer; the test bed's is uv): for the tests of pip's own path.
    pub fn use_pip(&self) {
        self.set_inventory(&self.inventory_text().replace("    installer: uv\n", ""));
    }

    /// Runs the engine: deploy (or check) `version` of hello to staging.
    pub fn deploy(&self, version: &str, check: bool) -> Deployed {
        self.deploy_with(self.config(), version, check)
    }

    pub fn deploy_with(&self, cfg: EngineConfig, version: &str, check: bool) -> Deployed {
        let inv = Inventory::load(&self.path("inventory.yml")).unwrap();
        let spec = JobSpec {
            app: "hello".into(),
            env: "staging".into(),
            version: version.into(),
            check,
            no_install: false,
            restart: false,
            batch: None,
            index: None,
            wheel: None,
        };
        let plan = engine::plan(&inv, &cfg, &spec).unwrap();
        let sink = Arc::new(Collect::default());
        let rt = tokio::runtime::Runtime::new().unwrap();
        let result = rt.block_on(engine::run(plan, Arc::new(cfg), sink.clone()));
        let events = std::mem::take(&mut *sink.0.lock().unwrap());
        Deployed { result, events }
    }

    pub fn server(&self, name: &str) -> &Server {
        self.servers.iter().find(|s| s.name == name).unwrap()
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = Command::new(root().join("ci/testbed.sh"))
            .args(["down", &self.name])
            .output();
    }
}

pub struct Deployed {
    pub result: JobResult,
    pub events: Vec<Event>,
}

impl Deployed {
    /// (step, status, reason, diff) of every finished step on `host`.
    pub fn steps(&self, host: &str) -> Vec<(String, StepStatus, String, Option<String>)> {
        self.events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::StepFinished {
                    host: h,
                    step,
                    status,
                    reason,
                    diff,
                    ..
                } if h == host => Some((step.clone(), *status, reason.clone(), diff.clone())),
                _ => None,
            })
            .collect()
    }

    pub fn step(&self, host: &str, step: &str) -> (StepStatus, String, Option<String>) {
        let (_, s, r, d) = self
            .steps(host)
            .into_iter()
            .find(|(n, ..)| n == step)
            .unwrap_or_else(|| panic!("no step {step} on {host}"));
        (s, r, d)
    }

    pub fn changed_steps(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::StepFinished {
                    host,
                    step,
                    status: StepStatus::Changed,
                    ..
                } => Some(format!("{host}/{step}")),
                _ => None,
            })
            .collect()
    }

    pub fn host(&self, host: &str) -> &engine::HostResult {
        self.result.hosts.iter().find(|h| h.host == host).unwrap()
    }
}

/// `docker exec CONTAINER sh -c SCRIPT`, returning stdout (panics on failure). For a VM
/// server (`vm:deploy-tb-NAME-webI`), the script runs as root over ssh ([`vm::exec`]).
pub fn exec(container: &str, script: &str) -> String {
    if let Some(vm) = container.strip_prefix("vm:") {
        return vm::exec(vm, script);
    }
    let out = Command::new("docker")
        .args(["exec", container, "sh", "-c", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker exec {container} {script:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The live slot's gunicorn master pid, as supervisord reports it.
pub fn app_pid(container: &str) -> Option<u32> {
    let slot = live_slot(container);
    let s = exec(
        container,
        &format!("supervisorctl status hello-{slot} || true"),
    );
    let all = deploy::procman::Supervisord.parse_status(&s);
    all.into_iter().find(|p| p.running()).and_then(|p| p.pid)
}

/// `blue` or `green`: the slot the live pointer (`run/live.sock`) names.
pub fn live_slot(container: &str) -> String {
    let target = exec(container, "readlink /srv/apps/hello/run/live.sock || true");
    target
        .trim()
        .split('@')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The web slots (`hello-blue`, `hello-green`) supervisord runs on a host, sorted.
pub fn running_slots(container: &str) -> Vec<String> {
    let mut out: Vec<String> = exec(container, "supervisorctl status || true")
        .lines()
        .filter(|l| l.starts_with("hello-") && l.contains("RUNNING"))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|p| p.ends_with("-blue") || p.ends_with("-green"))
        .map(str::to_string)
        .collect();
    out.sort();
    out
}

/// The units of deploy's for `app` that systemd runs (`active`), sorted, as
/// `deploy-hello-blue.service`, `deploy-hello-worker@0.service`.
pub fn active_units(container: &str, app: &str) -> Vec<String> {
    let mut out: Vec<String> = exec(
        container,
        &format!(
            "systemctl list-units --plain --no-legend --state=active 'deploy-{app}-*.service' | cut -d' ' -f1"
        ),
    )
    .lines()
    .map(str::trim)
    .filter(|l| !l.is_empty())
    .map(str::to_string)
    .collect();
    out.sort();
    out
}

/// The slot units (`deploy-hello-blue.service`) of `app` that start at boot, sorted.
pub fn enabled_slot_units(container: &str, app: &str) -> Vec<String> {
    let mut out: Vec<String> = exec(
        container,
        &format!(
            "for s in blue green; do u=deploy-{app}-$s.service; \
             [ \"$(systemctl is-enabled $u 2>/dev/null)\" = enabled ] && echo $u; done; true"
        ),
    )
    .lines()
    .map(str::to_string)
    .collect();
    out.sort();
    out
}

/// Number of successful SSH logins the container's sshd has logged.
pub fn ssh_logins(container: &str) -> usize {
    let out = Command::new("docker")
        .args(["logs", container])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter(|l| l.contains("Accepted publickey"))
        .count()
}

/// A plain HTTP/1.0 GET to 127.0.0.1:port with a Host header: (status, body).
pub fn http_get(port: u16, host: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

pub const HOST: &str = "hello.example.test";

pub fn served_version(server: &Server) -> String {
    let (status, body) = http_get(server.http_port, HOST, "/");
    assert_eq!(status, 200, "GET / on {}: {body}", server.name);
    body.trim().to_string()
}

pub fn read_to_string(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

// ---- the gateway and the CLI, as real processes ------------------------------------

/// A running `deploy-gateway serve` on a free loopback port, with its own state file
/// (or its own PostgreSQL database, or one shared with other gateways).
pub struct Gateway {
    pub dir: tempfile::TempDir,
    pub url: String,
    child: Option<std::process::Child>,
    env: Vec<(String, String)>,
    /// The PostgreSQL database's URL (None: the SQLite file `state/gateway.db`).
    database: Option<String>,
}

/// How to start a [`Gateway`] ([`Gateway::start_opts`]).
#[derive(Debug, Clone)]
pub struct GatewayOpts {
    /// The CLI versions the gateway accepts (`[cli]`).
    pub oldest: String,
    pub newest: String,
    /// TOML for `[sources.*]` and `[applications.*]` (and `[uv]`...) instead of the
    /// default (the testbed's pypiserver, or nothing without a testbed).
    pub sources: Option<String>,
    /// The gateway's environment (also given to `deploy-gateway token`).
    pub env: Vec<(String, String)>,
    /// A PostgreSQL URL (from [`pg::new_database`]) to share between gateways; None:
    /// the store [`test_store`] says, a database or file of this gateway's own.
    pub database: Option<String>,
    /// Top-level TOML lines (e.g. `"lease_secs = 6\n"`), placed before any table.
    pub extra: String,
}

impl GatewayOpts {
    /// CLI versions `oldest`..`newest`, everything else as by default.
    pub fn new(oldest: &str, newest: &str) -> GatewayOpts {
        GatewayOpts {
            oldest: oldest.into(),
            newest: newest.into(),
            sources: None,
            env: Vec::new(),
            database: None,
            extra: String::new(),
        }
    }
}

impl Default for GatewayOpts {
    /// CLI versions 0.1.0..0.1.0, as most tests use.
    fn default() -> GatewayOpts {
        GatewayOpts::new("0.1.0", "0.1.0")
    }
}

/// The `deploy` CLI binary (built on demand: it lives in another package). `ci/test.sh`
/// builds it once before the tests and says so with `DEPLOY_TEST_CLI_BUILT=1`, sparing
/// each test process a cargo run (which waits for any other cargo holding the build lock).
pub fn cli_bin() -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        if std::env::var_os("DEPLOY_TEST_CLI_BUILT").is_some() {
            return;
        }
        let st = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "deploy-cli", "--bin", "deploy"])
            .current_dir(root())
            .status()
            .unwrap();
        assert!(st.success(), "building the deploy CLI failed");
    });
    Path::new(env!("CARGO_BIN_EXE_deploy-gateway")).with_file_name("deploy")
}

pub fn gateway_bin() -> &'static str {
    env!("CARGO_BIN_EXE_deploy-gateway")
}

/// An inventory whose only host cannot be reached: for API tests that need no servers.
pub const OFFLINE_INVENTORY: &str = "\
hosts:
  web1: {address: 127.0.0.1, port: 1, groups: [web]}
  prod1: {address: 127.0.0.1, port: 1, groups: [prod]}
applications:
  hello:
    package: hello-app
    index_url: http://127.0.0.1:1/simple/
    wsgi: hello_app:app
    port: 8000
    server_names: [hello.example.test]
    environments:
      staging: {groups: [web]}
      production: {groups: [prod]}
";

impl Gateway {
    /// Starts a gateway on `inventory` (the testbed's files when `tb` is given).
    pub fn start(tb: Option<&Testbed>, oldest: &str, newest: &str) -> Gateway {
        Self::start_with(tb, oldest, newest, None, &[])
    }

    /// `sources`: TOML for `[sources.*]` and `[applications.*]` (and `[uv]`) instead of
    /// the default (the testbed's pypiserver); `env`: the gateway's environment.
    pub fn start_with(
        tb: Option<&Testbed>,
        oldest: &str,
        newest: &str,
        sources: Option<&str>,
        env: &[(&str, &str)],
    ) -> Gateway {
        Self::start_opts(
            tb,
            GatewayOpts {
                sources: sources.map(str::to_string),
                env: env
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..GatewayOpts::new(oldest, newest)
            },
        )
    }

    /// Starts a gateway as `o` says (see [`GatewayOpts`]).
    pub fn start_opts(tb: Option<&Testbed>, o: GatewayOpts) -> Gateway {
        // The CLI first: a test's clock (a job to a silent host that times out in 10 s)
        // must not include building it.
        cli_bin();
        let GatewayOpts {
            oldest,
            newest,
            sources,
            mut env,
            database,
            mut extra,
        } = o;
        let sources = sources.as_deref();
        let dir = tempfile::tempdir().unwrap();
        let (inventory, known_hosts, key, index) = match tb {
            Some(tb) => (
                tb.path("inventory.yml"),
                tb.path("known_hosts"),
                tb.path("id_ed25519"),
                sources.map(str::to_string).unwrap_or(format!(
                    "[sources.pypi]\nkind = \"simple\"\nurl = \"http://127.0.0.1:{}/simple/\"\n\
                     servers_url = {:?}\n[applications.hello]\nsource = \"pypi\"\n",
                    tb.index_port, tb.servers_index_url
                )),
            ),
            None => {
                std::fs::write(dir.path().join("inventory.yml"), OFFLINE_INVENTORY).unwrap();
                let st = Command::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                    .arg(dir.path().join("key"))
                    .status()
                    .unwrap();
                assert!(st.success());
                (
                    dir.path().join("inventory.yml"),
                    dir.path().join("known_hosts"),
                    dir.path().join("key"),
                    sources.unwrap_or_default().to_string(),
                )
            }
        };
        let (database, database_url) = database_config(database.as_deref());
        if database_url.is_some() && !env.iter().any(|(k, _)| k == pg::PASSWORD_ENV) {
            env.push((pg::PASSWORD_ENV.into(), pg::password()));
        }
        if !extra.is_empty() && !extra.ends_with('\n') {
            extra.push('\n');
        }
        // The test bed's servers install with uv: the gateway ships the pinned one
        // (unless the test configures uv itself).
        let index = match tb {
            Some(tb) if !index.contains("[uv]") && !extra.contains("[uv]") => {
                format!("{index}\n{}", tb.uv_config())
            }
            _ => index,
        };
        let config = format!(
            "listen = \"127.0.0.1:0\"\n{database}{extra}inventory = {:?}\nknown_hosts = {:?}\nssh_key = {:?}\nplaybooks = {:?}\ntemplates = {:?}\n\
             [cli]\noldest = \"{oldest}\"\nnewest = \"{newest}\"\nupgrade_command = \"cargo install --locked --git https://git.example.com/deploy deploy-cli --tag v{{version}}\"\n\
             {index}\n",
            inventory,
            known_hosts,
            key,
            root().join("playbooks"),
            root().join("templates"),
        );
        std::fs::write(dir.path().join("gateway.toml"), config).unwrap();
        let mut g = Gateway {
            dir,
            url: String::new(),
            child: None,
            env,
            database: database_url,
        };
        g.spawn();
        g
    }

    /// `deploy-gateway WORDS... --config <this gateway's config>` with the gateway's
    /// environment (on PostgreSQL: the database password's variable), for subcommands
    /// such as `apply` or `token list`; add the rest of the arguments.
    pub fn command(&self, words: &[&str]) -> Command {
        let mut cmd = Command::new(gateway_bin());
        cmd.args(words)
            .arg("--config")
            .arg(self.config())
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// The PostgreSQL database's URL, when the gateway keeps its state in one.
    pub fn database_url(&self) -> Option<&str> {
        self.database.as_deref()
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("gateway.toml")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("gateway.log"))
            .unwrap();
        let before = self.log().len();
        let child = Command::new(gateway_bin())
            .args(["serve", "--config"])
            .arg(self.config())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        for _ in 0..200 {
            let text = self.log();
            if let Some(line) = text[before..]
                .lines()
                .find(|l| l.contains("listening on http://"))
            {
                self.url = line
                    .split("listening on ")
                    .nth(1)
                    .unwrap()
                    .trim()
                    .to_string();
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the gateway did not start:\n{}", self.log());
    }

    /// SIGKILL: the gateway dies without any chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Sends `sig` (`STOP`, `CONT`, ...) to the gateway's process.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("the gateway runs").id();
        let st = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(st.success(), "kill -{sig} {pid}");
    }

    pub fn token(&self, user: &str, envs: &str, admin: bool) -> String {
        let mut cmd = self.command(&["token", "create"]);
        cmd.args(["--user", user]);
        if !envs.is_empty() {
            cmd.args(["--env", envs]);
        }
        if admin {
            cmd.arg("--admin");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// A `deploy` command against this gateway, with its own (empty) config dir.
    pub fn cli(&self, token: Option<&str>, args: &[&str]) -> Command {
        let mut cmd = Command::new(cli_bin());
        cmd.args(args)
            .env("DEPLOY_GATEWAY", &self.url)
            .env("XDG_CONFIG_HOME", self.dir.path().join("cli-config"))
            .env_remove("DEPLOY_TOKEN");
        if let Some(t) = token {
            cmd.env("DEPLOY_TOKEN", t);
        }
        cmd
    }

    pub fn run(&self, token: Option<&str>, args: &[&str]) -> CliRun {
        let out = self.cli(token, args).output().unwrap();
        CliRun {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// A raw HTTP/1.0 request: (status, headers, body).
    pub fn http(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, String, String) {
        let addr = self.url.trim_start_matches("http://");
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
        if let Some(t) = token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        let body = body.unwrap_or("");
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
        s.write_all(req.as_bytes()).unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).unwrap();
        let (head, body) = buf.split_once("\r\n\r\n").unwrap_or((&buf, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, head.to_string(), body.to_string())
    }

    /// Everything the gateway stored: the SQLite file and its WAL as they are on disk, or
    /// every row of the PostgreSQL database ([`pg::dump`]); for tests that look for
    /// secrets that must not be there.
    pub fn db_bytes(&self) -> Vec<u8> {
        if let Some(url) = &self.database {
            return pg::dump(url);
        }
        let mut all = Vec::new();
        for f in ["gateway.db", "gateway.db-wal"] {
            all.extend(std::fs::read(self.dir.path().join("state").join(f)).unwrap_or_default());
        }
        all
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
    }
}

impl CliRun {
    /// The job id the CLI printed (`job <id> ...` on stderr).
    pub fn job_id(&self) -> String {
        self.stderr
            .lines()
            .find_map(|l| l.strip_prefix("job ")?.split_whitespace().next())
            .unwrap_or_else(|| panic!("no job id in {self:?}"))
            .to_string()
    }
}

#[derive(Debug)]
pub struct CliRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// A job running on a background thread, observable while it runs.
pub struct Running {
    pub events: Arc<Collect>,
    pub cancel: deploy::engine::CancelFlag,
    handle: std::thread::JoinHandle<JobResult>,
}

impl Running {
    pub fn host_finished(&self, host: &str) -> bool {
        self.events
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(&e.kind, EventKind::HostFinished { host: h, .. } if h == host))
    }
    /// Waits (at most 120 s) until `host` has finished its steps.
    pub fn wait_host_finished(&self, host: &str) {
        let t = std::time::Instant::now();
        while !self.host_finished(host) {
            assert!(t.elapsed().as_secs() < 120, "{host} never finished");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn join(self) -> Deployed {
        let result = self.handle.join().unwrap();
        let events = std::mem::take(&mut *self.events.0.lock().unwrap());
        Deployed { result, events }
    }
}

impl Testbed {
    pub fn deploy_in_background(&self, version: &str) -> Running {
        let inv = Inventory::load(&self.path("inventory.yml")).unwrap();
        let cfg = self.config();
        let spec = JobSpec {
            app: "hello".into(),
            env: "staging".into(),
            version: version.into(),
            check: false,
            no_install: false,
            restart: false,
            batch: None,
            index: None,
            wheel: None,
        };
        let plan = engine::plan(&inv, &cfg, &spec).unwrap();
        let events = Arc::new(Collect::default());
        let cancel = deploy::engine::CancelFlag::default();
        let (sink, flag) = (events.clone(), cancel.clone());
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(engine::run_cancellable(plan, Arc::new(cfg), sink, flag))
        });
        Running {
            events,
            cancel,
            handle,
        }
    }
}

/// Continuous HTTP load through nginx on every server until stopped: (sent, failed).
pub struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<(u64, u64, Vec<String>)>>,
}

impl Load {
    pub fn start(servers: &[Server]) -> Load {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = servers
            .iter()
            .flat_map(|s| [s.http_port, s.http_port])
            .map(|port| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let (mut sent, mut failed, mut samples) = (0u64, 0u64, Vec::new());
                    let deadline = std::time::Instant::now() + Duration::from_secs(300); // bounded in time
                    while !stop.load(std::sync::atomic::Ordering::Relaxed)
                        && std::time::Instant::now() < deadline
                    {
                        sent += 1;
                        let got = (|| -> std::io::Result<String> {
                            let mut s = TcpStream::connect(("127.0.0.1", port))?;
                            s.set_read_timeout(Some(Duration::from_secs(10)))?;
                            write!(s, "GET / HTTP/1.0\r\nHost: {HOST}\r\n\r\n")?;
                            let mut buf = String::new();
                            s.read_to_string(&mut buf)?;
                            Ok(buf.lines().next().unwrap_or("(nothing)").to_string())
                        })();
                        let ok = matches!(&got, Ok(l) if l.starts_with("HTTP/1.1 200") || l.starts_with("HTTP/1.0 200"));
                        if !ok {
                            failed += 1;
                            if samples.len() < 5 {
                                samples.push(format!("{port}: {got:?}"));
                            }
                        }
                        // One connection per request: paced, so that the ports of the
                        // docker proxy in TIME_WAIT never run out (that would be the
                        // test bed failing, not the deploy).
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    (sent, failed, samples)
                })
            })
            .collect();
        Load { stop, threads }
    }

    pub fn stop(self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut total = (0, 0, Vec::new());
        for t in self.threads {
            let (s, f, samples) = t.join().unwrap();
            total.0 += s;
            total.1 += f;
            total.2.extend(samples);
        }
        total
    }
}

// ---- a host that never answers, for jobs that must stay running without Docker ----

/// A loopback listener that never accepts: an SSH connection to it waits in the kernel's
/// backlog for a banner that never comes, until the client's connect timeout (10 s).
pub fn silent_listener() -> (std::net::TcpListener, u16) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

/// [`OFFLINE_INVENTORY`] with its host on `port` of the loopback.
pub fn inventory_on_port(port: u16) -> String {
    let text = OFFLINE_INVENTORY.replace("port: 1,", &format!("port: {port},"));
    assert_ne!(text, OFFLINE_INVENTORY);
    text
}

impl Gateway {
    /// Rewrites the gateway's inventory (it is read again for every request).
    pub fn set_inventory(&self, text: &str) {
        std::fs::write(self.dir.path().join("inventory.yml"), text).unwrap();
    }

    /// Starts a deploy of hello 1.0.0 to staging over the API; returns the job id.
    pub fn start_deploy(&self, token: &str) -> String {
        let body = r#"{"app":"hello","env":"staging","version":"1.0.0"}"#;
        let (status, _, body) = self.http("POST", "/v1/deployments", Some(token), Some(body));
        assert_eq!(status, 202, "{body}");
        let job: serde_json::Value = serde_json::from_str(&body).unwrap();
        job["id"].as_str().unwrap().to_string()
    }

    /// A job's stored events, as JSON values (`GET /v1/jobs/{id}/log`).
    pub fn job_events(&self, token: &str, job: &str) -> Vec<serde_json::Value> {
        let (status, _, body) = self.http("GET", &format!("/v1/jobs/{job}/log"), Some(token), None);
        assert_eq!(status, 200, "{body}");
        let v: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        v.into_iter().map(|e| e["event"].clone()).collect()
    }

    /// The state of a job, as the API reports it.
    pub fn job_state(&self, token: &str, id: &str) -> String {
        let (_, _, body) = self.http("GET", &format!("/v1/jobs/{id}"), Some(token), None);
        let job: serde_json::Value = serde_json::from_str(&body).unwrap();
        job["state"].as_str().unwrap_or_default().to_string()
    }
}

// ---- a gateway's state without a listener, for `oneshot` tests ----------------------

/// A gateway's state over files in `dir` (inventory, a fresh key, `gateway.toml`, the
/// SQLite file or a fresh PostgreSQL database as [`test_store`] says), accepting CLIs
/// from `oldest` on; failed sign-ins are not throttled (in-process requests have no
/// address: they would all share one bucket). On PostgreSQL the test process must have `DEPLOY_TEST_PG_PASSWORD`
/// in its environment (`ci/test.sh` exports it), as must any `deploy-gateway` the test
/// runs on this config (children inherit it).
pub fn gateway_state(
    dir: &Path,
    inventory: &str,
    oldest: &str,
    newest: &str,
) -> deploy::gateway::api::AppState {
    let path = |f: &str| dir.join(f);
    std::fs::write(path("inventory.yml"), inventory).unwrap();
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path("key"))
        .status()
        .unwrap();
    assert!(st.success());
    let (database, url) = database_config(None);
    if url.is_some() {
        assert!(
            std::env::var_os(pg::PASSWORD_ENV).is_some(),
            "DEPLOY_TEST_STORE=postgres: set {} in the tests' environment (ci/test.sh does)",
            pg::PASSWORD_ENV
        );
    }
    let config = format!(
        "{database}inventory = \"inventory.yml\"\nknown_hosts = \"known_hosts\"\n\
         ssh_key = \"key\"\nplaybooks = {:?}\ntemplates = {:?}\n\
         [cli]\noldest = \"{oldest}\"\nnewest = \"{newest}\"\nupgrade_command = \"cargo install deploy-cli --tag v{{version}}\"\n\
         [sign_in]\nburst = 1000000\n",
        root().join("playbooks"),
        root().join("templates"),
    );
    std::fs::write(path("gateway.toml"), config).unwrap();
    let cfg = deploy::gateway::config::GatewayConfig::load(&path("gateway.toml")).unwrap();
    deploy::gateway::state(cfg).unwrap()
}
