//! Tests of systemd's side of the seam: unit names and paths, `ExecStart=` quoting (read
//! back by systemd's own splitting rules), the commands, and `systemctl show` read into
//! [`ProgramStatus`].

use super::*;
use crate::procman::status_of;

/// `ExecStart=`'s value split as systemd does (`extract_first_word` with quotes and C
/// escapes, then `%%` -> `%` and `$$` -> `$`), for the escapes [`Systemd::command_line`]
/// writes.
fn systemd_split(value: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ' ') {
            chars.next();
        }
        if chars.peek().is_none() {
            return words;
        }
        let mut w = String::new();
        let mut quoted = false;
        while let Some(c) = chars.next() {
            match c {
                '"' => quoted = !quoted,
                ' ' if !quoted => break,
                '\\' => match chars.next() {
                    Some('n') => w.push('\n'),
                    Some('t') => w.push('\t'),
                    Some('x') => {
                        let hex: String = chars.by_ref().take(2).collect();
                        w.push(u8::from_str_radix(&hex, 16).unwrap() as char);
                    }
                    Some(c) => w.push(c),
                    None => {}
                },
                '%' => {
                    assert_eq!(chars.next(), Some('%'), "a lone % is a specifier");
                    w.push('%');
                }
                '$' => {
                    assert_eq!(chars.next(), Some('$'), "a lone $ is a variable");
                    w.push('$');
                }
                c => w.push(c),
            }
        }
        words.push(w);
    }
}

#[test]
fn the_command_line_survives_systemds_quoting_specifiers_and_variables() {
    for script in [
        "cd /srv && exec gunicorn app:app",
        "cd /srv && export A='x y' && exec run --max '100 %' \"$HOME\" ${PATH} $$ \\n",
        "printf '%s\\n' \"tab\there\" && echo 'line\nbreak' \u{1}",
    ] {
        let value = Systemd.command_line(script);
        assert!(value.starts_with("/bin/sh -c \""), "{value}");
        assert!(!value.contains('\n'), "one line: {value}");
        assert_eq!(systemd_split(&value), ["/bin/sh", "-c", script], "{value}");
    }
}

#[test]
fn names_units_and_files_per_slot_and_process() {
    let s = Systemd;
    assert_eq!(s.program("hello", "blue"), "deploy-hello-blue");
    assert_eq!(
        s.conf_path("hello", "green"),
        "/etc/systemd/system/deploy-hello-green.service"
    );
    assert_eq!(
        s.conf_path("hello", "worker"),
        "/etc/systemd/system/deploy-hello-worker@.service"
    );
    assert_eq!(
        s.stop("deploy-hello-blue").line,
        "sudo -n systemctl stop deploy-hello-blue.service 2>/dev/null || true"
    );
    let start = s.start_fresh("deploy-hello-blue", 3).line;
    assert!(
        start.starts_with(
            "sudo -n systemctl daemon-reload && sudo -n systemctl restart deploy-hello-blue.service && sh -c "
        ),
        "{start}"
    );
    assert!(
        start.ends_with(" sh 3 deploy-hello-blue.service"),
        "{start}"
    );
    assert_eq!(
        s.restart_all("deploy-hello-worker", 2).line,
        "sudo -n systemctl restart deploy-hello-worker@0.service deploy-hello-worker@1.service"
    );
    let apply = s.apply("deploy-hello-worker", 2, true).line;
    assert!(apply.contains("[ \"$i\" -ge 2 ] || continue"), "{apply}");
    assert!(
        apply.ends_with("sudo -n systemctl enable --no-reload --quiet deploy-hello-worker@0.service deploy-hello-worker@1.service && sudo -n systemctl restart deploy-hello-worker@0.service deploy-hello-worker@1.service"),
        "{apply}"
    );
    assert!(
        s.apply("deploy-hello-worker", 1, false)
            .line
            .ends_with("sudo -n systemctl start deploy-hello-worker@0.service")
    );
    let boot = s.at_boot("deploy-hello-blue", true).line;
    assert_eq!(
        boot,
        "case \"$(systemctl is-enabled deploy-hello-blue.service 2>/dev/null)\" in disabled) sudo -n systemctl enable --no-reload --quiet deploy-hello-blue.service;; esac"
    );
    let file = s.write_file(
        "/etc/systemd/system/deploy-hello-blue.service",
        b"x".to_vec(),
    );
    assert_eq!(
        file.line,
        "sudo -n tee /etc/systemd/system/deploy-hello-blue.service >/dev/null"
    );
    assert_eq!(file.stdin.as_deref(), Some(&b"x"[..]));
}

#[test]
fn logs_come_from_the_journal_and_copies_by_their_identifier() {
    let web = Systemd.read_log("/srv/apps/hello/logs", "deploy-hello-blue", None, 50, false);
    assert_eq!(
        web.cmd.line,
        "sudo -n journalctl --no-pager -o short-iso -n 50 -u deploy-hello-blue.service"
    );
    assert_eq!(web.copies, CopyMarks::None);
    let w = Systemd.read_log(
        "/srv/apps/hello/logs",
        "deploy-hello-worker",
        Some(2),
        5,
        true,
    );
    assert_eq!(
        w.cmd.line,
        "sudo -n journalctl --no-pager -o short-iso -n 5 -f -u deploy-hello-worker@0.service -u deploy-hello-worker@1.service"
    );
    let mut d = crate::app_logs::Demux::of(&w.copies);
    assert_eq!(
        d.feed("2026-01-02T03:04:05+0000 web1 deploy-hello-worker-1[42]: job done"),
        [(
            Some(1),
            "2026-01-02T03:04:05+0000 web1 deploy-hello-worker-1[42]: job done".to_string()
        )]
    );
    assert_eq!(d.feed("-- Boot 1234 --")[0].0, None);
}

#[test]
fn reads_systemctl_show_blocks_of_every_state() {
    let block = |id: &str, a: &str, s: &str, pid: u32| {
        format!("MainPID={pid}\nId={id}\nActiveState={a}\nSubState={s}\n")
    };
    let out = [
        block("deploy-hello-blue.service", "active", "running", 42),
        block("deploy-hello-green.service", "inactive", "dead", 0),
        block("deploy-hello-worker@0.service", "active", "running", 43),
        block(
            "deploy-hello-worker@1.service",
            "activating",
            "auto-restart",
            0,
        ),
        block("deploy-hello-beat@0.service", "failed", "failed", 0),
        block(
            "deploy-hello-once.service",
            "deactivating",
            "stop-sigterm",
            7,
        ),
        block("deploy-hello-boot.service", "activating", "start", 8),
        block("nginx.service", "active", "running", 9),
    ]
    .join("\n");
    use ProgramState::*;
    let st = |p: &str, c: Option<&str>, state, pid| ProgramStatus {
        program: p.into(),
        copy: c.map(str::to_string),
        state,
        pid,
    };
    let all = Systemd.parse_status(&out);
    assert_eq!(
        all,
        [
            st(
                "deploy-hello-beat",
                Some("deploy-hello-beat@0"),
                Fatal,
                None
            ),
            st("deploy-hello-blue", None, Running, Some(42)),
            st("deploy-hello-boot", None, Starting, None),
            st("deploy-hello-green", None, Stopped, None),
            st("deploy-hello-once", None, Stopping, None),
            st(
                "deploy-hello-worker",
                Some("deploy-hello-worker@0"),
                Running,
                Some(43)
            ),
            st(
                "deploy-hello-worker",
                Some("deploy-hello-worker@1"),
                Backoff,
                None
            ),
        ]
    );
    // systemd's order is its own (a hash's): copies come out numbered in order.
    let out = [
        block("deploy-hello-worker@10.service", "active", "running", 12),
        block("deploy-hello-worker@1.service", "active", "running", 11),
        block("deploy-hello-blue.service", "active", "running", 9),
        block("deploy-hello-worker@0.service", "active", "running", 10),
    ]
    .join("\n");
    let names: Vec<String> = Systemd
        .parse_status(&out)
        .iter()
        .map(|s| s.name().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "deploy-hello-blue",
            "deploy-hello-worker@0",
            "deploy-hello-worker@1",
            "deploy-hello-worker@10"
        ]
    );
    assert_eq!(status_of(&all, "deploy-hello-worker").count(), 2);
    for nothing in [
        "",
        "\n",
        "Failed to connect to bus: No such file or directory\n",
    ] {
        assert_eq!(Systemd.parse_status(nothing), [], "{nothing:?}");
    }
    assert_eq!(
        Systemd.status_all().line,
        "systemctl show -p Id -p ActiveState -p SubState -p MainPID -- 'deploy-*.service' 2>/dev/null || true"
    );
}

#[test]
fn the_apps_programs_are_its_unit_files_with_deploys_header() {
    let c = Systemd.app_programs("hello").line;
    assert!(
        c.starts_with("for f in /etc/systemd/system/deploy-hello-*.service; do"),
        "{c}"
    );
    assert!(
        c.contains("grep -qF 'Managed by deploy for hello ('"),
        "{c}"
    );
    // Run for real on a directory of files.
    let dir = tempfile::tempdir().unwrap();
    let c = c.replace("/etc/systemd/system", &dir.path().display().to_string());
    for (name, head) in [
        (
            "deploy-hello-blue.service",
            "# Managed by deploy for hello (prod), slot blue",
        ),
        (
            "deploy-hello-worker@.service",
            "# Managed by deploy for hello (prod), process",
        ),
        (
            "deploy-hello-admin-blue.service",
            "# Managed by deploy for hello-admin (prod)",
        ),
        ("deploy-hello-hand.service", "# written by hand"),
    ] {
        std::fs::write(dir.path().join(name), format!("{head}\n[Unit]\n")).unwrap();
    }
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&c)
        .output()
        .unwrap();
    let mut got = Systemd.parse_app_programs(&String::from_utf8(out.stdout).unwrap());
    got.sort();
    assert_eq!(got, ["deploy-hello-blue", "deploy-hello-worker"]);
}

#[test]
fn settled_waits_as_the_deploy_user_for_the_boot_and_each_units_settle_time() {
    let c = Systemd.settled(
        &["deploy-hello-blue".into(), "deploy-hello-worker".into()],
        5,
    );
    assert!(c.line.starts_with("sh -c '"), "{}", c.line);
    assert!(!c.line.contains("sudo"), "read-only, no root: {}", c.line);
    assert!(
        c.line.ends_with(
            " sh 20 3 deploy-hello-blue.service 'deploy-hello-blue@*.service' \
             deploy-hello-worker.service 'deploy-hello-worker@*.service'"
        ),
        "{}",
        c.line
    );
    assert!(c.line.contains("is-system-running"));
    assert!(c.line.contains("ActiveEnterTimestampMonotonic"));
}
