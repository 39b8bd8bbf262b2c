"""The customer's queries this quota month, as verify counts them (Redis: what was counted,
drained to usage or not yet)."""

from datetime import UTC, datetime

from apps.apikeys.tiers import tier_of
from apps.apikeys.verify import _ms, subscription_record_load
from apps.core.redis import get_redis
from apps.subscriptions.periods import period_at


def queries_this_month(key) -> tuple[int, int | None]:
    """(queries counted this quota month, the monthly limit or None when unlimited)."""
    subscription = key.subscription
    now = datetime.now(UTC)
    start, _ = period_at(subscription.started_at, "monthly", max(now, subscription.started_at))
    quota_key = f"apiquota:{subscription.id}:{_ms(start)}"
    client = get_redis()
    used = client.get(quota_key)
    if used is None:
        subscription_record_load(subscription.id, now)  # (seeds the count from recorded usage)
        used = client.get(quota_key)
    return int(used or 0), tier_of(subscription.plan).monthly_limit
