"""The period counters moved from usage to subscriptions with their table and rows, and move
back when the migration is reversed."""

from decimal import Decimal

import pytest
from django.utils import timezone

from apps.subscriptions.models import UsageCounter
from tests.factories import MerchantFactory
from tests.migrations import migrate_over_history
from tests.usage.world import Billing

BEFORE_THE_MOVE = [("subscriptions", "0003_move_payment_sessions"), ("usage", "0004_lean_hot_rows")]


@pytest.mark.django_db(transaction=True)
def test_counters_written_before_the_move_are_read_after_it_and_after_a_way_back():
    billing = Billing(MerchantFactory())
    billing.metric()
    price = billing.plan.prices.get()
    start = timezone.now().replace(microsecond=0)

    def write(old):
        counter = old.get_model("usage", "UsageCounter").objects.create(
            merchant_id=billing.merchant.pk,
            subscription_id=billing.subscription.pk,
            price_id=price.pk,
            period_start=start,
            units=Decimal("42.5"),
        )
        return counter.pk

    pk = migrate_over_history(BEFORE_THE_MOVE, write)
    counter = UsageCounter.objects.get(pk=pk)
    assert (counter.subscription_id, counter.price_id, counter.units) == (
        billing.subscription.pk,
        price.pk,
        Decimal("42.5"),
    )

    def read_back(old):
        return old.get_model("usage", "UsageCounter").objects.get(pk=pk).units

    assert migrate_over_history(BEFORE_THE_MOVE, read_back) == Decimal("42.5")
