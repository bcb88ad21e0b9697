//! Test support for VM servers (`ci/testbed.sh up --vm`, issue 27): QEMU machines with
//! systemd as PID 1 — starting a bed of them, running scripts on them (as root: ssh as
//! `deploy`, then `sudo`), copying files to them (scp), hard resets over QMP, soft
//! reboots, waiting for their sshd; every ssh and scp with the same options ([`ssh_opts`]).
//!
//! QEMU and the VM image are required: a missing one fails the test (never a skip).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use deploy::engine::shell::quote;
use serde::Deserialize;

use super::{Server, Testbed, root};

/// A VM server's QEMU, as `ci/testbed.sh up --vm` describes it (testbed.json's servers,
/// and the registry's `$HOME/.cache/deploy/vm/run/deploy-tb-NAME-webI.json`).
#[derive(Deserialize, Debug, Clone)]
pub struct Vm {
    /// QEMU's monitor (QMP) socket.
    pub qmp: PathBuf,
    pub pid: u32,
    /// `kvm` or `tcg` (emulation: much slower).
    pub accel: String,
    /// The serial console's log.
    pub console: PathBuf,
    /// OpenSSH's known_hosts file with the VM's host key (made on the host, pinned).
    pub ssh_known_hosts: PathBuf,
    /// The deploy user's private key.
    pub key: PathBuf,
}

impl Vm {
    /// How long a boot may take until sshd lets the deploy user in (as `up` waits).
    pub fn boot_limit(&self) -> Duration {
        Duration::from_secs(if self.accel == "kvm" { 60 } else { 300 })
    }
}

/// The registry entry of a running VM (`deploy-tb-NAME-webI`).
#[derive(Deserialize, Debug)]
struct Entry {
    name: String,
    ssh_port: u16,
    http_port: u16,
    vm: Vm,
}

/// Where `ci/testbed.sh` registers VM processes.
pub fn run_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/deploy/vm/run")
}

/// QEMU and the built VM image (`ci/vm/build.sh`) are there, or the test fails.
pub fn require_qemu() {
    let ci = std::env::var("CI").unwrap_or_default();
    let ok = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .map(|o| o.status.success());
    assert!(
        matches!(ok, Ok(true)),
        "VM tests need qemu-system-x86_64 (CI={ci}): apt-get install qemu-system-x86 qemu-utils"
    );
    let out = Command::new(root().join("ci/vm/build.sh"))
        .arg("--print-path")
        .output()
        .unwrap();
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        out.status.success() && dir.join(".done").exists(),
        "the VM image {} is missing (CI={ci}): run ci/vm/build.sh",
        dir.display()
    );
}

impl Testbed {
    /// `n` VM servers and an index (`ci/testbed.sh up --vm`), named after `test`.
    pub fn up_vm(test: &str, n: usize) -> Testbed {
        Self::up_opts(test, n, &["--vm"], std::process::id())
    }

    /// VM servers and a PostgreSQL container they reach as [`Testbed::servers_db`].
    pub fn up_vm_with_db(test: &str, n: usize) -> Testbed {
        Self::up_opts(test, n, &["--vm", "--postgres"], std::process::id())
    }

    /// VM servers that reach nothing (QEMU's `restrict=on`): relay tests.
    pub fn up_vm_isolated(test: &str, n: usize) -> Testbed {
        Self::up_opts(test, n, &["--vm", "--isolated"], std::process::id())
    }

    /// VM servers whose owner (for `ci/testbed.sh gc`) is process `owner`, not this one.
    pub fn up_vm_owned_by(test: &str, n: usize, owner: u32) -> Testbed {
        Self::up_opts(test, n, &["--vm"], owner)
    }
}

fn vm_of(server: &Server) -> &Vm {
    server
        .vm
        .as_ref()
        .unwrap_or_else(|| panic!("{} is not a VM server", server.name))
}

/// The options every ssh and scp to a VM server takes: no config file, batch mode, the
/// VM's pinned host key (and no other), the bed's key, keep-alives (a dead VM is seen in
/// 15 s). `tests/it/package.rs`'s scp and port forward use them too.
pub fn ssh_opts<'c>(cmd: &'c mut Command, vm: &Vm) -> &'c mut Command {
    cmd.args([
        "-F",
        "/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=5",
    ])
    .args([
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "IdentitiesOnly=yes",
    ])
    .args([
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
    ])
    .args(["-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"])
    .arg("-o")
    .arg(format!(
        "UserKnownHostsFile={}",
        vm.ssh_known_hosts.display()
    ))
    .arg("-i")
    .arg(&vm.key)
}

/// `ssh deploy@127.0.0.1 -p PORT REMOTE` with [`ssh_opts`]; `remote` is one command line
/// for the deploy user's shell (quote what goes in it).
fn ssh_command(port: u16, vm: &Vm, remote: &str) -> Command {
    let mut cmd = Command::new("ssh");
    ssh_opts(&mut cmd, vm)
        .args(["-p", &port.to_string(), "deploy@127.0.0.1", remote])
        .stdin(std::process::Stdio::null());
    cmd
}

/// Copies `file` to `dest` on a VM server as the deploy user (scp with [`ssh_opts`] to
/// its forwarded ssh port); panics on failure.
pub fn scp(server: &Server, file: &Path, dest: &str) {
    let mut cmd = Command::new("scp");
    let out = ssh_opts(&mut cmd, vm_of(server))
        .args(["-P", &server.ssh_port.to_string()])
        .arg(file)
        .arg(format!("deploy@127.0.0.1:{dest}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "scp {}: {out:?}", file.display());
}

/// Runs `script` with `sh -c` as the deploy user on a VM server (no sudo): its output.
pub fn ssh_as_deploy(server: &Server, script: &str) -> Output {
    let remote = format!("sh -c {}", quote(script));
    ssh_command(server.ssh_port, vm_of(server), &remote)
        .output()
        .unwrap()
}

/// `sh -c SCRIPT` as root on VM `name` (`deploy-tb-NAME-webI`, found in the registry), the
/// way [`super::exec`] runs it in a container: ssh as deploy, `sudo -n` (the VMs' deploy
/// user has passwordless sudo, like the containers'). Returns stdout, panics on failure.
pub fn exec(name: &str, script: &str) -> String {
    let path = run_dir().join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("VM {name}: {}: {e}", path.display()));
    let entry: Entry = serde_json::from_str(&text).unwrap();
    let remote = format!("sudo -n sh -c {}", quote(script));
    let out = ssh_command(entry.ssh_port, &entry.vm, &remote)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "exec on VM {name} ({}, http {}) {script:?}: exit {:?}: {}",
        entry.name,
        entry.http_port,
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One QMP command on the VM's monitor socket: its `return` (panics on an error).
pub fn qmp(server: &Server, command: &str) -> serde_json::Value {
    let vm = vm_of(server);
    let sock =
        UnixStream::connect(&vm.qmp).unwrap_or_else(|e| panic!("QMP {}: {e}", vm.qmp.display()));
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut reader = BufReader::new(sock.try_clone().unwrap());
    let mut writer = sock;
    let mut next = || -> serde_json::Value {
        // The next reply, past asynchronous events (RESET, SHUTDOWN, ...).
        loop {
            let mut line = String::new();
            assert!(
                reader.read_line(&mut line).unwrap() > 0,
                "QMP {}: closed",
                vm.qmp.display()
            );
            let msg: serde_json::Value = serde_json::from_str(&line).unwrap();
            if msg.get("return").is_some() || msg.get("error").is_some() || msg.get("QMP").is_some()
            {
                return msg;
            }
        }
    };
    next(); // the greeting
    let mut msg = serde_json::Value::Null;
    for cmd in ["qmp_capabilities", command] {
        writeln!(writer, "{}", serde_json::json!({ "execute": cmd })).unwrap();
        msg = next();
        assert!(msg.get("error").is_none(), "QMP {cmd}: {msg}");
    }
    msg["return"].clone()
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`): another one after any reboot.
pub fn boot_id(server: &Server) -> String {
    exec_server(server, "cat /proc/sys/kernel/random/boot_id")
        .trim()
        .to_string()
}

fn exec_server(server: &Server, script: &str) -> String {
    super::exec(&server.container, script)
}

/// A hard reset (QMP `system_reset`: the reset button, nothing synced or shut down), then
/// [`wait_ssh`] until the new boot answers. Returns the time to ssh.
pub fn reboot_hard(server: &Server) -> Duration {
    let before = boot_id(server);
    qmp(server, "system_reset");
    let took = wait_ssh(server);
    assert_ne!(boot_id(server), before, "{} did not reboot", server.name);
    took
}

/// A clean reboot (`sudo systemctl reboot` over ssh), then [`wait_ssh`] until the new boot
/// answers. Returns the time to ssh.
pub fn reboot_soft(server: &Server) -> Duration {
    let before = boot_id(server);
    let vm = vm_of(server);
    // The connection may drop as sshd stops (exit 255): the new boot id is the proof.
    let _ = ssh_command(server.ssh_port, vm, "sudo -n systemctl reboot").output();
    let t = Instant::now();
    loop {
        let took = wait_ssh(server);
        let out = ssh_as_deploy(server, "cat /proc/sys/kernel/random/boot_id");
        if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() != before {
            return took;
        }
        // Still the old boot, shutting down.
        assert!(
            t.elapsed() < vm.boot_limit(),
            "{} did not reboot within {:?}",
            server.name,
            vm.boot_limit()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Waits until the VM's sshd lets the deploy user in (at most [`Vm::boot_limit`]); returns
/// how long that took. Fails with the end of the serial console if it never does, or if
/// QEMU is gone.
pub fn wait_ssh(server: &Server) -> Duration {
    let vm = vm_of(server);
    let t = Instant::now();
    loop {
        let out = ssh_command(server.ssh_port, vm, "true").output().unwrap();
        if out.status.success() {
            return t.elapsed();
        }
        let alive = alive(vm.pid);
        if !alive || t.elapsed() > vm.boot_limit() {
            let console = std::fs::read_to_string(&vm.console).unwrap_or_default();
            let tail: Vec<&str> = console.lines().rev().take(30).collect();
            panic!(
                "{}: no ssh after {:?} (QEMU pid {} {}; {}); console:\n{}",
                server.name,
                t.elapsed(),
                vm.pid,
                if alive { "running" } else { "gone" },
                String::from_utf8_lossy(&out.stderr).trim(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Process `pid` runs (a zombie, dead but not yet reaped, does not).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| Some(s.rsplit_once(") ")?.1.chars().next()? != 'Z'))
        .unwrap_or(false)
}
