//! supervisord: one `[program:<app>-<slot>]` file per slot in `/etc/supervisor/conf.d/`,
//! driven with `sudo -n supervisorctl`.

use super::ProcessManager;
use crate::commands::RemoteCmd;
use crate::shell::quote;

/// The template (in `templates/`) of a web slot's `[program:]` file.
pub const SLOT_TEMPLATE: &str = "supervisor.conf.j2";
/// The template of a worker process's `[program:]` file (`count` copies).
pub const PROCESS_TEMPLATE: &str = "supervisor-process.conf.j2";

#[derive(Debug, Clone, Copy, Default)]
pub struct Supervisord;

impl ProcessManager for Supervisord {
    fn name(&self) -> &'static str {
        "supervisord"
    }

    fn template(&self) -> &'static str {
        SLOT_TEMPLATE
    }

    fn program(&self, app: &str, slot: &str) -> String {
        format!("{app}-{slot}")
    }

    fn conf_path(&self, app: &str, slot: &str) -> String {
        format!("/etc/supervisor/conf.d/{}.conf", self.program(app, slot))
    }

    /// A slot's log is `<program>.log`; the copies of a process (`numprocs`) each have
    /// `<program>-<n>.log`, n from 0.
    fn log_files(&self, program: &str, copies: Option<u32>) -> Vec<String> {
        match copies {
            None => vec![format!("/var/log/supervisor/{program}.log")],
            Some(n) => (0..n)
                .map(|i| format!("/var/log/supervisor/{program}-{i}.log"))
                .collect(),
        }
    }

    fn pid(&self, status_output: &str) -> Option<u32> {
        running_pid(status_output.trim())
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

    fn process_template(&self) -> &'static str {
        PROCESS_TEMPLATE
    }

    fn group_status(&self, program: &str) -> RemoteCmd {
        RemoteCmd::new(format!(
            "sudo -n supervisorctl status {} || true",
            group(program)
        ))
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

    /// `hello-blue RUNNING ...` or `hello-worker:hello-worker-0 RUNNING ...` lines (the
    /// XML-RPC answer is read as the same lines).
    fn status_of(&self, all: &str, program: &str) -> String {
        let lines = if all.trim_start().starts_with("<?xml") {
            xml_status_lines(all)
        } else {
            all.to_string()
        };
        lines
            .lines()
            .filter(|l| {
                let name = l.split_whitespace().next().unwrap_or_default();
                name == program
                    || name
                        .strip_prefix(program)
                        .is_some_and(|r| r.starts_with(':'))
            })
            .map(|l| format!("{l}\n"))
            .collect()
    }

    fn running_copies(&self, status_output: &str) -> u32 {
        status_output
            .lines()
            .filter(|l| running_pid(l.trim()).is_some())
            .count() as u32
    }

    /// `hello-worker:hello-worker-0   RUNNING   pid 12, uptime 0:01:00` per copy.
    fn copies(&self, status_output: &str) -> Vec<(String, Option<u32>)> {
        status_output
            .lines()
            .filter_map(|l| {
                let name = l.split_whitespace().next()?;
                let name = name.rsplit(':').next()?.to_string();
                Some((name, running_pid(l.trim())))
            })
            .collect()
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

/// `getAllProcessInfo`'s answer as `supervisorctl status` prints it: one line per
/// process, `<name> <STATE> <description>`, the name as `<group>:<name>` in a group.
fn xml_status_lines(xml: &str) -> String {
    let mut out = String::new();
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
        let label = if group.is_empty() || group == name {
            name.to_string()
        } else {
            format!("{group}:{name}")
        };
        out.push_str(&format!(
            "{label} {} {}\n",
            get("statename"),
            get("description")
        ));
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

/// Parses one `supervisorctl status` line: Some(pid) when RUNNING.
pub fn running_pid(status_line: &str) -> Option<u32> {
    let mut words = status_line.split_whitespace();
    let _name = words.next()?;
    if words.next()? != "RUNNING" {
        return None;
    }
    if words.next()? != "pid" {
        return None;
    }
    words.next()?.trim_end_matches(',').parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_supervisor_status() {
        assert_eq!(
            running_pid("hello                            RUNNING   pid 42, uptime 0:00:05"),
            Some(42)
        );
        assert_eq!(
            running_pid("hello                            STOPPED   Nov 25 05:00 AM"),
            None
        );
        assert_eq!(running_pid("hello: ERROR (no such process)"), None);
        assert_eq!(running_pid(""), None);
    }

    #[test]
    fn one_status_of_every_program_is_taken_apart_per_program() {
        let all = "hello-blue                       RUNNING   pid 42, uptime 0:00:05\n\
                   hello-blue2                      RUNNING   pid 7, uptime 0:00:05\n\
                   hello-green                      STOPPED   Nov 25 05:00 AM\n\
                   hello-worker:hello-worker-0      RUNNING   pid 43, uptime 0:00:05\n\
                   hello-worker:hello-worker-1      RUNNING   pid 44, uptime 0:00:05\n";
        let s = Supervisord;
        assert_eq!(s.pid(&s.status_of(all, "hello-blue")), Some(42));
        assert_eq!(s.pid(&s.status_of(all, "hello-green")), None);
        assert_eq!(s.pid(&s.status_of(all, "hello-red")), None);
        assert_eq!(s.running_copies(&s.status_of(all, "hello-worker")), 2);
        assert_eq!(s.running_copies(&s.status_of(all, "hello-work")), 0);
    }

    #[test]
    fn supervisords_own_answer_reads_as_status_lines() {
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
            "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><array><data>\n{}{}{}</data></array></value>\n</param>\n</params>\n</methodResponse>\n",
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
        );
        let s = Supervisord;
        assert_eq!(s.pid(&s.status_of(&xml, "hello-green")), Some(314));
        assert_eq!(s.pid(&s.status_of(&xml, "hello-blue")), None);
        assert_eq!(s.running_copies(&s.status_of(&xml, "hello-worker")), 1);
        assert_eq!(
            s.copies(&s.status_of(&xml, "hello-worker")),
            vec![("hello-worker-0".to_string(), Some(320))]
        );
        // No answer from the socket: supervisorctl's own lines.
        assert!(
            s.status_all()
                .line
                .contains("|| supervisorctl status || true")
        );
    }

    #[test]
    fn parses_the_copies_of_a_process() {
        let out = "hello-worker:hello-worker-0   RUNNING   pid 12, uptime 0:01:00\nhello-worker:hello-worker-1   STOPPED   Nov 26 06:00 AM\n";
        let s = Supervisord;
        assert_eq!(
            s.copies(out),
            [
                ("hello-worker-0".to_string(), Some(12)),
                ("hello-worker-1".to_string(), None)
            ]
        );
        assert_eq!(s.running_copies(out), 1);
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
}
