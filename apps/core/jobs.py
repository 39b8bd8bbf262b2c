"""Periodic jobs hold a PostgreSQL advisory lock, so that two runs (two beat instances, a
slow run overlapping the next) never overlap."""

import hashlib
from contextlib import contextmanager

from django.db import connection


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
