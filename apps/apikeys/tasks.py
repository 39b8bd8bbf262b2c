"""Counted calls reach the database: verify appends each VALID call to the Redis stream
`apikeys:counted` (atomically with its count, before the answer); this task drains it into
usage events of the tier's query metric, at each call's own time, in batches. Each call's
usage event is keyed by its stream entry id (`verify:<id>`), so a drain that dies after its
commit and before it deletes the entries only replays them: no call is lost or counted twice.
An entry the usage service refuses for good is moved to `apikeys:counted:refused` (logged)."""

import logging
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from celery import shared_task
from django.utils import timezone

from apps.apikeys.services import api_key_touch
from apps.apikeys.verify import STREAM
from apps.catalog.models import Price
from apps.core.errors import ApiError
from apps.core.redis import get_redis
from apps.merchants.models import Merchant
from apps.usage.inputs import PropertyInput, UsageInput, event_hash
from apps.usage.services.charging import record_many

logger = logging.getLogger(__name__)

REFUSED = f"{STREAM}:refused"
LOCK = "apikeys:drain:lock"
BATCH = 1000


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _input(entry_id: str, fields: dict, metric_id) -> UsageInput:
    at = datetime.fromtimestamp(int(fields["t"]) / 1000, UTC)
    raw = {"entry": entry_id, "subscription": fields["s"], "key": fields["k"], "cost": fields["q"], "t": fields["t"]}
    return UsageInput(
        idempotency_key=f"verify:{entry_id}",
        request_hash=event_hash(raw),
        customer_id=uuid.UUID(fields["c"]),
        merchant_id=None,
        timestamp=at,
        properties=(PropertyInput(metric_id, Decimal(fields["q"]), None),),
        entitlement_id=None,
        subscription_id=uuid.UUID(fields["s"]),
        metadata={"apiKeyId": fields["k"]},
        counted=True,
    )


def drain_once(*, count: int = BATCH) -> int:
    """Record up to `count` counted calls; returns how many entries were taken off the stream."""
    client = get_redis()
    entries = client.xrange(STREAM, count=count)
    if not entries:
        return 0
    rows = [(_text(entry_id), {_text(k): _text(v) for k, v in fields.items()}) for entry_id, fields in entries]
    metrics = dict(
        Price.objects.filter(pk__in={fields["p"] for _, fields in rows}).values_list("id", "billable_metric_id")
    )
    by_merchant: dict[str, list] = {}
    for entry_id, fields in rows:
        by_merchant.setdefault(fields["m"], []).append((entry_id, fields))
    now = timezone.now()
    refused = []
    for merchant_pk, items in by_merchant.items():
        merchant = Merchant.objects.get(pk=merchant_pk)
        parsed = {
            i: _input(entry_id, fields, metrics.get(uuid.UUID(fields["p"])))
            for i, (entry_id, fields) in enumerate(items)
        }
        outcomes = record_many(merchant, parsed, now)
        for i, outcome in outcomes.items():
            if isinstance(outcome, ApiError):
                entry_id, fields = items[i]
                logger.error("apikeys: counted call %s refused by usage: %s", entry_id, outcome.as_body())
                refused.append((entry_id, fields, outcome.as_body().get("code", "")))
        last_used: dict[str, datetime] = {}
        for _, fields in items:
            at = datetime.fromtimestamp(int(fields["t"]) / 1000, UTC)
            last_used[fields["k"]] = max(at, last_used.get(fields["k"], at))
        for key_id, at in last_used.items():
            api_key_touch(key_id=key_id, at=at)
    pipe = client.pipeline()
    for entry_id, fields, code in refused:
        pipe.xadd(REFUSED, {**fields, "entry": entry_id, "code": code})
    pipe.xdel(STREAM, *[entry_id for entry_id, _ in rows])
    pipe.execute()
    return len(rows)


@shared_task
def drain_counted_calls(max_batches: int = 50) -> int:
    """Beat (every APIKEY_DRAIN_INTERVAL_SECONDS): drain the stream, one drain at a time."""
    client = get_redis()
    if not client.set(LOCK, 1, nx=True, ex=120):
        return 0
    try:
        drained = 0
        for _ in range(max_batches):
            taken = drain_once()
            drained += taken
            if taken < BATCH:
                break
        return drained
    finally:
        client.delete(LOCK)
