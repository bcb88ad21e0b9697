from django.db import migrations, models


def seed(apps, schema_editor):
    Item = apps.get_model("shop", "Item")
    for name in ("apple", "pear"):
        Item.objects.create(name=name)


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Item",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=100)),
                ("created", models.DateTimeField(auto_now_add=True)),
            ],
        ),
        migrations.CreateModel(
            name="Heartbeat",
            fields=[
                ("worker", models.TextField(primary_key=True, serialize=False)),
                ("release", models.TextField()),
                ("pid", models.IntegerField()),
                ("beat_at", models.DateTimeField()),
            ],
        ),
        migrations.RunPython(seed, migrations.RunPython.noop),
    ]
