#!/usr/bin/env python3
"""Builds the sample application's wheels: hello-app 1.0.0, 1.1.0, 1.3.0, 1.4.0 and the broken 1.2.0.

A wheel is a zip file with a fixed layout (PEP 427), so it is written directly with the
standard library: no build backend, no network, byte-for-byte reproducible.

usage: build_wheels.py OUTDIR
"""
import base64
import hashlib
import pathlib
import sys
import zipfile

HERE = pathlib.Path(__file__).resolve().parent
NAME, DIST = "hello-app", "hello_app"
RELEASES = {"1.0.0": False, "1.1.0": False, "1.2.0": True, "1.3.0": False, "1.4.0": False, "1.5.0rc1": False}  # version -> broken on purpose
REQUIRES = ["gunicorn"]


def record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def build(version, broken, outdir):
    files = {
        f"{DIST}/__init__.py": (HERE / DIST / "__init__.py").read_bytes(),
        f"{DIST}/_version.py": f"VERSION = {version!r}\nBROKEN = {broken!r}\n".encode(),
    }
    info = f"{DIST}-{version}.dist-info"
    meta = [f"Metadata-Version: 2.1", f"Name: {NAME}", f"Version: {version}",
            "Summary: deploy's sample WSGI application"]
    meta += [f"Requires-Dist: {r}" for r in REQUIRES]
    files[f"{info}/METADATA"] = ("\n".join(meta) + "\n").encode()
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: deploy build_wheels.py\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files[f"{info}/top_level.txt"] = f"{DIST}\n".encode()
    record = [record_line(p, d) for p, d in files.items()] + [f"{info}/RECORD,,"]
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    target = outdir / f"{DIST}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in files.items():
            zi = zipfile.ZipInfo(path, date_time=(2026, 1, 1, 0, 0, 0))
            zi.external_attr = 0o644 << 16
            zf.writestr(zi, data, zipfile.ZIP_DEFLATED)
    return target


def main():
    outdir = pathlib.Path(sys.argv[1])
    outdir.mkdir(parents=True, exist_ok=True)
    for version, broken in RELEASES.items():
        print(build(version, broken, outdir))


if __name__ == "__main__":
    main()
