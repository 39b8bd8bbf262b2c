"""A month of usage turned into an invoice by the beat, to the last digit: instant and in_arrears
usage (graduated with free units, package), a refund, late usage in the grace window, fees in
arrears and in advance; collected from the wallet; the ledger balanced; the webhooks written."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from apps.catalog.models import PaymentTerm, Price
from apps.invoices.models import Invoice
from apps.ledger.selectors import ledger_check
from apps.subscriptions.models import BillingPeriod
from apps.subscriptions.tasks import advance_due_periods
from apps.webhooks.models import Event
from tests.usage.world import Billing

pytestmark = pytest.mark.django_db

D = Decimal


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def month(api, time_machine):
    time_machine.move_to(at("2026-01-01T00:00"), tick=False)
    billing = Billing(api.merchant)
    instant = billing.metric(properties={"unitPrice": "0.01"})
    graduated = billing.metric(
        model="graduated",
        term=PaymentTerm.IN_ARREARS,
        free_units="10",
        properties={"tiers": [{"upTo": "100", "unitPrice": "0.02"}, {"upTo": None, "unitPrice": "0.01"}]},
    )
    package = billing.metric(
        model="package", term=PaymentTerm.IN_ARREARS, properties={"packageSize": "50", "packagePrice": "1.5"}
    )
    for term, amount, name in ((PaymentTerm.IN_ADVANCE, "5", "Platform fee"), (PaymentTerm.IN_ARREARS, "2", "Support")):
        fee = Price.objects.create(
            merchant=api.merchant,
            payment_term=term,
            currency="USDC",
            amount=D(amount),
            invoice_display_name=name,
        )
        billing.plan.prices.add(fee)
    billing.fund("100")
    return billing, instant, graduated, package


def report(api, billing, key, metric, quantity, timestamp):
    response = api.post("/v0/usage", billing.event(key, metric, quantity, timestamp=timestamp))
    assert response.status_code == 201, response.json()
    return response.json()


def test_a_month_of_usage_becomes_one_exact_invoice_collected_from_the_wallet(api, month, time_machine):
    billing, instant, graduated, package = month
    for day in range(1, 31):
        time_machine.move_to(at(f"2026-01-{day:02d}T12:00"), tick=False)
        report(api, billing, f"i-{day}", instant, 1, f"2026-01-{day:02d}T12:00:00Z")
        if day <= 25:
            report(api, billing, f"g-{day}", graduated, 10, f"2026-01-{day:02d}T12:00:00Z")  # 250
        if day <= 12:
            report(api, billing, f"p-{day}", package, 10, f"2026-01-{day:02d}T12:00:00Z")  # 120
    refunded = report(api, billing, "g-refunded", graduated, 20, "2026-01-30T11:00:00Z")
    assert api.patch(f"/v0/usage/{refunded['id']}", {"refund": True}).status_code == 200

    # the period ends; the beat (after the settle time) writes the draft, open to late usage
    time_machine.move_to(at("2026-02-01T00:01:01"), tick=False)
    advance_due_periods()
    draft = Invoice.objects.get()
    assert (draft.status, draft.number, draft.kind) == (Invoice.Status.DRAFT, None, Invoice.Kind.PERIOD)
    first = BillingPeriod.objects.get(subscription=billing.subscription, start=at("2026-01-01T00:00"))
    assert first.status == BillingPeriod.Status.GRACE
    assert BillingPeriod.objects.get(start=at("2026-02-01T00:00")).status == BillingPeriod.Status.OPEN

    time_machine.move_to(at("2026-02-01T00:30"), tick=False)
    late = report(api, billing, "g-late", graduated, 5, "2026-01-31T23:00:00Z")
    advance_due_periods()  # the grace is not over: nothing moves
    assert Invoice.objects.get().status == Invoice.Status.DRAFT

    time_machine.move_to(at("2026-02-01T01:01:01"), tick=False)
    advance_due_periods()
    invoice = api.get(f"/v0/invoices/{draft.id}").json()
    lines = [
        (line["description"], line["quantity"], line["amount"], line["informational"]) for line in invoice["lines"]
    ]
    # (in the plan's order of prices: created at one frozen instant here, so compared as a set)
    assert sorted(lines) == sorted(
        [
            # 30 x 0.01, charged as used: shown, outside the total
            (f"{instant.name} (charged as used)", "30", "0.300000", True),
            # 250 + 5 late - 20 refunded = 255; 10 free; 100 x 0.02 + 145 x 0.01
            (graduated.name, "255", "3.450000", False),
            # 120 units: 3 packages of 50 at 1.5
            (package.name, "120", "4.500000", False),
            ("Platform fee", "1", "5.000000", False),  # in advance: February's
            ("Support", "1", "2.000000", False),  # in arrears: January's
        ]
    )
    fee_lines = {line["description"]: line for line in invoice["lines"]}
    assert fee_lines["Platform fee"]["periodStart"] == "2026-02-01T00:00:00Z"
    assert fee_lines["Support"]["periodStart"] == "2026-01-01T00:00:00Z"
    assert invoice["total"] == invoice["subtotal"] == "14.950000"
    assert invoice["number"] == "INV-000001"
    assert invoice["status"] == "paid"
    assert (invoice["amountPaid"], invoice["amountDue"]) == ("14.950000", "0.000000")
    assert invoice["periodStart"] == "2026-01-01T00:00:00Z" and invoice["periodEnd"] == "2026-02-01T00:00:00Z"

    # the money: 100 - 0.30 instant - 14.95 invoiced; revenue and commission split 95 / 5
    assert billing.available() == D("84.75")
    assert billing.revenue() == D("0.285") + D("14.2025")
    assert billing.commission() == D("0.015") + D("0.7475")
    assert ledger_check() == []

    # usage events read their invoice through their period
    assert api.get(f"/v0/usage/{late['id']}").json()["billing"]["invoiceId"] == str(draft.id)
    listed = api.get("/v0/usage", {"customerId": str(billing.customer.id)}).json()["data"]
    assert {event["billing"]["invoiceId"] for event in listed} == {str(draft.id)}

    types = [e.type for e in Event.objects.order_by("created_at", "id") if e.type.startswith(("invoice.", "payment."))]
    # (time is frozen: the events of one transaction share their time, so they are counted, not ordered)
    assert sorted(t for t in types if t.startswith("invoice.")) == [
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
    ]
    paid_event = Event.objects.get(type="invoice.paid")
    assert paid_event.data["number"] == "INV-000001" and paid_event.data["status"] == "paid"
    wallet_payment = Event.objects.filter(type="payment.succeeded").order_by("-created_at").first()
    assert wallet_payment.data["source"] == "wallet" and wallet_payment.data["invoiceId"] == str(draft.id)

    # a rerun of the beat, or of the close itself, changes nothing
    advance_due_periods()
    assert Invoice.objects.count() == 1
    assert BillingPeriod.objects.get(pk=first.pk).status == BillingPeriod.Status.CLOSED


def test_an_invoice_the_wallet_cannot_cover_stays_open_with_its_payment_link(api, month, time_machine):
    billing, instant, graduated, package = month
    report(api, billing, "p-1", package, 5000, "2026-01-01T00:00:00Z")  # 100 packages: 150
    time_machine.move_to(at("2026-02-01T02:00"), tick=False)
    advance_due_periods()
    invoice = api.get("/v0/invoices").json()["data"][0]
    assert invoice["status"] == "open" and invoice["total"] == "157.000000"
    assert invoice["amountDue"] == "157.000000" and invoice["dueAt"] == "2026-02-08T02:00:00Z"
    assert invoice["paymentUrl"].endswith(f"/checkout/{Invoice.objects.get().payment_session_id}")
    refused = api.post(f"/v0/invoices/{invoice['id']}/pay")
    assert refused.status_code == 402 and refused.json()["code"] == "INSUFFICIENT_BALANCE"
    billing.fund("60")  # 160 >= 157: the top-up pays it at once
    paid = api.get(f"/v0/invoices/{invoice['id']}").json()
    assert paid["status"] == "paid" and paid["amountDue"] == "0.000000"
    assert billing.available() == D("3")
    assert ledger_check() == []


def test_a_manually_invoiced_plan_gets_no_usage_lines(api, month, time_machine):
    billing, instant, graduated, package = month
    billing.plan.invoicing = "manual"
    billing.plan.save()
    report(api, billing, "g-1", graduated, 500, "2026-01-01T00:00:00Z")
    report(api, billing, "i-1", instant, 3, "2026-01-01T00:00:00Z")
    time_machine.move_to(at("2026-02-01T02:00"), tick=False)
    advance_due_periods()
    invoice = api.get("/v0/invoices").json()["data"][0]
    assert sorted(line["description"] for line in invoice["lines"]) == sorted(
        [f"{instant.name} (charged as used)", "Platform fee", "Support"]
    )
    assert invoice["total"] == "7.000000"
