"""The unmanaged Execution model: creates no table, only the app's permissions."""

from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies: list[tuple[str, str]] = []

    operations = [
        migrations.CreateModel(
            name="Execution",
            fields=[
                ("execution_id", models.CharField(max_length=64, primary_key=True,
                                                  serialize=False)),
            ],
            options={
                "verbose_name": "live execution",
                "verbose_name_plural": "live executions",
                "permissions": [
                    ("view_executions", "Can see live and recently closed executions"),
                    ("close_executions", "Can close executions (sends stream-closed)"),
                ],
                "managed": False,
                "default_permissions": (),
            },
        ),
    ]
