#!/usr/bin/env bash
#! The local demo: three test servers with no route to the artifact repository (an
#! Artifactory stub over a PyPI index) in Docker, the gateway on its
#! SQLite file relaying the repository to them, uv, a token, and a real deploy of the
#! sample app through the `deploy` CLI
#! with its progress bars.  Running it again redeploys (and changes nothing).
#!
#!   bash ci/demo.sh [VERSION]      (default 1.0.0; try 1.1.0 afterwards)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
version="${1:-1.0.0}"
demo="$root/.demo"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/deploy/target}"
port="${DEMO_PORT:-8700}"

if ! command -v mmdebstrap >/dev/null; then
    echo "== installing mmdebstrap (builds the test-server image from Debian packages)"
    # Waits for another apt-get or dpkg that holds the lock instead of failing at once.
    apt-get -o DPkg::Lock::Timeout=600 update -qq || true
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq mmdebstrap
fi
echo "== building the test-server image (once; cached by recipe)"
ci/image/build.sh >/dev/null
echo "== building deploy-gateway and deploy (the first build takes minutes; cargo shows its progress)"
cargo build --workspace --bins
bin="$CARGO_TARGET_DIR/debug"
# Where a shell finds them: links in ~/.local/bin when it is on PATH, else in
# /usr/local/bin when this user may write there, else the line that puts them on PATH.
on_path=""
for dir in "$HOME/.local/bin" /usr/local/bin; do
    case ":$PATH:" in *":$dir:"*) ;; *) continue ;; esac
    if mkdir -p "$dir" 2>/dev/null && [[ -w "$dir" ]]; then
        ln -sfn "$bin/deploy" "$dir/deploy" && ln -sfn "$bin/deploy-gateway" "$dir/deploy-gateway"
        on_path="$dir"; break
    fi
done
if [[ -n "$on_path" ]]; then
    echo "   deploy and deploy-gateway are linked in $on_path"
    cli=deploy
else
    echo "   to type \`deploy\` yourself: export PATH=\"$bin:\$PATH\""
    cli="$bin/deploy"
fi

if [[ ! -f "$demo/testbed.json" ]] || ! docker ps --format '{{.Names}}' | grep -q '^deploy-tb-demo-web1$'; then
    echo "== starting 3 servers with no route to the artifact repository, and the repository"
    echo "   (an Artifactory stub over a PyPI index; Docker, ports on 127.0.0.1)"
    rm -rf "$demo"
    # Owned by PID 1 (always alive): the demo stays up until `ci/testbed.sh down demo`.
    ci/testbed.sh up demo 3 "$demo" --owner 1 --isolated
    # The servers install through the gateway's relay, with uv.
    python3 - "$demo/inventory.yml" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
# (the test bed's inventory already says `installer: uv`; the gateway's source replaces
# the index URL)
s = s.replace("    index_url: http://index:8080/simple/\n", "")
if "    installer: uv\n" not in s:
    s = s.replace("    wsgi: hello_app:app\n", "    wsgi: hello_app:app\n    installer: uv\n")
s = s.replace("        groups: [web]\n", "        groups: [web]\n        delivery: relay\n")
open(p, "w").write(s)
PY
fi
art_port="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["artifactory_port"])' "$demo/testbed.json")"
(umask 077; sed -n 's/^token=//p' "$demo/artifactory.credentials" > "$demo/artifactory.token")

cat > "$demo/gateway.toml" <<TOML
# The demo gateway.  Paths are relative to this file.
listen = "127.0.0.1:$port"
database = "state/gateway.db"
inventory = "inventory.yml"
known_hosts = "known_hosts"
ssh_key = "id_ed25519"
playbooks = "$root/playbooks"
templates = "$root/templates"

[cli]
oldest = "0.1.0"
newest = "0.1.0"
upgrade_command = "cargo install --locked --path $root/src/cli --version {version}"

# Releases live in Artifactory (here: ci/artifactory_stub.py); only the gateway holds
# its access token, and the servers get the index through the relay.
[sources.artifactory]
kind = "artifactory"
url = "http://127.0.0.1:$art_port/artifactory"
repository = "pypi-local"
token_file = "artifactory.token"

[applications.hello]
source = "artifactory"

# The uv the engine ships to servers (once, by checksum) for \`installer: uv\`.
[uv]
binary = "$root/ci/.cache/uv/uv"
sha256 = "$(cat "$root/ci/.cache/uv/uv.sha256")"
TOML

echo "== starting the gateway on http://127.0.0.1:$port (log: .demo/gateway.log)"
if [[ -f "$demo/gateway.pid" ]]; then kill "$(cat "$demo/gateway.pid")" 2>/dev/null || true; sleep 0.5; fi
nohup "$bin/deploy-gateway" serve --config "$demo/gateway.toml" >> "$demo/gateway.log" 2>&1 &
echo $! > "$demo/gateway.pid"
for _ in $(seq 1 50); do curl -fsS "http://127.0.0.1:$port/v1/health" >/dev/null 2>&1 && break; sleep 0.1; done

if [[ ! -s "$demo/token" ]]; then
    (umask 077; "$bin/deploy-gateway" token create --config "$demo/gateway.toml" --user demo --env staging 2>/dev/null > "$demo/token")
fi
export DEPLOY_GATEWAY="http://127.0.0.1:$port"
export DEPLOY_TOKEN="$(cat "$demo/token")"

echo "== deploy release hello $version -e staging"
"$bin/deploy" release hello "$version" -e staging
echo
"$bin/deploy" status hello -e staging

echo
echo "The app answers on each server's nginx:"
python3 - "$demo/testbed.json" <<'PY'
import json, sys
tb = json.load(open(sys.argv[1]))
for s in tb["servers"]:
    print(f"  curl -H 'Host: hello.example.test' http://127.0.0.1:{s['http_port']}/    # {s['name']}")
PY
cat <<EOF2

Try the CLI yourself:
  export DEPLOY_GATEWAY=$DEPLOY_GATEWAY DEPLOY_TOKEN=\$(cat .demo/token)
  $cli versions hello
  $cli release hello 1.1.0 -e staging --check
  $cli jobs
The dashboard:            $DEPLOY_GATEWAY/ui/  (sign in with the token in .demo/token)
Deploy another release:   bash ci/demo.sh 1.1.0
Stop the demo:            kill \$(cat .demo/gateway.pid); ci/testbed.sh down demo
EOF2
