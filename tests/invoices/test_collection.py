"""Numbering, collection from the wallet, pay, void, uncollectible and one-off invoices, with
real commits and real concurrency where it matters."""

from decimal import Decimal

import pytest

from apps.invoices.models import Invoice, InvoiceSequence
from apps.invoices.services.invoices import invoice_create_one_off, invoice_mark_uncollectible
from apps.ledger.selectors import ledger_check
from apps.payments.models import Payment, PaymentAttempt, PaymentSource
from apps.payments.services import payment_attempt_start
from apps.webhooks.models import Event
from tests.concurrency import run_at_once
from tests.factories import MerchantFactory, make_customer, pay_session, sandbox_of
from tests.usage.world import Billing

D = Decimal


def one_off(billing, amount, *, auto_collect=True, description="Consulting"):
    return invoice_create_one_off(
        merchant=billing.merchant,
        customer=billing.customer,
        currency=billing.currency,
        lines=[(description, D(amount))],
        auto_collect=auto_collect,
    )


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_finalizations_take_twenty_numbers_without_gaps_or_duplicates():
    merchant = MerchantFactory()
    customers = [make_customer(merchant, email=f"c{i}@example.com") for i in range(20)]

    def finalize(index):
        invoice = invoice_create_one_off(
            merchant=merchant, customer=customers[index], currency="USDC", lines=[("Work", D("1"))]
        )
        return invoice.number

    numbers = run_at_once(20, finalize)
    assert sorted(numbers) == [f"INV-{n:06d}" for n in range(1, 21)], numbers
    assert InvoiceSequence.objects.get(merchant=merchant).last_number == 20
    # the sandbox numbers its own invoices from 1
    sandbox = sandbox_of(merchant)
    twin = make_customer(sandbox, email="c0@example.com")
    assert invoice_create_one_off(
        merchant=sandbox, customer=twin, currency="USDC", lines=[("Work", D("1"))]
    ).number == ("INV-000001")


@pytest.mark.django_db(transaction=True)
def test_a_top_up_covering_two_open_invoices_pays_the_oldest_first_and_only_whole_ones():
    billing = Billing(MerchantFactory(), minimum="1")
    oldest = one_off(billing, "30")
    middle = one_off(billing, "50")
    newest = one_off(billing, "5")
    assert [i.status for i in (oldest, middle, newest)] == ["open"] * 3
    billing.fund("85.5")  # less the minimum of 1: 84.5 covers 30 + 50, not the 5 after them
    statuses = {i.pk: i.status for i in Invoice.objects.all()}
    assert (statuses[oldest.pk], statuses[middle.pk], statuses[newest.pk]) == ("paid", "paid", "open")
    assert billing.available() == D("5.5")
    # a second credit: the newest is paid whole once covered (5.5 - 5 leaves 0.5, under the minimum: not yet)
    billing.fund("0.5")
    assert Invoice.objects.get(pk=newest.pk).status == "paid"
    assert billing.available() == D("1")
    wallet_payments = Payment.objects.filter(source=PaymentSource.WALLET)
    assert sorted(p.amount for p in wallet_payments) == [D("5"), D("30"), D("50")]
    assert Event.objects.filter(type="invoice.paid").count() == 3
    assert ledger_check() == []


@pytest.mark.django_db(transaction=True)
def test_an_invoice_with_an_attempt_in_flight_is_never_swept():
    billing = Billing(MerchantFactory())
    invoice = one_off(billing, "10")
    attempt = payment_attempt_start(session_id=invoice.payment_session_id, source=PaymentSource.CARD)
    assert attempt.invoice_id == invoice.id
    billing.fund("20")
    assert Invoice.objects.get(pk=invoice.pk).status == "open"
    assert billing.available() == D("20")


@pytest.mark.django_db(transaction=True)
def test_concurrent_credits_pay_an_invoice_once():
    billing = Billing(MerchantFactory())
    invoice = one_off(billing, "10")
    run_at_once(6, lambda i: billing.fund("10"))
    assert Invoice.objects.get(pk=invoice.pk).status == "paid"
    assert Payment.objects.filter(source=PaymentSource.WALLET).count() == 1
    assert billing.available() == D("50")
    assert ledger_check() == []


def test_money_arriving_through_the_invoice_link_pays_it_and_an_excess_stays_on_the_wallet(api):
    billing = Billing(api.merchant)
    invoice = one_off(billing, "12")
    pay_session(invoice.payment_session, amount=D("15"))
    data = api.get(f"/v0/invoices/{invoice.id}").json()
    assert (data["status"], data["amountPaid"], data["amountDue"], data["paymentUrl"]) == (
        "paid",
        "12.000000",
        "0.000000",
        None,
    )
    assert billing.available() == D("3")
    assert billing.revenue() == D("11.4") and billing.commission() == D("0.6")
    assert ledger_check() == []


def test_an_underpayment_leaves_it_open_and_the_link_asks_for_the_rest(api):
    billing = Billing(api.merchant)
    invoice = one_off(billing, "12")
    pay_session(invoice.payment_session, amount=D("5"))
    data = api.get(f"/v0/invoices/{invoice.id}").json()
    assert (data["status"], data["amountPaid"], data["amountDue"]) == ("open", "5.000000", "7.000000")
    pay = api.post(f"/v0/invoices/{invoice.id}/pay")
    assert pay.status_code == 402 and pay.json()["code"] == "INSUFFICIENT_BALANCE"
    billing.fund("7")  # the wallet now covers the rest: the credit's sweep pays it
    assert api.get(f"/v0/invoices/{invoice.id}").json()["status"] == "paid"
    assert billing.available() == D("0")


def test_pay_collects_a_manual_invoice_now_and_refuses_what_is_not_open(api):
    billing = Billing(api.merchant)
    billing.fund("20")
    invoice = one_off(billing, "8", auto_collect=False)
    assert api.get(f"/v0/invoices/{invoice.id}").json()["status"] == "open"
    paid = api.post(f"/v0/invoices/{invoice.id}/pay")
    assert paid.status_code == 200 and paid.json()["status"] == "paid"
    again = api.post(f"/v0/invoices/{invoice.id}/pay")
    assert again.status_code == 409 and again.json()["code"] == "INVOICE_NOT_OPEN"
    assert billing.available() == D("12")


def test_void_returns_what_was_paid_in_the_proportions_it_was_taken(api):
    billing = Billing(api.merchant)
    billing.fund("10")
    invoice = one_off(billing, "8")
    assert billing.available() == D("2")
    voided = api.post(f"/v0/invoices/{invoice.id}/void")
    assert voided.status_code == 200 and voided.json()["status"] == "void"
    assert billing.available() == D("10")
    assert billing.revenue() == D("0") and billing.commission() == D("0")
    assert api.post(f"/v0/invoices/{invoice.id}/void").json()["code"] == "INVOICE_VOID"
    assert Event.objects.filter(type="invoice.voided").count() == 1
    assert ledger_check() == []


def test_a_void_frees_money_that_the_sweep_gives_to_the_next_open_invoice(api):
    billing = Billing(api.merchant)
    billing.fund("10")
    first = one_off(billing, "8")
    second = one_off(billing, "6")
    assert Invoice.objects.get(pk=second.pk).status == "open"
    api.post(f"/v0/invoices/{first.id}/void")
    assert Invoice.objects.get(pk=second.pk).status == "paid"
    assert billing.available() == D("4")


def test_uncollectible_moves_no_money_and_can_still_be_paid(api):
    billing = Billing(api.merchant)
    invoice = one_off(billing, "8")
    invoice_mark_uncollectible(merchant=api.merchant, invoice_id=invoice.id)
    assert api.get(f"/v0/invoices/{invoice.id}").json()["status"] == "uncollectible"
    billing.fund("8")  # the sweep pays open invoices only
    assert Invoice.objects.get(pk=invoice.pk).status == "uncollectible"
    assert api.post(f"/v0/invoices/{invoice.id}/pay").json()["status"] == "paid"


def test_one_off_invoices_through_the_api(api):
    billing = Billing(api.merchant)
    billing.fund("3")
    created = api.post(
        "/v0/invoices",
        {
            "subscriptionId": str(billing.subscription.id),
            "lines": [{"description": "October usage", "amount": "2.5"}, {"description": "Setup", "amount": "1"}],
        },
    )
    assert created.status_code == 201, created.json()
    data = created.json()
    assert (data["kind"], data["number"], data["total"], data["currency"]) == (
        "one_off",
        "INV-000001",
        "3.500000",
        "USDC",
    )
    assert data["status"] == "open" and data["paymentUrl"]  # 3 available does not cover 3.5
    single = api.post(
        "/v0/invoices",
        {"customerId": str(billing.customer.id), "currency": "USDC", "amount": "1.25", "description": "Extra"},
    )
    assert single.status_code == 201
    assert [line["description"] for line in single.json()["lines"]] == ["Extra"]
    assert single.json()["status"] == "paid"  # 3 covers 1.25 at once
    listed = api.get("/v0/invoices", {"customerId": str(billing.customer.id), "status": "open"}).json()["data"]
    assert [i["id"] for i in listed] == [data["id"]]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"currency": "USDC", "amount": "1", "description": "x"}, "customerId"),
        ({"customerId": "C", "amount": "1", "description": "x"}, "currency"),
        ({"customerId": "C", "currency": "USDC"}, "lines"),
        ({"customerId": "C", "currency": "USDC", "lines": []}, "lines"),
        ({"customerId": "C", "currency": "USDC", "amount": "1", "description": "x", "lines": []}, "lines"),
        ({"customerId": "C", "currency": "USDC", "amount": "1.0000001", "description": "x"}, "lines[0].amount"),
        ({"customerId": "C", "currency": "USDC", "amount": "-1", "description": "x"}, "amount"),
        (
            {"customerId": "C", "currency": "USDC", "amount": "1", "description": "x", "dueAt": "2000-01-01T00:00:00Z"},
            "dueAt",
        ),
        ({"customerId": "C", "currency": "USDC", "amount": "1", "description": "x", "surprise": 1}, "surprise"),
    ],
)
def test_bad_one_off_invoices_are_refused_naming_the_field_and_write_nothing(api, body, field):
    billing = Billing(api.merchant)
    body = {key: (str(billing.customer.id) if value == "C" else value) for key, value in body.items()}
    response = api.post("/v0/invoices", body)
    assert response.status_code == 400, response.json()
    assert field in [error["field"] for error in response.json()["errors"]], response.json()
    assert not Invoice.objects.exists()


def test_a_one_off_invoice_in_another_currency_than_the_subscription_is_422(api):
    billing = Billing(api.merchant)
    response = api.post(
        "/v0/invoices",
        {"subscriptionId": str(billing.subscription.id), "currency": "USD", "amount": "1", "description": "x"},
    )
    assert response.status_code == 422 and response.json()["code"] == "CURRENCY_MISMATCH"


def test_invoices_are_the_merchants_own(api, other_api):
    billing = Billing(api.merchant)
    invoice = one_off(billing, "1")
    for call in (
        lambda: other_api.get(f"/v0/invoices/{invoice.id}"),
        lambda: other_api.post(f"/v0/invoices/{invoice.id}/pay"),
        lambda: other_api.post(f"/v0/invoices/{invoice.id}/void"),
    ):
        assert call().status_code == 404
    assert other_api.get("/v0/invoices").json()["data"] == []
    other = other_api.post(
        "/v0/invoices", {"customerId": str(billing.customer.id), "currency": "USDC", "amount": "1", "description": "x"}
    )
    assert other.status_code == 404
    assert PaymentAttempt.objects.count() == 0
