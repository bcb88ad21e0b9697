#!/usr/bin/env python3
"""Benchmark: times the engine on real test servers and prints medians and ratios.

Scenarios, each on 1 and on 10 containers, with each installer (pip: `python3 -m venv` +
pip; uv: `uv venv` + `uv pip install`, the pinned uv shipped by the engine), each run RUNS
times (median, min, max):
  fresh    deploy 1.0.0 to servers with nothing of the app on them (nor uv: it is shipped)
  noop     deploy 1.0.0 again (nothing changes, nothing restarts)
  upgrade  deploy 1.1.0 over 1.0.0 (new virtualenv, pip install, start the idle slot,
           health check, switch nginx, drain 2 s, stop the old slot)
  rollback deploy 1.0.0 again over 1.1.0 (release on disk: no install; slot swap)

Times are wall-clock of `deploy-gateway apply` (process start to exit).  The `ratio`
column is against the baseline (fresh, 1 host, pip) measured in the same invocation;
`uv/pip` compares the two installers on the same row.

usage: ci/bench.py [--runs N] [--sizes 1,10] [--installers pip,uv]
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
         "/etc/nginx/sites-enabled/hello.conf /home/deploy/.cache; supervisorctl update >/dev/null; nginx -s reload")
SCENARIOS = ["fresh", "noop", "upgrade", "rollback"]


def sh(*args, **kw):
    return subprocess.run(args, check=True, text=True, capture_output=True, **kw)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--sizes", default="1,10")
    ap.add_argument("--installers", default="pip,uv")
    args = ap.parse_args()
    installers = args.installers.split(",")
    sh(str(ROOT / "ci/testbed.sh"), "packages")
    uv = ROOT / "ci/.cache/uv/uv"
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
                inv = pathlib.Path(tmp, "inventory.yml").read_text()
                pathlib.Path(tmp, "inventory-uv.yml").write_text(
                    inv.replace("    wsgi: hello_app:app\n", "    wsgi: hello_app:app\n    installer: uv\n"))

                def apply(version, installer):
                    t0 = time.monotonic()
                    extra = ["--uv", str(uv)] if installer == "uv" else []
                    inventory = f"{tmp}/inventory-uv.yml" if installer == "uv" else f"{tmp}/inventory.yml"
                    p = subprocess.run([str(gateway), "apply", "-i", inventory, "--known-hosts",
                                        f"{tmp}/known_hosts", "--key", f"{tmp}/id_ed25519", "hello", version,
                                        "-e", "staging", *extra], cwd=ROOT, capture_output=True, text=True)
                    dt = time.monotonic() - t0
                    if p.returncode != 0:
                        sys.exit(f"deploy {version} to {n} hosts failed:\n{p.stdout}\n{p.stderr}")
                    return dt

                def on_all(script):
                    for c in containers:
                        sh("docker", "exec", c, "sh", "-c", script)

                for _ in range(args.runs):
                    for inst in installers:
                        on_all(RESET)
                        for scenario, version in zip(SCENARIOS, ["1.0.0", "1.0.0", "1.1.0", "1.0.0"]):
                            results.setdefault((scenario, n, inst), []).append(apply(version, inst))
                    print(f"  {n} host(s): run done", file=sys.stderr)
            finally:
                sh(str(ROOT / "ci/testbed.sh"), "down", name)
    sizes = sorted({k[1] for k in results})
    base = statistics.median(results[("fresh", sizes[0], installers[0])])
    head = f"{'scenario':<10}{'hosts':>6}"
    for inst in installers:
        head += f"{inst + ' med s':>12}{'min':>7}{'max':>7}{'ratio':>7}"
    if len(installers) == 2:
        head += f"{installers[1] + '/' + installers[0]:>9}"
    print(f"\n{head}   (runs={args.runs}; ratio: against fresh, {sizes[0]} host, {installers[0]})")
    for n in sizes:
        for scenario in SCENARIOS:
            row = f"{scenario:<10}{n:>6}"
            meds = []
            for inst in installers:
                times = results[(scenario, n, inst)]
                med = statistics.median(times)
                meds.append(med)
                row += f"{med:>12.2f}{min(times):>7.2f}{max(times):>7.2f}{med / base:>7.2f}"
            if len(meds) == 2:
                row += f"{meds[1] / meds[0]:>9.2f}"
            print(row)


if __name__ == "__main__":
    main()
