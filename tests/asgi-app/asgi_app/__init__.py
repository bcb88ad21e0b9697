"""asgi-app: the sample ASGI (Starlette) application that deploy's tests ship.

Served by `gunicorn -k uvicorn.workers.UvicornWorker asgi_app:app`.
`/healthz` answers `ok <version>`, `/` answers JSON {"app", "version", "server"}.
"""
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from asgi_app._version import VERSION


async def healthz(request):
    return PlainTextResponse(f"ok {VERSION}\n")


async def index(request):
    return JSONResponse({"app": "asgi", "version": VERSION, "server": "uvicorn"})


app = Starlette(routes=[Route("/healthz", healthz), Route("/", index)])
