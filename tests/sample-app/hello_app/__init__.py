"""hello-app: the sample WSGI application that deploy's tests and demo ship.

`/` answers the installed version, `/healthz` answers 200 (500 in the release built
broken on purpose), `/slow?ms=N` answers after N milliseconds (for drain tests).
"""
import os
import time

from hello_app._version import VERSION, BROKEN


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/healthz":
        if BROKEN:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
            return [b"broken on purpose\n"]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok\n"]
    if path == "/slow":
        query = environ.get("QUERY_STRING", "")
        ms = int(query[3:]) if query.startswith("ms=") and query[3:].isdigit() else 100
        time.sleep(min(ms, 10000) / 1000.0)
    if path == "/env":
        body = os.environ.get("GREETING", "") + "\n"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body.encode()]
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-App-Pid", str(os.getpid()))])
    return [(VERSION + "\n").encode()]
