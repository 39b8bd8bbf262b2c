import os

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_platform.settings")

app = Celery("billing_platform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
def _drop_unusable_connections(sender=None, **kwargs) -> None:
    """Before each task of a worker that keeps its database connections (CELERY_DB_REUSE_MAX):
    close a connection that is past DATABASE_CONN_MAX_AGE, or that the server or the network
    dropped since the task before (one `SELECT 1`), so that the task opens a new one instead
    of failing on it."""
    if getattr(sender.request, "is_eager", False) or not app.conf.get("CELERY_DB_REUSE_MAX"):
        return
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        connection.close_if_unusable_or_obsolete()
        if connection.connection is not None and not connection.in_atomic_block and not connection.is_usable():
            connection.close()


@after_setup_logger.connect
@after_setup_task_logger.connect
def _redact_secrets_in_logs(logger=None, **kwargs) -> None:
    """Celery replaces the handlers of the root logger with its own: they redact secrets too."""
    from apps.core.redaction import RedactSecrets

    for handler in logger.handlers:
        handler.addFilter(RedactSecrets())
