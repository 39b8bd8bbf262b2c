"""Billing periods as rows: created as periods begin, moved open -> grace -> closed once each by
the beat, whatever reruns; the migration gives existing subscriptions their current period."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from apps.catalog.models import PaymentTerm
from apps.invoices.models import Invoice
from apps.subscriptions.models import BillingPeriod, Subscription
from apps.subscriptions.services import periods_advance, subscription_create, subscription_terminate
from apps.subscriptions.services.periods import due_subscription_ids
from tests.factories import MerchantFactory, make_customer, make_plan
from tests.migrations import migrate_over_history
from tests.usage.world import Billing

D = Decimal


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def periods(subscription) -> list[tuple]:
    return [
        (p.start, p.end, p.status) for p in BillingPeriod.objects.filter(subscription=subscription).order_by("start")
    ]


@pytest.fixture
def billing(merchant, time_machine):
    time_machine.move_to(at("2026-01-31T10:00"), tick=False)
    billing = Billing(merchant)
    billing.metric(term=PaymentTerm.IN_ARREARS, properties={"unitPrice": "0.5"})
    return billing


def test_a_subscription_starts_with_its_first_period(billing):
    assert periods(billing.subscription) == [(at("2026-01-31T10:00"), at("2026-02-28T10:00"), "open")]


def test_each_move_happens_once_and_the_next_period_begins(billing, time_machine, settings):
    settings.USAGE_GRACE_PERIOD_SECONDS = 3600
    settings.PERIOD_CLOSE_SETTLE_SECONDS = 60
    subscription = billing.subscription
    time_machine.move_to(at("2026-02-28T10:00:59"), tick=False)  # within the settle time
    assert due_subscription_ids() == [] and periods_advance(subscription_id=subscription.id) == 0
    time_machine.move_to(at("2026-02-28T10:01:00"), tick=False)
    assert due_subscription_ids() == [subscription.id]
    assert periods_advance(subscription_id=subscription.id) == 1
    assert periods_advance(subscription_id=subscription.id) == 0  # a rerun
    assert periods(subscription) == [
        (at("2026-01-31T10:00"), at("2026-02-28T10:00"), "grace"),
        (at("2026-02-28T10:00"), at("2026-03-31T10:00"), "open"),  # months from the anchor: the 31st again
    ]
    time_machine.move_to(at("2026-02-28T11:01:00"), tick=False)
    assert periods_advance(subscription_id=subscription.id) == 1
    assert [p[2] for p in periods(subscription)] == ["closed", "open"]
    assert periods_advance(subscription_id=subscription.id) == 0


def test_a_beat_that_was_down_closes_every_missed_period_in_order(billing, time_machine):
    billing.fund("100")
    time_machine.move_to(at("2026-05-15T00:00"), tick=False)
    assert periods_advance(subscription_id=billing.subscription.id) == 6  # three periods, two moves each
    assert [p[2] for p in periods(billing.subscription)] == ["closed", "closed", "closed", "open"]
    assert [p[0] for p in periods(billing.subscription)][-1] == at("2026-04-30T10:00")


def test_a_terminated_subscription_gets_no_next_period(billing, time_machine):
    subscription_terminate(merchant=billing.merchant, subscription=billing.subscription)
    time_machine.move_to(at("2026-03-05T00:00"), tick=False)
    periods_advance(subscription_id=billing.subscription.id)
    assert periods(billing.subscription) == [(at("2026-01-31T10:00"), at("2026-02-28T10:00"), "closed")]
    assert due_subscription_ids() == []


def test_a_subscription_that_never_activated_is_not_invoiced(merchant, time_machine):
    time_machine.move_to(at("2026-01-01T00:00"), tick=False)
    plan = make_plan(merchant)
    pending = subscription_create(
        merchant=merchant, customer=make_customer(merchant), plan=plan, prefund_amount=D("10")
    )
    assert pending.status == Subscription.Status.PENDING_PAYMENT
    time_machine.move_to(at("2026-03-01T00:00"), tick=False)
    periods_advance(subscription_id=pending.id)
    assert not Invoice.objects.exists()


def test_periods_are_the_merchants_and_modes_own(billing):
    other = Billing(MerchantFactory())
    assert BillingPeriod.objects.get(subscription=billing.subscription).merchant == billing.merchant
    assert BillingPeriod.objects.get(subscription=other.subscription).merchant == other.merchant


@pytest.mark.django_db(transaction=True)
def test_the_migration_gives_existing_subscriptions_their_current_period(time_machine):
    time_machine.move_to(at("2026-03-10T12:00"), tick=False)
    live = Billing(MerchantFactory())
    ended = Billing(MerchantFactory(), email="gone@example.com")
    Subscription.objects.filter(pk=live.subscription.pk).update(started_at=at("2026-01-05T00:00"))
    Subscription.objects.filter(pk=ended.subscription.pk).update(status="terminated", terminated_at=at("2026-03-01"))

    def drop_periods(old):
        old.get_model("subscriptions", "BillingPeriod").objects.all().delete()

    migrate_over_history([("subscriptions", "0005_billingperiod")], drop_periods)
    assert periods(live.subscription) == [(at("2026-03-05T00:00"), at("2026-04-05T00:00"), "open")]
    assert periods(ended.subscription) == []


def test_beat_does_not_queue_a_close_that_is_queued_already(billing, time_machine):
    from apps.core.redis import get_redis
    from apps.subscriptions.tasks import advance_due_periods

    time_machine.move_to(at("2026-03-05T00:00"), tick=False)
    key = f"periods:queued:{billing.subscription.id}"
    get_redis().set(key, 1, ex=60)  # its task is queued (or running) elsewhere
    assert advance_due_periods() == 0
    assert [p[2] for p in periods(billing.subscription)] == ["open"]
    get_redis().delete(key)
    assert advance_due_periods() == 1  # (eager here: the task ran, and let go of its mark)
    assert [p[2] for p in periods(billing.subscription)] == ["closed", "open"]
    assert not get_redis().exists(key)


@pytest.mark.django_db(transaction=True)
def test_existing_subscriptions_and_periods_get_their_anchor_plan_and_cycle(time_machine):
    """Migrations 0007/0008 over rows written before plan changes existed: the anchor is
    startedAt, each period is whole and on its subscription's plan."""
    time_machine.move_to(at("2026-03-10T12:00"), tick=False)
    billing = Billing(MerchantFactory())
    migrate_over_history([("subscriptions", "0006_billing_periods_of_existing_subscriptions")], lambda old: None)
    subscription = Subscription.objects.get(pk=billing.subscription.pk)
    assert subscription.period_anchor == subscription.started_at and subscription.switched_at is None
    (period,) = BillingPeriod.objects.filter(subscription=subscription)
    assert (period.plan_id, period.cycle_start, period.cycle_end) == (subscription.plan_id, period.start, period.end)
    assert period.end_reason == BillingPeriod.EndReason.END and period.share == 1
