#!/usr/bin/env bash
#! The test bed: N "real servers" and a PyPI index, as labelled Docker containers.
#
#   ci/testbed.sh up NAME N DIR [--owner PID] [--isolated] [--postgres] [--vm] [--srv-tmpfs SIZE] [--rebootable]
#                                              start (or restart) testbed NAME with N servers;
#                                              writes DIR/{id_ed25519,known_hosts,inventory.yml,
#                                              testbed.json,artifactory.credentials}
#                                              --vm: the servers are QEMU VMs with systemd as
#                                              PID 1 (ci/vm/build.sh; "VM servers" below)
#                                              --isolated: the servers get a network of their own,
#                                              with no route to the index (relay tests)
#                                              --postgres: also a PostgreSQL 15 container on the
#                                              servers' network as host `db` (database and role
#                                              `shop`, fresh random password); testbed.json then
#                                              has db_container, db_password, db_port (else null)
#                                              --srv-tmpfs SIZE: each server's /srv is a tmpfs of SIZE
#                                              (`64m`) instead of a volume: a disk that fills (its
#                                              content is lost when the container restarts)
#                                              --rebootable: servers survive `docker restart` as a
#                                              rebooted machine would: the same ports (fixed host
#                                              ports, so the inventory and pins stay true) and an
#                                              empty /run (a tmpfs, as on a real server)
#   ci/testbed.sh down NAME                     remove its containers and network
#   ci/testbed.sh gc [--all]                    remove testbeds whose owner process is gone (or all);
#                                              drop test databases (deploy_t_*) of the private
#                                              PostgreSQL that are idle and older than an hour (or all)
#   ci/testbed.sh packages                      build/fetch the index content into ci/.cache/packages
#   ci/testbed.sh postgres                      ensure the gateway tests' private PostgreSQL 15 is
#                                              running (see pg_server below); idempotent, concurrent-safe
#
# Every container and network carries the label deploy.testbed=NAME and
# deploy.testbed.owner=PID; `up` first removes leftovers of dead owners, because the
# Docker engine outlives the processes that made them.  Ports are published on
# 127.0.0.1 only (random host ports).  Servers reach the index as http://index:8080/
# (pypiserver) and http://index:8081/artifactory/ (ci/artifactory_stub.py: Artifactory's
# PyPI API and authentication over the same wheels, with fresh random credentials).
# testbed.json's servers_index_url, servers_artifactory_url and servers_db (host:port, or
# null) say how the servers reach those (the inventory's index_url is the first).
#
# VM servers (--vm, issue 27): the index (and db) containers as above, and per server a
# QEMU process (-daemonize) booting ci/vm/build.sh's kernel and image on a qcow2 overlay
# DIR/webI.qcow2, with KVM (-cpu host) when /dev/kvm opens and the CPU has vmx/svm, else
# TCG emulation (DEPLOY_VM_ACCEL=kvm|tcg forces one; kvm without /dev/kvm fails).  User-mode networking:
# ssh and http forwarded from random free ports of 127.0.0.1 (QEMU binds port 0; the ports
# are read back from its monitor); guests reach the host's loopback as 10.0.2.2, so the
# index is http://10.0.2.2:<its published port>/simple/ (the stub and the db likewise);
# --isolated is restrict=on: the guests reach nothing.  The deploy user's key and a host
# key made here go in through QEMU's fw_cfg (ci/vm/vm-keys), so known_hosts is written
# before the VM answers; `up` waits until sshd lets the deploy user in (60 s with KVM,
# 300 s with TCG).  Per VM in DIR: webI.qmp (the QMP socket: ci/vm/qmp.py DIR/webI.qmp
# system_reset), webI.console.log (the serial console), webI.qemu.log, webI.hostkey;
# DIR/ssh_known_hosts is OpenSSH's file of the same keys.  VM processes are registered in
# $HOME/.cache/deploy/vm/run/deploy-tb-NAME-webI.{owner,pid,json} (owner pid and testbed
# name; QEMU's pid; how to reach it, read by tests/it/support/vm.rs), and QEMU runs as
# `-name guest=deploy-tb-NAME-webI`: `down` and `gc` kill them by the registry, and `gc`
# kills any such QEMU of this user that the registry does not name.
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

gc() { # tests run in parallel: a container or network may vanish (its owner's `down`) mid-loop
    local all="${1:-}" c pid
    for c in $(docker ps -aq --filter label=deploy.testbed.owner); do
        pid="$(docker inspect -f '{{index .Config.Labels "deploy.testbed.owner"}}' "$c" 2>/dev/null)" || continue
        if [[ "$all" == "--all" ]] || ! kill -0 "$pid" 2>/dev/null; then docker rm -f -v "$c" >/dev/null 2>&1 || true; fi
    done
    for c in $(docker network ls -q --filter label=deploy.testbed.owner); do
        pid="$(docker network inspect -f '{{index .Labels "deploy.testbed.owner"}}' "$c" 2>/dev/null)" || continue
        if [[ "$all" == "--all" ]] || ! kill -0 "$pid" 2>/dev/null; then docker network rm "$c" >/dev/null 2>&1 || true; fi
    done
    vm_gc "$all"
}

down() {
    local name="$1"
    docker ps -aq --filter "label=deploy.testbed=$name" | xargs -r docker rm -f -v >/dev/null
    docker network ls -q --filter "label=deploy.testbed=$name" | xargs -r docker network rm >/dev/null 2>&1 || true
    vm_down "$name"
}

# ---- VM servers (--vm) ---------------------------------------------------------------------
vm_run="$HOME/.cache/deploy/vm/run"

# kvm or tcg: DEPLOY_VM_ACCEL, else kvm when /dev/kvm opens read-write and the CPU has
# hardware virtualisation (vmx or svm).  The second test is not redundant: a /dev/kvm that
# opens can be PVM's (this machine: `kvm-pvm` in dmesg, no vmx/svm in /proc/cpuinfo), a
# KVM for nested guests that runs only PVM-enabled guest kernels; Debian's kernel hangs there
# before its first console line, so such a host gets TCG.
vm_accel() {
    local want="${DEPLOY_VM_ACCEL:-auto}" kvm=""
    if (exec 3<>/dev/kvm) 2>/dev/null && grep -qw -e vmx -e svm /proc/cpuinfo; then kvm=1; fi
    case "$want" in
        auto) if [[ -n "$kvm" ]]; then echo kvm; else echo tcg; fi ;;
        kvm) (exec 3<>/dev/kvm) 2>/dev/null || die "DEPLOY_VM_ACCEL=kvm but /dev/kvm does not open"; echo kvm ;;
        tcg) echo tcg ;;
        *) die "DEPLOY_VM_ACCEL=$want: expected kvm, tcg or auto" ;;
    esac
}

vm_alive() { # vm_alive PID: the process runs (a zombie, dead but not yet reaped, does not)
    local state
    state="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" && [[ -n "$state" && "$state" != Z ]]
}

vm_kill() { # vm_kill VM: stops its QEMU (only if that pid still runs it) and unregisters it
    local vm="$1" pid="" i
    pid="$(cat "$vm_run/$vm.pid" 2>/dev/null)" || true
    if [[ -n "$pid" ]] && tr '\0' ' ' 2>/dev/null < "/proc/$pid/cmdline" | grep -q -- "guest=$vm,"; then
        kill "$pid" 2>/dev/null || true
        for i in $(seq 1 50); do vm_alive "$pid" || break; sleep 0.1; done
        if vm_alive "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
    fi
    rm -f "$vm_run/$vm".{owner,pid,json}
}

vm_gc() { # VMs of dead owners (or all); QEMUs of this user named deploy-tb-* that no entry names
    local all="${1:-}" f vm owner tb p cmd
    for f in "$vm_run"/*.owner; do
        [[ -e "$f" ]] || continue
        vm="$(basename "$f" .owner)"; owner=""; read -r owner tb < "$f" || true
        if [[ "$all" == "--all" ]] || [[ -z "$owner" ]] || ! kill -0 "$owner" 2>/dev/null; then vm_kill "$vm"; fi
    done
    for p in /proc/[0-9]*; do
        [[ -O "$p" ]] || continue
        cmd="$(tr '\0' ' ' 2>/dev/null < "$p/cmdline")" || continue
        [[ "$cmd" == *"-name guest=deploy-tb-"* ]] || continue
        vm="${cmd#*-name guest=}"; vm="${vm%%,*}"
        [[ -e "$vm_run/$vm.owner" ]] || kill -9 "${p#/proc/}" 2>/dev/null || true
    done
}

vm_down() { # the VMs of testbed NAME
    local name="$1" f owner tb
    for f in "$vm_run"/*.owner; do
        [[ -e "$f" ]] || continue
        tb=""; read -r owner tb < "$f" || true
        if [[ "$tb" == "$name" ]]; then vm_kill "$(basename "$f" .owner)"; fi
    done
}

vm_start() { # vm_start NAME I DIR OWNER ISOLATED IMAGE_DIR ACCEL: boots webI (does not wait)
    local name="$1" i="$2" dir="$3" owner="$4" isolated="$5" img="$6" accel="$7"
    local vm="deploy-tb-$name-web$i" host="web$i" net accel_args
    [[ ${#dir} -le 90 ]] || die "DIR is too long for a QMP socket path (${#dir} > 90 characters): $dir"
    rm -f "$dir/$host".{qcow2,hostkey,hostkey.pub,qmp,console.log,qemu.log}
    ssh-keygen -q -t ed25519 -N '' -C "$vm" -f "$dir/$host.hostkey"
    qemu-img create -q -f qcow2 -F qcow2 -b "$img/disk.qcow2" "$dir/$host.qcow2"
    net="user,id=n0,hostname=$host,hostfwd=tcp:127.0.0.1:0-:22,hostfwd=tcp:127.0.0.1:0-:80"
    [[ -z "$isolated" ]] || net+=",restrict=on"
    # -arch-capabilities: QEMU 7.2 under nested KVM (this machine is itself a VM) aborts
    # setting that MSR with plain `-cpu host`; the guest then only assumes more CPU bugs.
    if [[ "$accel" == kvm ]]; then accel_args=(-accel kvm -cpu host,-arch-capabilities); else accel_args=(-accel tcg,tb-size=256); fi
    mkdir -p "$vm_run"
    echo "$owner $name" > "$vm_run/$vm.owner" # before QEMU starts: gc always knows its owner
    qemu-system-x86_64 -name "guest=$vm,process=$vm" -nodefaults -no-user-config -display none \
        -machine pc "${accel_args[@]}" -smp 1 -m 768 \
        -kernel "$img/vmlinuz" -initrd "$img/initrd.img" \
        -append "$(cat "$img/cmdline") systemd.hostname=$host" \
        -drive "file=$dir/$host.qcow2,if=virtio,format=qcow2" \
        -netdev "$net" -device virtio-net-pci,netdev=n0 -device virtio-rng-pci \
        -fw_cfg "name=opt/deploy/authorized_keys,file=$dir/id_ed25519.pub" \
        -fw_cfg "name=opt/deploy/ssh_host_ed25519_key,file=$dir/$host.hostkey" \
        -serial "file:$dir/$host.console.log" -qmp "unix:$dir/$host.qmp,server=on,wait=off" \
        -pidfile "$vm_run/$vm.pid" -daemonize </dev/null >"$dir/$host.qemu.log" 2>&1 ||
        die "QEMU did not start $vm: $(cat "$dir/$host.qemu.log")"
}

vm_port() { # vm_port QMP GUEST_PORT: the loopback port QEMU forwards to the guest's port
    "$root/ci/vm/qmp.py" "$1" hmp "info usernet" |
        awk -v p="$2" '$1 ~ /HOST_FORWARD/ && $6 == p { print $4; exit }'
}

vm_fail() { # vm_fail DIR HOST MESSAGE: dies with the end of the VM's console
    echo "--- last lines of $1/$2.console.log:" >&2
    tail -n 30 "$1/$2.console.log" >&2 2>/dev/null || true
    cat "$1/$2.qemu.log" >&2 2>/dev/null || true
    if [[ ! -s "$1/$2.console.log" ]]; then
        echo "(the console is empty: the kernel never started; a KVM that cannot run it? DEPLOY_VM_ACCEL=tcg)" >&2
    fi
    die "$3"
}

vm_wait_ssh() { # vm_wait_ssh DIR HOST PORT PID SECONDS: until the deploy user gets in
    local dir="$1" host="$2" port="$3" pid="$4" limit="$5" t0=$SECONDS
    while :; do
        vm_alive "$pid" || vm_fail "$dir" "$host" "the QEMU of $host (pid $pid) exited"
        if ssh -q -o BatchMode=yes -o ConnectTimeout=5 -o StrictHostKeyChecking=yes \
            -o UserKnownHostsFile="$dir/ssh_known_hosts" -o GlobalKnownHostsFile=/dev/null \
            -i "$dir/id_ed25519" -p "$port" deploy@127.0.0.1 true </dev/null 2>/dev/null; then
            return 0
        fi
        ((SECONDS - t0 < limit)) || vm_fail "$dir" "$host" "$host did not let the deploy user in over ssh within $limit s"
        sleep 1
    done
}

port_of() { docker port "$1" "$2" | head -1 | sed 's/.*://'; }

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
    local limit="$1" what="$2"; shift 2
    for _ in $(seq 1 $((limit * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    die "timed out waiting for $what"
}

free_port() { # a loopback port nothing listens on now (docker binds it a moment later)
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

up() {
    local name="$1" n="$2" dir="$3" owner="$4" isolated="$5" postgres="$6" vm="$7" srv_tmpfs="$8" rebootable="$9"
    local image net snet i c
    [[ "$name" =~ ^[a-z0-9][a-z0-9-]*$ ]] || die "bad testbed name '$name'"
    [[ "$n" =~ ^[0-9]+$ ]] || die "bad server count '$n'"
    image="$("$root/ci/image/build.sh" --print-tag)"
    docker image inspect "$image" >/dev/null 2>&1 || die "image $image is missing: run ci/image/build.sh"
    local vm_img="" accel="" via="index" db_via="db:5432"
    if [[ -n "$vm" ]]; then
        command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 is missing: apt-get install qemu-system-x86 qemu-utils"
        vm_img="$("$root/ci/vm/build.sh" --print-path)"
        [[ -f "$vm_img/.done" ]] || die "the VM image $vm_img is missing: run ci/vm/build.sh"
        accel="$(vm_accel)"
        via="10.0.2.2"
    fi
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
    local pubkey; pubkey="$(cat "$dir/id_ed25519.pub")" vm_t0=$SECONDS
    for i in $(seq 1 "$n"); do
        if [[ -n "$vm" ]]; then vm_start "$name" "$i" "$dir" "$owner" "$isolated" "$vm_img" "$accel"; continue; fi
        # /srv/apps on a volume (the host's filesystem), as on a real server: the
        # engine's live pointer relies on rename(2) being atomic, which the container
        # root's fuse-overlayfs (this machine's storage driver) does not guarantee to
        # concurrent lookups.  Removed with the container (`docker rm -v`).  A tmpfs
        # (a real kernel filesystem too; `exec`: Docker mounts a tmpfs noexec by default)
        # where the test wants a disk that fills.
        local disk=(-v /srv/apps) ports=(-p 127.0.0.1::22 -p 127.0.0.1::80) boot=() try
        [[ -n "$srv_tmpfs" ]] && disk=(--tmpfs "/srv:size=$srv_tmpfs,mode=0755,exec")
        [[ -n "$rebootable" ]] && boot=(--tmpfs /run:mode=0755)
        for try in 1 2 3; do
            # Random host ports change when a container restarts; fixed ones do not.
            [[ -n "$rebootable" ]] && ports=(-p "127.0.0.1:$(free_port):22" -p "127.0.0.1:$(free_port):80")
            docker run -d "${labels[@]}" --init --name "deploy-tb-$name-web$i" --hostname "web$i" \
                --network "$snet" -e AUTHORIZED_KEY="$pubkey" "${disk[@]}" "${boot[@]}" \
                "${ports[@]}" "$image" >/dev/null && break
            # A fixed port taken meanwhile by someone else: again, with others.
            docker rm -f -v "deploy-tb-$name-web$i" >/dev/null 2>&1 || true
            [[ "$try" == 3 ]] && die "could not start deploy-tb-$name-web$i"
        done
    done
    local index_port art_port; index_port="$(port_of "$c" 8080)"; art_port="$(port_of "$c" 8081)"
    local index_url="http://index:8080/simple/" art_url="http://index:8081/artifactory/"
    if [[ -n "$vm" ]]; then
        index_url="http://$via:$index_port/simple/"; art_url="http://$via:$art_port/artifactory/"
    fi
    wait_for 30 "the index" curl -fsS "http://127.0.0.1:$index_port/simple/"
    wait_for 30 "the Artifactory stub" curl -fsS "http://127.0.0.1:$art_port/artifactory/api/system/ping"

    : > "$dir/known_hosts"; : > "$dir/ssh_known_hosts"
    {
        echo "# Written by ci/testbed.sh for testbed '$name'."
        echo "hosts:"
    } > "$dir/inventory.yml"
    local json_servers=""
    for i in $(seq 1 "$n"); do
        c="deploy-tb-$name-web$i"
        if [[ -n "$vm" ]]; then
            local h="web$i" qmp="$dir/web$i.qmp" pid ssh_port http_port limit=60
            [[ "$accel" == kvm ]] || limit=300
            pid="$(cat "$vm_run/$c.pid")"
            ssh_port="$(vm_port "$qmp" 22)"; http_port="$(vm_port "$qmp" 80)"
            [[ -n "$ssh_port" && -n "$http_port" ]] || vm_fail "$dir" "$h" "no forwarded ports for $h in QEMU's monitor"
            # The host key was made here and handed over (fw_cfg): pinned before the VM answers.
            echo "[127.0.0.1]:$ssh_port $(ssh-keygen -lf "$dir/$h.hostkey.pub" | awk '{print $2}')" >> "$dir/known_hosts"
            echo "[127.0.0.1]:$ssh_port $(cut -d' ' -f1,2 "$dir/$h.hostkey.pub")" >> "$dir/ssh_known_hosts"
            vm_wait_ssh "$dir" "$h" "$ssh_port" "$pid" "$limit"
            echo "testbed: $h ($c, $accel) let the deploy user in over ssh $((SECONDS - vm_t0)) s after QEMU started" >&2
            printf '  %s:\n    address: 127.0.0.1\n    port: %s\n    user: deploy\n    groups: [web]\n' \
                "$h" "$ssh_port" >> "$dir/inventory.yml"
            local vm_json
            vm_json="{\"qmp\":\"$qmp\",\"pid\":$pid,\"accel\":\"$accel\",\"console\":\"$dir/$h.console.log\",\"ssh_known_hosts\":\"$dir/ssh_known_hosts\",\"key\":\"$dir/id_ed25519\"}"
            printf '{"name":"%s","testbed":"%s","ssh_port":%s,"http_port":%s,"vm":%s}\n' \
                "$h" "$name" "$ssh_port" "$http_port" "$vm_json" > "$vm_run/$c.json"
            json_servers+="${json_servers:+,}{\"name\":\"$h\",\"container\":\"vm:$c\",\"ssh_port\":$ssh_port,\"http_port\":$http_port,\"vm\":$vm_json}"
            continue
        fi
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
    # `installer: uv`: the tests' default (a fresh release costs a server ~0.5 s with uv,
    # ~9 s with pip on this machine, and most tests deploy fresh servers many times);
    # tests/it/support gives every engine config and gateway the pinned uv. pip's whole
    # path is the test of tests/it/engine_deploy.rs and of tests/it/artifacts.rs.
    cat >> "$dir/inventory.yml" <<YAML
applications:
  hello:
    package: hello-app
    index_url: $index_url
    wsgi: hello_app:app
    installer: uv
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
        [[ -z "$vm" ]] || db_via="$via:$db_port"
        json_db+=",\"servers_db\":\"$db_via\""
    else
        json_db+=',"servers_db":null'
    fi
    json_db+=",\"servers_index_url\":\"$index_url\",\"servers_artifactory_url\":\"$art_url\",\"vm\":$([[ -n "$vm" ]] && echo true || echo false)"
    printf '{"name":"%s","network":"%s","index_container":"%s","index_port":%s,"artifactory_port":%s,"uv_binary":"%s","key":"%s",%s,"servers":[%s]}\n' \
        "$name" "$snet" "deploy-tb-$name-index" "$index_port" "$art_port" "$cache/uv/uv" "$dir/id_ed25519" "$json_db" "$json_servers" > "$dir/testbed.json"
}

# ---- the private PostgreSQL of the gateway tests (`postgres`, and `gc`) -------------------
#
# One server per machine user, shared by every checkout and test process: Debian's
# PostgreSQL 15 (/usr/lib/postgresql/15/bin), data in $HOME/.cache/deploy/pg/data, its
# Unix socket in $HOME/.cache/deploy/pg/run (mode 0700: only this user; `trust` there for
# the superuser `postgres`), TCP on 127.0.0.1:55432 only with scram-sha-256 passwords.
# Tuned for tests, not durability (fsync, synchronous_commit, full_page_writes off).
# The role `deploy` (password deploy-test-pw, CREATEDB, not a superuser) is what the tests
# and gateways log in as; tests/support/pg.rs makes a database per gateway (deploy_t_*).
#
# PostgreSQL refuses to run as root. As root the server runs in a user namespace where
# root is mapped to the uid of `postgres` (so the data directory stays root's, under a
# $HOME that is mode 0700 and that the real `postgres` user could not even traverse).
PG_BIN=/usr/lib/postgresql/15/bin
PG_PORT=55432
PG_ROLE=deploy
PG_PASSWORD=deploy-test-pw   # the fixed test password (not a secret: loopback only)
pg_base="$HOME/.cache/deploy/pg"

# Runs a PostgreSQL server program as a non-root user; never with the lock's descriptor
# (a server started here would hold the lock for its whole life).
as_pg() {
    if [[ "$(id -u)" != 0 ]]; then "$@"; return; fi
    local uid gid
    uid="$(id -u postgres 2>/dev/null || echo 70)"; gid="$(id -g postgres 2>/dev/null || echo 70)"
    unshare --user --map-user="$uid" --map-group="$gid" -- "$@"
} 9>&-

pg_superuser() { # psql as the superuser over the private socket: pg_superuser ARGS...
    PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$pg_base/run" -p "$PG_PORT" \
        -U postgres -d postgres "$@"
}

pg_ready() { # the server accepts connections on its socket
    "$PG_BIN/pg_isready" -q -t 3 -h "$pg_base/run" -p "$PG_PORT" >/dev/null 2>&1
}

pg_role_ok() { # a real login as the tests make it
    PGPASSWORD="$PG_PASSWORD" PGCONNECT_TIMEOUT=3 "$PG_BIN/psql" -X -q -At -h 127.0.0.1 -p "$PG_PORT" \
        -U "$PG_ROLE" -d postgres -c 'select 1' >/dev/null 2>&1
}

pg_config() { # the settings this script owns, included from postgresql.conf
    cat <<CONF
# Written by ci/testbed.sh postgres; rewritten (and the server restarted) when it changes.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$pg_base/run'
unix_socket_permissions = 0700
max_connections = 300
shared_buffers = 128MB
fsync = off
synchronous_commit = off
full_page_writes = off
wal_level = minimal
max_wal_senders = 0
checkpoint_timeout = 30min
max_wal_size = 2GB
password_encryption = 'scram-sha-256'
log_min_messages = warning
log_connections = off
log_line_prefix = '%m [%p] %q%u@%d '
CONF
}

pg_hba() {
    cat <<HBA
# Written by ci/testbed.sh postgres.
# TYPE  DATABASE  USER      ADDRESS        METHOD
local   all       postgres                 trust
host    all       all       127.0.0.1/32   scram-sha-256
HBA
}

pg_fail() { # pg_fail MESSAGE: dies with the end of the server's log
    echo "testbed: $*" >&2
    if [[ -f "$pg_base/server.log" ]]; then
        echo "--- last lines of $pg_base/server.log:" >&2
        tail -n 20 "$pg_base/server.log" >&2
    fi
    exit 1
}

pg_server() {
    [[ -x "$PG_BIN/initdb" ]] || die "PostgreSQL 15 is not installed ($PG_BIN/initdb is missing): apt-get install postgresql"
    local data="$pg_base/data" stamp want
    want="$( (pg_config; pg_hba) | sha256sum | cut -c1-16)"
    stamp="$pg_base/.stamp"
    # Fast path, without the lock: running, configured as this script says, and the role logs in.
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && pg_role_ok; then return; fi

    mkdir -p "$pg_base"
    exec 9>"$pg_base/.lock"
    flock -w 300 9 || die "timed out waiting for $pg_base/.lock"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && pg_role_ok; then return; fi

    local started=""
    if [[ ! -f "$data/PG_VERSION" ]]; then
        rm -rf "$data"
        mkdir -m 0700 "$data"
        as_pg "$PG_BIN/initdb" -D "$data" -U postgres --auth-local=trust --auth-host=reject \
            -E UTF8 --locale=C.UTF-8 --no-sync >"$pg_base/initdb.log" 2>&1 ||
            { cat "$pg_base/initdb.log" >&2; pg_fail "initdb of $data failed"; }
        echo "include_if_exists = 'deploy-test.conf'" >> "$data/postgresql.conf"
    fi
    mkdir -p -m 0700 "$pg_base/run"
    local conf_changed=""
    if [[ "$(cat "$data/deploy-test.conf" 2>/dev/null)" != "$(pg_config)" ]] ||
       [[ "$(cat "$data/pg_hba.conf" 2>/dev/null)" != "$(pg_hba)" ]]; then
        pg_config > "$data/deploy-test.conf"
        pg_hba > "$data/pg_hba.conf"
        conf_changed=1
    fi
    if pg_ready; then
        if [[ -n "$conf_changed" ]]; then
            as_pg "$PG_BIN/pg_ctl" -D "$data" -m fast -w -t 60 restart -l "$pg_base/server.log" >/dev/null ||
                pg_fail "restarting PostgreSQL failed"
            started=1
        fi
    else
        # Tried again for a while: a server killed a moment ago may still be a zombie whose
        # pid holds postmaster.pid (the server refuses to start), or still shutting down.
        # A stale postmaster.pid of a server that is gone is cleared by the server itself;
        # a port taken by something else fails here, loudly.
        local try
        for try in $(seq 1 15); do
            if pg_ready; then break; fi
            if as_pg "$PG_BIN/pg_ctl" -D "$data" -w -t 60 start -l "$pg_base/server.log" >/dev/null 2>&1; then
                started=1; break
            fi
            sleep 2
        done
        pg_ready || pg_fail "PostgreSQL did not start on 127.0.0.1:$PG_PORT"
    fi
    pg_superuser >/dev/null <<SQL || pg_fail "could not set up the role $PG_ROLE"
SELECT format('CREATE ROLE %I', '$PG_ROLE') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$PG_ROLE') \gexec
ALTER ROLE $PG_ROLE WITH LOGIN CREATEDB NOSUPERUSER NOCREATEROLE PASSWORD '$PG_PASSWORD';
SQL
    pg_role_ok || pg_fail "a login as $PG_ROLE on 127.0.0.1:$PG_PORT failed"
    echo "$want" > "$stamp"
    if [[ -n "$started" ]]; then
        echo "testbed: PostgreSQL 15 on 127.0.0.1:$PG_PORT (data in $data)" >&2
    fi
}

pg_gc() { # drops test databases: idle and older than an hour, or all with --all
    local all="${1:-}"
    # Fast when there is no server: no socket, nothing to do.
    [[ -S "$pg_base/run/.s.PGSQL.$PG_PORT" && -x "$PG_BIN/psql" ]] || return 0
    local db
    # Old: created more than an hour ago by its comment (`deploy-test created <unix seconds>`,
    # written by tests/support/pg.rs; none: as old as can be) and no file of it created or
    # removed for an hour either (its directory's mtime: databases made by other code).
    for db in $(pg_superuser -At <<SQL 2>/dev/null
SELECT d.datname FROM pg_database d
 WHERE d.datname LIKE 'deploy\_t\_%'
   AND ('$all' = '--all' OR (
        NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)
        AND coalesce(substring(shobj_description(d.oid, 'pg_database') from 'created ([0-9]+)')::bigint, 0)
            < extract(epoch from now()) - 3600
        AND (pg_stat_file('base/' || d.oid, true)).modification < now() - interval '1 hour'))
SQL
    ); do
        if [[ "$all" == "--all" ]]; then
            pg_superuser -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null
        else
            # Not forced: a database that came into use since the query stays.
            pg_superuser -c "DROP DATABASE IF EXISTS \"$db\"" >/dev/null 2>&1 || true
        fi
    done
}

cmd="${1:-}"; shift || true
case "$cmd" in
    up)
        [[ $# -ge 3 ]] || die "usage: testbed.sh up NAME N DIR [--owner PID] [--isolated] [--postgres] [--vm] [--srv-tmpfs SIZE] [--rebootable]"
        tb_name="$1" tb_n="$2" tb_dir="$3"; shift 3
        owner="$PPID" isolated="" postgres="" vm="" srv_tmpfs="" rebootable=""
        while [[ $# -gt 0 ]]; do
            case "$1" in
                --owner) owner="${2:?--owner needs a pid}"; shift 2 ;;
                --isolated) isolated=1; shift ;;
                --postgres) postgres=1; shift ;;
                --vm) vm=1; shift ;;
                --srv-tmpfs) srv_tmpfs="${2:?--srv-tmpfs needs a size (64m)}"; shift 2
                    [[ "$srv_tmpfs" =~ ^[0-9]+[kmg]?$ ]] || die "bad --srv-tmpfs size '$srv_tmpfs'" ;;
                --rebootable) rebootable=1; shift ;;
                *) die "unknown option $1" ;;
            esac
        done
        up "$tb_name" "$tb_n" "$(mkdir -p "$tb_dir" && cd "$tb_dir" && pwd)" "$owner" "$isolated" "$postgres" \
            "$vm" "$srv_tmpfs" "$rebootable" ;;
    down) down "${1:?usage: testbed.sh down NAME}" ;;
    gc) gc "${1:-}"; pg_gc "${1:-}" ;;
    packages) packages; uv_binary ;;
    postgres) pg_server ;;
    *) die "usage: testbed.sh up|down|gc|packages|postgres (see the header of this file)" ;;
esac
