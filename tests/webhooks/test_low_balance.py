"""wallet.low_balance: once when the available balance falls below the customer's threshold,
again only after it has been back at or above it; written with the posting that moved the
balance (usage, holds, adjustments), in its round trip, and never for a change that rolls back."""

from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from apps.customers.billing import CurrencyBillingSettings
from apps.customers.models import BillingSettings
from apps.customers.services import customer_update
from apps.entitlements.services import EntitlementRequest, entitlement_create, entitlement_release
from apps.ledger.selectors import ledger_check
from apps.payments.services.adjustments import adjustment_create
from apps.usage.models import UsageEvent
from apps.usage.services import usage_record, usage_record_batch
from apps.webhooks.delivery import payload, relay_events
from apps.webhooks.models import Delivery, Event
from apps.webhooks.services import webhook_endpoint_create
from tests.concurrency import run_at_once
from tests.conftest import Api
from tests.factories import MerchantFactory, issue_key, sandbox_of
from tests.usage.world import Billing

pytestmark = pytest.mark.django_db(transaction=True)

D = Decimal


def alerts(merchant=None) -> list[Event]:
    queryset = Event.objects.filter(type="wallet.low_balance").order_by("created_at", "id")
    if merchant is not None:
        queryset = queryset.filter(merchant=merchant)
    return list(queryset)


def set_threshold(billing: Billing, threshold: str | None) -> None:
    customer_update(
        merchant=billing.merchant,
        customer=billing.customer,
        billing_settings={
            billing.currency: CurrencyBillingSettings(low_balance_threshold=None if threshold is None else D(threshold))
        },
    )


def world(merchant=None, *, fund="10", threshold="5", unit="1", currency="USDC") -> tuple[Billing, object]:
    billing = Billing(merchant or MerchantFactory(), currency=currency)
    metric = billing.metric(properties={"unitPrice": unit})
    billing.fund(fund)
    if threshold is not None:
        set_threshold(billing, threshold)
    return billing, metric


def use(billing: Billing, metric, key: str, quantity=1) -> dict:
    return usage_record(merchant=billing.merchant, raw=billing.event(key, metric, quantity))


def test_a_fall_below_the_threshold_is_heard_once_with_the_wallet_after_it():
    billing, metric = world()
    for index in range(5):  # 10 -> 5: at the threshold is not below it
        use(billing, metric, f"k{index}")
    assert alerts() == []
    use(billing, metric, "k5")  # 5 -> 4
    use(billing, metric, "k6")  # 4 -> 3: still below, nothing more
    (alert,) = alerts()
    assert alert.merchant == billing.merchant
    assert alert.data == {
        "id": str(billing.wallet.id),
        "object": "wallet",
        "customerId": str(billing.customer.id),
        "currency": "USDC",
        "balance": "4.000000",
        "held": "0.000000",
        "lowBalanceThreshold": "5.000000",
        "updatedAt": alert.data["updatedAt"],
    }
    # the event's time is the posting's, as is the resource's updatedAt
    assert alert.data["updatedAt"] == alert.created_at.isoformat().replace("+00:00", "Z")
    assert BillingSettings.objects.get(customer=billing.customer).low_balance_alerted is True


def test_a_top_up_back_above_rearms_and_a_second_fall_is_heard_again():
    billing, metric = world(fund="6")
    use(billing, metric, "a", 2)  # 6 -> 4
    assert len(alerts()) == 1
    billing.fund("0.5")  # 4.5: still below, no re-arming
    use(billing, metric, "b")  # 3.5
    assert len(alerts()) == 1
    billing.fund("1.5")  # 5: at the threshold again
    assert BillingSettings.objects.get(customer=billing.customer).low_balance_alerted is False
    assert len(alerts()) == 1
    use(billing, metric, "c")  # 4: a second crossing
    first, second = alerts()
    assert second.data["balance"] == "4.000000"
    assert second.created_at > first.created_at


def test_concurrent_batches_crossing_the_threshold_publish_one_event_then_a_top_up_and_a_fall_a_second():
    merchant = MerchantFactory()
    secret = issue_key(merchant)
    billing, metric = world(merchant, fund="12", threshold="5", unit="0.1")

    def batch(index):
        events = [billing.event(f"b{index}-{j}", metric) for j in range(20)]
        return Api(secret, merchant).post("/v0/usage/batch", {"events": events}).status_code

    # 6 x 20 x 0.1 = 12: every batch goes through, the wallet ends at 0, crossing 5 once
    assert run_at_once(6, batch) == [201] * 6
    assert billing.available() == D("0")
    (alert,) = alerts()
    assert D(alert.data["balance"]) < D("5")

    billing.fund("8")  # 8: back above
    assert run_at_once(4, lambda i: use(billing, metric, f"s{i}", 10)["id"] is not None) == [True] * 4
    assert billing.available() == D("4")
    first, second = alerts()
    assert second.data["balance"] == "4.000000"  # 8 -> 7 -> 6 -> 5 -> 4: the last report crosses
    assert ledger_check() == []


def test_concurrent_single_reports_across_the_threshold_publish_one_event():
    merchant = MerchantFactory()
    secret = issue_key(merchant)
    billing, metric = world(merchant, fund="10", threshold="5", unit="0.5")

    def report(index):
        return Api(secret, merchant).post("/v0/usage", billing.event(f"r{index}", metric)).status_code

    assert run_at_once(16, report) == [201] * 16  # 10 -> 2
    assert len(alerts()) == 1
    assert UsageEvent.objects.count() == 16


def test_a_charge_that_rolls_back_publishes_nothing_and_leaves_the_alert_armed():
    billing, metric = world()

    class Boom(Exception):
        pass

    with pytest.raises(Boom), transaction.atomic():
        use(billing, metric, "gone", 6)  # 10 -> 4 inside, then undone
        raise Boom
    assert alerts() == []
    assert billing.available() == D("10")
    assert BillingSettings.objects.get(customer=billing.customer).low_balance_alerted is False
    use(billing, metric, "kept", 6)
    assert len(alerts()) == 1


def test_a_refused_report_moves_nothing_and_publishes_nothing():
    billing, metric = world(fund="3", threshold="1")
    with pytest.raises(Exception, match="available"):
        use(billing, metric, "too-much", 4)
    assert alerts() == []


def test_a_hold_that_takes_the_available_balance_below_is_heard_and_its_release_rearms():
    billing, metric = world()
    entitlement = entitlement_create(
        merchant=billing.merchant,
        customer=billing.customer,
        requests=[EntitlementRequest(metric.id, D(7), None)],
    )
    (alert,) = alerts()
    assert (alert.data["balance"], alert.data["held"]) == ("3.000000", "7.000000")
    entitlement_release(entitlement=entitlement)
    assert BillingSettings.objects.get(customer=billing.customer).low_balance_alerted is False
    use(billing, metric, "after-release", 6)
    assert len(alerts()) == 2


def test_a_merchant_debit_adjustment_is_heard_too():
    billing, _ = world()
    adjustment_create(
        merchant=billing.merchant, customer=billing.customer, amount=D("-6"), currency="USDC", reason="correction"
    )
    (alert,) = alerts()
    assert alert.data["balance"] == "4.000000"


def test_no_threshold_no_event_and_a_new_threshold_is_heard_at_the_next_movement():
    billing, metric = world(threshold=None)
    use(billing, metric, "a", 8)  # 2, no threshold
    assert alerts() == []
    set_threshold(billing, "5")  # already below: heard at the next movement, not before
    assert alerts() == []
    use(billing, metric, "b")  # 1
    assert len(alerts()) == 1
    set_threshold(billing, "0.5")  # a new threshold re-arms; 1 is above it
    use(billing, metric, "c")  # 0: below 0.5
    assert len(alerts()) == 2
    set_threshold(billing, None)
    billing.fund("10")
    use(billing, metric, "d", 10)
    assert len(alerts()) == 2


def test_amounts_are_written_as_the_api_writes_them_in_the_wallets_currency():
    billing, metric = world(fund="10", threshold="2.5", unit="0.0035", currency="USD")
    use(billing, metric, "usd", 2000)  # 10 - 7 = 3: above
    use(billing, metric, "usd-2", 200)  # 3 - 0.7 = 2.3
    (alert,) = alerts()
    assert (alert.data["balance"], alert.data["held"], alert.data["lowBalanceThreshold"]) == ("2.30", "0.00", "2.50")
    use(billing, metric, "usd-3", 1)
    billing.fund("0.2035")  # 2.5: re-armed
    use(billing, metric, "usd-4", 1)  # 2.4965
    assert alerts()[-1].data["balance"] == "2.4965"


def test_each_mode_hears_its_own_wallets():
    live, live_metric = world()
    sandbox, sandbox_metric = world(sandbox_of(live.merchant))
    use(sandbox, sandbox_metric, "s", 6)
    assert [a.merchant for a in alerts()] == [sandbox.merchant]
    assert alerts(live.merchant) == []
    use(live, live_metric, "l", 6)
    assert len(alerts(live.merchant)) == 1


def test_a_batch_posts_its_alert_in_the_same_round_trips_as_without_one():
    """The crossing is one more statement in the write's round trip, not a round trip of its own."""
    with_threshold, metric = world(fund="100", threshold="95", unit="0.1")
    without, other_metric = world(fund="100", threshold=None, unit="0.1")

    def round_trips(billing, metric, prefix):
        usage_record_batch(merchant=billing.merchant, raw_events=[billing.event(f"{prefix}-warm", metric)])
        events = [billing.event(f"{prefix}-{j}", metric) for j in range(100)]
        with CaptureQueriesContext(connection) as queries:
            status, _ = usage_record_batch(merchant=billing.merchant, raw_events=events)
        assert status == 201
        return len(queries)

    assert round_trips(with_threshold, metric, "a") == round_trips(without, other_metric, "b")
    assert len(alerts()) == 1


def test_the_relay_delivers_it_to_the_endpoints_subscribed_to_it():
    billing, metric = world()
    subscribed = webhook_endpoint_create(
        merchant=billing.merchant, url="https://hooks.example.com/low", events=["wallet.low_balance"]
    )
    webhook_endpoint_create(merchant=billing.merchant, url="https://hooks.example.com/other", events=["dispute.opened"])
    use(billing, metric, "k", 6)
    relay_events()
    (delivery,) = Delivery.objects.all()
    assert delivery.endpoint == subscribed
    body = payload(delivery.event)
    assert body["eventType"] == "wallet.low_balance"
    assert body["livemode"] is billing.merchant.livemode
    assert body["data"]["balance"] == "4.000000"
