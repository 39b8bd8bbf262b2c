"""Period close on Celery: beat finds the subscriptions with a period move due and enqueues one
task per subscription (its id only); each task makes that subscription's due moves
(apps.subscriptions.services.periods), safe to run twice or at once.

A subscription is enqueued once while its task is queued or running: a Redis key per
subscription (set when enqueued, deleted when its task ends, expiring after
PERIOD_CLOSE_ENQUEUE_SECONDS should a worker die holding it), so that beat's next ticks do not
queue the same close again and again while a long close runs (bench/invoicing.py counted 84,000 -
147,000 duplicate messages for 10,000 closes before). Without Redis, it enqueues anyway (a
duplicate close is harmless, only wasted)."""

import logging

import redis
from celery import shared_task
from django.conf import settings

from apps.core.redis import get_redis
from apps.subscriptions.services import due_subscription_ids, periods_advance

logger = logging.getLogger(__name__)


def _queued_key(subscription_id) -> str:
    return f"periods:queued:{subscription_id}"


def _claim(subscription_id) -> bool:
    try:
        return bool(get_redis().set(_queued_key(subscription_id), 1, nx=True, ex=settings.PERIOD_CLOSE_ENQUEUE_SECONDS))
    except redis.RedisError:
        logger.warning("periods: Redis unreachable, enqueuing %s without the duplicate check", subscription_id)
        return True


@shared_task
def advance_due_periods() -> int:
    """Beat: enqueue `advance_periods` for every subscription with a period move due that is not
    queued already; returns how many were enqueued."""
    enqueued = 0
    for subscription_id in due_subscription_ids():
        if _claim(subscription_id):
            advance_periods.delay(str(subscription_id))
            enqueued += 1
    return enqueued


@shared_task
def advance_periods(subscription_id: str) -> int:
    try:
        return periods_advance(subscription_id=subscription_id)
    finally:
        try:
            get_redis().delete(_queued_key(subscription_id))
        except redis.RedisError:
            logger.warning("periods: Redis unreachable; %s stays marked queued until its key expires", subscription_id)
