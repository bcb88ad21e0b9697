#!/usr/bin/env bash
#! The local demo: three test servers and a package index in Docker, then a real deploy
#! of the sample app.  Running it again redeploys (and changes nothing).
#!
#!   bash ci/demo.sh [VERSION]      (default 1.0.0; try 1.1.0 afterwards)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
version="${1:-1.0.0}"
demo="$root/.demo"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/deploy/target}"

echo "== building the test-server image (once; cached by recipe)"
ci/image/build.sh >/dev/null
echo "== building deploy-gateway"
cargo build --quiet --bin deploy-gateway
gw="$CARGO_TARGET_DIR/debug/deploy-gateway"

if [[ ! -f "$demo/testbed.json" ]] || ! docker ps --format '{{.Names}}' | grep -q '^deploy-tb-demo-web1$'; then
    echo "== starting 3 servers and the index (Docker, ports on 127.0.0.1)"
    rm -rf "$demo"
    # Owned by PID 1 (always alive): the demo stays up until `ci/testbed.sh down demo`.
    ci/testbed.sh up demo 3 "$demo" --owner 1
fi

echo "== deploying hello $version to staging"
"$gw" apply --inventory "$demo/inventory.yml" --known-hosts "$demo/known_hosts" --key "$demo/id_ed25519" \
    hello "$version" -e staging

echo
echo "The app answers on each server's nginx:"
python3 - "$demo/testbed.json" <<'PY'
import json, sys
tb = json.load(open(sys.argv[1]))
for s in tb["servers"]:
    print(f"  curl -H 'Host: hello.example.test' http://127.0.0.1:{s['http_port']}/    # {s['name']}")
PY
echo "Deploy another release:   bash ci/demo.sh 1.1.0"
echo "Stop the demo:             ci/testbed.sh down demo"
