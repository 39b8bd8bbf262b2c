"""The periods open to usage (`open_window`), kept per process across requests, are the
ones computed afresh at every instant: across period boundaries and grace ends, in any
order of calls, and with a grace longer than the interval."""

import random
import uuid
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from django.test import override_settings

from apps.core.process_cache import clear_process_caches
from apps.subscriptions.periods import add_intervals, period_at, period_index_at
from apps.usage.services.charging.resolve import open_window


def computed_afresh(subscription, now, grace_seconds):
    interval, anchor = subscription.plan.billing_interval, subscription.started_at
    if now < anchor:
        return anchor, add_intervals(anchor, interval, 1), None
    index = period_index_at(anchor, interval, now)
    start, end = period_at(anchor, interval, now)
    window_start = start
    if index > 0 and now < start + timedelta(seconds=grace_seconds):
        window_start = add_intervals(anchor, interval, index - 1)
    return window_start, end, (start, end)


def subscription(anchor, interval, switched_at=None):
    return SimpleNamespace(
        id=uuid.uuid4(),
        started_at=anchor,
        period_anchor=anchor,
        switched_at=switched_at,
        plan=SimpleNamespace(billing_interval=interval),
    )


@pytest.mark.parametrize(
    ("interval", "grace_seconds"),
    [("daily", 3600), ("daily", 86400), ("daily", 86401), ("daily", 2 * 86400), ("weekly", 0), ("monthly", 3600)],
)
def test_the_kept_window_is_the_fresh_one_at_every_instant(interval, grace_seconds):
    clear_process_caches()
    sub = subscription(datetime(2026, 1, 31, 10, 0, tzinfo=UTC), interval)
    rng = random.Random(7)
    now = sub.started_at - timedelta(hours=3)
    with override_settings(USAGE_GRACE_PERIOD_SECONDS=grace_seconds):
        for _ in range(2000):
            now += timedelta(minutes=rng.randint(1, 400))
            assert open_window(sub, now) == computed_afresh(sub, now, grace_seconds), now


@pytest.mark.parametrize("interval", ["daily", "weekly", "monthly", "quarterly"])
def test_boundaries_asked_in_any_order(interval):
    clear_process_caches()
    grace = 3600
    sub = subscription(datetime(2024, 1, 31, 23, 30, tzinfo=timezone(timedelta(hours=5))), interval)
    instants = []
    for n in range(24):
        boundary = add_intervals(sub.started_at, interval, n)
        for micros in (-1, 0, 1, grace * 10**6 - 1, grace * 10**6, grace * 10**6 + 1):
            instants.append(boundary + timedelta(microseconds=micros))
    rng = random.Random(3)
    with override_settings(USAGE_GRACE_PERIOD_SECONDS=grace):
        for _ in range(3):
            rng.shuffle(instants)
            for now in instants:
                assert open_window(sub, now) == computed_afresh(sub, now, grace), now
