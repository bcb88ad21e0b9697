//! Commands for nginx and HTTP: install a site only if `nginx -t` passes, reload, and
//! probe a loopback port the way a health check does.

use super::{RemoteCmd, sudo_sh};
use crate::shell::join;

/// One HTTP probe on a loopback port of the server (a slot's port, or 80 for nginx);
/// prints the status code (000 if no answer).
pub fn http_probe(port: u16, server_name: &str, path: &str, timeout_secs: u32) -> RemoteCmd {
    RemoteCmd::new(join(&[
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        &timeout_secs.to_string(),
        "-H",
        &format!("Host: {server_name}"),
        &format!("http://127.0.0.1:{port}{path}"),
    ]))
}

/// Installs a new nginx site config only if the whole nginx configuration still passes
/// `nginx -t` with it; otherwise puts the old file back (or removes the new one) and fails
/// with nginx's message.  Does not reload.
pub fn nginx_install_validated(path: &str, contents: Vec<u8>) -> RemoteCmd {
    // Temp and backup files live beside `sites-enabled`, never in it: nginx includes
    // everything there.
    let script = r#"set -e
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
rm -f "$side.deploy-old" "$side.nginx-t""#;
    RemoteCmd::with_stdin(sudo_sh(script, &[path]), contents)
}

/// Graceful reload: new workers take the new config; in-flight requests finish.
pub fn nginx_reload() -> RemoteCmd {
    RemoteCmd::new("sudo -n nginx -s reload")
}
