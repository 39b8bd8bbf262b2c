"""Idempotency-Key for POST requests, with Stripe's semantics.

The first response an endpoint produces (2xx or 5xx) is stored with a hash of the
request and returned, same status and body, to every replay within the TTL. A
replay with another body is 409 IDEMPOTENCY_KEY_REUSED. A 4xx stores nothing, so
the key can be retried once the cause is fixed. A request arriving while another
with the same key runs gets 409 IDEMPOTENCY_KEY_IN_USE: the endpoint runs once.

The claim is a committed row (unique on merchant and key), so it holds across
processes and machines.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
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
    """Claim the key for this request, or return the stored response to replay.

    Raises Conflict when the key is in use by a running request or was used for
    another request.
    """
    ttl = timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)
    lock_timeout = timedelta(seconds=settings.IDEMPOTENCY_LOCK_TIMEOUT_SECONDS)
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
        now = timezone.now()
        expired = existing.created_at < now - ttl
        abandoned = existing.status == IdempotencyRecord.Status.IN_PROGRESS and existing.updated_at < now - lock_timeout
        if expired or abandoned:
            IdempotencyRecord.objects.filter(pk=existing.pk, updated_at=existing.updated_at).delete()
            continue
        if existing.request_hash != request_hash:
            raise Conflict(
                f"Idempotency key {key!r} was already used for a different request "
                f"({existing.request_method} {existing.request_path}); use a new key for a new request.",
                code="IDEMPOTENCY_KEY_REUSED",
            )
        if existing.status == IdempotencyRecord.Status.IN_PROGRESS:
            raise Conflict(
                f"A request with idempotency key {key!r} is still being processed; retry shortly to get its response.",
                code="IDEMPOTENCY_KEY_IN_USE",
            )
        return Replay(
            status=existing.response_status,
            body=bytes(existing.response_body or b""),
            content_type=existing.response_content_type,
        )
    raise Conflict(
        f"Idempotency key {key!r} is contended; retry shortly.",
        code="IDEMPOTENCY_KEY_IN_USE",
    )


def idempotency_complete(*, record: IdempotencyRecord, status: int, body: bytes, content_type: str) -> None:
    """Store the response (2xx and 5xx), or release the key after a 4xx."""
    if 400 <= status < 500:
        IdempotencyRecord.objects.filter(pk=record.pk).delete()
        return
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        status=IdempotencyRecord.Status.COMPLETED,
        response_status=status,
        response_body=body,
        response_content_type=content_type,
        completed_at=timezone.now(),
        updated_at=timezone.now(),
    )


def idempotency_purge_expired() -> int:
    cutoff = timezone.now() - timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
