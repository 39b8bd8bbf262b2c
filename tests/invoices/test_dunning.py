"""Dunning with frozen time: an invoice unpaid at its due date fails (invoice.payment_failed),
its subscription goes past_due and still takes prepaid usage, collection is retried 1, 3 and 7
days after the due date; paid in the middle the subscription is active again; never paid,
dunning ends and the subscription is terminated; a one-off invoice only fails."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from apps.catalog.models import PaymentTerm
from apps.invoices.models import Invoice
from apps.invoices.services.dunning import dun_due
from apps.invoices.services.invoices import invoice_create_one_off
from apps.ledger.selectors import ledger_check
from apps.subscriptions.models import Subscription
from apps.subscriptions.services import periods_advance, subscription_create, subscription_terminate
from apps.webhooks.models import Event
from tests.factories import make_plan
from tests.usage.world import Billing

D = Decimal


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def events(type: str) -> list[Event]:
    return list(Event.objects.filter(type=type).order_by("created_at", "id"))


@pytest.fixture
def overdue(api, time_machine):
    """A subscription whose January invoice (40 USDC of in_arrears usage) the wallet cannot pay."""
    time_machine.move_to(at("2026-01-01T00:00"), tick=False)
    billing = Billing(api.merchant)
    arrears = billing.metric(term=PaymentTerm.IN_ARREARS, properties={"unitPrice": "1"})
    instant = billing.metric(properties={"unitPrice": "0.1"})
    billing.fund("5")
    assert api.post("/v0/usage", billing.event("a", arrears, 40)).status_code == 201
    time_machine.move_to(at("2026-02-01T02:00"), tick=False)
    periods_advance(subscription_id=billing.subscription.id)
    invoice = Invoice.objects.get(kind="period")
    assert invoice.status == "open" and invoice.due_at == at("2026-02-08T02:00")
    return billing, invoice, instant


def test_unpaid_at_its_due_date_the_subscription_goes_past_due_and_keeps_taking_prepaid_usage(
    api, overdue, time_machine
):
    billing, invoice, instant = overdue
    time_machine.move_to(at("2026-02-08T01:59"), tick=False)
    assert dun_due() == 0
    time_machine.move_to(at("2026-02-08T02:00"), tick=False)
    assert dun_due() == 1
    assert dun_due() == 0  # a rerun
    invoice.refresh_from_db()
    assert invoice.payment_failed_at == at("2026-02-08T02:00")
    assert invoice.next_collection_at == at("2026-02-09T02:00")
    assert Subscription.objects.get(pk=billing.subscription.pk).status == "past_due"
    (failed,) = events("invoice.payment_failed")
    assert failed.data["id"] == str(invoice.id) and failed.data["status"] == "open"
    (past_due,) = events("subscription.past_due")
    assert past_due.data["status"] == "past_due"
    shown = api.get(f"/v0/subscriptions/{billing.subscription.id}").json()
    assert shown["status"] == "past_due"
    # instant usage is prepaid: still charged within the wallet
    report = api.post("/v0/usage", billing.event("while-past-due", instant, 3, timestamp="2026-02-08T02:00:00Z"))
    assert report.status_code == 201, report.json()
    assert billing.available() == D("4.7")


def test_retries_follow_the_schedule_and_a_payment_in_the_middle_makes_it_active_again(overdue, time_machine):
    billing, invoice, _ = overdue
    time_machine.move_to(at("2026-02-08T02:00"), tick=False)
    dun_due()
    time_machine.move_to(at("2026-02-09T02:00"), tick=False)
    assert dun_due() == 1
    invoice.refresh_from_db()
    assert (invoice.collection_retries, invoice.next_collection_at) == (1, at("2026-02-11T02:00"))
    time_machine.move_to(at("2026-02-10T12:00"), tick=False)
    billing.fund("40")  # 45: the credit's sweep pays the 40 at once
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    assert Subscription.objects.get(pk=billing.subscription.pk).status == "active"
    (updated,) = events("subscription.updated")
    assert updated.data["status"] == "active"
    time_machine.move_to(at("2026-02-20T00:00"), tick=False)
    assert dun_due() == 0  # nothing left to retry
    assert billing.available() == D("5")
    assert ledger_check() == []


def test_a_retry_that_finds_the_money_pays_it(api, overdue, time_machine):
    """A wallet whose money was held back by another subscription's minimum balance: the credit's
    sweep could not pay; once that subscription ends, the next retry can."""
    billing, invoice, _ = overdue
    other = subscription_create(
        merchant=api.merchant,
        customer=billing.customer,
        plan=make_plan(api.merchant),
        minimum_account_balance=D("50"),
    )
    time_machine.move_to(at("2026-02-08T02:00"), tick=False)
    dun_due()
    billing.fund("45")  # 50 available, but 50 must stay: 0 free for the 40 due
    assert Invoice.objects.get(pk=invoice.pk).status == "open"
    subscription_terminate(merchant=api.merchant, subscription=other)
    time_machine.move_to(at("2026-02-09T02:00"), tick=False)
    assert dun_due() == 1
    assert Invoice.objects.get(pk=invoice.pk).status == "paid"
    assert Subscription.objects.get(pk=billing.subscription.pk).status == "active"
    assert billing.available() == D("10")
    assert ledger_check() == []


def test_never_paid_dunning_ends_and_the_subscription_is_terminated(overdue, time_machine):
    billing, invoice, _ = overdue
    for moment in ("2026-02-08T02:00", "2026-02-09T02:00", "2026-02-11T02:00"):
        time_machine.move_to(at(moment), tick=False)
        assert dun_due() == 1
    assert Subscription.objects.get(pk=billing.subscription.pk).status == "past_due"
    time_machine.move_to(at("2026-02-15T02:00"), tick=False)
    assert dun_due() == 1
    invoice.refresh_from_db()
    assert invoice.dunning_ended_at == at("2026-02-15T02:00") and invoice.next_collection_at is None
    assert invoice.status == "open" and invoice.collection_retries == 3  # open until paid or marked
    subscription = Subscription.objects.get(pk=billing.subscription.pk)
    assert subscription.status == "terminated" and invoice.number in subscription.termination_reason
    assert len(events("subscription.terminated")) == 1
    time_machine.move_to(at("2026-03-30T00:00"), tick=False)
    assert dun_due() == 0


def test_the_retry_schedule_is_configurable(overdue, time_machine, settings):
    settings.INVOICE_DUNNING_RETRY_DAYS = [0.5]
    billing, invoice, _ = overdue
    time_machine.move_to(at("2026-02-08T02:00"), tick=False)
    dun_due()
    assert Invoice.objects.get(pk=invoice.pk).next_collection_at == at("2026-02-08T14:00")
    time_machine.move_to(at("2026-02-08T14:00"), tick=False)
    dun_due()
    assert Subscription.objects.get(pk=billing.subscription.pk).status == "terminated"


def test_an_unpaid_one_off_invoice_fails_but_never_changes_the_subscription(api, time_machine):
    time_machine.move_to(at("2026-01-01T00:00"), tick=False)
    billing = Billing(api.merchant)
    invoice = invoice_create_one_off(
        merchant=api.merchant,
        customer=billing.customer,
        subscription=billing.subscription,
        currency="USDC",
        lines=[("Setup", D("9"))],
    )
    time_machine.move_to(at("2026-01-01T00:00") + timedelta(days=7), tick=False)
    assert dun_due() == 1
    invoice.refresh_from_db()
    assert invoice.payment_failed_at is not None and invoice.next_collection_at is None
    assert len(events("invoice.payment_failed")) == 1
    assert Subscription.objects.get(pk=billing.subscription.pk).status == "active"
    time_machine.move_to(at("2026-03-01T00:00"), tick=False)
    assert dun_due() == 0


def test_at_dunnings_end_the_renewal_is_issued_again_for_the_time_served_only(api, time_machine):
    from apps.catalog.models import Price

    time_machine.move_to(at("2026-01-01T00:00"), tick=False)
    billing = Billing(api.merchant)
    arrears = billing.metric(term=PaymentTerm.IN_ARREARS, properties={"unitPrice": "1"})
    fee = Price.objects.create(
        merchant=api.merchant,
        payment_term=PaymentTerm.IN_ADVANCE,
        currency="USDC",
        amount=D("30"),
        invoice_display_name="Base",
    )
    billing.plan.prices.add(fee)
    billing.fund("5")
    api.post("/v0/usage", billing.event("a", arrears, 40))
    time_machine.move_to(at("2026-02-01T02:00"), tick=False)
    periods_advance(subscription_id=billing.subscription.id)
    renewal = Invoice.objects.get(kind="period")
    assert renewal.total == D("70")  # 40 of January's usage + February's fee
    for moment in ("2026-02-08T02:00", "2026-02-09T02:00", "2026-02-11T02:00", "2026-02-15T02:00"):
        time_machine.move_to(at(moment), tick=False)
        dun_due()
    renewal.refresh_from_db()
    assert renewal.status == "void"
    again = Invoice.objects.exclude(pk=renewal.pk).get(kind="period")
    # February served from the 1st 00:00 to the 15th 02:00: 338 of 672 hours of the 30 fee
    assert [(line.description, line.amount) for line in again.lines.order_by("position")] == [
        (arrears.name, D("40")),
        ("Base (served until 2026-02-15 02:00:00 UTC)", D("15.089286")),
    ]
    assert again.status == "open" and again.total == D("55.089286") and again.number == "INV-000002"
    assert again.dunning_ended_at is not None
    assert Subscription.objects.get(pk=billing.subscription.pk).status == "terminated"
    time_machine.move_to(at("2026-03-20T00:00"), tick=False)
    assert dun_due() == 0  # no further dunning
    billing.fund("60")  # open until paid: a credit pays it
    assert Invoice.objects.get(pk=again.pk).status == "paid"
    assert ledger_check() == []
