"""Periodic jobs hold a PostgreSQL advisory lock, so that two runs (two beat instances, a
slow run overlapping the next) never overlap; work handed to a worker after a commit is sent so
that a broker out of reach never fails the change that committed."""

import hashlib
import logging
from contextlib import contextmanager

from django.db import connection, transaction

logger = logging.getLogger(__name__)


def enqueue_after_commit(task, *args, caught_up_by: str) -> None:
    """Send `task(*args)` to a worker once the current transaction commits. A broker that
    cannot be reached then must not turn a change that committed into an error answer (a client
    would send it again): the failure is logged, and `caught_up_by` (a beat task that finds the
    same work from the database) does it later."""

    def send():
        try:
            task.delay(*args)
        except Exception:
            logger.warning(
                "%s%r not enqueued (the broker is out of reach); %s will do it",
                task.name,
                args,
                caught_up_by,
                exc_info=True,
            )

    transaction.on_commit(send)


def _lock_id(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextmanager
def job_lock(name: str):
    """Yields True when this run holds the lock (do the work), False when another run does."""
    lock_id = _lock_id(name)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [lock_id])
        acquired = cursor.fetchone()[0]
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [lock_id])
