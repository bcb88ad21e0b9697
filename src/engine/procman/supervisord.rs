//! supervisord: one `[program:<app>-<slot>]` file per slot (and per process) in
//! `/etc/supervisor/conf.d/`, its `command=` quoting, driven through its socket or
//! `sudo -n supervisorctl`, and its status (`supervisorctl status` lines or its XML-RPC
//! answer) read into [`ProgramStatus`].

use super::{ProcessManager, ProgramState, ProgramStatus};
use crate::commands::RemoteCmd;
use crate::shell::quote;

/// The template (in `templates/`) of a web slot's `[program:]` file.
pub const SLOT_TEMPLATE: &str = "supervisor.conf.j2";
/// The template of a worker process's `[program:]` file (`count` copies).
pub const PROCESS_TEMPLATE: &str = "supervisor-process.conf.j2";

#[derive(Debug, Clone, Copy, Default)]
pub struct Supervisord;

/// Where supervisord reads program files (Debian's `[include]`).
const CONF_D: &str = "/etc/supervisor/conf.d";

impl Supervisord {
    fn conf_path_of(&self, program: &str) -> String {
        format!("{CONF_D}/{program}.conf")
    }
}

impl ProcessManager for Supervisord {
    fn name(&self) -> &'static str {
        "supervisord"
    }

    fn template(&self) -> &'static str {
        SLOT_TEMPLATE
    }

    fn process_template(&self) -> &'static str {
        PROCESS_TEMPLATE
    }

    fn program(&self, app: &str, slot: &str) -> String {
        format!("{app}-{slot}")
    }

    fn conf_path(&self, app: &str, slot: &str) -> String {
        self.conf_path_of(&self.program(app, slot))
    }

    /// A slot's log is `<log_dir>/<program>.log`; the copies of a process (`numprocs`)
    /// each have `<program>-<n>.log`, n from 0 (the templates' `stdout_logfile`).
    fn log_files(&self, log_dir: &str, program: &str, copies: Option<u32>) -> Vec<String> {
        match copies {
            None => vec![format!("{log_dir}/{program}.log")],
            Some(n) => (0..n)
                .map(|i| format!("{log_dir}/{program}-{i}.log"))
                .collect(),
        }
    }

    /// Polls `supervisorctl status '<program>:*'` once a second while a copy is
    /// `STARTING` (supervisord moves it to `RUNNING` after the file's `startsecs`, the
    /// settle time; one that exits sooner goes `BACKOFF`, then `FATAL`).  On failure:
    /// the last 20 lines of each log, then the copies that do not run (stderr).
    fn watch(&self, program: &str, logs: &[String], limit_secs: u32) -> RemoteCmd {
        let script = format!(
            "n=0; while :; do s=$(supervisorctl status {g} 2>&1); \
             case \"$(printf '%s\\n' \"$s\" | awk '{{print $2}}')\" in *STARTING*) ;; *) break;; esac; \
             n=$((n+1)); [ $n -ge {limit_secs} ] && break; sleep 1; done; \
             bad=$(printf '%s\\n' \"$s\" | awk '$2 != \"RUNNING\" {{ $1 = $1; print }}'); \
             [ -z \"$bad\" ] && exit 0; \
             for f in {logs}; do [ -f \"$f\" ] && {{ echo \"last lines of $f:\"; tail -n 20 \"$f\"; }}; done >&2; \
             printf '%s\\n' \"$bad\" | sed 's/^/not running: /' >&2; exit 1",
            g = group(program),
            logs = crate::shell::join(logs),
        );
        RemoteCmd::new(format!("sudo -n sh -c {}", quote(&script)))
    }

    /// The files `<app>-*.conf` whose first line is deploy's header for `app` (the
    /// shipped templates' `Managed by deploy for <app> (`): a name that merely starts
    /// like the app's (`hello-admin-blue` beside `hello`) belongs to another app.
    fn app_programs(&self, app: &str) -> RemoteCmd {
        let script = format!(
            "for f in {CONF_D}/{q}-*.conf; do [ -f \"$f\" ] || continue; \
             head -n 1 \"$f\" | grep -qF {header} && basename \"$f\" .conf; done; true",
            q = quote(app),
            header = quote(&format!("Managed by deploy for {app} (")),
        );
        RemoteCmd::new(script)
    }

    fn parse_app_programs(&self, output: &str) -> Vec<String> {
        output
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
            .map(str::to_string)
            .collect()
    }

    /// `stop '<program>:*'` (graceful, every copy), `remove` (out of supervisord's
    /// running config), then the file: each step is done when there is nothing to do.
    fn remove(&self, program: &str) -> RemoteCmd {
        let q = quote(program);
        RemoteCmd::new(format!(
            "sudo -n sh -c {}",
            quote(&format!(
                "supervisorctl stop {g} >/dev/null 2>&1; supervisorctl remove {q} >/dev/null 2>&1; rm -f {conf}",
                g = group(program),
                conf = quote(&self.conf_path_of(program)),
            ))
        ))
    }

    /// `/bin/sh -c '<script>'`: supervisord splits `command=` like a POSIX shell and
    /// expands `%(name)s`, so the script is quoted for the shell and every `%` doubled.
    fn command_line(&self, script: &str) -> String {
        format!("/bin/sh -c {}", quote(script)).replace('%', "%%")
    }

    /// Makes supervisord load the program's current config and (re)starts it, so it
    /// runs what its config says now: `update` (which rereads the files itself), then
    /// stop and start through supervisord's socket (one Python start instead of four);
    /// `supervisorctl` for each where the socket is elsewhere.
    fn start_fresh(&self, program: &str) -> RemoteCmd {
        let q = quote(program);
        let fast = format!(
            "supervisorctl update {q} >/dev/null && {{ {stop} >/dev/null; r=$({start}); \
             case \"$r\" in *'<boolean>1</boolean>'*) echo {started};; \
             *) echo {q}: ERROR \"$(printf '%s' \"$r\" | tr -d '\\n' | sed -n 's|.*<name>faultString</name><value><string>\\([^<]*\\)<.*|\\1|p')\" >&2; exit 1;; esac; }}",
            stop = rpc("stopProcess", program),
            start = rpc("startProcess", program),
            started = quote(&format!("{program}: started")),
        );
        let slow = format!(
            "supervisorctl update {q} >/dev/null && supervisorctl stop {q} >/dev/null; supervisorctl start {q}"
        );
        on_socket(&fast, &slow)
    }

    /// Asks the running supervisord itself (its XML-RPC `getAllProcessInfo` on the unix
    /// socket, with curl): no Python starts on the host for a look (`supervisorctl`
    /// costs about 130 ms of CPU per call).  Falls back to `supervisorctl status` where
    /// the socket is elsewhere or the call fails.
    fn status_all(&self) -> RemoteCmd {
        let body = "<?xml version=\"1.0\"?><methodCall><methodName>supervisor.getAllProcessInfo</methodName></methodCall>";
        let script = format!(
            "r=$(curl -s --max-time 10 --unix-socket {SOCKET} -H 'Content-Type: text/xml' --data-binary {} http://localhost/RPC2) \
             && case \"$r\" in *'<methodResponse>'*'<array>'*) printf '%s\\n' \"$r\";; *) false;; esac \
             || supervisorctl status || true",
            quote(body)
        );
        RemoteCmd::new(format!("sudo -n sh -c {}", quote(&script)))
    }

    /// Asks supervisord's socket for each program's state (`getProcessInfo`, curl: no
    /// Python per look) every quarter second while one says `STARTING` (supervisord
    /// keeps a program there for its `startsecs`, the settle time), at most
    /// `limit_secs`; `supervisorctl status` where the socket is elsewhere.
    fn settled(&self, programs: &[String], limit_secs: u32) -> RemoteCmd {
        let bodies: Vec<String> = programs
            .iter()
            .map(|p| {
                quote(&format!(
                    "<?xml version=\"1.0\"?><methodCall><methodName>supervisor.getProcessInfo</methodName>\
                     <params><param><value><string>{p}</string></value></param></params></methodCall>"
                ))
            })
            .collect();
        let fast = format!(
            "for b in {}; do case \"$(curl -s --max-time 5 --unix-socket {SOCKET} -H 'Content-Type: text/xml' \
             --data-binary \"$b\" http://localhost/RPC2)\" in *'<string>STARTING</string>'*) exit 0;; esac; done; exit 1",
            bodies.join(" ")
        );
        let slow = format!(
            "supervisorctl status {} 2>/dev/null | awk '$2 == \"STARTING\" {{ f = 1 }} END {{ exit !f }}'",
            crate::shell::join(programs)
        );
        let starting = format!("if [ -S {SOCKET} ]; then ( {fast} ); else {slow}; fi");
        let script = format!(
            "n=0; while {starting}; do n=$((n+1)); [ $n -ge {} ] && break; sleep 0.25; done; true",
            limit_secs.max(1) * 4
        );
        RemoteCmd::new(format!("sudo -n sh -c {}", quote(&script)))
    }

    /// `hello-blue RUNNING pid 42, ...` or `hello-worker:hello-worker-0 FATAL ...` lines
    /// (`supervisorctl status`), or the XML-RPC answer of [`Self::status_all`].
    fn parse_status(&self, output: &str) -> Vec<ProgramStatus> {
        if output.trim_start().starts_with("<?xml") {
            xml_statuses(output)
        } else {
            output.lines().filter_map(status_line).collect()
        }
    }

    /// `update` stops and restarts a group whose config changed (gracefully: TERM, then
    /// `stopwaitsecs`) and adds a new one; `start` then starts copies that were stopped.
    fn apply(&self, program: &str) -> RemoteCmd {
        RemoteCmd::new(format!(
            "sudo -n supervisorctl update {p} && {{ sudo -n supervisorctl start {g} >/dev/null 2>&1 || true; }}",
            p = quote(program),
            g = group(program)
        ))
    }

    fn restart_all(&self, program: &str) -> RemoteCmd {
        RemoteCmd::new(format!("sudo -n supervisorctl restart {}", group(program)))
    }

    /// Rewrites the file's `autostart=` line in place (`sed -i`: a new file renamed
    /// over the old one) and nothing else: no `update`, so the program that runs now
    /// and supervisord's loaded config are untouched; supervisord reads the line when
    /// it starts, at the next boot.  Decision: the slot template keeps rendering
    /// `autostart=false`, and the host's file is compared with it through
    /// [`ProcessManager::slot_file_as_rendered`], so a slot file is never rewritten (nor
    /// its program reloaded) for its boot flag alone.  Nothing to do without the file.
    fn at_boot(&self, program: &str, on: bool) -> RemoteCmd {
        let script = format!(
            "f={}; [ ! -f \"$f\" ] || sed -i 's/^autostart=.*$/autostart={on}/' \"$f\"",
            quote(&self.conf_path_of(program))
        );
        RemoteCmd::new(format!("sudo -n sh -c {}", quote(&script)))
    }

    /// The line [`Self::at_boot`] set back to the template's `autostart=false`.
    fn slot_file_as_rendered(&self, file: String) -> String {
        if !file.lines().any(|l| l == "autostart=true") {
            return file;
        }
        file.split_inclusive('\n')
            .map(|l| match l.strip_suffix('\n').unwrap_or(l) {
                "autostart=true" => l.replacen("true", "false", 1),
                _ => l.to_string(),
            })
            .collect()
    }

    /// Graceful: TERM, then KILL after the program's `stopwaitsecs` (through the socket:
    /// no Python start).  Never fails: stopping what does not run is done.
    fn stop(&self, program: &str) -> RemoteCmd {
        let fast = format!("{} >/dev/null; true", rpc("stopProcess", program));
        let slow = format!("supervisorctl stop {} || true", quote(program));
        on_socket(&fast, &slow)
    }
}

/// An XML-RPC call `supervisor.<method>(program, wait=true)` on supervisord's socket,
/// printing the answer.  Program names are validated (`[a-z0-9-]`): nothing to escape.
fn rpc(method: &str, program: &str) -> String {
    let body = format!(
        "<?xml version=\"1.0\"?><methodCall><methodName>supervisor.{method}</methodName><params>\
         <param><value><string>{program}</string></value></param>\
         <param><value><boolean>1</boolean></value></param></params></methodCall>"
    );
    format!(
        "curl -s --max-time 900 --unix-socket {SOCKET} -H 'Content-Type: text/xml' --data-binary {} http://localhost/RPC2",
        quote(&body)
    )
}

/// As root: `fast` where supervisord's socket is, else `slow` (with `supervisorctl`).
fn on_socket(fast: &str, slow: &str) -> RemoteCmd {
    RemoteCmd::new(format!(
        "sudo -n sh -c {}",
        quote(&format!("if [ -S {SOCKET} ]; then {fast}; else {slow}; fi"))
    ))
}

/// supervisord's control socket (Debian's default).
const SOCKET: &str = "/var/run/supervisor.sock";

/// `getAllProcessInfo`'s answer: a struct per process (`name`, `group`, `statename`,
/// `pid`, ...); a process of a group of copies has the group's name as its `group`.
fn xml_statuses(xml: &str) -> Vec<ProgramStatus> {
    let mut out = Vec::new();
    for s in xml.split("<struct>").skip(1) {
        let s = s.split("</struct>").next().unwrap_or_default();
        let mut field = std::collections::HashMap::new();
        for m in s.split("<member>").skip(1) {
            let key = between(m, "<name>", "</name>");
            let value = m.split_once("<value>").map(|(_, v)| v).unwrap_or_default();
            let value = value.split_once('>').map(|(_, v)| v).unwrap_or_default();
            let value = value.split("</").next().unwrap_or_default();
            field.insert(key, value);
        }
        let get = |k: &str| field.get(k).copied().unwrap_or_default();
        let (name, group) = (get("name"), get("group"));
        if name.is_empty() {
            continue;
        }
        let state = state(get("statename"));
        let pid = (state == ProgramState::Running)
            .then(|| get("pid").parse().ok())
            .flatten()
            .filter(|p| *p > 0);
        let (program, copy) = if group.is_empty() || group == name {
            (name, None)
        } else {
            (group, Some(name.to_string()))
        };
        out.push(ProgramStatus {
            program: program.to_string(),
            copy,
            state,
            pid,
        });
    }
    out
}

fn between<'a>(s: &'a str, open: &str, close: &str) -> &'a str {
    s.split_once(open)
        .and_then(|(_, r)| r.split_once(close))
        .map_or("", |(v, _)| v)
}

/// `<program>:*`, every copy of a process group (quoted).
fn group(program: &str) -> String {
    quote(&format!("{program}:*"))
}

/// One `supervisorctl status` line, `<name> <STATE> <description>` (`%-32s %-10s %s`),
/// the name `<group>:<copy>` for a copy; the description of a running program starts
/// with `pid <n>,`.  Errors (`hello-red: ERROR (no such process)`) and anything else
/// describe no program: None.
fn status_line(line: &str) -> Option<ProgramStatus> {
    let mut words = line.split_whitespace();
    let name = words.next()?;
    let word = words.next()?;
    if name.ends_with(':') || !word.bytes().all(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let state = state(word);
    let pid = match (&state, words.next(), words.next()) {
        (ProgramState::Running, Some("pid"), Some(n)) => n.trim_end_matches(',').parse().ok(),
        _ => None,
    };
    let (program, copy) = match name.split_once(':') {
        Some((group, copy)) => (group, Some(copy.to_string())),
        None => (name, None),
    };
    Some(ProgramStatus {
        program: program.to_string(),
        copy,
        state,
        pid,
    })
}

/// supervisord's state names (`supervisor.states.ProcessStates`).
fn state(name: &str) -> ProgramState {
    match name {
        "STARTING" => ProgramState::Starting,
        "RUNNING" => ProgramState::Running,
        "BACKOFF" => ProgramState::Backoff,
        "STOPPING" => ProgramState::Stopping,
        "STOPPED" => ProgramState::Stopped,
        "EXITED" => ProgramState::Exited,
        "FATAL" => ProgramState::Fatal,
        other => ProgramState::Unknown(other.to_string()),
    }
}

#[cfg(test)]
#[path = "supervisord_tests.rs"]
mod tests;
