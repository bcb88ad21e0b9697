#!/usr/bin/env python3
"""A stub of JFrog Artifactory's PyPI endpoints, for tests (Artifactory itself cannot run
here).  It serves the same wheels as the test bed's pypiserver (one directory), behind
Artifactory's URL layout and authentication.  Standard library only.

It follows these pages of JFrog's published documentation:
- "PyPI Repositories" / "Resolve PyPI packages from Artifactory": a PyPI repository KEY
  is resolved with pip's --index-url <base>/api/pypi/KEY/simple, a PEP 503 page per
  project whose links carry #sha256=<hex> (Artifactory computes checksums at upload).
- "Artifactory REST API: System Health Ping": GET <base>/api/system/ping -> 200 "OK".
- "Artifactory REST API: File Info": GET <base>/api/storage/KEY/PATH -> JSON with
  "checksums": {"sha1", "md5", "sha256"}.
- "Access Tokens" / "Authentication": `Authorization: Bearer <access token>`, basic auth
  with the token (or the password, or the API key) as the password, and the
  `X-JFrog-Art-Api: <API key>` header.  Anything else gets 401 with Artifactory's error
  body {"errors": [{"status": 401, "message": "..."}]}.

Like Artifactory, checksums are computed when a file is first seen ("uploaded") and kept:
a file changed on disk afterwards is served as it is but still listed with its original
checksum, which is how the tests make a wheel whose hash does not match the index.

Every request is appended to the access log as "METHOD PATH STATUS" (never a header).

usage: artifactory_stub.py --port 8081 --packages /packages --repo pypi-local \
           --credentials FILE --log FILE
The credentials file holds lines user=, password=, token=, api_key=.
"""
import argparse
import base64
import hashlib
import hmac
import html
import json
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BASE = "/artifactory"


def normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def project_of(filename):
    m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._]*?)-\d", filename)
    return normalize(m.group(1)) if m else None


class Store:
    def __init__(self, root):
        self.root = root
        self.lock = threading.Lock()
        self.sums = {}  # filename -> (sha256, sha1, md5), computed at "upload"
        self.scan()

    def scan(self):
        with self.lock:
            for f in sorted(os.listdir(self.root)):
                p = os.path.join(self.root, f)
                if f.startswith(".") or not os.path.isfile(p) or f in self.sums:
                    continue
                data = open(p, "rb").read()
                self.sums[f] = (hashlib.sha256(data).hexdigest(),
                                hashlib.sha1(data).hexdigest(),
                                hashlib.md5(data).hexdigest())
            return dict(self.sums)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8081)
    ap.add_argument("--packages", default="/packages")
    ap.add_argument("--repo", default="pypi-local")
    ap.add_argument("--credentials", required=True)
    ap.add_argument("--log", required=True)
    args = ap.parse_args()
    creds = {}
    for line in open(args.credentials):
        if "=" in line:
            k, v = line.rstrip("\n").split("=", 1)
            creds[k] = v
    store = Store(args.packages)
    log_lock = threading.Lock()
    repo_prefix = f"{BASE}/api/pypi/{args.repo}"

    def authorized(headers):
        def eq(a, b):
            return b and hmac.compare_digest(a.encode(), b.encode())
        auth = headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return eq(auth[7:], creds.get("token", ""))
        if auth.startswith("Basic "):
            try:
                user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
            except Exception:
                return False
            return user == creds.get("user") and any(
                eq(pw, creds.get(k, "")) for k in ("password", "token", "api_key"))
        key = headers.get("X-JFrog-Art-Api")
        if key:
            return eq(key, creds.get("api_key", ""))
        return False

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def send(self, status, body, ctype="text/plain"):
            if isinstance(body, str):
                body = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            with log_lock, open(args.log, "a") as f:
                f.write(f"{self.command} {self.path} {status}\n")

        def do_HEAD(self):
            self.do_GET()

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path == f"{BASE}/api/system/ping":
                return self.send(200, "OK")
            if not authorized(self.headers):
                return self.send(401, json.dumps({"errors": [
                    {"status": 401, "message": "Bad credentials"}]}), "application/json")
            sums = store.scan()
            if path in (f"{repo_prefix}/simple", f"{repo_prefix}/simple/"):
                names = sorted({project_of(f) for f in sums} - {None})
                links = "".join(f'<a href="{n}/">{n}</a>\n' for n in names)
                return self.send(200, f"<html><body>\n{links}</body></html>\n", "text/html")
            m = re.fullmatch(re.escape(repo_prefix) + r"/simple/([^/]+)/?", path)
            if m:
                want = normalize(m.group(1))
                files = [f for f in sums if project_of(f) == want]
                if not files:
                    return self.send(404, "Not Found")
                links = "".join(
                    f'<a href="../../packages/packages/{s[0][:2]}/{s[0][2:4]}/{s[0]}/{html.escape(f)}'
                    f'#sha256={s[0]}" data-requires-python="&gt;=3.8">{html.escape(f)}</a><br/>\n'
                    for f, s in ((f, sums[f]) for f in sorted(files)))
                return self.send(200, f"<html><head><title>Links for {want}</title></head>"
                                      f"<body><h1>Links for {want}</h1>\n{links}</body></html>\n",
                                 "text/html")
            m = re.fullmatch(re.escape(repo_prefix) + r"/packages/packages/\w\w/\w\w/(\w+)/([^/]+)", path)
            if m and m.group(2) in sums and sums[m.group(2)][0] == m.group(1):
                data = open(os.path.join(args.packages, m.group(2)), "rb").read()
                return self.send(200, data, "application/octet-stream")
            m = re.fullmatch(re.escape(f"{BASE}/api/storage/{args.repo}/") + r"(.+)", path)
            if m and m.group(1) in sums:
                sha256, sha1, md5 = sums[m.group(1)]
                return self.send(200, json.dumps({
                    "repo": args.repo, "path": "/" + m.group(1),
                    "checksums": {"sha1": sha1, "md5": md5, "sha256": sha256},
                    "originalChecksums": {"sha1": sha1, "md5": md5, "sha256": sha256},
                    "size": str(os.path.getsize(os.path.join(args.packages, m.group(1)))),
                }), "application/json")
            return self.send(404, "Not Found")

    ThreadingHTTPServer(("0.0.0.0", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
