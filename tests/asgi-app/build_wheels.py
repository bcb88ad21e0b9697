#!/usr/bin/env python3
"""Builds the ASGI sample application's wheel, asgi-app 1.0.0 (as tests/django-app does).

usage: build_wheels.py OUTDIR
"""
import importlib.util
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("django_app_build", HERE.parent / "django-app" / "build_wheels.py")
_shared = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_shared)
write_wheel = _shared.write_wheel  # the shared wheel writer

RELEASES = ["1.0.0"]
REQUIRES = ["starlette>=1.0,<2", "uvicorn>=0.30,<0.55", "gunicorn"]  # uvicorn < 0.55 ships uvicorn.workers


def main():
    outdir = pathlib.Path(sys.argv[1])
    outdir.mkdir(parents=True, exist_ok=True)
    for version in RELEASES:
        files = {"asgi_app/__init__.py": (HERE / "asgi_app" / "__init__.py").read_bytes(),
                 "asgi_app/_version.py": f"VERSION = {version!r}\n".encode()}
        print(write_wheel(outdir, "asgi-app", version, files, REQUIRES, "deploy's sample ASGI application"))


if __name__ == "__main__":
    main()
