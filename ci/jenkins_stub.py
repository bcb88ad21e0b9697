#!/usr/bin/env python3
"""A stub of the Jenkins endpoints deploy's Jenkins builder uses, for tests (Jenkins itself
cannot run here).  It REALLY builds: a build clones the job's git repository, checks out
the COMMIT parameter, reads pyproject.toml, writes a pure-Python wheel, uploads it to a
PyPI-compatible index and archives it.  Standard library only (Python 3.11: tomllib).

It follows Jenkins' documented remote access API:
- "Remote Access API": `api/json` on objects; POST /job/NAME/buildWithParameters?P=v
  answers 201 with `Location: <root>/queue/item/N/`; the queue item's `executable`
  ({number, url}) appears once the build has left the queue (here after --queue-delay
  seconds); a build's api/json has building, result (SUCCESS / FAILURE), url and
  artifacts [{displayPath, fileName, relativePath}], each served at
  /job/NAME/N/artifact/<relativePath>.  Jobs in folders are /job/A/job/B.
- "CSRF Protection": GET /crumbIssuer/api/json -> {_class, crumb, crumbRequestField:
  "Jenkins-Crumb"} and a session cookie; the crumb is tied to that session (as since
  2.176.2), and a POST without the session's crumb gets 403 "No valid crumb".
- "Authenticating scripted clients": HTTP basic with user + API token on every request,
  else 401 (with `WWW-Authenticate`).
- "Queue" and build control: POST /queue/cancelItem?id=N cancels a waiting item (its
  api/json then says `cancelled: true`, no `executable`) and answers 302 to the queue;
  POST /job/NAME/N/stop aborts a running build (result ABORTED) and answers 302 to it.
- Progressive console output: GET .../N/logText/progressiveText?start=OFFSET returns the
  console from byte OFFSET, `X-Text-Size` (the next offset) and `X-More-Data: true`
  while the build runs.

The upload uses the legacy PyPI upload API (multipart POST, `:action=file_upload`,
`protocol_version=1`, name, version, filetype, pyversion, sha256_digest, content).

Awkward like the real product, on request:
- --queue-polls N: a queue item stays waiting until its api/json was read N times (a
  busy executor pool: a client sees the item wait several polls), on top of
  --queue-delay.
- --console-chunk N: progressiveText returns at most N bytes from `start` (its
  X-Text-Size says where the next chunk starts, X-More-Data stays true until the last
  one), so lines arrive cut at chunk boundaries, as a client of a busy build sees them.
- --skip-existing: an upload the index refuses because that version's file exists
  (409) is skipped and the build goes on (`twine upload --skip-existing`, a common
  pattern); the build still archives the wheel IT built, whose contents may differ from
  the index's file.

--log gets one line per request, "METHOD PATH STATUS" (never a header), and one line per
finished build, "BUILD job=J number=N commit=SHA result=R" (J percent-encoded).

usage: jenkins_stub.py --port 0 --user U --token-file F --jobs JOBS.json \
           --upload-url http://index/ --workdir DIR --log FILE [--queue-delay S] [--hold S]
           [--queue-polls N] [--console-chunk N] [--skip-existing]
--queue-delay: seconds an item waits in the queue (-1: for ever, as with no free
executor); --hold: seconds a build waits (printing a line a second) before it uploads.
--port 0 picks a free port; the port is printed on stdout ("listening on PORT") once
the server accepts connections.
"""
import argparse
import base64
import hashlib
import hmac
import io
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STEP_PAUSE = 0.2  # between build steps, so a client sees a build in progress


class Build:
    def __init__(self, job, number, commit, url):
        self.job, self.number, self.commit, self.url = job, number, commit, url
        self.console = bytearray()
        self.done = False
        self.result = None
        self.artifacts = []  # (fileName, relativePath)
        self.stop = False
        self.lock = threading.Lock()

    def say(self, line):
        with self.lock:
            self.console += (line.rstrip("\n") + "\n").encode()

    def finish(self, result):
        with self.lock:
            self.console += f"Finished: {result}\n".encode()
            self.result, self.done = result, True

    def snapshot(self, start):
        with self.lock:
            return bytes(self.console[start:]), len(self.console), self.done


class State:
    def __init__(self, args, root):
        self.args, self.root = args, root
        self.jobs = json.load(open(args.jobs))
        self.token = open(args.token_file).read().strip()
        self.lock = threading.Lock()
        self.queue = {}  # n -> {"job", "commit", "build": Build | None}
        self.builds = {}  # (job, number) -> Build
        self.numbers = {}  # job -> last build number
        self.sessions = {}  # session id -> crumb
        self.log_lock = threading.Lock()

    def log(self, line):
        with self.log_lock, open(self.args.log, "a") as f:
            f.write(line + "\n")

    def enqueue(self, job, commit):
        with self.lock:
            n = len(self.queue) + 1
            self.queue[n] = {"job": job, "commit": commit, "build": None, "polls": 0}
        threading.Thread(target=self.leave_queue, args=(n,), daemon=True).start()
        return n

    def leave_queue(self, n):
        waited = 0.0
        while True:
            with self.lock:
                if self.queue[n].get("cancelled"):
                    return
                polled = self.queue[n]["polls"] >= self.args.queue_polls
            if polled and self.args.queue_delay >= 0 and waited >= self.args.queue_delay:
                break
            time.sleep(0.1)
            waited += 0.1
        with self.lock:
            item = self.queue[n]
            if item.get("cancelled"):
                return
            job = item["job"]
            number = self.numbers.get(job, 0) + 1
            self.numbers[job] = number
            b = Build(job, number, item["commit"], f"{self.root}{job_path(job)}/{number}/")
            self.builds[(job, number)] = b
            item["build"] = b
        run_build(self, b)


def job_path(job):
    return "".join("/job/" + urllib.parse.quote(s, safe="") for s in job.split("/") if s)


def normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


# ---------------------------------------------------------------- the build itself


class Failed(Exception):
    pass


def run(b, argv, cwd=None):
    b.say("+ " + " ".join(argv))
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0")
    try:
        p = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise Failed(f"{argv[0]}: {e}")
    for line in (p.stdout + p.stderr).splitlines():
        b.say(line)
    if p.returncode != 0:
        raise Failed(f"{argv[0]} exited with {p.returncode}")


class Aborted(Exception):
    pass


def run_build(state, b):
    b.say(f"Started by remote API (user {state.args.user})")
    b.say(f"Building {b.job} #{b.number} at commit {b.commit}")
    workdir = os.path.join(state.args.workdir, re.sub(r"[^A-Za-z0-9._-]", "_", b.job), str(b.number))
    src, archive = os.path.join(workdir, "src"), os.path.join(workdir, "archive")
    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(archive)
    try:
        time.sleep(STEP_PAUSE)
        run(b, ["git", "clone", "--quiet", state.jobs[b.job], src])
        time.sleep(STEP_PAUSE)
        run(b, ["git", "-c", "advice.detachedHead=false", "checkout", "--quiet", b.commit], cwd=src)
        time.sleep(STEP_PAUSE)
        project = read_project(b, src)
        time.sleep(STEP_PAUSE)
        wheel = build_wheel(b, src, project, os.path.join(archive, "dist"))
        for i in range(int(state.args.hold)):
            if b.stop:
                raise Aborted()
            b.say(f"holding ({i + 1}/{int(state.args.hold)})")
            time.sleep(1)
        if b.stop:
            raise Aborted()
        time.sleep(STEP_PAUSE)
        upload(b, state.args.upload_url, project, wheel, state.args.skip_existing)
        name = os.path.basename(wheel)
        with b.lock:
            b.artifacts.append((name, f"dist/{name}"))
        b.say(f"Archiving artifacts: dist/{name}")
        result = "SUCCESS"
    except Failed as e:
        b.say(f"ERROR: {e}")
        result = "FAILURE"
    except Aborted:
        b.say("Aborted by the remote API")
        result = "ABORTED"
    except Exception as e:  # a bug here must still end the build
        b.say(f"ERROR: the stub failed: {e!r}")
        result = "FAILURE"
    job = urllib.parse.quote(b.job, safe="")
    # Logged before the build ends, so a client that saw it end finds it in the log.
    state.log(f"BUILD job={job} number={b.number} commit={b.commit} result={result}")
    b.finish(result)


def read_project(b, src):
    path = os.path.join(src, "pyproject.toml")
    b.say("Reading pyproject.toml")
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise Failed("no pyproject.toml in the checkout")
    except tomllib.TOMLDecodeError as e:
        raise Failed(f"pyproject.toml is not valid TOML: {e}")
    project = data.get("project")
    if not isinstance(project, dict) or not project.get("name") or not project.get("version"):
        raise Failed("pyproject.toml needs [project] with a name and a static version")
    packages = data.get("tool", {}).get("setuptools", {}).get("packages")
    return {"name": str(project["name"]), "version": str(project["version"]),
            "summary": str(project.get("description", "")),
            "requires_python": project.get("requires-python"),
            "dependencies": [str(d) for d in project.get("dependencies", [])],
            "packages": packages}


def sources(src, packages):
    """{path in the wheel: file on disk} for the project's packages and modules."""
    base = os.path.join(src, "src") if os.path.isdir(os.path.join(src, "src")) else src
    if isinstance(packages, list):
        tops = [p.replace(".", "/") for p in packages if isinstance(p, str)]
    else:
        tops = sorted(
            e for e in os.listdir(base)
            if not e.startswith((".", "_")) and e not in ("tests", "test", "setup.py", "conftest.py")
            and (os.path.isfile(os.path.join(base, e, "__init__.py")) or e.endswith(".py")))
    files = {}
    for top in tops:
        path = os.path.join(base, top)
        if os.path.isfile(path):
            files[top] = path
            continue
        if not os.path.isdir(path):
            raise Failed(f"package {top} is not in the checkout")
        for d, dirs, names in os.walk(path):
            dirs[:] = sorted(x for x in dirs if x != "__pycache__")
            for n in sorted(names):
                if not n.endswith((".pyc", ".pyo")):
                    full = os.path.join(d, n)
                    files[os.path.relpath(full, base).replace(os.sep, "/")] = full
    if not files:
        raise Failed("no Python package or module found in the checkout")
    return files


def record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def build_wheel(b, src, project, outdir):
    dist = re.sub(r"[-_.]+", "_", project["name"]).lower()
    version = project["version"].replace("-", "_")
    b.say(f"Building a wheel of {project['name']} {project['version']}")
    files = {p: open(f, "rb").read() for p, f in sources(src, project["packages"]).items()}
    for p in files:
        b.say(f"  adding {p}")
    info = f"{dist}-{version}.dist-info"
    meta = ["Metadata-Version: 2.1", f"Name: {project['name']}", f"Version: {project['version']}"]
    if project["summary"]:
        meta.append(f"Summary: {project['summary']}")
    if project["requires_python"]:
        meta.append(f"Requires-Python: {project['requires_python']}")
    meta += [f"Requires-Dist: {d}" for d in project["dependencies"]]
    files[f"{info}/METADATA"] = ("\n".join(meta) + "\n").encode()
    files[f"{info}/WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: deploy jenkins_stub.py\n"
                              b"Root-Is-Purelib: true\nTag: py3-none-any\n")
    tops = sorted({p.split("/")[0].removesuffix(".py") for p in files if not p.startswith(info)})
    files[f"{info}/top_level.txt"] = ("\n".join(tops) + "\n").encode()
    record = [record_line(p, d) for p, d in files.items()] + [f"{info}/RECORD,,"]
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    os.makedirs(outdir, exist_ok=True)
    target = os.path.join(outdir, f"{dist}-{version}-py3-none-any.whl")
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in files.items():
            zi = zipfile.ZipInfo(path, date_time=(2026, 1, 1, 0, 0, 0))
            zi.external_attr = 0o644 << 16
            zf.writestr(zi, data, zipfile.ZIP_DEFLATED)
    b.say(f"Built {os.path.basename(target)}")
    return target


def upload(b, url, project, wheel, skip_existing):
    data = open(wheel, "rb").read()
    fields = {":action": "file_upload", "protocol_version": "1", "metadata_version": "2.1",
              "name": project["name"], "version": project["version"],
              "filetype": "bdist_wheel", "pyversion": "py3",
              "sha256_digest": hashlib.sha256(data).hexdigest()}
    boundary = "----jenkins-stub-" + secrets.token_hex(12)
    body = io.BytesIO()
    for k, v in fields.items():
        body.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    name = os.path.basename(wheel)
    body.write(f'--{boundary}\r\nContent-Disposition: form-data; name="content"; filename="{name}"\r\n'
               f"Content-Type: application/octet-stream\r\n\r\n".encode())
    body.write(data + f"\r\n--{boundary}--\r\n".encode())
    req = urllib.request.Request(url, data=body.getvalue(), method="POST", headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}"})
    b.say(f"Uploading {name} to {url}")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            b.say(f"Upload answered {resp.status}")
    except urllib.error.HTTPError as e:
        if e.code == 409 and skip_existing:
            b.say(f"Skipping {name}: the index has this version already (--skip-existing)")
            return
        raise Failed(f"the upload of {name} answered {e.code} {e.reason}")
    except (urllib.error.URLError, OSError) as e:
        raise Failed(f"cannot upload {name}: {e}")


# ---------------------------------------------------------------- HTTP


def make_handler(state):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def send(self, status, body=b"", ctype="text/plain;charset=utf-8", headers=()):
            if isinstance(body, str):
                body = body.encode()
            if not isinstance(body, bytes):
                body, ctype = json.dumps(body).encode(), "application/json;charset=utf-8"
            # Logged before the answer, so a client that has it finds it in the log.
            state.log(f"{self.command} {self.path} {status}")
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def authorized(self):
            auth = self.headers.get("Authorization", "")
            if not auth.startswith("Basic "):
                return False
            try:
                user, _, token = base64.b64decode(auth[6:]).decode().partition(":")
            except Exception:
                return False
            return user == state.args.user and hmac.compare_digest(token.encode(), state.token.encode())

        def session(self):
            for part in self.headers.get("Cookie", "").split(";"):
                k, _, v = part.strip().partition("=")
                if k == "JSESSIONID.stub":
                    return v
            return None

        def do_GET(self):
            if not self.authorized():
                return self.send(401, "Unauthorized", headers=[("WWW-Authenticate", 'Basic realm="Jenkins"')])
            url = urllib.parse.urlsplit(self.path)
            if url.path == "/crumbIssuer/api/json":
                sid, crumb = secrets.token_hex(16), secrets.token_hex(32)
                with state.lock:
                    state.sessions[sid] = crumb
                return self.send(200, {"_class": "hudson.security.csrf.DefaultCrumbIssuer",
                                       "crumb": crumb, "crumbRequestField": "Jenkins-Crumb"},
                                 headers=[("Set-Cookie", f"JSESSIONID.stub={sid}; Path=/; HttpOnly")])
            m = re.fullmatch(r"/queue/item/(\d+)/api/json", url.path)
            if m:
                return self.queue_item(int(m.group(1)))
            job, rest = split_job(url.path)
            if job is None or job not in state.jobs:
                return self.send(404, "Not Found")
            m = re.fullmatch(r"/(\d+)/(.*)", rest)
            b = m and state.builds.get((job, int(m.group(1))))
            if not b:
                return self.send(404, "Not Found")
            return self.build_page(b, m.group(2), urllib.parse.parse_qs(url.query))

        def queue_item(self, n):
            with state.lock:
                item = state.queue.get(n)
                if item is not None:
                    item["polls"] += 1
            if item is None:
                return self.send(404, "Not Found")
            b = item["build"]
            body = {"_class": "hudson.model.Queue$LeftItem" if b else "hudson.model.Queue$WaitingItem",
                    "id": n, "task": {"name": item["job"], "url": f"{state.root}{job_path(item['job'])}/"},
                    "executable": {"_class": "hudson.model.FreeStyleBuild", "number": b.number,
                                   "url": b.url} if b else None}
            if b:
                body["cancelled"] = False
            elif item.get("cancelled"):
                body["_class"], body["cancelled"] = "hudson.model.Queue$CancelledItem", True
            else:
                body["why"] = "Waiting for next available executor"
            return self.send(200, body)

        def build_page(self, b, page, query):
            if page == "logText/progressiveText":
                try:
                    start = int(query.get("start", ["0"])[0])
                except ValueError:
                    return self.send(400, "bad start")
                data, size, done = b.snapshot(max(start, 0))
                chunk = state.args.console_chunk
                if chunk > 0 and len(data) > chunk:
                    data, size, done = data[:chunk], max(start, 0) + chunk, False
                headers = [("X-Text-Size", str(size))] + ([] if done else [("X-More-Data", "true")])
                return self.send(200, data, headers=headers)
            if page == "api/json":
                with b.lock:
                    arts = [{"displayPath": f, "fileName": f, "relativePath": r} for f, r in b.artifacts]
                    body = {"_class": "hudson.model.FreeStyleBuild", "number": b.number, "url": b.url,
                            "building": not b.done, "result": b.result, "artifacts": arts}
                return self.send(200, body)
            if page.startswith("artifact/"):
                with b.lock:
                    rel = dict((r, f) for f, r in b.artifacts)
                want = page[len("artifact/"):]
                if want in rel:
                    path = os.path.join(state.args.workdir, re.sub(r"[^A-Za-z0-9._-]", "_", b.job),
                                        str(b.number), "archive", want)
                    return self.send(200, open(path, "rb").read(), "application/octet-stream")
            return self.send(404, "Not Found")

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            if not self.authorized():
                return self.send(401, "Unauthorized", headers=[("WWW-Authenticate", 'Basic realm="Jenkins"')])
            sid = self.session()
            with state.lock:
                want = state.sessions.get(sid) if sid else None
            got = self.headers.get("Jenkins-Crumb", "")
            if not want or not hmac.compare_digest(got.encode(), want.encode()):
                return self.send(403, "No valid crumb was included in the request")
            url = urllib.parse.urlsplit(self.path)
            if url.path == "/queue/cancelItem":
                n = int(urllib.parse.parse_qs(url.query).get("id", ["0"])[0] or 0)
                with state.lock:
                    item = state.queue.get(n)
                    if item is not None and item["build"] is None:
                        item["cancelled"] = True
                if item is None:
                    return self.send(404, "Not Found")
                state.log(f"CANCEL queue={n}")
                return self.send(302, "", headers=[("Location", f"{state.root}/queue/")])
            job, rest = split_job(url.path)
            m = re.fullmatch(r"/(\d+)/stop", rest or "")
            if job in state.jobs and m:
                b = state.builds.get((job, int(m.group(1))))
                if not b:
                    return self.send(404, "Not Found")
                b.stop = True
                state.log(f"STOP job={urllib.parse.quote(job, safe='')} number={b.number}")
                return self.send(302, "", headers=[("Location", b.url)])
            if job is None or job not in state.jobs or rest != "/buildWithParameters":
                return self.send(404, "Not Found")
            commit = urllib.parse.parse_qs(url.query).get("COMMIT", [""])[0]
            if not re.fullmatch(r"[0-9a-fA-F]{4,64}", commit):
                return self.send(400, "COMMIT must be a commit id")
            n = state.enqueue(job, commit)
            return self.send(201, "", headers=[("Location", f"{state.root}/queue/item/{n}/")])

    return Handler


def split_job(path):
    """(job name, the rest of the path) of /job/A/job/B/rest, or (None, path)."""
    parts, rest = [], path
    while True:
        m = re.match(r"/job/([^/]+)", rest)
        if not m:
            break
        parts.append(urllib.parse.unquote(m.group(1)))
        rest = rest[m.end():]
    return ("/".join(parts) if parts else None), rest


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--user", required=True)
    ap.add_argument("--token-file", required=True)
    ap.add_argument("--jobs", required=True)
    ap.add_argument("--upload-url", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--queue-delay", type=float, default=0.3)
    ap.add_argument("--hold", type=float, default=0)
    ap.add_argument("--queue-polls", type=int, default=0)
    ap.add_argument("--console-chunk", type=int, default=0)
    ap.add_argument("--skip-existing", action="store_true")
    args = ap.parse_args()
    args.workdir = os.path.abspath(args.workdir)
    os.makedirs(args.workdir, exist_ok=True)
    server = ThreadingHTTPServer((args.bind, args.port), None)
    port = server.server_address[1]
    state = State(args, f"http://{args.bind}:{port}")
    server.RequestHandlerClass = make_handler(state)
    server.daemon_threads = True
    print(f"listening on {port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
