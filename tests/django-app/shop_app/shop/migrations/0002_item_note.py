from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("shop", "0001_initial")]
    operations = [
        migrations.AddField(
            model_name="item",
            name="note",
            field=models.CharField(max_length=200, db_default="added in 2.0.0"),
        ),
    ]
