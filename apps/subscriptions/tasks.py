"""Period close on Celery: beat finds the subscriptions with a period move due and enqueues
them in batches of PERIOD_CLOSE_BATCH_SIZE (ids only); each task makes its batch's due moves
set-wise (apps.subscriptions.services.periods.periods_advance_many), safe to run twice or at
once.

A subscription is enqueued once while its task is queued or running: a Redis key per
subscription (set when enqueued, deleted when its task ends, expiring after
PERIOD_CLOSE_ENQUEUE_SECONDS should a worker die holding it), so that beat's next ticks do not
queue the same close again and again while a long close runs (bench/invoicing.py counted 84,000 -
147,000 duplicate messages for 10,000 closes before). The keys of a tick are set in one Redis
round trip. Without Redis, it enqueues anyway (a duplicate close is harmless, only wasted)."""

import logging

import redis
from celery import shared_task
from django.conf import settings

from apps.core.redis import get_redis
from apps.subscriptions.services import due_subscription_ids, periods_advance, periods_advance_many

logger = logging.getLogger(__name__)


def _queued_key(subscription_id) -> str:
    return f"periods:queued:{subscription_id}"


def _claim(subscription_ids: list) -> list:
    """Those of `subscription_ids` not queued already, now marked queued."""
    if not subscription_ids:
        return []
    try:
        pipeline = get_redis().pipeline(transaction=False)
        for subscription_id in subscription_ids:
            pipeline.set(_queued_key(subscription_id), 1, nx=True, ex=settings.PERIOD_CLOSE_ENQUEUE_SECONDS)
        claimed = pipeline.execute()
    except redis.RedisError:
        logger.warning("periods: Redis unreachable, enqueuing %d without the duplicate check", len(subscription_ids))
        return list(subscription_ids)
    return [subscription_id for subscription_id, ok in zip(subscription_ids, claimed, strict=True) if ok]


def _release(subscription_ids) -> None:
    try:
        get_redis().delete(*(_queued_key(subscription_id) for subscription_id in subscription_ids))
    except redis.RedisError:
        logger.warning(
            "periods: Redis unreachable; %d stay marked queued until their keys expire", len(subscription_ids)
        )


@shared_task
def advance_due_periods() -> int:
    """Beat: enqueue `advance_periods_many` for the subscriptions with a period move due that
    are not queued already, PERIOD_CLOSE_BATCH_SIZE per task; returns how many were enqueued."""
    claimed = [str(subscription_id) for subscription_id in _claim(due_subscription_ids())]
    size = max(1, settings.PERIOD_CLOSE_BATCH_SIZE)
    for start in range(0, len(claimed), size):
        advance_periods_many.delay(claimed[start : start + size])
    return len(claimed)


@shared_task
def advance_periods_many(subscription_ids: list[str]) -> int:
    try:
        return periods_advance_many(subscription_ids=subscription_ids)
    finally:
        if subscription_ids:
            _release(subscription_ids)


@shared_task
def advance_periods(subscription_id: str) -> int:
    """One subscription's moves (a batch of one)."""
    try:
        return periods_advance(subscription_id=subscription_id)
    finally:
        _release([subscription_id])
