from django.db import migrations


def fail(apps, schema_editor):
    raise RuntimeError("migration 0003 fails on purpose")


class Migration(migrations.Migration):
    dependencies = [("shop", "0002_item_note")]
    operations = [migrations.RunPython(fail, migrations.RunPython.noop)]
