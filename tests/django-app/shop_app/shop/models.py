from django.db import models

from shop_app._version import SCHEMA


class Item(models.Model):
    name = models.CharField(max_length=100)
    created = models.DateTimeField(auto_now_add=True)
    if SCHEMA >= 2:  # migration 0002; a column default, so 1.x code can still insert after a rollback
        note = models.CharField(max_length=200, db_default="added in 2.0.0")


class Heartbeat(models.Model):
    worker = models.TextField(primary_key=True)  # "<hostname>:<pid>"
    release = models.TextField()
    pid = models.IntegerField()
    beat_at = models.DateTimeField()
