//! VM test servers (issue 27): a QEMU machine that `ci/testbed.sh up --vm` boots is a real
//! server (systemd as PID 1, nginx under it, ssh and sudo for the deploy user, back after a
//! hard reset, the index container within reach), and `ci/testbed.sh gc` removes it once
//! its owner is gone.

use std::process::Command;
use std::time::Instant;

use crate::support::{self, Testbed, exec, vm};

/// A process standing in for a test bed's owner; killed (and reaped) when dropped.
struct Owner(std::process::Child);

impl Drop for Owner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_vm_server_boots_systemd_as_pid_1_lets_deploy_in_with_sudo_reaches_the_index_survives_a_hard_reset_and_is_collected_when_its_owner_dies()
 {
    // Owned by a child process, so that the bed can outlive its owner within this test.
    let mut owner = Owner(Command::new("sleep").arg("3600").spawn().unwrap());
    let t = Instant::now();
    let tb = Testbed::up_vm_owned_by("vm-server", 1, owner.0.id());
    let web1 = tb.server("web1").clone();
    let qemu = web1.vm.clone().expect("a VM server");
    eprintln!(
        "vm: testbed up in {:?} ({}, QEMU pid {})",
        t.elapsed(),
        qemu.accel,
        qemu.pid
    );
    assert!(web1.container.starts_with("vm:deploy-tb-vm-server-"));

    // systemd is PID 1, and nginx runs under it.
    assert_eq!(exec(&web1.container, "ps -p 1 -o comm=").trim(), "systemd");
    assert_eq!(
        exec(&web1.container, "systemctl is-active nginx ssh").trim(),
        "active\nactive"
    );
    assert_eq!(
        exec(&web1.container, "ps -o ppid= -p \"$(cat /run/nginx.pid)\"").trim(),
        "1",
        "nginx's master is systemd's child"
    );

    // The deploy user logs in with the bed's key (ssh pins the host key made by the bed)
    // and has sudo.
    let out = vm::ssh_as_deploy(&web1, "id -un; sudo -n id -u");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "deploy\n0\n");

    // The guest reaches the index container through the inventory's index_url.
    assert!(tb.servers_index_url.starts_with("http://10.0.2.2:"));
    assert!(
        tb.inventory_text()
            .contains(&format!("index_url: {}", tb.servers_index_url)),
        "{}",
        tb.inventory_text()
    );
    let out = vm::ssh_as_deploy(
        &web1,
        &format!(
            "curl -fsS --max-time 20 {}",
            deploy::engine::shell::quote(&tb.servers_index_url)
        ),
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("hello-app"),
        "{out:?}"
    );

    // A hard reset (QMP system_reset): a new boot, ssh answers again, systemd and nginx up.
    let took = vm::reboot_hard(&web1);
    eprintln!(
        "vm: ssh answered {took:?} after a hard reset ({})",
        qemu.accel
    );
    assert_eq!(exec(&web1.container, "ps -p 1 -o comm=").trim(), "systemd");
    assert_eq!(
        exec(&web1.container, "systemctl is-active nginx").trim(),
        "active"
    );

    // The owner dies: `gc` (which every `up` runs first) kills the VM and unregisters it.
    let _ = owner.0.kill();
    let _ = owner.0.wait();
    let out = Command::new(support::root().join("ci/testbed.sh"))
        .arg("gc")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let entry = web1.container.trim_start_matches("vm:");
    assert!(
        !vm::alive(qemu.pid),
        "QEMU {} still runs after gc",
        qemu.pid
    );
    for ext in ["owner", "pid", "json"] {
        let f = vm::run_dir().join(format!("{entry}.{ext}"));
        assert!(!f.exists(), "{} is left after gc", f.display());
    }
}
