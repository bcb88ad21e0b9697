//! Test support for the gateway's PostgreSQL store: the private test server
//! (`ci/testbed.sh postgres`: 127.0.0.1:55432, role `deploy`), a fresh database per
//! gateway, and looks into a database (`sql`, `dump`) through `psql`.
//!
//! The server is started on demand, once per test process; a server that cannot be
//! started fails the test (also under `CI=true`: never a skip).

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The environment variable that carries the test role's password, to the tests and to
/// every gateway they start (`database_password_env` in gateway.toml).
pub const PASSWORD_ENV: &str = "DEPLOY_TEST_PG_PASSWORD";

/// The fixed password of the test role (`ci/testbed.sh postgres`); not a secret.
const DEFAULT_PASSWORD: &str = "deploy-test-pw";
const DEFAULT_URL: &str = "postgres://deploy@127.0.0.1:55432";

/// The server's URL without a database (`DEPLOY_TEST_PG_URL`, else the private server's).
pub fn base_url() -> String {
    std::env::var("DEPLOY_TEST_PG_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .map(|u| u.trim_end_matches('/').to_string())
        .unwrap_or_else(|| DEFAULT_URL.to_string())
}

/// The test role's password (`DEPLOY_TEST_PG_PASSWORD`, else the fixed test password).
pub fn password() -> String {
    std::env::var(PASSWORD_ENV)
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| DEFAULT_PASSWORD.to_string())
}

/// A PostgreSQL client program: Debian's version 15 when installed, else from `PATH`.
fn tool(name: &str) -> PathBuf {
    let v15 = PathBuf::from("/usr/lib/postgresql/15/bin").join(name);
    if v15.exists() {
        v15
    } else {
        PathBuf::from(name)
    }
}

/// A client command logged in as the test role (the password in its environment only).
fn client(name: &str) -> Command {
    let mut cmd = Command::new(tool(name));
    cmd.env("PGPASSWORD", password())
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGSERVICE")
        .env_remove("PGOPTIONS");
    cmd
}

fn run(mut cmd: Command, what: &str) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {:?}: {e}", cmd.get_program()));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Makes sure the server answers (once per process). With the default URL this runs
/// `ci/testbed.sh postgres`, which starts the private server if it is not running; with
/// `DEPLOY_TEST_PG_URL` set elsewhere it only checks that the role can log in.
pub fn ensure_server() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        if base_url() == DEFAULT_URL {
            let script = super::root().join("ci/testbed.sh");
            let out = Command::new(&script)
                .arg("postgres")
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
            if !out.status.success() {
                return Err(format!(
                    "`ci/testbed.sh postgres` failed ({}):\n{}{}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        let out = client("psql")
            .args(["-X", "-At", "-c", "select 1", "-d"])
            .arg(format!("{}/postgres", base_url()))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run psql: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cannot log in to {}/postgres: {}",
                base_url(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    });
    if let Err(e) = ready {
        panic!(
            "these tests need the test PostgreSQL server (CI={}): {e}\n\
             (`ci/testbed.sh postgres` starts it; it needs Debian's postgresql package, \
             PostgreSQL 15)",
            std::env::var("CI").unwrap_or_default()
        );
    }
}

/// A fresh, empty database `deploy_t_<tag>_<random>` owned by the test role; returns
/// its URL (no password in it). Left behind for `ci/testbed.sh gc`, which drops the
/// idle ones after an hour.
pub fn new_database(tag: &str) -> String {
    ensure_server();
    let mut tag: String = tag
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    tag.truncate(40);
    let hex = deploy::random::hex(5);
    let name = format!("deploy_t_{tag}_{hex}");
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut cmd = client("psql");
    cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(format!("{}/postgres", base_url()))
        // template0: never in use by anyone, so concurrent creations do not collide.
        .arg("-c")
        .arg(format!(
            "CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C.UTF-8'"
        ))
        // The age `ci/testbed.sh gc` goes by.
        .arg("-c")
        .arg(format!(
            "COMMENT ON DATABASE \"{name}\" IS 'deploy-test created {created}'"
        ));
    run(cmd, &format!("creating the test database {name}"));
    format!("{}/{name}", base_url())
}

/// `psql -At`: the rows of `query`, `|`-separated, one a line (trailing newline trimmed).
pub fn sql(url: &str, query: &str) -> String {
    let mut cmd = client("psql");
    cmd.args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", query]);
    let out = run(cmd, &format!("{query} on {url}"));
    String::from_utf8_lossy(&out.stdout)
        .trim_end_matches('\n')
        .to_string()
}

/// Every row of every table in the database's own schemas, as CSV (values as they are,
/// `bytea` as printable text with `\ooo` escapes), table by table: what a test greps
/// for a secret that must not have been stored.
pub fn dump(url: &str) -> Vec<u8> {
    // One COPY per table, each column as text; made by the server and run with \gexec.
    let script = r#"
SELECT format('COPY (SELECT %s FROM %I.%I) TO STDOUT WITH (FORMAT csv)',
              string_agg(CASE WHEN a.atttypid = 'bytea'::regtype
                              THEN format('encode(%I, ''escape'')', a.attname)
                              ELSE format('%I', a.attname) END, ', ' ORDER BY a.attnum),
              n.nspname, c.relname)
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE c.relkind IN ('r', 'p')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg\_toast%'
 GROUP BY n.nspname, c.relname
 ORDER BY n.nspname, c.relname
\gexec
"#;
    let mut cmd = client("psql");
    cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url]);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run psql: {e}"));
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), script.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "dumping {url} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The database's size in bytes (`pg_database_size`).
pub fn size(url: &str) -> u64 {
    sql(url, "SELECT pg_database_size(current_database())")
        .parse()
        .unwrap()
}

/// A PostgreSQL server of one test's own (Debian's version 15, as `ci/testbed.sh`'s):
/// its data in a temporary directory, its own port on the loopback, the role `deploy`
/// (the superuser) logging in without a password.  For a test that stops, starts or
/// stalls its server, which the shared one (other tests' databases) must never be.
/// Dropping it stops the server at once.
pub struct PrivateServer {
    dir: tempfile::TempDir,
    pub port: u16,
}

impl PrivateServer {
    /// A fresh cluster, started (`initdb` and `pg_ctl start`: a few seconds).
    pub fn start() -> PrivateServer {
        let dir = tempfile::tempdir().unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let server = PrivateServer { dir, port };
        let data = server.data();
        let mut initdb = as_server_user(&tool("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "deploy",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ])
            .arg("--no-sync");
        run(initdb, "initdb of a private PostgreSQL server");
        std::fs::create_dir_all(server.dir.path().join("run")).unwrap();
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             max_connections = 60\nshared_buffers = 16MB\nfsync = off\n\
             synchronous_commit = off\nfull_page_writes = off\nlog_min_messages = warning\n",
            server.dir.path().join("run").display()
        );
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(&mut file, conf.as_bytes()).unwrap();
        std::fs::write(
            data.join("pg_hba.conf"),
            "host all all 127.0.0.1/32 trust\nlocal all all trust\n",
        )
        .unwrap();
        server.start_again();
        server
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pg_ctl(&self, args: &[&str], what: &str) {
        let mut cmd = as_server_user(&tool("pg_ctl"));
        cmd.arg("-D").arg(self.data()).args(args);
        run(cmd, what);
    }

    /// Starts the (stopped) server and waits until it accepts connections.
    pub fn start_again(&self) {
        let log = self.dir.path().join("server.log");
        let log = log.to_string_lossy();
        self.pg_ctl(
            &["-w", "-t", "60", "-l", &log, "start"],
            "starting PostgreSQL",
        );
    }

    /// A fast shutdown (`pg_ctl stop -m fast`): every session is ended, then the server
    /// stops; waits until it has.
    pub fn stop(&self) {
        self.pg_ctl(
            &["-w", "-t", "60", "-m", "fast", "stop"],
            "stopping PostgreSQL",
        );
    }

    /// The server's URL without a database.
    pub fn base_url(&self) -> String {
        format!("postgres://deploy@127.0.0.1:{}", self.port)
    }

    /// A new empty database on it; its URL.
    pub fn new_database(&self, name: &str) -> String {
        let mut cmd = client("psql");
        cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(format!("{}/postgres", self.base_url()))
            .arg("-c")
            .arg(format!("CREATE DATABASE \"{name}\""));
        run(cmd, &format!("creating {name} on a private server"));
        format!("{}/{name}", self.base_url())
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        if self.data().join("postmaster.pid").exists() {
            let mut cmd = as_server_user(&tool("pg_ctl"));
            cmd.arg("-D")
                .arg(self.data())
                .args(["-w", "-m", "immediate", "stop"]);
            let _ = cmd.stdin(Stdio::null()).output();
        }
    }
}

/// A server program run as a user that is not root (the server refuses root): as root,
/// in a user namespace that maps root to the `postgres` user (as `ci/testbed.sh` does).
fn as_server_user(program: &std::path::Path) -> Command {
    let id = |flag: &str| {
        let out = Command::new("id").args([flag, "postgres"]).output();
        let text = out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        text.ok()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "70".into())
    };
    let me = Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&me.stdout).trim() != "0" {
        return Command::new(program);
    }
    let mut cmd = Command::new("unshare");
    cmd.arg("--user")
        .arg(format!("--map-user={}", id("-u")))
        .arg(format!("--map-group={}", id("-g")))
        .arg("--")
        .arg(program);
    cmd
}
