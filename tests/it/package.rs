//! A VM bastion (issue 27), booted once for the suite: a QEMU machine that
//! `ci/testbed.sh up --vm` boots is a real server, and the gateway's Debian package runs
//! on it as a real server's service does, across a power cut.
//!
//! - The VM: systemd is PID 1 and nginx runs under it; the deploy user logs in with the
//!   bed's key (its host key pinned) and has sudo; it reaches the index container through
//!   the inventory's `index_url` (the host's published ports are 10.0.2.2 to it).
//! - The package: `deploy-gateway_<ver>_<arch>.deb` (`ci/package.sh`) goes in over scp and
//!   `dpkg -i`; the unit is enabled but waits for its config; with a config and inventory
//!   that name a container server, `systemctl start` runs it as its own user, hardened; a
//!   token made as that user lets the packaged `deploy` CLI on the host (through an SSH
//!   forward to the gateway's loopback port) deploy the sample app to the container
//!   server, which then serves it.
//! - A hard reset (QMP `system_reset`, after a `sync`): a new boot, ssh answers, systemd
//!   and nginx are up, and so is the gateway's unit, unasked (it is enabled), with its
//!   state: the same token reads, through the packaged CLI, the release it deployed, and
//!   the gateway reaches the container server again (`status --live`).
//! - The maintainer scripts under systemd, on the rebooted machine: a reinstall restarts
//!   the running gateway, `dpkg -r` stops it and keeps its state, `dpkg -P` deletes the
//!   state.
//! - `ci/testbed.sh gc` collects the VM once its owner (a child process standing in for
//!   a test bed's owner) is gone: QEMU killed, its registry entry removed.
//!
//! One test, because under TCG emulation (no usable KVM here) a VM boot takes a core for
//! one to two minutes and a hard reset as long again: the VM checks and the package's
//! share one boot and one reset.
//!
//! QEMU, the VM image and Docker are required: a missing one fails the test.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
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

/// `systemctl is-active` of the unit, waiting up to `within` for `want`.
fn wait_state(bastion: &Server, want: &str, within: Duration) -> String {
    let t = Instant::now();
    loop {
        let state = exec(
            &bastion.container,
            "systemctl is-active deploy-gateway || true",
        );
        if state.trim() == want || t.elapsed() > within {
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

/// Waits (30 s at most) until the gateway answers `/v1/health` on its loopback port.
fn wait_health(bastion: &Server) {
    let t = Instant::now();
    while exec(
        &bastion.container,
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
}

/// The packaged CLI (`usr/bin/deploy` under `cli`, the extracted package) with `args`,
/// to the gateway through `forward`.
fn packaged_cli(cli: &Path, forward: &Forward, token: &str, args: &[&str]) -> Output {
    Command::new(cli.join("usr/bin/deploy"))
        .args(args)
        .env(
            "DEPLOY_GATEWAY",
            format!("http://127.0.0.1:{}", forward.port),
        )
        .env("DEPLOY_TOKEN", token)
        .env("XDG_CONFIG_HOME", cli.join("config"))
        .output()
        .unwrap()
}

/// A process standing in for a test bed's owner (`ci/testbed.sh gc` removes a bed whose
/// owner is gone); killed (and reaped) when dropped.
struct Owner(Child);

impl Drop for Owner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_vm_bastion_is_a_real_server_runs_the_packaged_gateway_as_its_own_user_deploys_through_the_packaged_cli_brings_it_back_after_a_hard_reset_and_is_collected_when_its_owner_dies()
 {
    let debs = debs();
    // The bastion is owned by a child process, so that it can outlive its owner within
    // this test (the end: gc). The container server the bastion deploys to starts while
    // the VM boots.
    let mut owner = Owner(Command::new("sleep").arg("3600").spawn().unwrap());
    let t = Instant::now();
    let (bed, servers) = std::thread::scope(|s| {
        let servers = s.spawn(|| {
            let servers = Testbed::up("pkg-servers", 1);
            servers.use_pip(); // (no uv to carry into the bastion)
            servers
        });
        let bed = Testbed::up_vm_owned_by("pkg-bastion", 1, owner.0.id());
        (bed, servers.join().expect("the container server's bed"))
    });
    let bastion = bed.server("web1").clone();
    let b = bastion.container.as_str();
    let qemu = bastion.vm.clone().expect("a VM server");
    eprintln!(
        "package: VM and container beds up in {:?} ({}, QEMU pid {})",
        t.elapsed(),
        qemu.accel,
        qemu.pid
    );
    assert!(b.starts_with("vm:deploy-tb-pkg-bastion-"), "{b}");

    // The VM is a real server: systemd is PID 1, and nginx runs under it.
    assert_eq!(exec(b, "ps -p 1 -o comm=").trim(), "systemd");
    assert_eq!(
        exec(b, "systemctl is-active nginx ssh").trim(),
        "active\nactive"
    );
    assert_eq!(
        exec(b, "ps -o ppid= -p \"$(cat /run/nginx.pid)\"").trim(),
        "1",
        "nginx's master is systemd's child"
    );

    // The deploy user logs in with the bed's key (ssh pins the host key made by the bed)
    // and has sudo.
    let out = vm::ssh_as_deploy(&bastion, "id -un; sudo -n id -u");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "deploy\n0\n");

    // The guest reaches its bed's index container through the inventory's index_url.
    assert!(bed.servers_index_url.starts_with("http://10.0.2.2:"));
    assert!(
        bed.inventory_text()
            .contains(&format!("index_url: {}", bed.servers_index_url)),
        "{}",
        bed.inventory_text()
    );
    let out = vm::ssh_as_deploy(
        &bastion,
        &format!(
            "curl -fsS --max-time 20 {}",
            deploy::engine::shell::quote(&bed.servers_index_url)
        ),
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("hello-app"),
        "{out:?}"
    );

    // The package installed: enabled, not started (its config names an inventory that is
    // not there). (In /var/tmp: /tmp may not outlive the reset below.)
    vm::scp(&bastion, &debs.gateway, "/var/tmp/deploy-gateway.deb");
    let out = exec(b, "dpkg -i /var/tmp/deploy-gateway.deb 2>&1");
    assert!(out.contains("not started yet"), "{out}");
    assert_eq!(
        exec(b, "systemctl is-enabled deploy-gateway").trim(),
        "enabled"
    );
    assert_eq!(
        wait_state(&bastion, "inactive", Duration::from_secs(30)),
        "inactive"
    );
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
    assert_eq!(
        wait_state(&bastion, "active", Duration::from_secs(30)),
        "active"
    );
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
    wait_health(&bastion);
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
    let out = packaged_cli(
        cli.path(),
        &forward,
        token,
        &["release", "hello", "1.0.0", "-e", "staging"],
    );
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

    // A hard reset (QMP system_reset: nothing stopped or unmounted): a new boot, ssh
    // answers again, systemd and nginx are up. `sync` first: what is checked after is that
    // the machine and the unit come back with the state written before, not how much of
    // its last seconds' writes a power cut keeps (the gateway's SQLite runs
    // synchronous=NORMAL).
    drop(forward); // (its connection dies with the boot)
    exec(b, "sync");
    let took = vm::reboot_hard(&bastion);
    eprintln!(
        "package: ssh answered {took:?} after a hard reset ({}); {:?} since the start",
        qemu.accel,
        t.elapsed()
    );
    assert_eq!(exec(b, "ps -p 1 -o comm=").trim(), "systemd");
    assert_eq!(exec(b, "systemctl is-active nginx").trim(), "active");

    // The gateway is back, unasked (its unit is enabled), as its own user, with its state:
    // the token made before reads the release it deployed, and the gateway reaches the
    // server again (`--live`: the host says 1.0.0 too; a flag would exit non-zero).
    assert_eq!(
        wait_state(&bastion, "active", Duration::from_secs(120)),
        "active",
        "journal:\n{}",
        exec(b, "journalctl -b -u deploy-gateway --no-pager | tail -40")
    );
    let pid = main_pid(&bastion);
    assert_eq!(
        exec(b, &format!("ps -o user= -p {pid}")).trim(),
        "deploy-gateway"
    );
    wait_health(&bastion);
    let forward = Forward::open(&bastion);
    let out = packaged_cli(
        cli.path(),
        &forward,
        token,
        &["--json", "status", "hello", "-e", "staging", "--live"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "deploy status --live after the reset: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let row = rows
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["host"] == "web1"))
        .unwrap_or_else(|| panic!("no web1 row: {stdout}"));
    assert_eq!(
        (
            row["env"].as_str(),
            row["version"].as_str(),
            row["observed"]["version"].as_str(),
            row["observed"]["unreachable"].as_str(),
        ),
        (Some("staging"), Some("1.0.0"), Some("1.0.0"), None),
        "recorded and live: {stdout}"
    );
    drop(forward);

    // The maintainer scripts, on the rebooted machine: a reinstall restarts the running
    // gateway on the (same) new binary; remove stops it and keeps its state; purge
    // deletes the state.
    exec(b, "dpkg -i /var/tmp/deploy-gateway.deb");
    assert_eq!(
        wait_state(&bastion, "active", Duration::from_secs(30)),
        "active"
    );
    assert_ne!(main_pid(&bastion), pid, "restarted");
    exec(b, "dpkg -r deploy-gateway");
    assert_eq!(
        wait_state(&bastion, "inactive", Duration::from_secs(30)),
        "inactive"
    );
    assert!(exec(b, "ls /var/lib/deploy-gateway").contains("gateway.db"));
    exec(b, "dpkg -P deploy-gateway");
    assert_eq!(
        exec(b, "test -e /var/lib/deploy-gateway && echo left || true"),
        ""
    );

    // The owner dies: `gc` (which every `up` runs first) kills the VM and unregisters it.
    let _ = owner.0.kill();
    let _ = owner.0.wait();
    let out = Command::new(support::root().join("ci/testbed.sh"))
        .arg("gc")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        !vm::alive(qemu.pid),
        "QEMU {} still runs after gc",
        qemu.pid
    );
    let entry = b.trim_start_matches("vm:");
    for ext in ["owner", "pid", "json"] {
        let f = vm::run_dir().join(format!("{entry}.{ext}"));
        assert!(!f.exists(), "{} is left after gc", f.display());
    }
    eprintln!("package: done in {:?}", t.elapsed());
}
