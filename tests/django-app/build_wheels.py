#!/usr/bin/env python3
"""Builds the Django sample project's wheels: shop-app 1.0.0, 2.0.0 and 2.1.0.

1.0.0 has migration 0001; 2.0.0 adds 0002 (Item.note, shown by /items); 2.1.0 adds 0003,
which fails on purpose.  Written with the standard library, as tests/sample-app does:
a wheel is a zip file (PEP 427); no build backend, no network, reproducible.

usage: build_wheels.py OUTDIR
"""
import base64
import hashlib
import pathlib
import re
import sys
import zipfile

HERE = pathlib.Path(__file__).resolve().parent
RELEASES = {"1.0.0": 1, "2.0.0": 2, "2.1.0": 3}  # version -> newest migration it ships
REQUIRES = ["Django>=5.2,<5.3", "gunicorn", "psycopg2-binary>=2.9,<3"]


def write_wheel(outdir, name, version, files, requires, summary):
    """Writes NAME-VERSION-py3-none-any.whl holding FILES ({path: bytes}); returns its path."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", f"Summary: {summary}",
            "Requires-Python: >=3.11"] + [f"Requires-Dist: {r}" for r in requires]
    files = dict(files)
    files[f"{info}/METADATA"] = ("\n".join(meta) + "\n").encode()
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: deploy build_wheels.py\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files[f"{info}/top_level.txt"] = f"{dist}\n".encode()
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    files[f"{info}/RECORD"] = ("\n".join(record + [f"{info}/RECORD,,"]) + "\n").encode()
    target = pathlib.Path(outdir) / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in files.items():
            zi = zipfile.ZipInfo(path, date_time=(2026, 1, 1, 0, 0, 0))
            zi.external_attr = 0o644 << 16
            zf.writestr(zi, data, zipfile.ZIP_DEFLATED)
    return target


def sources(package):
    """{path in the wheel: bytes} of the package directory beside this script."""
    root = HERE / package
    return {p.relative_to(HERE).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


def build(version, schema, outdir):
    files = {}
    for path, data in sources("shop_app").items():
        m = re.match(r"shop_app/shop/migrations/(\d{4})_", path)
        if m is None or int(m.group(1)) <= schema:
            files[path] = data
    files["shop_app/_version.py"] = f"VERSION = {version!r}\nSCHEMA = {schema!r}\n".encode()
    files["shop_app/shop/static/shop/style.css"] = f"/* shop {version} */ body{{}}\n".encode()
    return write_wheel(outdir, "shop-app", version, files, REQUIRES, "deploy's sample Django project")


def main():
    outdir = pathlib.Path(sys.argv[1])
    outdir.mkdir(parents=True, exist_ok=True)
    for version, schema in RELEASES.items():
        print(build(version, schema, outdir))


if __name__ == "__main__":
    main()
