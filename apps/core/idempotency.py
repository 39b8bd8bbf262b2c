"""Idempotency-Key for POST requests, with Stripe's semantics, exactly once.

The first response an endpoint produces (2xx or 5xx) is stored with a hash of the
request and returned, same status and body, to every replay within the TTL. A
replay with another body is 409 IDEMPOTENCY_KEY_REUSED. A 4xx stores nothing, so
the key can be retried once the cause is fixed. A request arriving while another
with the same key runs gets 409 IDEMPOTENCY_KEY_IN_USE.

How "once" holds with no window, across processes and machines:

1. The claim is a committed row (unique on merchant and key), status in progress.
2. The service runs in one transaction that first locks the claim row and re-reads it
   (an answer stored meanwhile is returned without running) and writes its 2xx answer
   into it before it commits: the work and its answer commit together or not at all.
3. A request that finds a claim in progress tries to lock it with SKIP LOCKED. Locked:
   its holder is running (409 IN_USE). Not locked: its holder died between the claim
   and its commit (the database released its lock with its transaction), so this
   request takes the claim over at once and runs the service.
4. After a rollback, a 4xx releases the claim and a 5xx is stored only where no answer
   is (a request that took the claim over may have answered). A 5xx that the database
   caused (its connection lost, a deadlock) stores nothing: the claim is left to a
   retry, which takes it over, since nothing of the work committed. A 503 (Redis, the
   database or the card processor unavailable for a moment: nothing of the request was
   done, and its answer says to send it again) releases the claim like a 4xx: a retry
   after the outage runs the request instead of replaying the outage.
5. A handler that calls a network service (Stripe) must not run inside a transaction
   (a row lock held for as long as the service takes to answer, and work that a
   rollback would undo after the service acted on it). It runs outside one, holding a
   session-level advisory lock on the claim instead of the row lock (`idempotency_hold`):
   a concurrent request with the same key finds the lock taken (409 IN_USE), and a holder
   that died releases it with its connection. Its answer is stored after it returns; the
   services it calls are idempotent on their own (one payment attempt in flight).
"""

import contextlib
import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from apps.core.errors import Conflict, FieldError
from apps.core.models import IdempotencyRecord

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class Replay:
    status: int
    body: bytes
    content_type: str


def request_fingerprint(*, method: str, path: str, body: bytes) -> str:
    """Hash of what the request asks for; JSON bodies are compared by content, not spacing."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode() if body else b""
    except (ValueError, UnicodeDecodeError, RecursionError):
        canonical = body
    digest = hashlib.sha256()
    for part in (method.upper().encode(), b"\n", path.encode(), b"\n", canonical):
        digest.update(part)
    return digest.hexdigest()


def validate_key(raw: str) -> str:
    key = raw.strip()
    if not key:
        raise FieldError(HEADER, "must not be empty", code="INVALID_IDEMPOTENCY_KEY")
    if len(key) > MAX_KEY_LENGTH:
        raise FieldError(
            HEADER, f"must be at most {MAX_KEY_LENGTH} characters, got {len(key)}", code="INVALID_IDEMPOTENCY_KEY"
        )
    return key


def idempotency_claim(*, merchant, key: str, method: str, path: str, request_hash: str) -> IdempotencyRecord | Replay:
    """Claim the key for this request (a committed row), or return the stored response to replay.

    Raises Conflict when the key is in use by a running request or was used for
    another request. Call it outside any transaction: the claim must commit at once.
    """
    ttl = timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)
    for _ in range(5):
        try:
            with transaction.atomic():
                return IdempotencyRecord.objects.create(
                    merchant=merchant,
                    key=key,
                    request_method=method,
                    request_path=path[:2048],
                    request_hash=request_hash,
                )
        except IntegrityError:
            pass
        existing = IdempotencyRecord.objects.filter(merchant=merchant, key=key).first()
        if existing is None:
            continue  # released by a 4xx between our insert and read: claim again
        if existing.created_at < timezone.now() - ttl:
            IdempotencyRecord.objects.filter(pk=existing.pk, created_at=existing.created_at).delete()
            continue
        if existing.request_hash != request_hash:
            raise Conflict(
                f"Idempotency key {key!r} was already used for a different request "
                f"({existing.request_method} {existing.request_path}); use a new key for a new request.",
                code="IDEMPOTENCY_KEY_REUSED",
            )
        if existing.status == IdempotencyRecord.Status.COMPLETED:
            return _replay(existing)
        if _holder_gone(existing):
            return existing
        raise _in_use(key)
    raise Conflict(f"Idempotency key {key!r} is contended; retry shortly.", code="IDEMPOTENCY_KEY_IN_USE")


def _in_use(key: str) -> Conflict:
    return Conflict(
        f"A request with idempotency key {key!r} is still being processed; retry shortly to get its response.",
        code="IDEMPOTENCY_KEY_IN_USE",
    )


def _replay(record: IdempotencyRecord) -> Replay:
    return Replay(
        status=record.response_status,
        body=bytes(record.response_body or b""),
        content_type=record.response_content_type,
    )


def _holder_gone(record: IdempotencyRecord) -> bool:
    """Whether a claim in progress is unlocked: no transaction of its holder runs on it (the
    holder died, or has not begun its transaction yet; either way whoever locks it first runs
    and the other then finds the answer)."""
    with transaction.atomic():
        return (
            IdempotencyRecord.objects.select_for_update(skip_locked=True)
            .filter(pk=record.pk, status=IdempotencyRecord.Status.IN_PROGRESS)
            .values_list("pk", flat=True)
            .first()
            is not None
        )


def idempotency_lock(*, record: IdempotencyRecord) -> Replay | None:
    """Inside the service's transaction, before its work: lock the claim and re-read it.
    Returns the answer another request stored meanwhile (then the service must not run)."""
    current = IdempotencyRecord.objects.select_for_update().filter(pk=record.pk).first()
    if current is None:
        # released by a 4xx of a request that had taken the claim over
        raise _in_use(record.key)
    if current.status == IdempotencyRecord.Status.COMPLETED:
        return _replay(current)
    return None


def _advisory_key(record: IdempotencyRecord) -> int:
    """The claim's advisory lock: a signed 64-bit number from its (random) id."""
    return int.from_bytes(record.pk.bytes[:8], "big", signed=True)


@contextlib.contextmanager
def idempotency_hold(*, record: IdempotencyRecord):
    """For a handler that runs outside any transaction (it calls a network service): hold the
    claim with a session-level advisory lock while it runs, and yield the answer stored
    meanwhile by another request (then the handler must not run), or None. Raises 409
    IDEMPOTENCY_KEY_IN_USE while another request holds it. Call it outside any transaction."""
    lock = _advisory_key(record)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [lock])
        if not cursor.fetchone()[0]:
            raise _in_use(record.key)
    try:
        current = IdempotencyRecord.objects.filter(pk=record.pk).first()
        if current is None:
            raise _in_use(record.key)
        yield _replay(current) if current.status == IdempotencyRecord.Status.COMPLETED else None
    finally:
        # (a connection lost meanwhile took the lock with it)
        with contextlib.suppress(OperationalError, InterfaceError), connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [lock])


def idempotency_answer(*, record: IdempotencyRecord, status: int, body: bytes, content_type: str) -> None:
    """Store the service's 2xx answer in its own transaction, under the lock of idempotency_lock."""
    _store(IdempotencyRecord.objects.filter(pk=record.pk), status, body, content_type)


def idempotency_settle_failure(*, record: IdempotencyRecord, status: int, body: bytes, content_type: str) -> None:
    """After the service's transaction rolled back (or a handler outside one returned): a 4xx
    or a 503 releases the key; any other answer is stored unless one is stored already (by a
    request that took the claim over)."""
    in_progress = IdempotencyRecord.objects.filter(pk=record.pk, status=IdempotencyRecord.Status.IN_PROGRESS)
    if 400 <= status < 500 or status == 503:
        in_progress.delete()
        return
    _store(in_progress, status, body, content_type)


def _store(records, status: int, body: bytes, content_type: str) -> None:
    now = timezone.now()
    records.update(
        status=IdempotencyRecord.Status.COMPLETED,
        response_status=status,
        response_body=body,
        response_content_type=content_type,
        completed_at=now,
        updated_at=now,
    )


def idempotency_purge_expired() -> int:
    cutoff = timezone.now() - timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
