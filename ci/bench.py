#!/usr/bin/env python3
"""Benchmark: times the engine on real test servers and prints medians and ratios.

Scenarios, each on every size in --sizes, with each installer (pip: `python3 -m venv` +
pip; uv: `uv venv` + `uv pip install`, the pinned uv shipped by the engine), at each
added round-trip time in --rtt-ms (0: loopback; else through ci/latency_proxy.py between
the engine and every server's sshd), each run RUNS times (median, min, max):
  floor    `ssh host true` to every host at once: the connection floor
  fresh    deploy 1.0.0 to servers with nothing of the app on them (nor uv: it is shipped)
  noop     deploy 1.0.0 again (nothing changes, nothing restarts)
  upgrade  deploy 1.1.0 over 1.0.0 (new virtualenv, install, start the idle slot,
           health check, switch, drain 2 s, stop the old slot)
  rollback deploy 1.0.0 again over 1.1.0 (release on disk: no install; slot swap)

Every figure is measured in this invocation and compared only with figures of this
invocation:
  med s/min/max  wall-clock of `deploy-gateway apply` (process start to exit)
  /floor         med s against the floor's median (same size, same latency)
  trips          median over runs of the most sequential round trips any host needed (the
                 engine's count: commands waited for one after another; concurrent ones
                 count once)
  gw cpu s       the gateway process's CPU time, user + system (os.wait4's rusage of the
                 child: the engine's SSH is in-process, so this is all of its cost)
  gw ms/host     gw cpu s per host, in milliseconds
  gw MiB         the gateway's peak resident set (ru_maxrss)
  tgt cpu s      CPU time the servers spent during the scenario: the sum over every server
                 container of its cgroup's CPU usage after minus before (sshd, the
                 engine's commands, venv/pip/uv, supervisord, nginx, the app starting)
All columns are medians over the runs (min and max: of the wall time).

--baseline-bin PATH runs every scenario with a second `deploy-gateway` too (the previous
release), on the same bed, interleaved: in each run, for each installer, one binary goes
through reset, fresh, noop, upgrade, rollback, then the servers are reset and the other
binary goes through the same sequence (which goes first alternates from run to run).
Rows are marked `cur` and `base`; on `cur` rows, `vs base` is current median / baseline
median for wall, trips and target CPU (below 1: the current binary is better).  The
baseline runs with its own tree as working directory (--baseline-root: its playbooks/
and templates/), the current one with this checkout's.  To build the previous commit (or
the one N commits back) beside this checkout, with a target directory of its own:
    git worktree add --detach /tmp/prev HEAD~1
    CARGO_TARGET_DIR=/tmp/prev-target cargo build --release --locked \\
        --manifest-path /tmp/prev/Cargo.toml --bin deploy-gateway
    python3 ci/bench.py --baseline-bin /tmp/prev-target/release/deploy-gateway \\
        --baseline-root /tmp/prev ...
    git worktree remove /tmp/prev
(--gateway PATH: the current binary, already built; without it, `cargo build --release`
here and $CARGO_TARGET_DIR/release/deploy-gateway.)

At 100 hosts (--sizes 100): ci/testbed.sh starts the containers one after another
(seen: 205 s for 100 on 2 cores while a build ran; 8 started 4 or 8 at once came up only
1.4x faster than one by one: dockerd is the bottleneck); a server with the app running
holds about 100-150 MiB; the floor opens 100 ssh connections at once (one thread each);
the engine deploys `parallel` hosts at a time (10 unless the inventory says).  With
--rtt-ms, ci/latency_proxy.py (one Python process) moves about 400 MiB per CPU second:
a fresh uv deploy ships uv (44 MB) to every host, 4.4 GB at 100 hosts, some 10 s of the
proxy's CPU on top of the engine's and the servers'.
The servers' CPU comes from the containers' cgroups (cgroup v2 cpu.stat usage_usec or v1
cpuacct.usage, whichever this machine has; else read inside each container); the JSON
says which (meta.target_cpu_from).

--all-at-once deploys to every host at once (parallel = hosts, no canary), as the floor
connects to every host at once: the engine's own cost against the floor.  Without it, the
testbed inventory's rollout (a canary alone first, then 10 hosts at a time) adds
sequential waves of hosts, each paying the connection and its round trips again.

--json PATH writes every raw figure (each run of each scenario, each binary) and the
medians as JSON.

usage: ci/bench.py [--runs N] [--sizes 1,10] [--installers pip,uv] [--rtt-ms 0,100] [--all-at-once]
                   [--gateway PATH] [--baseline-bin PATH [--baseline-root DIR]] [--json PATH]
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESET = ("supervisorctl stop hello-blue hello-green >/dev/null 2>&1; rm -rf /srv/apps/hello /etc/supervisor/conf.d/hello-*.conf "
         "/etc/nginx/sites-enabled/hello.conf /home/deploy/.cache; supervisorctl update >/dev/null; nginx -s reload")
SCENARIOS = [("fresh", "1.0.0"), ("noop", "1.0.0"), ("upgrade", "1.1.0"), ("rollback", "1.0.0")]
ORDER = ["floor"] + [s for s, _ in SCENARIOS]
# Docker's per-container CPU accounting, by cgroup layout: (path with {id}, format).
# v2: cpu.stat's usage_usec; v1: cpuacct.usage in nanoseconds.
CGROUP_FILES = [
    ("/sys/fs/cgroup/system.slice/docker-{id}.scope/cpu.stat", "v2"),  # v2, systemd driver
    ("/sys/fs/cgroup/docker/{id}/cpu.stat", "v2"),                     # v2, cgroupfs driver
    ("/sys/fs/cgroup/cpuacct/docker/{id}/cpuacct.usage", "v1"),        # v1, cgroupfs driver
    ("/sys/fs/cgroup/cpu,cpuacct/docker/{id}/cpuacct.usage", "v1"),
    ("/sys/fs/cgroup/cpuacct/system.slice/docker-{id}.scope/cpuacct.usage", "v1"),  # v1, systemd
    ("/sys/fs/cgroup/unified/docker/{id}/cpu.stat", "v2"),             # hybrid: v2 half
]
# Inside the container its own cgroup is at the root (a cgroup namespace).
IN_CONTAINER = "cat /sys/fs/cgroup/cpu.stat 2>/dev/null || cat /sys/fs/cgroup/cpuacct/cpuacct.usage"


def sh(*args, **kw):
    return subprocess.run(args, check=True, text=True, capture_output=True, **kw)


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(text, fmt):
    """Seconds from a cpu.stat (v2) or cpuacct.usage (v1) file's text."""
    if fmt == "v2" or "usage_usec" in text:
        for line in text.splitlines():
            k, _, v = line.partition(" ")
            if k == "usage_usec":
                return int(v) / 1e6
        raise ValueError(f"no usage_usec in {text!r}")
    return int(text.split()[0]) / 1e9


class Bed:
    """A test bed of n servers, reached directly or through the latency proxy."""

    def __init__(self, tmp, rtt, all_at_once=False):
        self.tmp = pathlib.Path(tmp)
        tb = json.loads((self.tmp / "testbed.json").read_text())
        self.containers = [s["container"] for s in tb["servers"]]
        self.ports = [s["ssh_port"] for s in tb["servers"]]
        self.proxy = None
        self.cgroups = self.find_cgroups()
        inv = (self.tmp / "inventory.yml").read_text()
        if all_at_once:
            # Like the floor (and like Ansible's forks = hosts): every host at once, no
            # canary going first alone.
            env = "      staging:\n        groups: [web]\n"
            assert env in inv, "the testbed's inventory changed: update --all-at-once"
            inv = inv.replace(env, env + f"        parallel: {len(self.containers)}\n"
                              "        rollout: {canary: false}\n")
        pins = (self.tmp / "known_hosts").read_text()
        if rtt > 0:
            for attempt in range(3):
                # A port free_port() saw free may be taken before the proxy binds it
                # (more likely with 100 of them): then again, with other ports.
                mapping = {p: free_port() for p in self.ports}
                self.proxy = subprocess.Popen(
                    [sys.executable, str(ROOT / "ci/latency_proxy.py"), "--rtt-ms", str(rtt),
                     *[a for p, q in mapping.items() for a in ("--map", f"{q}:{p}")]],
                    stdout=subprocess.PIPE, text=True)
                if self.proxy.stdout.readline().strip() == "ready":
                    break
                self.proxy.wait()
            else:
                sys.exit("ci/latency_proxy.py did not start")
            for p, q in mapping.items():
                inv = inv.replace(f"    port: {p}\n", f"    port: {q}\n")
                pins += "".join(l.replace(f"]:{p} ", f"]:{q} ") + "\n"
                                for l in pins.splitlines() if f"]:{p} " in l)
            self.ports = list(mapping.values())
        # The bed's inventory names uv (the tests' default): pip's file drops it.
        bare = inv.replace("    installer: uv\n", "")
        (self.tmp / f"inv-{rtt}.yml").write_text(bare)
        (self.tmp / f"inv-{rtt}-uv.yml").write_text(
            bare.replace("    wsgi: hello_app:app\n", "    wsgi: hello_app:app\n    installer: uv\n"))
        (self.tmp / f"known-{rtt}").write_text(pins)
        self.rtt = rtt

    def close(self):
        if self.proxy:
            self.proxy.kill()
            self.proxy.wait()

    def pool(self, limit=None):
        n = len(self.containers)
        return ThreadPoolExecutor(max(1, min(n, limit) if limit else n))

    def find_cgroups(self):
        """[(file, format)] per container, or None: ask each container (docker exec)."""
        ids = sh("docker", "inspect", "-f", "{{.Id}}", *self.containers).stdout.split()
        for pattern, fmt in CGROUP_FILES:
            files = [pattern.format(id=i) for i in ids]
            if all(os.path.exists(f) for f in files):
                self.cgroup_method = pattern
                return [(f, fmt) for f in files]
        self.cgroup_method = "docker exec: " + IN_CONTAINER
        return None

    def target_cpu(self):
        """Seconds of CPU every server container has used so far, summed."""
        if self.cgroups is not None:
            return sum(cpu_seconds(pathlib.Path(f).read_text(), fmt) for f, fmt in self.cgroups)
        with self.pool(16) as ex:
            return sum(ex.map(lambda c: cpu_seconds(
                sh("docker", "exec", c, "sh", "-c", IN_CONTAINER).stdout, "?"), self.containers))

    def reset(self):
        """Nothing of the app on any server (nor uv), in parallel."""
        with self.pool(8) as ex:
            list(ex.map(lambda c: sh("docker", "exec", c, "sh", "-c", RESET), self.containers))

    def floor(self):
        """{wall, tgt_cpu} for `ssh host true` to every host at once."""
        def one(port):
            # (The engine pins keys in its own format; this is only the timing floor.)
            sh("ssh", "-q", "-i", str(self.tmp / "id_ed25519"), "-p", str(port),
               "-o", "UserKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=no",
               "-o", "BatchMode=yes", "-o", "ConnectTimeout=60", "deploy@127.0.0.1", "true")
        cpu0 = self.target_cpu()
        with self.pool() as ex:  # one thread (one ssh) per host: all at once
            t0 = time.monotonic()
            list(ex.map(one, self.ports))
            dt = time.monotonic() - t0
        return {"wall_s": dt, "trips": 1, "tgt_cpu_s": self.target_cpu() - cpu0}

    def apply(self, gateway, cwd, version, installer, uv):
        """The wall time, round trips (most of any host), gateway rusage and servers' CPU."""
        extra = ["--uv", str(uv)] if installer == "uv" else []
        inv = self.tmp / (f"inv-{self.rtt}-uv.yml" if installer == "uv" else f"inv-{self.rtt}.yml")
        argv = [str(gateway), "apply", "--json", "-i", str(inv), "--known-hosts",
                str(self.tmp / f"known-{self.rtt}"), "--key", str(self.tmp / "id_ed25519"),
                "hello", version, "-e", "staging", *extra]
        cpu0 = self.target_cpu()
        # Output to files, not pipes: nothing to drain while os.wait4 waits for the
        # rusage of this one child.
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            t0 = time.monotonic()
            p = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
            _, status, ru = os.wait4(p.pid, 0)
            dt = time.monotonic() - t0
            p.returncode = os.waitstatus_to_exitcode(status)
            tgt = self.target_cpu() - cpu0
            out.seek(0)
            stdout = out.read()
            if p.returncode != 0:
                err.seek(0)
                sys.exit(f"{gateway}: deploy {version} failed ({p.returncode}):\n"
                         f"{stdout[-3000:]}\n{err.read()[-3000:]}")
        trips = [json.loads(l).get("round_trips", 0) for l in stdout.splitlines()
                 if '"type":"host_finished"' in l.replace(" ", "")]
        return {"wall_s": dt, "trips": max(trips, default=0), "gw_user_s": ru.ru_utime,
                "gw_sys_s": ru.ru_stime, "gw_cpu_s": ru.ru_utime + ru.ru_stime,
                "gw_maxrss_kib": ru.ru_maxrss, "tgt_cpu_s": tgt}


def run_size(n, args, binaries, uv, results, meta):
    with tempfile.TemporaryDirectory() as tmp:
        name = f"bench{n}-{os.getpid()}"
        t0 = time.monotonic()
        sh(str(ROOT / "ci/testbed.sh"), "up", name, str(n), tmp, "--owner", str(os.getpid()))
        meta["bed_up_s"][str(n)] = round(time.monotonic() - t0, 2)
        print(f"  {n} host(s): bed up in {time.monotonic() - t0:.1f} s", file=sys.stderr)
        try:
            for rtt in [float(x) for x in args.rtt_ms.split(",")]:
                bed = Bed(tmp, rtt, args.all_at_once)
                meta["target_cpu_from"] = bed.cgroup_method
                try:
                    for run in range(args.runs):
                        results.setdefault(("floor", n, rtt, "-", "-"), []).append(
                            dict(bed.floor(), run=run))
                        # Alternate which binary goes first: neither always gets the bed
                        # right after the floor, or the other one's leftovers.
                        order = binaries if run % 2 == 0 else binaries[::-1]
                        for inst in args.installers.split(","):
                            for label, gateway, cwd in order:
                                bed.reset()
                                for scenario, version in SCENARIOS:
                                    r = bed.apply(gateway, cwd, version, inst, uv)
                                    results.setdefault((scenario, n, rtt, inst, label), []).append(dict(r, run=run))
                                    print(f"    {scenario} {inst} {label}: {r['wall_s']:.1f} s, gw cpu "
                                          f"{r['gw_cpu_s']:.2f} s, tgt cpu {r['tgt_cpu_s']:.1f} s", file=sys.stderr)
                        print(f"  {n} host(s), {rtt:g} ms: run {run + 1}/{args.runs} done", file=sys.stderr)
                finally:
                    bed.close()
        finally:
            sh(str(ROOT / "ci/testbed.sh"), "down", name)


def med(vals, key):
    xs = [v[key] for v in vals if key in v]
    return statistics.median(xs) if xs else None


def summarize(results):
    """[{scenario, hosts, rtt_ms, installer, binary, medians...}] in table order."""
    rows = []
    keys = sorted(results, key=lambda k: (k[1], k[2], k[3] != "-", k[3], ORDER.index(k[0]), k[4] != "base"))
    for key in keys:
        scenario, n, rtt, inst, label = key
        vals = results[key]
        floor = med(results[("floor", n, rtt, "-", "-")], "wall_s")
        row = {"scenario": scenario, "hosts": n, "rtt_ms": rtt, "installer": inst, "binary": label,
               "runs": len(vals), "wall_s": med(vals, "wall_s"),
               "wall_min_s": min(v["wall_s"] for v in vals), "wall_max_s": max(v["wall_s"] for v in vals),
               "vs_floor": med(vals, "wall_s") / floor, "trips": med(vals, "trips"),
               "gw_cpu_s": med(vals, "gw_cpu_s"), "gw_maxrss_mib": None, "tgt_cpu_s": med(vals, "tgt_cpu_s")}
        if row["gw_cpu_s"] is not None:
            row["gw_cpu_ms_per_host"] = row["gw_cpu_s"] * 1000 / n
            row["gw_maxrss_mib"] = med(vals, "gw_maxrss_kib") / 1024
        base = results.get((scenario, n, rtt, inst, "base"))
        if label == "cur" and base:
            ratio = lambda k: (row[k] / med(base, k)) if med(base, k) else None
            row["vs_base"] = {"wall": ratio("wall_s"), "trips": ratio("trips"), "tgt_cpu": ratio("tgt_cpu_s")}
        rows.append(row)
    return rows


def fmt(x, spec, width):
    return f"{'-':>{width}}" if x is None else f"{x:>{width}{spec}}"


def print_table(rows, args, baseline):
    head = (f"{'scenario':<10}{'inst':>5}{'hosts':>6}{'rtt ms':>7}{'bin':>5}{'med s':>8}{'min':>7}{'max':>7}"
            f"{'/floor':>8}{'trips':>7}{'gw cpu s':>9}{'gw ms/host':>11}{'gw MiB':>8}{'tgt cpu s':>10}")
    if baseline:
        head += f"   vs base:{'wall':>6}{'trips':>6}{'tgt':>6}"
    print(f"\n{head}   (runs={args.runs}; medians; /floor: against `ssh host true` to all hosts, "
          f"same size and rtt" + ("; vs base: cur / base" if baseline else "") + ")")
    for r in rows:
        line = (f"{r['scenario']:<10}{r['installer']:>5}{r['hosts']:>6}{r['rtt_ms']:>7g}{r['binary']:>5}"
                f"{r['wall_s']:>8.2f}{r['wall_min_s']:>7.2f}{r['wall_max_s']:>7.2f}{r['vs_floor']:>8.2f}"
                f"{r['trips']:>7g}{fmt(r['gw_cpu_s'], '.2f', 9)}{fmt(r.get('gw_cpu_ms_per_host'), '.1f', 11)}"
                f"{fmt(r['gw_maxrss_mib'], '.1f', 8)}{fmt(r['tgt_cpu_s'], '.2f', 10)}")
        if "vs_base" in r:
            vb = r["vs_base"]
            line += f"{'':>11}{fmt(vb['wall'], '.2f', 6)}{fmt(vb['trips'], '.2f', 6)}{fmt(vb['tgt_cpu'], '.2f', 6)}"
        print(line)


def main():
    ap = argparse.ArgumentParser(description="see the docstring of ci/bench.py")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sizes", default="1,10")
    ap.add_argument("--installers", default="pip,uv")
    ap.add_argument("--rtt-ms", default="0,100")
    ap.add_argument("--gateway", type=pathlib.Path,
                    help="the current deploy-gateway, already built (default: cargo build --release here)")
    ap.add_argument("--baseline-bin", type=pathlib.Path,
                    help="a second deploy-gateway (the previous release) to run every scenario with too")
    ap.add_argument("--baseline-root", type=pathlib.Path,
                    help="the baseline's source tree, its working directory (default: this checkout)")
    ap.add_argument("--all-at-once", action="store_true",
                    help="every host at once (parallel = hosts, no canary), as the floor; "
                         "default: the inventory's rollout (a canary first, then 10 at a time)")
    ap.add_argument("--json", type=pathlib.Path, help="write every raw figure and the medians here")
    args = ap.parse_args()
    sh(str(ROOT / "ci/testbed.sh"), "packages")
    uv = ROOT / "ci/.cache/uv/uv"
    if args.gateway:
        gateway = args.gateway.resolve()
    else:
        target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
        sh("cargo", "build", "--release", "--bin", "deploy-gateway", cwd=ROOT)
        gateway = pathlib.Path(target) / "release" / "deploy-gateway"
    binaries = [("cur", gateway, ROOT)]
    if args.baseline_bin:
        base_root = (args.baseline_root or ROOT).resolve()
        binaries.insert(0, ("base", args.baseline_bin.resolve(), base_root))
    for _, b, cwd in binaries:
        if not os.access(b, os.X_OK):
            sys.exit(f"not an executable: {b}")
        if not (cwd / "playbooks").is_dir():
            sys.exit(f"no playbooks/ in {cwd} (the gateway's working directory)")
    results = {}
    meta = {"argv": sys.argv, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "binaries": {l: {"path": str(b), "cwd": str(c)} for l, b, c in binaries},
            "cpus": os.cpu_count(), "bed_up_s": {}}
    for n in [int(x) for x in args.sizes.split(",")]:
        run_size(n, args, binaries, uv, results, meta)
    rows = summarize(results)
    print_table(rows, args, args.baseline_bin is not None)
    if args.json:
        raw = [dict(scenario=s, hosts=n, rtt_ms=rtt, installer=inst, binary=label, **v)
               for (s, n, rtt, inst, label), vals in results.items() for v in vals]
        args.json.write_text(json.dumps({"meta": meta, "medians": rows, "runs": raw}, indent=1) + "\n")


if __name__ == "__main__":
    main()
