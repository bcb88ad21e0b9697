//! The gateway as a Debian package on a bastion (issue 27): a VM with systemd as PID 1
//! (`Testbed::up_vm`) gets `deploy-gateway_<ver>_<arch>.deb` (`ci/package.sh`) over scp and
//! `dpkg -i`; the unit is enabled but waits for its config; with a config and inventory
//! that name a container server (the VM reaches the host's published ports as
//! 10.0.2.2), `systemctl start` runs it as its own user; a token made as that user lets
//! the packaged `deploy` CLI on the host (through an SSH forward to the gateway's
//! loopback port) deploy the sample app to the container server, which then serves it.
//! Then the maintainer scripts under systemd: a reinstall restarts the running gateway,
//! `dpkg -r` stops it and keeps its state, `dpkg -P` deletes the state.
//!
//! QEMU, the VM image and Docker are required: a missing one fails the test.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{self, Server, Testbed, exec, vm};

/// The two packages: `DEPLOY_TEST_DEB_DIR` (ci/test.sh builds them before the tests),
/// else `ci/package.sh` now, on the tests' build cache.
struct Debs {
    gateway: PathBuf,
    cli: PathBuf,
}

fn debs() -> Debs {
    let dir = match std::env::var_os("DEPLOY_TEST_DEB_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            // The test binaries' target directory: .../target/debug/deploy-gateway.
            let target = Path::new(support::gateway_bin())
                .parent()
                .and_then(Path::parent)
                .unwrap()
                .to_path_buf();
            let out = Command::new(support::root().join("ci/package.sh"))
                .env("CARGO_TARGET_DIR", &target)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "ci/package.sh: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let stdout = String::from_utf8_lossy(&out.stdout);
            PathBuf::from(stdout.lines().last().unwrap_or_default())
        }
    };
    let find = |prefix: &str| {
        std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|f| f.unwrap().path())
            .find(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                name.starts_with(prefix) && name.ends_with(".deb")
            })
            .unwrap_or_else(|| panic!("no {prefix}*.deb in {}", dir.display()))
    };
    Debs {
        gateway: find("deploy-gateway_"),
        cli: find("deploy_"),
    }
}

/// Writes `text` to `dest` on the VM with owner, group and mode (through /tmp and scp).
fn put(server: &Server, text: &str, dest: &str, owner: &str, mode: &str) {
    let local = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(local.path(), text).unwrap();
    let tmp = format!("/tmp/put-{}", dest.replace('/', "_"));
    vm::scp(server, local.path(), &tmp);
    let q = deploy::engine::shell::quote;
    exec(
        &server.container,
        &format!(
            "install -m {} -o {} -g {} {} {} && rm -f {}",
            q(mode),
            q(owner.split(':').next().unwrap()),
            q(owner.split(':').nth(1).unwrap()),
            q(&tmp),
            q(dest),
            q(&tmp)
        ),
    );
}

/// `ssh -N -L 127.0.0.1:PORT:127.0.0.1:8700` to the VM: the gateway's loopback port on the
/// host; killed when dropped.
struct Forward {
    child: Child,
    port: u16,
}

impl Forward {
    fn open(server: &Server) -> Forward {
        let port = support::git::free_port();
        let mut cmd = Command::new("ssh");
        let child = vm::ssh_opts(&mut cmd, server.vm.as_ref().unwrap())
            .args(["-N", "-o", "ExitOnForwardFailure=yes"])
            .arg("-L")
            .arg(format!("127.0.0.1:{port}:127.0.0.1:8700"))
            .args(["-p", &server.ssh_port.to_string(), "deploy@127.0.0.1"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let t = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "no forward on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Forward { child, port }
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bastion's gateway.toml: state in the package's directory, the container server's
/// index as the gateway reaches it (10.0.2.2) and as the servers do (`index:8080`).
fn gateway_toml(servers: &Testbed) -> String {
    format!(
        "listen = \"127.0.0.1:8700\"\n\
         database = \"/var/lib/deploy-gateway/gateway.db\"\n\
         inventory = \"/etc/deploy-gateway/inventory.yml\"\n\
         known_hosts = \"/var/lib/deploy-gateway/known_hosts\"\n\
         ssh_key = \"/var/lib/deploy-gateway/id_ed25519\"\n\
         playbooks = \"/usr/share/deploy-gateway/playbooks\"\n\
         templates = \"/usr/share/deploy-gateway/templates\"\n\
         [cli]\noldest = \"0.1.0\"\nnewest = \"0.1.0\"\nupgrade_command = \"x\"\n\
         [sources.pypi]\nkind = \"simple\"\nurl = \"http://10.0.2.2:{}/simple/\"\n\
         servers_url = \"http://index:8080/simple/\"\n\
         [applications.hello]\nsource = \"pypi\"\n",
        servers.index_port
    )
}

/// `systemctl is-active` of the unit, waiting up to 30 s for `want`.
fn wait_state(bastion: &Server, want: &str) -> String {
    let t = Instant::now();
    loop {
        let state = exec(
            &bastion.container,
            "systemctl is-active deploy-gateway || true",
        );
        if state.trim() == want || t.elapsed() > Duration::from_secs(30) {
            return state.trim().to_string();
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn main_pid(bastion: &Server) -> String {
    exec(
        &bastion.container,
        "systemctl show -p MainPID --value deploy-gateway",
    )
    .trim()
    .to_string()
}

#[test]
fn the_packaged_gateway_runs_under_systemd_as_its_own_user_and_deploys_through_the_packaged_cli() {
    let debs = debs();
    let bed = Testbed::up_vm("pkg-bastion", 1);
    let servers = Testbed::up("pkg-servers", 1);
    servers.use_pip(); // (no uv to carry into the bastion)
    let bastion = bed.server("web1").clone();
    let b = bastion.container.as_str();

    // Installed: enabled, not started (its config names an inventory that is not there).
    vm::scp(&bastion, &debs.gateway, "/tmp/deploy-gateway.deb");
    let out = exec(b, "dpkg -i /tmp/deploy-gateway.deb 2>&1");
    assert!(out.contains("not started yet"), "{out}");
    assert_eq!(
        exec(b, "systemctl is-enabled deploy-gateway").trim(),
        "enabled"
    );
    assert_eq!(wait_state(&bastion, "inactive"), "inactive");
    assert_eq!(
        exec(
            b,
            "stat -c '%U:%G %a' /etc/deploy-gateway/gateway.toml /var/lib/deploy-gateway /var/lib/deploy-gateway/id_ed25519"
        ),
        "root:deploy-gateway 640\ndeploy-gateway:deploy-gateway 700\ndeploy-gateway:deploy-gateway 600\n"
    );

    // The bastion's files: the container server's inventory, key and pin, as 10.0.2.2.
    let inventory = servers
        .inventory_text()
        .replace("address: 127.0.0.1", "address: 10.0.2.2");
    let pins = std::fs::read_to_string(servers.path("known_hosts"))
        .unwrap()
        .replace("[127.0.0.1]", "[10.0.2.2]");
    let key = std::fs::read_to_string(servers.path("id_ed25519")).unwrap();
    let gw = "deploy-gateway:deploy-gateway";
    put(
        &bastion,
        &gateway_toml(&servers),
        "/etc/deploy-gateway/gateway.toml",
        "root:deploy-gateway",
        "0640",
    );
    put(
        &bastion,
        &inventory,
        "/etc/deploy-gateway/inventory.yml",
        "root:deploy-gateway",
        "0640",
    );
    put(
        &bastion,
        &pins,
        "/var/lib/deploy-gateway/known_hosts",
        gw,
        "0644",
    );
    put(
        &bastion,
        &key,
        "/var/lib/deploy-gateway/id_ed25519",
        gw,
        "0600",
    );

    // check-config as the service user, from a directory with no gateway.toml: the
    // package's config by default.
    let out = exec(
        b,
        "cd / && runuser -u deploy-gateway -- deploy-gateway check-config 2>&1",
    );
    assert_eq!(
        out,
        "ok: /etc/deploy-gateway/gateway.toml: 1 application, 1 environment, 1 host\n"
    );

    // Started under systemd, as its own user, hardened.
    exec(b, "systemctl start deploy-gateway");
    assert_eq!(wait_state(&bastion, "active"), "active");
    assert_eq!(
        exec(
            b,
            "systemctl show -p User -p NoNewPrivileges -p ProtectSystem -p ProtectHome -p PrivateTmp deploy-gateway | sort"
        ),
        "NoNewPrivileges=yes\nPrivateTmp=yes\nProtectHome=yes\nProtectSystem=strict\nUser=deploy-gateway\n"
    );
    let pid = main_pid(&bastion);
    assert_eq!(
        exec(b, &format!("ps -o user= -p {pid}")).trim(),
        "deploy-gateway"
    );
    let t = Instant::now();
    while exec(
        b,
        "curl -fsS http://127.0.0.1:8700/v1/health >/dev/null && echo up || true",
    )
    .trim()
        != "up"
    {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the gateway does not answer"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let token = exec(
        b,
        "cd / && sudo -u deploy-gateway deploy-gateway token create --user ci --env staging",
    );
    let token = token.trim();
    assert!(!token.is_empty());

    // The packaged CLI, on the host, through the gateway's port.
    let cli = tempfile::tempdir().unwrap();
    let st = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&debs.cli)
        .arg(cli.path())
        .status()
        .unwrap();
    assert!(st.success());
    for f in [
        "usr/share/man/man1/deploy.1.gz",
        "usr/share/man/man1/deploy-release.1.gz",
        "usr/share/bash-completion/completions/deploy",
    ] {
        assert!(cli.path().join(f).is_file(), "the CLI package has {f}");
    }
    let forward = Forward::open(&bastion);
    let out = Command::new(cli.path().join("usr/bin/deploy"))
        .args(["release", "hello", "1.0.0", "-e", "staging"])
        .env(
            "DEPLOY_GATEWAY",
            format!("http://127.0.0.1:{}", forward.port),
        )
        .env("DEPLOY_TOKEN", token)
        .env("XDG_CONFIG_HOME", cli.path().join("config"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "deploy release: {}\n{}\njournal:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        exec(b, "journalctl -u deploy-gateway --no-pager | tail -40")
    );
    assert_eq!(support::served_version(servers.server("web1")), "1.0.0");

    // Everything the gateway wrote is its own.
    assert_eq!(
        exec(
            b,
            "find /var/lib/deploy-gateway \\( ! -user deploy-gateway -o ! -group deploy-gateway \\) -print"
        ),
        ""
    );
    assert!(
        exec(b, "ls /var/lib/deploy-gateway").contains("gateway.db"),
        "the database is in the state directory"
    );

    // A reinstall restarts the running gateway on the (same) new binary; remove stops
    // it and keeps its state; purge deletes the state.
    exec(b, "dpkg -i /tmp/deploy-gateway.deb");
    assert_eq!(wait_state(&bastion, "active"), "active");
    assert_ne!(main_pid(&bastion), pid, "restarted");
    exec(b, "dpkg -r deploy-gateway");
    assert_eq!(wait_state(&bastion, "inactive"), "inactive");
    assert!(exec(b, "ls /var/lib/deploy-gateway").contains("gateway.db"));
    exec(b, "dpkg -P deploy-gateway");
    assert_eq!(
        exec(b, "test -e /var/lib/deploy-gateway && echo left || true"),
        ""
    );
}
