//! Tests of supervisord's side of the seam: names and commands, `command=` quoting, and
//! its status (real `supervisorctl status` lines and its XML-RPC answer) read into
//! [`ProgramStatus`].

use super::*;
use crate::procman::status_of;

/// `supervisorctl status` prints `'%-32s %-10s %s' % (name, state, description)`.
fn line(name: &str, state: &str, desc: &str) -> String {
    format!("{name:<32} {state:<10} {desc}\n")
}

fn status(
    program: &str,
    copy: Option<&str>,
    state: ProgramState,
    pid: Option<u32>,
) -> ProgramStatus {
    ProgramStatus {
        program: program.into(),
        copy: copy.map(str::to_string),
        state,
        pid,
    }
}

#[test]
fn reads_supervisorctl_status_lines_of_every_state() {
    let out = [
        line("hello-blue", "RUNNING", "pid 42, uptime 0:00:05"),
        line("hello-green", "STOPPED", "Nov 25 05:00 AM"),
        line("hello-next", "STOPPED", "Not started"),
        line(
            "hello-worker:hello-worker-0",
            "RUNNING",
            "pid 43, uptime 1 day, 2:03:04",
        ),
        line(
            "hello-worker:hello-worker-1",
            "FATAL",
            "Exited too quickly (process log may have details)",
        ),
        line(
            "hello-beat:hello-beat-0",
            "BACKOFF",
            "can't find command '/srv/apps/hello/releases/1.0.0/bin/celery'",
        ),
        line("hello-once", "EXITED", "Nov 25 05:01 AM"),
        line("hello-boot", "STARTING", ""),
        line("hello-halt", "STOPPING", ""),
        line("hello-odd", "UNKNOWN", ""),
    ]
    .concat();
    use ProgramState::*;
    assert_eq!(
        Supervisord.parse_status(&out),
        [
            status("hello-blue", None, Running, Some(42)),
            status("hello-green", None, Stopped, None),
            status("hello-next", None, Stopped, None),
            status("hello-worker", Some("hello-worker-0"), Running, Some(43)),
            status("hello-worker", Some("hello-worker-1"), Fatal, None),
            status("hello-beat", Some("hello-beat-0"), Backoff, None),
            status("hello-once", None, Exited, None),
            status("hello-boot", None, Starting, None),
            status("hello-halt", None, Stopping, None),
            status("hello-odd", None, Unknown("UNKNOWN".into()), None),
        ]
    );
    let all = Supervisord.parse_status(&out);
    assert_eq!(all[3].name(), "hello-worker-0");
    assert_eq!(all[0].name(), "hello-blue");
    assert!(all[0].running() && !all[4].running());
}

#[test]
fn a_program_that_does_not_exist_or_a_supervisord_that_is_down_describes_nothing() {
    for out in [
        "hello-red: ERROR (no such process)\n",
        "hello-worker: ERROR (no such group)\n",
        "unix:///var/run/supervisor.sock no such file\n",
        "unix:///var/run/supervisor.sock refused connection\n",
        "error: <class 'ConnectionRefusedError'>, [Errno 111] Connection refused: file: /usr/lib/python3/dist-packages/supervisor/xmlrpc.py line: 560\n",
        "sudo: a password is required\n",
        "",
        "\n",
    ] {
        assert_eq!(Supervisord.parse_status(out), [], "{out}");
    }
    // An error about one program leaves the others' lines as they are.
    let out = format!(
        "hello-red: ERROR (no such process)\n{}",
        line("hello-blue", "RUNNING", "pid 7, uptime 0:01:00")
    );
    let all = Supervisord.parse_status(&out);
    assert_eq!(all.len(), 1);
    assert_eq!(status_of(&all, "hello-blue").next().unwrap().pid, Some(7));
    assert_eq!(status_of(&all, "hello-red").count(), 0);
}

#[test]
fn one_status_of_every_program_is_taken_apart_per_program() {
    let out = [
        line("hello-blue", "RUNNING", "pid 42, uptime 0:00:05"),
        line("hello-blue2", "RUNNING", "pid 7, uptime 0:00:05"),
        line("hello-green", "STOPPED", "Nov 25 05:00 AM"),
        line(
            "hello-worker:hello-worker-0",
            "RUNNING",
            "pid 43, uptime 0:00:05",
        ),
        line(
            "hello-worker:hello-worker-1",
            "RUNNING",
            "pid 44, uptime 0:00:05",
        ),
    ]
    .concat();
    let all = Supervisord.parse_status(&out);
    let pid = |p| status_of(&all, p).next().and_then(|s| s.pid);
    let running = |p| status_of(&all, p).filter(|s| s.running()).count();
    assert_eq!(pid("hello-blue"), Some(42));
    assert_eq!(pid("hello-green"), None);
    assert_eq!(pid("hello-red"), None);
    assert_eq!(running("hello-worker"), 2);
    assert_eq!(running("hello-work"), 0);
}

#[test]
fn supervisords_own_answer_reads_as_the_same_statuses() {
    let member = |k: &str, t: &str, v: &str| {
        format!("<member>\n<name>{k}</name>\n<value><{t}>{v}</{t}></value>\n</member>\n")
    };
    let process = |name: &str, group: &str, state: &str, pid: u32, desc: &str| {
        format!(
            "<value><struct>\n{}{}{}{}{}</struct></value>\n",
            member("name", "string", name),
            member("group", "string", group),
            member("statename", "string", state),
            member("pid", "int", &pid.to_string()),
            member("description", "string", desc),
        )
    };
    let xml = format!(
        "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><array><data>\n{}{}{}{}</data></array></value>\n</param>\n</params>\n</methodResponse>\n",
        process("hello-blue", "hello-blue", "STOPPED", 0, "Nov 26 01:05 PM"),
        process(
            "hello-green",
            "hello-green",
            "RUNNING",
            314,
            "pid 314, uptime 0:01:05"
        ),
        process(
            "hello-worker-0",
            "hello-worker",
            "RUNNING",
            320,
            "pid 320, uptime 0:01:00"
        ),
        process(
            "hello-worker-1",
            "hello-worker",
            "FATAL",
            0,
            "Exited too quickly"
        ),
    );
    use ProgramState::*;
    assert_eq!(
        Supervisord.parse_status(&xml),
        [
            status("hello-blue", None, Stopped, None),
            status("hello-green", None, Running, Some(314)),
            status("hello-worker", Some("hello-worker-0"), Running, Some(320)),
            status("hello-worker", Some("hello-worker-1"), Fatal, None),
        ]
    );
    // No answer from the socket: supervisorctl's own lines.
    assert!(
        Supervisord
            .status_all()
            .line
            .contains("|| supervisorctl status || true")
    );
}

#[test]
fn the_command_line_is_quoted_for_the_shell_and_every_percent_doubled() {
    let script = "cd /srv && exec gunicorn --max-requests '100 %' app:app";
    let value = Supervisord.command_line(script);
    assert_eq!(
        value,
        "/bin/sh -c 'cd /srv && exec gunicorn --max-requests '\\''100 %%'\\'' app:app'"
    );
    // supervisord expands `%%` to `%`, then splits the value like a POSIX shell.
    let words = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("printf '%s\\0' {}", value.replace("%%", "%")))
        .output()
        .unwrap();
    let words = String::from_utf8(words.stdout).unwrap();
    let argv: Vec<&str> = words.trim_end_matches('\0').split('\0').collect();
    assert_eq!(argv, ["/bin/sh", "-c", script]);
}

#[test]
fn names_programs_and_files_per_slot() {
    let s = Supervisord;
    assert_eq!(s.program("hello", "blue"), "hello-blue");
    assert_eq!(
        s.conf_path("hello", "green"),
        "/etc/supervisor/conf.d/hello-green.conf"
    );
    let stop = s.stop("hello-blue").line;
    assert!(
        stop.starts_with("sudo -n sh -c 'if [ -S /var/run/supervisor.sock ]; then curl "),
        "{stop}"
    );
    assert!(
        stop.contains("<methodName>supervisor.stopProcess</methodName>"),
        "{stop}"
    );
    assert!(
        stop.contains("else supervisorctl stop hello-blue || true; fi"),
        "{stop}"
    );
}

#[test]
fn at_boot_rewrites_only_the_autostart_line_and_the_file_still_reads_as_rendered() {
    let on = Supervisord.at_boot("hello-blue", true).line;
    assert_eq!(
        on,
        "sudo -n sh -c 'f=/etc/supervisor/conf.d/hello-blue.conf; [ ! -f \"$f\" ] || sed -i '\\''s/^autostart=.*$/autostart=true/'\\'' \"$f\"'"
    );
    assert!(
        !on.contains("supervisorctl"),
        "no update: the running program is untouched"
    );
    let off = Supervisord.at_boot("hello-green", false).line;
    assert!(off.contains("/autostart=false/"), "{off}");
    // Run for real on a copy of a rendered file: only that line changes; a missing
    // file is no error.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("hello-blue.conf");
    let rendered = "; Managed by deploy for hello (prod), slot blue\n[program:hello-blue]\nautostart=false\nautorestart=true\n";
    std::fs::write(&f, rendered).unwrap();
    let script = |on: bool| {
        format!(
            "f={}; [ ! -f \"$f\" ] || sed -i 's/^autostart=.*$/autostart={on}/' \"$f\"",
            f.display()
        )
    };
    let sh = |s: &str| {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(s)
            .status()
            .unwrap()
    };
    assert!(sh(&script(true)).success());
    let booted = std::fs::read_to_string(&f).unwrap();
    assert_eq!(
        booted,
        rendered.replace("autostart=false", "autostart=true")
    );
    assert_eq!(Supervisord.slot_file_as_rendered(booted), rendered);
    assert!(sh(&script(false)).success());
    assert_eq!(std::fs::read_to_string(&f).unwrap(), rendered);
    std::fs::remove_file(&f).unwrap();
    assert!(sh(&script(true)).success(), "no file: nothing to do");
    // Other lines that mention autostart stay as they are.
    let odd = "autostart=true # not ours\nautostart=true\n".to_string();
    assert_eq!(
        Supervisord.slot_file_as_rendered(odd),
        "autostart=true # not ours\nautostart=false\n"
    );
}

#[test]
fn settled_waits_on_the_socket_while_a_slot_is_starting_then_never_fails() {
    let c = Supervisord.settled(&["hello-blue".into(), "hello-green".into()], 5);
    assert!(c.line.starts_with("sudo -n sh -c "), "{}", c.line);
    // The script as `sh -c` gets it: the quoted word, unquoted by a shell.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("printf %s {}", &c.line["sudo -n sh -c ".len()..]))
        .output()
        .unwrap();
    let script = String::from_utf8(out.stdout).unwrap();
    for want in [
        "<string>hello-blue</string>",
        "<string>hello-green</string>",
        "supervisor.getProcessInfo",
        "*'<string>STARTING</string>'*) exit 0;;",
        "supervisorctl status hello-blue hello-green",
        "[ $n -ge 20 ] && break; sleep 0.25; done; true",
    ] {
        assert!(script.contains(want), "{want}: {script}");
    }
}
