"""The period close of many subscriptions in one batch (the beat's task, set-wise): each
invoice exact and its own, numbered without gaps, collected from its own wallet (two invoices of
one wallet: the first that it covers, whole), one that the wallet cannot cover left open with
its link; the same with a grace window (two transactions); a rerun changes nothing; the
statements of a batch do not grow with its size; one subscription that fails does not hold
back the others; listeners of one period hear each period of a batch."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.catalog.models import PaymentTerm, Price
from apps.invoices.models import Invoice, InvoiceSequence
from apps.ledger.selectors import ledger_check, wallet_balances
from apps.payments.services import topup_session_create
from apps.subscriptions import hooks
from apps.subscriptions.models import BillingPeriod
from apps.subscriptions.services import periods_advance_many, subscription_create
from apps.subscriptions.services.periods import PeriodsAdvanceFailed
from apps.webhooks.models import Event
from tests.factories import make_customer, pay_session
from tests.usage.world import Billing

pytestmark = pytest.mark.django_db

D = Decimal


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class World:
    """One plan (graduated calls in arrears with 10 free, packages of 50 tokens at 1.5, a
    support fee of 2 in arrears and a platform fee of 5 in advance) and its subscribers."""

    def __init__(self, api):
        self.api = api
        self.billing = Billing(api.merchant, email="first@example.com")
        self.plan = self.billing.plan
        self.subscriptions = {"first": self.billing.subscription}

    def subscribe(self, name, customer=None):
        customer = customer or make_customer(self.api.merchant, email=f"{name}@example.com")
        self.subscriptions[name] = subscription_create(merchant=self.api.merchant, customer=customer, plan=self.plan)
        return self.subscriptions[name]

    def price(self):
        """The plan's prices, after its subscriptions (which so start without a start invoice)."""
        self.graduated = self.billing.metric(
            model="graduated",
            term=PaymentTerm.IN_ARREARS,
            free_units="10",
            properties={"tiers": [{"upTo": "100", "unitPrice": "0.02"}, {"upTo": None, "unitPrice": "0.01"}]},
        )
        self.package = self.billing.metric(
            model="package", term=PaymentTerm.IN_ARREARS, properties={"packageSize": "50", "packagePrice": "1.5"}
        )
        for term, amount, name in (
            (PaymentTerm.IN_ADVANCE, "5", "Platform fee"),
            (PaymentTerm.IN_ARREARS, "2", "Support"),
        ):
            fee = Price.objects.create(
                merchant=self.api.merchant,
                payment_term=term,
                currency="USDC",
                amount=D(amount),
                invoice_display_name=name,
            )
            self.plan.prices.add(fee)

    def fund(self, name, amount):
        subscription = self.subscriptions[name]
        pay_session(
            topup_session_create(
                merchant=self.api.merchant, customer=subscription.customer, amount=D(amount), currency="USDC"
            )
        )

    def report(self, name, metric, quantity, key):
        body = {
            "idempotencyKey": key,
            "customerId": str(self.subscriptions[name].customer_id),
            "properties": [{"billableMetricId": str(metric.id), "quantity": quantity}],
            "timestamp": "2026-01-10T12:00:00Z",
        }
        response = self.api.post("/v0/usage", body)
        assert response.status_code == 201, response.json()

    def ids(self, *names):
        return [self.subscriptions[name].id for name in names or self.subscriptions]

    def invoice(self, name) -> Invoice:
        return Invoice.objects.get(subscription=self.subscriptions[name], kind=Invoice.Kind.PERIOD)

    def available(self, name):
        return wallet_balances(wallet=self.subscriptions[name].wallet).available


@pytest.fixture
def world(api, time_machine):
    time_machine.move_to(at("2026-01-01T00:00"), tick=False)
    world = World(api)
    for name in ("calls", "nothing", "unfunded", "shared"):
        world.subscribe(name)
    world.subscribe("shared-too", customer=world.subscriptions["shared"].customer)  # the same wallet
    world.price()
    for name in ("first", "calls", "nothing"):
        world.fund(name, "100")
    world.fund("shared", "10")  # covers one of its two invoices of 7
    time_machine.move_to(at("2026-01-10T12:00"), tick=False)
    world.report("first", world.graduated, 50, "g-first")  # 40 x 0.02 = 0.8
    world.report("first", world.package, 120, "p-first")  # 3 packages: 4.5
    world.report("calls", world.graduated, 250, "g-calls")  # 100 x 0.02 + 140 x 0.01 = 3.4
    world.report("unfunded", world.graduated, 10, "g-unfunded")  # free
    return world


EXPECTED_TOTALS = {
    "first": D("12.3"),
    "calls": D("10.4"),
    "nothing": D("7"),
    "unfunded": D("7"),
    "shared": D("7"),
    "shared-too": D("7"),
}


def assert_closed_once(world):
    """Every period closed once, its invoice exact and numbered INV-000001.. without a gap; each
    collected from its own wallet where the wallet covers it, oldest number first."""
    invoices = {name: world.invoice(name) for name in world.subscriptions}
    assert {name: invoice.total for name, invoice in invoices.items()} == EXPECTED_TOTALS
    numbers = sorted(invoice.number for invoice in invoices.values())
    assert numbers == [f"INV-{n:06d}" for n in range(1, 7)]
    assert InvoiceSequence.objects.get(merchant=world.api.merchant).last_number == 6
    lines = {(line.description, line.quantity, line.amount) for line in invoices["first"].lines.all()}
    assert lines == {
        (world.graduated.name, D(50), D("0.8")),
        (world.package.name, D(120), D("4.5")),
        ("Platform fee", D(1), D(5)),
        ("Support", D(1), D(2)),
    }
    assert {line.amount for line in invoices["unfunded"].lines.all()} == {D(0), D(5), D(2)}

    for name in ("first", "calls", "nothing"):
        assert invoices[name].status == Invoice.Status.PAID
        assert world.available(name) == D(100) - EXPECTED_TOTALS[name]
    # the wallet that cannot cover it: open, due, with its payment link
    unfunded = world.api.get(f"/v0/invoices/{invoices['unfunded'].id}").json()
    assert (unfunded["status"], unfunded["amountDue"]) == ("open", "7.000000")
    assert unfunded["dueAt"] is not None and unfunded["paymentUrl"]
    # two invoices of one wallet that covers one: the first numbered is paid, whole; the other waits
    shared = sorted((invoices["shared"], invoices["shared-too"]), key=lambda invoice: invoice.number)
    assert [invoice.status for invoice in shared] == [Invoice.Status.PAID, Invoice.Status.OPEN]
    assert shared[1].amount_paid == 0 and world.available("shared") == D(3)

    for name, invoice in invoices.items():
        types = sorted(Event.objects.filter(data__id=str(invoice.id)).values_list("type", flat=True))
        paid = invoice.status == Invoice.Status.PAID
        assert types == ["invoice.created", "invoice.finalized", *(["invoice.paid"] if paid else [])], name
        finalized = Event.objects.get(type="invoice.finalized", data__id=str(invoice.id)).data
        assert (finalized["number"], finalized["total"]) == (invoice.number, f"{invoice.total:.6f}")
        payments = Event.objects.filter(type="payment.succeeded", data__invoiceId=str(invoice.id)).count()
        assert payments == (1 if paid else 0), name
        period = BillingPeriod.objects.get(subscription=world.subscriptions[name], start=at("2026-01-01T00:00"))
        assert (period.status, period.invoice_id) == (BillingPeriod.Status.CLOSED, invoice.id)
        assert BillingPeriod.objects.filter(subscription=world.subscriptions[name]).count() == 2
    assert ledger_check() == []


def test_a_batch_closes_each_period_into_its_own_exact_invoice(world, time_machine, settings):
    settings.USAGE_GRACE_PERIOD_SECONDS = 0
    time_machine.move_to(at("2026-02-01T00:01:01"), tick=False)
    assert periods_advance_many(subscription_ids=world.ids()) == 12  # both moves of six periods at once
    assert_closed_once(world)

    events, transactions = Event.objects.count(), Invoice.objects.count()
    assert periods_advance_many(subscription_ids=world.ids()) == 0  # a rerun
    assert (Event.objects.count(), Invoice.objects.count()) == (events, transactions)


def test_a_batch_with_a_grace_window_drafts_then_finalizes_with_the_late_usage(world, time_machine, settings):
    settings.USAGE_GRACE_PERIOD_SECONDS = 3600
    time_machine.move_to(at("2026-02-01T00:01:01"), tick=False)
    assert periods_advance_many(subscription_ids=world.ids()) == 6
    assert set(Invoice.objects.values_list("status", flat=True)) == {Invoice.Status.DRAFT}
    assert Invoice.objects.filter(subscription=world.subscriptions["nothing"]).get().total == D(7)
    # late usage in the grace window lands on the draft of its own subscription only
    time_machine.move_to(at("2026-02-01T00:30"), tick=False)
    body = {
        "idempotencyKey": "late",
        "customerId": str(world.subscriptions["nothing"].customer_id),
        "properties": [{"billableMetricId": str(world.package.id), "quantity": 1}],
        "timestamp": "2026-01-31T23:00:00Z",
    }
    assert world.api.post("/v0/usage", body).status_code == 201
    time_machine.move_to(at("2026-02-01T01:01:01"), tick=False)
    assert periods_advance_many(subscription_ids=world.ids()) == 6
    late = world.invoice("nothing")
    assert late.total == D("8.5") and late.status == Invoice.Status.PAID  # one package of 1.5 more
    EXPECTED_TOTALS["nothing"] = D("8.5")
    try:
        assert_closed_once(world)
    finally:
        EXPECTED_TOTALS["nothing"] = D("7")
    assert world.available("nothing") == D("91.5")


def test_the_round_trips_of_a_batch_do_not_grow_with_its_size(api, time_machine, settings):
    settings.USAGE_GRACE_PERIOD_SECONDS = 0
    time_machine.move_to(at("2026-01-01T00:00"), tick=False)
    world = World(api)
    for index in range(6):
        world.subscribe(f"s{index}")
    world.price()
    for name in world.subscriptions:
        world.fund(name, "50")
    time_machine.move_to(at("2026-01-10T12:00"), tick=False)
    for index, name in enumerate(world.subscriptions):
        world.report(name, world.graduated, 20 + index, f"g-{name}")
    time_machine.move_to(at("2026-02-01T00:01:01"), tick=False)
    periods_advance_many(subscription_ids=world.ids("first"))  # (anything a first close reads once)
    counts = []
    for names in (("s0", "s1"), ("s2", "s3", "s4", "s5")):
        with CaptureQueriesContext(connection) as queries:
            assert periods_advance_many(subscription_ids=world.ids(*names)) == 2 * len(names)
        counts.append(len(queries))
    assert counts[0] == counts[1]
    assert Invoice.objects.filter(status=Invoice.Status.PAID).count() == 7
    assert ledger_check() == []


def test_one_subscription_that_fails_does_not_hold_back_its_batch(world, time_machine, settings, monkeypatch):
    settings.USAGE_GRACE_PERIOD_SECONDS = 0
    failing = world.subscriptions["calls"].id

    def fail_for_one(periods):
        if any(period.subscription_id == failing for period in periods):
            raise RuntimeError("this subscription cannot be invoiced")

    monkeypatch.setattr(hooks, "_ended", [*hooks._ended, fail_for_one])
    time_machine.move_to(at("2026-02-01T00:01:01"), tick=False)
    with pytest.raises(PeriodsAdvanceFailed) as failed:
        periods_advance_many(subscription_ids=world.ids())
    assert list(failed.value.failed) == [failing]
    # the others are closed and invoiced; the failing one is as it was
    assert Invoice.objects.count() == 5
    assert not Invoice.objects.filter(subscription_id=failing).exists()
    period = BillingPeriod.objects.get(subscription_id=failing)
    assert (period.status, period.invoice_id) == (BillingPeriod.Status.OPEN, None)

    monkeypatch.setattr(hooks, "_ended", [listener for listener in hooks._ended if listener is not fail_for_one])
    assert periods_advance_many(subscription_ids=world.ids()) == 2  # the beat's next tick
    assert_closed_once(world)


def test_a_one_period_listener_hears_each_period_of_a_batch(world, time_machine, settings, monkeypatch):
    settings.USAGE_GRACE_PERIOD_SECONDS = 0
    heard = []
    monkeypatch.setattr(hooks, "_ended", list(hooks._ended))
    monkeypatch.setattr(hooks, "_closed", list(hooks._closed))
    monkeypatch.setattr(hooks, "_each_ended", {})
    monkeypatch.setattr(hooks, "_each_closed", {})

    def ended(period):
        heard.append(("ended", period.subscription_id, period.status))

    def closed(period, fresh):
        heard.append(("closed", period.subscription_id, fresh))

    hooks.on_period_ended(ended)
    hooks.on_period_ended(ended)  # registered once
    hooks.on_period_closed(closed)
    time_machine.move_to(at("2026-02-01T00:01:01"), tick=False)
    periods_advance_many(subscription_ids=world.ids())
    ids = set(world.ids())
    assert sorted(heard, key=str) == sorted(
        [("ended", i, BillingPeriod.Status.GRACE) for i in ids] + [("closed", i, True) for i in ids], key=str
    )
    # one period on its own (a plan change or a termination announces one) reaches them too
    period = BillingPeriod.objects.filter(subscription_id=world.ids("first")[0], status="open").get()
    heard.clear()
    hooks.period_closed(period, False)
    assert heard == [("closed", period.subscription_id, False)]
