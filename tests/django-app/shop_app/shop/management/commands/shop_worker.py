"""`python -m django shop_worker`: a background worker that beats every second.

Each beat upserts the Heartbeat row "<hostname>:<pid>" with the release it runs
(DEPLOY_RELEASE, else the package version) and logs one line; SIGTERM ends it cleanly.
"""
import logging
import os
import signal
import socket
import threading

from django.core.management.base import BaseCommand
from django.db import DatabaseError, connection
from django.utils import timezone

from shop_app._version import VERSION
from shop_app.shop.models import Heartbeat

logger = logging.getLogger("shop")


class Command(BaseCommand):
    help = "Beats every second into the Heartbeat table until SIGTERM."

    def handle(self, *args, **options):
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: stop.set())
        pid, release = os.getpid(), os.environ.get("DEPLOY_RELEASE", VERSION)
        worker = f"{socket.gethostname()}:{pid}"
        logger.info("shop_worker started release=%s worker=%s", release, worker)
        while not stop.is_set():
            try:
                Heartbeat.objects.update_or_create(
                    worker=worker, defaults={"release": release, "pid": pid, "beat_at": timezone.now()})
                logger.info("shop_worker beat release=%s worker=%s", release, worker)
            except DatabaseError as e:
                logger.warning("shop_worker beat failed release=%s: %s", release, e)
                connection.close()
            stop.wait(1.0)
        logger.info("shop_worker stopped release=%s worker=%s", release, worker)
