#!/usr/bin/env bash
#! The test bed: N "real servers" and a PyPI index, as labelled Docker containers.
#
#   ci/testbed.sh up NAME N DIR [--owner PID] [--isolated] [--postgres]
#                                              start (or restart) testbed NAME with N servers;
#                                              writes DIR/{id_ed25519,known_hosts,inventory.yml,
#                                              testbed.json,artifactory.credentials}
#                                              --isolated: the servers get a network of their own,
#                                              with no route to the index (relay tests)
#                                              --postgres: also a PostgreSQL 15 container on the
#                                              servers' network as host `db` (database and role
#                                              `shop`, fresh random password); testbed.json then
#                                              has db_container, db_password, db_port (else null)
#   ci/testbed.sh down NAME                     remove its containers and network
#   ci/testbed.sh gc [--all]                    remove testbeds whose owner process is gone (or all)
#   ci/testbed.sh packages                      build/fetch the index content into ci/.cache/packages
#
# Every container and network carries the label deploy.testbed=NAME and
# deploy.testbed.owner=PID; `up` first removes leftovers of dead owners, because the
# Docker engine outlives the processes that made them.  Ports are published on
# 127.0.0.1 only (random host ports).  Servers reach the index as http://index:8080/
# (pypiserver) and http://index:8081/artifactory/ (ci/artifactory_stub.py: Artifactory's
# PyPI API and authentication over the same wheels, with fresh random credentials).
# `packages` also fetches the pinned uv (static musl build) into ci/.cache/uv/.
# The index holds the sample apps' wheels (tests/{sample,django,asgi}-app/build_wheels.py)
# and, as CPython 3.11 manylinux x86_64 wheels, every dependency of theirs, pinned below.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="$root/ci/.cache"
GUNICORN=gunicorn==27.0.1
# shop-app (tests/django-app) and asgi-app (tests/asgi-app) with all their dependencies;
# uvicorn < 0.55 still ships uvicorn.workers.UvicornWorker.
APP_DEPS=(django==5.2.19 asgiref==3.13.0 sqlparse==0.6.1 psycopg2-binary==2.9.13
          starlette==1.10.0 anyio==4.16.0 idna==3.20 typing-extensions==4.16.0
          uvicorn==0.54.0 click==8.5.1 h11==0.16.0)
UV_VERSION=0.13.9

die() { echo "testbed: $*" >&2; exit 1; }

packages() {
    local out="$cache/packages" stamp app apps=(sample-app django-app asgi-app)
    stamp="$( (echo "$GUNICORN ${APP_DEPS[*]}"; cd "$root/tests" &&
        find "${apps[@]}" -type f ! -path '*/__pycache__/*' | LC_ALL=C sort | xargs cat) |
        sha256sum | cut -c1-12)"
    if [[ -f "$out/.stamp" && "$(cat "$out/.stamp")" == "$stamp" ]]; then return; fi
    rm -rf "$out"; mkdir -p "$out"
    for app in "${apps[@]}"; do
        PYTHONDONTWRITEBYTECODE=1 python3 "$root/tests/$app/build_wheels.py" "$out" >/dev/null
    done
    PIP_FIND_LINKS= python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
        --platform manylinux2014_x86_64 --dest "$out" "$GUNICORN" "${APP_DEPS[@]}" >&2
    # Every dependency is there: resolve the apps against these wheels alone, offline.
    PIP_FIND_LINKS= python3 -m pip install --quiet --dry-run --ignore-installed --no-index \
        --find-links "$out" --only-binary=:all: --python-version 3.11 --platform manylinux2014_x86_64 \
        --target "$out/.resolve" hello-app shop-app asgi-app >&2 || die "the index content is incomplete"
    rm -rf "$out/.resolve"
    echo "$stamp" > "$out/.stamp"
}

uv_binary() { # the pinned uv for servers: ci/.cache/uv/uv and its uv.sha256
    local out="$cache/uv" tmp
    if [[ -x "$out/uv" && "$(cat "$out/.version" 2>/dev/null)" == "$UV_VERSION" ]]; then return; fi
    rm -rf "$out"; mkdir -p "$out"; tmp="$(mktemp -d)"
    PIP_FIND_LINKS= python3 -m pip download --quiet --no-deps --only-binary=:all: \
        --platform musllinux_1_1_x86_64 --python-version 3.11 --dest "$tmp" "uv==$UV_VERSION" >&2
    python3 - "$tmp"/uv-*.whl "$out/uv" <<'PY'
import sys, zipfile
whl, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    name = next(n for n in z.namelist() if n.endswith(".data/scripts/uv"))
    open(dest, "wb").write(z.read(name))
PY
    chmod 0755 "$out/uv"; rm -rf "$tmp"
    sha256sum "$out/uv" | cut -d' ' -f1 > "$out/uv.sha256"
    echo "$UV_VERSION" > "$out/.version"
}

gc() {
    local all="${1:-}" c pid
    for c in $(docker ps -aq --filter label=deploy.testbed.owner); do
        pid="$(docker inspect -f '{{index .Config.Labels "deploy.testbed.owner"}}' "$c")"
        if [[ "$all" == "--all" ]] || ! kill -0 "$pid" 2>/dev/null; then docker rm -f -v "$c" >/dev/null; fi
    done
    for c in $(docker network ls -q --filter label=deploy.testbed.owner); do
        pid="$(docker network inspect -f '{{index .Labels "deploy.testbed.owner"}}' "$c")"
        if [[ "$all" == "--all" ]] || ! kill -0 "$pid" 2>/dev/null; then docker network rm "$c" >/dev/null 2>&1 || true; fi
    done
}

down() {
    local name="$1"
    docker ps -aq --filter "label=deploy.testbed=$name" | xargs -r docker rm -f -v >/dev/null
    docker network ls -q --filter "label=deploy.testbed=$name" | xargs -r docker network rm >/dev/null 2>&1 || true
}

port_of() { docker port "$1" "$2" | head -1 | sed 's/.*://'; }

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
    local limit="$1" what="$2"; shift 2
    for _ in $(seq 1 $((limit * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    die "timed out waiting for $what"
}

up() {
    local name="$1" n="$2" dir="$3" owner="$4" isolated="$5" postgres="$6" image net snet i c
    [[ "$name" =~ ^[a-z0-9][a-z0-9-]*$ ]] || die "bad testbed name '$name'"
    [[ "$n" =~ ^[0-9]+$ ]] || die "bad server count '$n'"
    image="$("$root/ci/image/build.sh" --print-tag)"
    docker image inspect "$image" >/dev/null 2>&1 || die "image $image is missing: run ci/image/build.sh"
    gc; down "$name"; packages; uv_binary
    mkdir -p "$dir"
    [[ -f "$dir/id_ed25519" ]] || ssh-keygen -q -t ed25519 -N '' -C "deploy-testbed-$name" -f "$dir/id_ed25519"
    local labels=(--label "deploy.testbed=$name" --label "deploy.testbed.owner=$owner")
    net="deploy-tb-$name"
    docker network create "${labels[@]}" "$net" >/dev/null
    snet="$net"
    if [[ -n "$isolated" ]]; then
        # The servers' own network: the index is not on it, and its ports are published
        # on the host's loopback only, so the servers have no route to it.
        snet="deploy-tb-$name-dmz"
        docker network create "${labels[@]}" "$snet" >/dev/null
    fi

    local rnd; rnd() { head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
    local db="deploy-tb-$name-db" db_password="" db_port=""
    if [[ -n "$postgres" ]]; then
        # Started first: it makes its cluster while the rest comes up.
        db_password="pw-$(rnd)"
        docker run -d "${labels[@]}" --init --name "$db" --hostname db --network "$snet" \
            --network-alias db -e ROLE=postgres -e DB_PASSWORD="$db_password" \
            -p 127.0.0.1::5432 "$image" >/dev/null
    fi
    (umask 077; printf 'user=deploy-svc\npassword=pw-%s\ntoken=tok-%s\napi_key=key-%s\n' \
        "$(rnd)" "$(rnd)" "$(rnd)" > "$dir/artifactory.credentials")
    c="deploy-tb-$name-index"
    docker create "${labels[@]}" --init --name "$c" --network "$net" --network-alias index \
        -e ROLE=index -p 127.0.0.1::8080 -p 127.0.0.1::8081 "$image" >/dev/null
    docker cp "$cache/packages" "$c:/packages" >/dev/null
    docker start "$c" >/dev/null
    docker exec "$c" mkdir -p /stub
    docker cp "$root/ci/artifactory_stub.py" "$c:/stub/artifactory_stub.py" >/dev/null
    docker cp "$dir/artifactory.credentials" "$c:/stub/credentials" >/dev/null
    docker exec -d "$c" python3 /stub/artifactory_stub.py --port 8081 --packages /packages \
        --repo pypi-local --credentials /stub/credentials --log /stub/access.log
    local pubkey; pubkey="$(cat "$dir/id_ed25519.pub")"
    for i in $(seq 1 "$n"); do
        # /srv/apps on a volume (the host's filesystem), as on a real server: the
        # engine's live pointer relies on rename(2) being atomic, which the container
        # root's fuse-overlayfs (this machine's storage driver) does not guarantee to
        # concurrent lookups.  Removed with the container (`docker rm -v`).
        docker run -d "${labels[@]}" --init --name "deploy-tb-$name-web$i" --hostname "web$i" \
            --network "$snet" -e AUTHORIZED_KEY="$pubkey" -v /srv/apps \
            -p 127.0.0.1::22 -p 127.0.0.1::80 "$image" >/dev/null
    done
    local index_port art_port; index_port="$(port_of "$c" 8080)"; art_port="$(port_of "$c" 8081)"
    wait_for 30 "the index" curl -fsS "http://127.0.0.1:$index_port/simple/"
    wait_for 30 "the Artifactory stub" curl -fsS "http://127.0.0.1:$art_port/artifactory/api/system/ping"

    : > "$dir/known_hosts"
    {
        echo "# Written by ci/testbed.sh for testbed '$name'."
        echo "hosts:"
    } > "$dir/inventory.yml"
    local json_servers=""
    for i in $(seq 1 "$n"); do
        c="deploy-tb-$name-web$i"
        wait_for 30 "sshd in $c" sh -c "docker logs $c 2>&1 | grep -q 'Server listening'"
        local ssh_port http_port fp
        ssh_port="$(port_of "$c" 22)"; http_port="$(port_of "$c" 80)"
        # The host key is read out of band (like a console), so pinning it is an explicit act.
        fp="$(docker exec "$c" ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub | awk '{print $2}')"
        echo "[127.0.0.1]:$ssh_port $fp" >> "$dir/known_hosts"
        printf '  web%s:\n    address: 127.0.0.1\n    port: %s\n    user: deploy\n    groups: [web]\n' \
            "$i" "$ssh_port" >> "$dir/inventory.yml"
        json_servers+="${json_servers:+,}{\"name\":\"web$i\",\"container\":\"$c\",\"ssh_port\":$ssh_port,\"http_port\":$http_port}"
    done
    cat >> "$dir/inventory.yml" <<YAML
applications:
  hello:
    package: hello-app
    index_url: http://index:8080/simple/
    wsgi: hello_app:app
    port: 8000
    server_names: [hello.example.test]
    health:
      path: /healthz
    env:
      GREETING: hello from the inventory
    keep_releases: 3
    environments:
      staging:
        groups: [web]
YAML
    local json_db='"db_container":null,"db_password":null,"db_port":null'
    if [[ -n "$postgres" ]]; then
        wait_for 60 "PostgreSQL in $db" docker exec "$db" pg_isready -q -h 127.0.0.1 -p 5432
        db_port="$(port_of "$db" 5432)"
        if command -v psql >/dev/null; then # a real login over the network, as a server makes one
            wait_for 10 "a login to PostgreSQL as shop" env PGPASSWORD="$db_password" PGCONNECT_TIMEOUT=2 \
                psql -X -q -h 127.0.0.1 -p "$db_port" -U shop -d shop -c 'select 1'
        fi
        json_db="\"db_container\":\"$db\",\"db_password\":\"$db_password\",\"db_port\":$db_port"
    fi
    printf '{"name":"%s","network":"%s","index_container":"%s","index_port":%s,"artifactory_port":%s,"uv_binary":"%s","key":"%s",%s,"servers":[%s]}\n' \
        "$name" "$snet" "deploy-tb-$name-index" "$index_port" "$art_port" "$cache/uv/uv" "$dir/id_ed25519" "$json_db" "$json_servers" > "$dir/testbed.json"
}

cmd="${1:-}"; shift || true
case "$cmd" in
    up)
        [[ $# -ge 3 ]] || die "usage: testbed.sh up NAME N DIR [--owner PID] [--isolated] [--postgres]"
        tb_name="$1" tb_n="$2" tb_dir="$3"; shift 3
        owner="$PPID" isolated="" postgres=""
        while [[ $# -gt 0 ]]; do
            case "$1" in
                --owner) owner="${2:?--owner needs a pid}"; shift 2 ;;
                --isolated) isolated=1; shift ;;
                --postgres) postgres=1; shift ;;
                *) die "unknown option $1" ;;
            esac
        done
        up "$tb_name" "$tb_n" "$(mkdir -p "$tb_dir" && cd "$tb_dir" && pwd)" "$owner" "$isolated" "$postgres" ;;
    down) down "${1:?usage: testbed.sh down NAME}" ;;
    gc) gc "${1:-}" ;;
    packages) packages; uv_binary ;;
    *) die "usage: testbed.sh up|down|gc|packages (see the header of this file)" ;;
esac
