//! Commands for nginx and HTTP: install a site only if `nginx -t` passes and reload, in one
//! command; probe a loopback port the way a health check does.

use super::{RemoteCmd, sudo_sh};
use crate::shell::join;

/// One HTTP probe the way a health check does: through nginx on port 80 (`socket`
/// None) or straight to a slot's unix socket; prints the status code (000 if no
/// answer).  `-g`: the path is sent as is (curl would expand `{a,b}` and `[1-2]`).
pub fn http_probe(
    socket: Option<&str>,
    server_name: &str,
    path: &str,
    timeout_secs: u32,
) -> RemoteCmd {
    let timeout = timeout_secs.to_string();
    let host = format!("Host: {server_name}");
    let url = match socket {
        Some(_) => format!("http://localhost{path}"),
        None => format!("http://127.0.0.1:80{path}"),
    };
    let mut args = vec!["curl", "-s", "-g", "-o", "/dev/null", "-w", "%{http_code}"];
    args.extend(["--max-time", &timeout, "-H", &host]);
    if let Some(s) = socket {
        args.extend(["--unix-socket", s]);
    }
    args.push(&url);
    RemoteCmd::new(join(&args))
}

/// The health check with its retries, run on the server (one round trip however many
/// attempts it takes): prints `<status> <attempt>` and exits 0 when an attempt answers
/// `expect`, else prints the last attempt's status (`000`: no answer) and exits 1.
pub fn http_probe_until(
    probe: &RemoteCmd,
    expect: u16,
    retries: u32,
    interval_ms: u32,
) -> RemoteCmd {
    let retries = retries.max(1);
    let pause = format!("{}.{:03}", interval_ms / 1000, interval_ms % 1000);
    RemoteCmd::new(format!(
        "i=0; while :; do i=$((i+1)); c=$({}); \
         if [ \"$c\" = {expect} ]; then echo \"$c $i\"; exit 0; fi; \
         if [ \"$i\" -ge {retries} ]; then echo \"${{c:-000}} $i\"; exit 1; fi; \
         sleep {pause}; done",
        probe.line
    ))
}

/// The Host a health check sends: the first server name, with a wildcard made concrete
/// (`*.example.com` -> `health-check.example.com`, `www.example.*` ->
/// `www.example.health-check`) so that nginx picks this application's server block.
pub fn health_host(first_server_name: &str) -> String {
    if let Some(rest) = first_server_name.strip_prefix("*.") {
        format!("health-check.{rest}")
    } else if let Some(rest) = first_server_name.strip_suffix(".*") {
        format!("{rest}.health-check")
    } else {
        first_server_name.to_string()
    }
}

/// Installs a new nginx site config only if the whole nginx configuration still passes
/// `nginx -t` with it (otherwise puts the old file back, or removes the new one, and fails
/// with nginx's message), then reloads nginx gracefully.
///
/// One command, deaf to a dropped connection (`trap '' HUP PIPE`, inherited by nginx):
/// sshd lets a command whose client died run on, so a gateway killed mid-switch cannot
/// leave a site installed but never loaded, which the next deploy would take for done
/// (the file is as wanted) and not reload.
pub fn nginx_install_and_reload(path: &str, contents: Vec<u8>) -> RemoteCmd {
    // Temp and backup files live beside `sites-enabled`, never in it: nginx includes
    // everything there.
    let script = r#"set -e
trap '' HUP PIPE
p="$1"
side="${p%/*}/../.${p##*/}"
if [ -f "$p" ]; then cp -p "$p" "$side.deploy-old"; else rm -f "$side.deploy-old"; fi
cat > "$side.deploy-new"; chmod 0644 "$side.deploy-new"; mv -f "$side.deploy-new" "$p"
if ! nginx -t 2>"$side.nginx-t"; then
  if [ -f "$side.deploy-old" ]; then mv -f "$side.deploy-old" "$p"; else rm -f "$p"; fi
  cat "$side.nginx-t" >&2
  echo "nginx -t failed; the previous config was put back" >&2
  exit 1
fi
rm -f "$side.deploy-old" "$side.nginx-t"
nginx -s reload"#;
    RemoteCmd::with_stdin(sudo_sh(script, &[path]), contents)
}
