"""Parsing of usage events as they arrive: judged from the request alone (400s).

Plain functions rather than DRF serializers: this runs for every event of every
batch, and it reports each problem with the field path a caller can act on.
"""

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apps.core.errors import FieldError
from apps.core.inputs import check_amount_digits, parse_number
from apps.core.metadata import clean_metadata
from apps.core.money import parse_amount

MAX_PROPERTIES = 50
MAX_KEY_LENGTH = 255
FUTURE_TOLERANCE = timedelta(minutes=5)
EVENT_FIELDS = {
    "idempotencyKey",
    "customerId",
    "merchantId",
    "timestamp",
    "properties",
    "entitlementId",
    "subscriptionId",
    "metadata",
}
PROPERTY_FIELDS = {"billableMetricId", "quantity", "price"}


@dataclass(frozen=True)
class PropertyInput:
    billable_metric_id: uuid.UUID
    quantity: Decimal
    price: Decimal | None


@dataclass(frozen=True)
class UsageInput:
    idempotency_key: str
    request_hash: str
    customer_id: uuid.UUID
    merchant_id: str | None
    timestamp: datetime
    properties: tuple[PropertyInput, ...]
    entitlement_id: uuid.UUID | None
    subscription_id: uuid.UUID | None
    metadata: dict
    # a call that API-key verify counted at its own time: recorded whatever the window open to
    # late usage (the count was decided when it happened)
    counted: bool = False


def event_hash(raw: dict) -> str:
    """Identity of an event's content: the same JSON, whatever its key order or spacing."""
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _uuid(value, field: str, *, required: bool) -> uuid.UUID | None:
    if value is None or value == "":
        if required:
            raise FieldError(field, "is required", code="REQUIRED")
        return None
    if not isinstance(value, str):
        raise FieldError(field, "must be an id (a UUID string)", code="INVALID_ID")
    parsed = _parsed_ids.get(value)
    if parsed is None:
        try:
            parsed = uuid.UUID(value)
        except ValueError:
            raise FieldError(field, f"must be an id (a UUID), got {value!r}", code="INVALID_ID") from None
        if len(_parsed_ids) >= 50_000:
            _parsed_ids.clear()
        _parsed_ids[value] = parsed
    return parsed


# Ids seen lately, parsed (a batch repeats its metric, often its customers; uuid.UUID(str)
# is slow Python). A bound on memory, not an LRU; UUIDs are immutable, so sharing is safe.
_parsed_ids: dict[str, uuid.UUID] = {}


def _timestamp(value, field: str, now: datetime) -> datetime:
    if value is None:
        return now
    try:
        parsed = parse_datetime(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise FieldError(
            field,
            f"must be an ISO 8601 date-time such as 2026-11-22T10:00:00Z, got {value!r}",
            code="INVALID_TIMESTAMP",
        )
    if timezone.is_naive(parsed):
        raise FieldError(field, "must carry a time zone (end it with Z for UTC)", code="INVALID_TIMESTAMP")
    if parsed > now + FUTURE_TOLERANCE:
        raise FieldError(
            field,
            f"is more than 5 minutes in the future ({parsed.isoformat()} > now {now.isoformat()})",
            code="TIMESTAMP_IN_FUTURE",
        )
    return parsed


def _metadata(value, field: str) -> dict:
    return clean_metadata(value, field=field)


def parse_usage_event(raw, *, prefix: str = "", now: datetime | None = None) -> UsageInput:
    """Parse one event body; raise FieldError naming the first problem (as `prefix` + field)."""
    now = now or timezone.now()
    if not isinstance(raw, dict):
        raise FieldError(prefix.rstrip(".") or "body", "must be a JSON object", code="INVALID_EVENT")
    unknown = sorted(set(raw) - EVENT_FIELDS)
    if unknown:
        raise FieldError(f"{prefix}{unknown[0]}", "is not a field of a usage event", code="UNKNOWN_FIELD")
    key = raw.get("idempotencyKey")
    if not isinstance(key, str) or not key.strip():
        raise FieldError(
            f"{prefix}idempotencyKey", "is required: a unique string per event, kept for good", code="REQUIRED"
        )
    if len(key) > MAX_KEY_LENGTH:
        raise FieldError(f"{prefix}idempotencyKey", f"must be at most {MAX_KEY_LENGTH} characters", code="TOO_LONG")
    merchant_id = raw.get("merchantId")
    if merchant_id is not None and not isinstance(merchant_id, str):
        raise FieldError(f"{prefix}merchantId", "must be a string", code="INVALID_ID")
    properties = raw.get("properties")
    if not isinstance(properties, list) or not properties:
        raise FieldError(
            f"{prefix}properties", "must be a non-empty list of {billableMetricId, quantity}", code="REQUIRED"
        )
    if len(properties) > MAX_PROPERTIES:
        raise FieldError(f"{prefix}properties", f"may hold at most {MAX_PROPERTIES} items", code="TOO_MANY")
    parsed_properties = []
    seen = set()
    for index, item in enumerate(properties):
        field = f"{prefix}properties[{index}]"
        if not isinstance(item, dict):
            raise FieldError(field, "must be an object {billableMetricId, quantity, price}", code="INVALID_PROPERTY")
        unknown = sorted(set(item) - PROPERTY_FIELDS)
        if unknown:
            raise FieldError(f"{field}.{unknown[0]}", "is not a field of a usage property", code="UNKNOWN_FIELD")
        metric_id = _uuid(item.get("billableMetricId"), f"{field}.billableMetricId", required=True)
        if metric_id in seen:
            raise FieldError(
                f"{field}.billableMetricId", "reports a metric already reported in this event", code="DUPLICATE_METRIC"
            )
        seen.add(metric_id)
        if "quantity" not in item:
            raise FieldError(f"{field}.quantity", "is required", code="REQUIRED")
        quantity = parse_number(item["quantity"], f"{field}.quantity")
        price = None
        if item.get("price") is not None:
            try:
                price = parse_amount(item["price"], field="price")
            except ValueError as exc:
                raise FieldError(f"{field}.price", str(exc).removeprefix("price "), code="INVALID_PRICE") from None
            if price < 0:
                raise FieldError(f"{field}.price", "must not be negative", code="INVALID_PRICE")
            check_amount_digits(price, f"{field}.price", "INVALID_PRICE")
        parsed_properties.append(PropertyInput(metric_id, quantity, price))
    return UsageInput(
        idempotency_key=key,
        request_hash=event_hash(raw),
        customer_id=_uuid(raw.get("customerId"), f"{prefix}customerId", required=True),
        merchant_id=merchant_id,
        timestamp=_timestamp(raw.get("timestamp"), f"{prefix}timestamp", now),
        properties=tuple(parsed_properties),
        entitlement_id=_uuid(raw.get("entitlementId"), f"{prefix}entitlementId", required=False),
        subscription_id=_uuid(raw.get("subscriptionId"), f"{prefix}subscriptionId", required=False),
        metadata=_metadata(raw.get("metadata"), f"{prefix}metadata"),
    )
