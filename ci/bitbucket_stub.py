#!/usr/bin/env python3
"""A stub of Bitbucket Server / Data Center, for tests (Bitbucket itself cannot run here).
It answers from REAL bare git repositories on disk by running `git` (rev-parse, log), so
a plain git remote (git daemon) and this stub tell the same history.  Standard library
only (Python 3.11).

Repositories: `--repos DIR` maps project KEY and slug SLUG to the bare repository
DIR/KEY/SLUG.git (the layout `git daemon --base-path=DIR` serves as git://.../KEY/SLUG).

It follows these pages of Atlassian's published documentation:
- "Bitbucket Data Center REST API", group "Repository" (developer.atlassian.com/server/
  bitbucket/rest/): GET /rest/api/1.0/projects/KEY/repos/SLUG/commits/COMMITID (a commit
  id or a ref: branch, tag, abbreviated id) -> one commit {id, displayId, author {name,
  emailAddress}, authorTimestamp, committer, committerTimestamp, message, parents};
  GET .../commits?since=&until= -> the commits reachable from `until` (default: the
  default branch) and not from `since`, newest first, as a paged list.
- the same reference's "Paged APIs": `start` and `limit` parameters (default limit 25,
  capped by a server hard limit: `--max-limit` here), pages {size, limit, isLastPage,
  start, nextPageStart (only when isLastPage is false), values}.
- "HTTP access tokens" (Bitbucket Data Center): `Authorization: Bearer <token>`.  Every
  endpoint requires the token of `--token-file`; anything else gets 401.
- errors: {"errors": [{"context": null, "message": ..., "exceptionName": ...}]}, 404 for
  an unknown project, repository or commit, 400 for bad paging parameters.
- "Build status" REST API: POST /rest/build-status/1.0/commits/COMMITID stores a build
  status (204); GET the same path lists them (paged).  `state`, `key` and `url` are
  required and may not be blank (Bitbucket Server answers 400 for a status without a
  URL); `state` is one of SUCCESSFUL, FAILED, INPROGRESS.
- "Clone a repository" over HTTP(S): <base>/scm/KEY/SLUG.git, served here by
  `git http-backend` (smart HTTP), behind the same token.

Every request is appended to the log as "METHOD PATH STATUS" (never a header).

usage: bitbucket_stub.py --port 7990 --repos DIR --token-file FILE --log FILE
           [--max-limit 1000] [--bind 127.0.0.1]
"""
import argparse
import hmac
import json
import os
import re
import subprocess
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API = "/rest/api/1.0"
FIELDS = "%H%x1f%an%x1f%ae%x1f%at%x1f%cn%x1f%ce%x1f%ct%x1f%P%x1f%B"


class NotFound(Exception):
    pass


class BadRequest(Exception):
    pass


def git(repo, *args):
    r = subprocess.run(["git", "-C", repo, *args], capture_output=True, timeout=60)
    return r.returncode, r.stdout.decode("utf-8", "replace")


def resolve(repo, slug, ref):
    if not ref or ref.startswith("-") or any(c.isspace() for c in ref):
        raise NotFound(f"Commit '{ref}' does not exist in repository '{slug}'.")
    rc, out = git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if rc != 0:
        raise NotFound(f"Commit '{ref}' does not exist in repository '{slug}'.")
    return out.strip()


def person(name, email):
    return {"name": name, "emailAddress": email}


def commits(repo, *rev_args):
    rc, out = git(repo, "log", "-z", f"--format={FIELDS}", *rev_args, "--")
    if rc != 0:
        raise NotFound("The commits could not be listed.")
    result = []
    for rec in filter(None, (r.lstrip("\n") for r in out.split("\0"))):
        h, an, ae, at, cn, ce, ct, parents, msg = rec.split("\x1f", 8)
        result.append({
            "id": h, "displayId": h[:11],
            "author": person(an, ae), "authorTimestamp": int(at) * 1000,
            "committer": person(cn, ce), "committerTimestamp": int(ct) * 1000,
            "message": msg.rstrip("\n"),
            "parents": [{"id": p, "displayId": p[:11]} for p in parents.split()],
        })
    return result


def paged(items, query, max_limit):
    try:
        start = int(query.get("start", ["0"])[0])
        limit = int(query.get("limit", ["25"])[0])
    except ValueError:
        raise BadRequest("start and limit must be numbers.")
    if start < 0 or limit < 1:
        raise BadRequest("start must be >= 0 and limit >= 1.")
    limit = min(limit, max_limit)
    values = items[start:start + limit]
    end = start + len(values)
    page = {"size": len(values), "limit": limit, "isLastPage": end >= len(items),
            "start": start, "values": values}
    if not page["isLastPage"]:
        page["nextPageStart"] = end
    return page


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=7990)
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--repos", required=True)
    ap.add_argument("--token-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--max-limit", type=int, default=1000)
    args = ap.parse_args()
    token = open(args.token_file).read().strip()
    log_lock = threading.Lock()
    statuses = {}  # commit id -> [build status], as POSTed
    status_lock = threading.Lock()

    def repo_of(key, slug):
        path = os.path.join(args.repos, key, slug + ".git")
        if not re.fullmatch(r"[A-Za-z0-9_~.-]+", key) or not re.fullmatch(r"[A-Za-z0-9_.-]+", slug) \
                or ".." in (key, slug) or not os.path.isdir(path):
            raise NotFound(f"Repository {key}/{slug} does not exist.")
        return path

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def send(self, status, body, ctype="application/json", headers=()):
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
            if isinstance(body, str):
                body = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            with log_lock, open(args.log, "a") as f:
                f.write(f"{self.command} {self.path} {status}\n")

        def error(self, status, message, exception):
            self.send(status, {"errors": [{"context": None, "message": message,
                                           "exceptionName": exception}]})

        def authorized(self):
            auth = self.headers.get("Authorization", "")
            return auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].encode(), token.encode())

        def body(self):
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                data = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline().strip():
                            pass
                        return data
                    data += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def handle_any(self):
            body = self.body() if self.command == "POST" else b""
            if not self.authorized():
                return self.error(401, "Authentication failed. Please check your credentials and try again.",
                                  "com.atlassian.bitbucket.auth.IncorrectPasswordAuthenticationException")
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            try:
                return self.route(url, query, body)
            except NotFound as e:
                return self.error(404, str(e), "com.atlassian.bitbucket.NoSuchEntityException")
            except BadRequest as e:
                return self.error(400, str(e), "com.atlassian.bitbucket.validation.ArgumentValidationException")

        def route(self, url, query, body):
            path = url.path
            m = re.fullmatch(re.escape(API) + r"/projects/([^/]+)/repos/([^/]+)/commits(?:/([^/]+))?/?", path)
            if m and self.command == "GET":
                key, slug = m.group(1), m.group(2)
                repo = repo_of(key, slug)
                if m.group(3) is not None:
                    ref = urllib.parse.unquote(m.group(3))
                    return self.send(200, commits(repo, "-1", resolve(repo, slug, ref))[0])
                until = resolve(repo, slug, query.get("until", ["HEAD"])[0])
                rev = [until]
                if "since" in query:
                    rev.append("^" + resolve(repo, slug, query["since"][0]))
                return self.send(200, paged(commits(repo, *rev), query, args.max_limit))
            m = re.fullmatch(r"/rest/build-status/1\.0/commits/([0-9a-fA-F]{4,64})", path)
            if m:
                return self.build_status(m.group(1), query, body)
            m = re.fullmatch(r"/scm/([^/]+)/([^/]+?)(?:\.git)?(/.*)", path)
            if m:
                repo_of(m.group(1), m.group(2))
                return self.smart_http(f"/{m.group(1)}/{m.group(2)}.git{m.group(3)}", url.query, body)
            raise NotFound(f"{path} is not a resource of this stub.")

        def build_status(self, commit, query, body):
            if self.command == "POST":
                try:
                    status = json.loads(body or b"null")
                except ValueError:
                    raise BadRequest("The build status is not JSON.")
                if not isinstance(status, dict) or not {"state", "key", "url"} <= status.keys():
                    raise BadRequest("A build status needs state, key and url.")
                if any(not str(status[k] or "").strip() for k in ("state", "key", "url")):
                    raise BadRequest("state, key and url may not be blank.")
                if status["state"] not in ("SUCCESSFUL", "FAILED", "INPROGRESS"):
                    raise BadRequest("state must be SUCCESSFUL, FAILED or INPROGRESS.")
                with status_lock:
                    statuses.setdefault(commit, []).append(status)
                return self.send(204, b"")
            with status_lock:
                items = list(reversed(statuses.get(commit, [])))
            return self.send(200, paged(items, query, args.max_limit))

        def smart_http(self, path_info, query_string, body):
            env = {**os.environ, "GIT_PROJECT_ROOT": os.path.abspath(args.repos), "GIT_HTTP_EXPORT_ALL": "1",
                   "PATH_INFO": path_info, "QUERY_STRING": query_string, "REQUEST_METHOD": self.command,
                   "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
                   "REMOTE_ADDR": self.client_address[0], "GIT_PROTOCOL": self.headers.get("Git-Protocol", "")}
            if self.headers.get("Content-Encoding"):
                env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
            r = subprocess.run(["git", "http-backend"], input=body, capture_output=True, env=env, timeout=120)
            head, _, out = r.stdout.partition(b"\r\n\r\n")
            if not _:
                head, _, out = r.stdout.partition(b"\n\n")
            status, ctype, extra = 200, "text/plain", []
            for line in head.decode("latin-1").splitlines():
                k, _, v = line.partition(":")
                if k.lower() == "status":
                    status = int(v.split()[0])
                elif k.lower() == "content-type":
                    ctype = v.strip()
                elif k.lower() not in ("content-length",) and k:
                    extra.append((k, v.strip()))
            return self.send(status, out, ctype, extra)

        do_GET = do_POST = do_HEAD = handle_any

    ThreadingHTTPServer((args.bind, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
