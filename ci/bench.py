#!/usr/bin/env python3
"""Benchmark: times the engine on real test servers and prints medians and ratios.

Scenarios, each on 1 and on 10 containers, each run RUNS times (median, min, max):
  fresh    deploy 1.0.0 to servers with nothing of the app on them
  noop     deploy 1.0.0 again (nothing changes, nothing restarts)
  upgrade  deploy 1.1.0 over 1.0.0 (new virtualenv, pip install, start the idle slot,
           health check, switch nginx, drain 2 s, stop the old slot)
  rollback deploy 1.0.0 again over 1.1.0 (release on disk: no install; slot swap)

Times are wall-clock of `deploy-gateway apply` (process start to exit).  The ratio column
is against the baseline row (fresh, 1 host) measured in the same invocation.

usage: ci/bench.py [--runs N] [--sizes 1,10]
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

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESET = ("supervisorctl stop hello-blue hello-green >/dev/null 2>&1; rm -rf /srv/apps/hello /etc/supervisor/conf.d/hello-*.conf "
         "/etc/nginx/sites-enabled/hello.conf; supervisorctl update >/dev/null; nginx -s reload")


def sh(*args, **kw):
    return subprocess.run(args, check=True, text=True, capture_output=True, **kw)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--sizes", default="1,10")
    args = ap.parse_args()
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    sh("cargo", "build", "--release", "--bin", "deploy-gateway", cwd=ROOT)
    gateway = pathlib.Path(target) / "release" / "deploy-gateway"
    results = {}
    for n in [int(x) for x in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            name = f"bench{n}-{os.getpid()}"
            sh(str(ROOT / "ci/testbed.sh"), "up", name, str(n), tmp, "--owner", str(os.getpid()))
            try:
                tb = json.loads(pathlib.Path(tmp, "testbed.json").read_text())
                containers = [s["container"] for s in tb["servers"]]

                def apply(version):
                    t0 = time.monotonic()
                    p = subprocess.run([str(gateway), "apply", "-i", f"{tmp}/inventory.yml", "--known-hosts",
                                        f"{tmp}/known_hosts", "--key", f"{tmp}/id_ed25519", "hello", version,
                                        "-e", "staging"], cwd=ROOT, capture_output=True, text=True)
                    dt = time.monotonic() - t0
                    if p.returncode != 0:
                        sys.exit(f"deploy {version} to {n} hosts failed:\n{p.stdout}\n{p.stderr}")
                    return dt

                def on_all(script):
                    for c in containers:
                        sh("docker", "exec", c, "sh", "-c", script)

                for _ in range(args.runs):
                    on_all(RESET)
                    results.setdefault(("fresh", n), []).append(apply("1.0.0"))
                    results.setdefault(("noop", n), []).append(apply("1.0.0"))
                    results.setdefault(("upgrade", n), []).append(apply("1.1.0"))
                    results.setdefault(("rollback", n), []).append(apply("1.0.0"))
                    print(f"  {n} host(s): run done", file=sys.stderr)
            finally:
                sh(str(ROOT / "ci/testbed.sh"), "down", name)
    base = statistics.median(results[("fresh", min(k[1] for k in results))])
    print(f"\n{'scenario':<10}{'hosts':>6}{'median s':>10}{'min s':>8}{'max s':>8}{'ratio':>8}   (runs={args.runs}, baseline = fresh on 1 host)")
    for (scenario, n), times in results.items():
        med = statistics.median(times)
        print(f"{scenario:<10}{n:>6}{med:>10.2f}{min(times):>8.2f}{max(times):>8.2f}{med / base:>8.2f}")


if __name__ == "__main__":
    main()
