"""A model with no table: it only carries the app's permissions and its admin page.

Executions live in the event store, not in the database. The admin needs a model
to list a page on its index and Django's permissions need one to hang on, so
:class:`Execution` is unmanaged (``managed = False``: no table is ever created)
and only its permissions reach the database (through the usual ``migrate``).
"""

from django.db import models


class Execution(models.Model):
    """An execution as the admin page shows it (read from the store, never saved)."""

    execution_id = models.CharField(max_length=64, primary_key=True)

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("view_executions", "Can see live and recently closed executions"),
            ("close_executions", "Can close executions (sends stream-closed)"),
        ]
        verbose_name = "live execution"
        verbose_name_plural = "live executions"

    def __str__(self) -> str:
        return self.execution_id
