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

Times are wall-clock of `deploy-gateway apply` (process start to exit); `floor` is the
column every ratio is against (same size, same latency, same invocation).  `trips` is
the median over runs of the most sequential round trips any host needed (the engine's
count: commands waited for one after another; concurrent ones count once).

usage: ci/bench.py [--runs N] [--sizes 1,10] [--installers pip,uv] [--rtt-ms 0,100]
"""
import argparse
import json
import os
import pathlib
import re
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


def sh(*args, **kw):
    return subprocess.run(args, check=True, text=True, capture_output=True, **kw)


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Bed:
    """A test bed of n servers, reached directly or through the latency proxy."""

    def __init__(self, tmp, rtt):
        self.tmp = pathlib.Path(tmp)
        tb = json.loads((self.tmp / "testbed.json").read_text())
        self.containers = [s["container"] for s in tb["servers"]]
        self.ports = [s["ssh_port"] for s in tb["servers"]]
        self.proxy = None
        inv = (self.tmp / "inventory.yml").read_text()
        pins = (self.tmp / "known_hosts").read_text()
        if rtt > 0:
            mapping = {p: free_port() for p in self.ports}
            self.proxy = subprocess.Popen(
                [sys.executable, str(ROOT / "ci/latency_proxy.py"), "--rtt-ms", str(rtt),
                 *[a for p, q in mapping.items() for a in ("--map", f"{q}:{p}")]],
                stdout=subprocess.PIPE, text=True)
            assert self.proxy.stdout.readline().strip() == "ready"
            for p, q in mapping.items():
                inv = inv.replace(f"    port: {p}\n", f"    port: {q}\n")
                pins += "".join(l.replace(f"]:{p} ", f"]:{q} ") + "\n"
                                for l in pins.splitlines() if f"]:{p} " in l)
            self.ports = list(mapping.values())
        (self.tmp / f"inv-{rtt}.yml").write_text(inv)
        (self.tmp / f"inv-{rtt}-uv.yml").write_text(
            inv.replace("    wsgi: hello_app:app\n", "    wsgi: hello_app:app\n    installer: uv\n"))
        (self.tmp / f"known-{rtt}").write_text(pins)
        self.rtt = rtt

    def close(self):
        if self.proxy:
            self.proxy.kill()

    def floor(self):
        """Seconds for `ssh host true` to every host at once."""
        def one(port):
            # (The engine pins keys in its own format; this is only the timing floor.)
            sh("ssh", "-q", "-i", str(self.tmp / "id_ed25519"), "-p", str(port),
               "-o", "UserKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=no",
               "-o", "BatchMode=yes", "deploy@127.0.0.1", "true")
        t0 = time.monotonic()
        with ThreadPoolExecutor(len(self.ports)) as ex:
            list(ex.map(one, self.ports))
        return time.monotonic() - t0

    def apply(self, gateway, version, installer, uv):
        """(seconds, the most round trips of any host)."""
        t0 = time.monotonic()
        extra = ["--uv", str(uv)] if installer == "uv" else []
        inv = self.tmp / (f"inv-{self.rtt}-uv.yml" if installer == "uv" else f"inv-{self.rtt}.yml")
        p = subprocess.run([str(gateway), "apply", "--json", "-i", str(inv), "--known-hosts",
                            str(self.tmp / f"known-{self.rtt}"), "--key", str(self.tmp / "id_ed25519"),
                            "hello", version, "-e", "staging", *extra],
                           cwd=ROOT, capture_output=True, text=True)
        dt = time.monotonic() - t0
        if p.returncode != 0:
            sys.exit(f"deploy {version} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
        trips = [json.loads(l).get("round_trips", 0) for l in p.stdout.splitlines()
                 if '"type":"host_finished"' in l.replace(" ", "")]
        return dt, max(trips, default=0)


def run_size(n, args, gateway, uv, results):
    with tempfile.TemporaryDirectory() as tmp:
        name = f"bench{n}-{os.getpid()}"
        sh(str(ROOT / "ci/testbed.sh"), "up", name, str(n), tmp, "--owner", str(os.getpid()))
        try:
            for rtt in [float(x) for x in args.rtt_ms.split(",")]:
                bed = Bed(tmp, rtt)
                try:
                    for _ in range(args.runs):
                        results.setdefault(("floor", n, rtt, "-"), []).append((bed.floor(), 1))
                        for inst in args.installers.split(","):
                            for c in bed.containers:
                                sh("docker", "exec", c, "sh", "-c", RESET)
                            for scenario, version in SCENARIOS:
                                results.setdefault((scenario, n, rtt, inst), []).append(
                                    bed.apply(gateway, version, inst, uv))
                        print(f"  {n} host(s), {rtt:g} ms: run done", file=sys.stderr)
                finally:
                    bed.close()
        finally:
            sh(str(ROOT / "ci/testbed.sh"), "down", name)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sizes", default="1,10")
    ap.add_argument("--installers", default="pip,uv")
    ap.add_argument("--rtt-ms", default="0,100")
    args = ap.parse_args()
    sh(str(ROOT / "ci/testbed.sh"), "packages")
    uv = ROOT / "ci/.cache/uv/uv"
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    sh("cargo", "build", "--release", "--bin", "deploy-gateway", cwd=ROOT)
    gateway = pathlib.Path(target) / "release" / "deploy-gateway"
    results = {}
    for n in [int(x) for x in args.sizes.split(",")]:
        run_size(n, args, gateway, uv, results)
    print(f"\n{'scenario':<10}{'inst':>5}{'hosts':>6}{'rtt ms':>7}{'med s':>8}{'min':>7}{'max':>7}"
          f"{'/floor':>8}{'trips':>7}   (runs={args.runs}; /floor: against `ssh host true` to all hosts, same size and rtt)")
    for (scenario, n, rtt, inst), vals in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][3], kv[0][0] != "floor")):
        times = [v[0] for v in vals]
        med = statistics.median(times)
        floor = statistics.median(v[0] for v in results[("floor", n, rtt, "-")])
        trips = statistics.median(v[1] for v in vals) if scenario != "floor" else 1
        print(f"{scenario:<10}{inst:>5}{n:>6}{rtt:>7g}{med:>8.2f}{min(times):>7.2f}{max(times):>7.2f}"
              f"{med / floor:>8.2f}{trips:>7g}")


if __name__ == "__main__":
    main()
