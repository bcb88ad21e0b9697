import logging

from django.http import HttpResponse, HttpResponseNotAllowed
from django.views.decorators.csrf import csrf_exempt

from shop_app._version import SCHEMA, VERSION
from shop_app.shop.models import Item

logger = logging.getLogger("shop")


def text(body):
    return HttpResponse(body, content_type="text/plain; charset=utf-8")


def index(request):
    return HttpResponse(f'<!doctype html><link rel="stylesheet" href="/static/shop/style.css">'
                        f"<p>shop {VERSION}</p>\n")


def healthz(request):  # no database access
    return text(f"ok {VERSION}\n")


def version(request):
    return text(f"{VERSION}\n")


def items(request):
    lines = [f"items {VERSION}"]
    for item in Item.objects.order_by("id"):
        lines.append(f"{item.id} {item.name}" + (f" note={item.note}" if SCHEMA >= 2 else ""))
    return text("\n".join(lines) + "\n")


@csrf_exempt
def orders(request):  # POST /orders: an API call, as the load tests send them
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    return text(f"order of {len(request.body)} bytes taken by {VERSION}\n")


def log(request):  # /log?msg=...: one INFO line on stdout, for the log streaming tests
    logger.info("%s", request.GET.get("msg", ""))
    return text("logged\n")
