"""The payments service's refunds (`payment_refund`), whatever the processor: once per refund id;
what the payment left free on the wallet is taken first, then its invoice payment is reversed
(revenue and commission in the proportion it booked them, the invoice open again); a void
afterwards gives back only what the refunds left; a refund beyond the payment is refused."""

from decimal import Decimal

import pytest

from apps.core.errors import Conflict
from apps.invoices.models import Invoice
from apps.invoices.services.invoices import invoice_create_one_off, invoice_void
from apps.ledger.models import LedgerTransaction
from apps.ledger.selectors import ledger_check
from apps.payments.models import PaymentRefund
from apps.payments.services import payment_refund
from apps.webhooks.models import Event
from tests.factories import pay_session
from tests.usage.world import Billing

D = Decimal


def refund(payment, reference, amount):
    return payment_refund(
        source=payment.source,
        payment_reference=payment.external_reference,
        refund_reference=reference,
        amount=D(amount),
        clearing="test",
        livemode=payment.merchant.livemode,
    )


@pytest.fixture
def overpaid(sandbox):
    """An invoice of 10.00 paid by a payment of 15.00: 5.00 left free on the wallet."""
    billing = Billing(sandbox, currency="USD")
    sandbox.commission_rate = D("0.07")
    sandbox.save(update_fields=["commission_rate"])
    invoice = invoice_create_one_off(
        merchant=sandbox, customer=billing.customer, currency="USD", lines=[("Set-up", D("10"))], auto_collect=False
    )
    payment = pay_session(invoice.payment_session, amount=D("15")).payment
    invoice.refresh_from_db()
    assert (invoice.status, payment.applied_amount, billing.available()) == ("paid", D("10"), D("5"))
    assert (billing.revenue(), billing.commission()) == (D("9.30"), D("0.70"))
    return billing, invoice, payment


@pytest.mark.django_db
def test_a_refund_takes_what_the_payment_left_on_the_wallet_before_it_reopens_the_invoice(overpaid):
    billing, invoice, payment = overpaid

    first = refund(payment, "re_1", "4")

    assert (first.created, first.refund.reversed_amount) == (True, D("0"))
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid) == ("paid", D("10"))  # the excess went back, not the invoice
    assert billing.available() == D("1")
    assert (billing.revenue(), billing.commission()) == (D("9.30"), D("0.70"))

    second = refund(payment, "re_2", "6")  # 1.00 of the excess left, then 5.00 of the invoice payment

    assert second.refund.reversed_amount == D("5")
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid, invoice.amount_due, invoice.paid_at) == ("open", D("5"), D("5"), None)
    assert billing.available() == D("0")
    assert (billing.revenue(), billing.commission()) == (D("4.65"), D("0.35"))
    payment.refresh_from_db()
    assert (payment.amount_refunded, payment.status) == (D("10"), "succeeded")
    assert [e.data["amountRefunded"] for e in Event.objects.filter(type="payment.refunded").order_by("created_at")] == [
        "4.00",
        "10.00",
    ]
    assert ledger_check() == []

    # the same refund reported again moves nothing
    transactions = LedgerTransaction.objects.count()
    again = refund(payment, "re_2", "6")
    assert (again.created, again.refund.id) == (False, second.refund.id)
    assert LedgerTransaction.objects.count() == transactions

    # a void gives back only what the refunds left of the invoice payment, in the same proportion
    invoice_void(merchant=invoice.merchant, invoice_id=invoice.id)
    assert billing.available() == D("5")
    assert (billing.revenue(), billing.commission()) == (D("0"), D("0"))
    assert Invoice.objects.get(pk=invoice.pk).status == "void"
    # and a refund after the void takes it from the wallet only
    last = refund(payment, "re_3", "5")
    assert last.refund.reversed_amount == D("0")
    assert billing.available() == D("0")
    payment.refresh_from_db()
    assert (payment.amount_refunded, payment.status) == (D("15"), "refunded")
    assert ledger_check() == []


@pytest.mark.django_db
def test_a_refund_beyond_the_payment_or_of_another_payment_is_refused_and_writes_nothing(overpaid, sandbox):
    billing, invoice, payment = overpaid
    refund(payment, "re_1", "14")
    transactions = LedgerTransaction.objects.count()

    with pytest.raises(Conflict) as beyond:
        refund(payment, "re_2", "1.01")
    assert beyond.value.code == "REFUND_EXCEEDS_PAYMENT"
    assert "exceeds what is left" in beyond.value.message

    other = pay_session(
        invoice_create_one_off(
            merchant=sandbox, customer=billing.customer, currency="USD", lines=[("x", D("2"))], auto_collect=False
        ).payment_session
    ).payment
    with pytest.raises(Conflict) as elsewhere:
        refund(other, "re_1", "1")
    assert elsewhere.value.code == "REFUND_OF_ANOTHER_PAYMENT"

    assert LedgerTransaction.objects.count() == transactions + 2  # only the second invoice's payment and credit
    assert PaymentRefund.objects.count() == 1
    assert ledger_check() == []


@pytest.mark.django_db
def test_a_refund_of_an_activation_takes_the_prefund_first_then_reopens_the_start_invoice(api, merchant):
    from apps.catalog.models import PaymentTerm, Price
    from apps.ledger.selectors import wallet_balances
    from apps.payments.models import PaymentSession
    from apps.subscriptions.models import Subscription
    from tests.factories import make_customer, make_plan

    plan = make_plan(merchant)
    plan.prices.add(
        Price.objects.create(
            merchant=merchant,
            payment_term=PaymentTerm.IN_ADVANCE,
            currency="USDC",
            amount=D("5"),
            invoice_display_name="Base",
        )
    )
    customer = make_customer(merchant, email="ada@example.com")
    data = api.post(
        "/v0/subscriptions", {"customerId": str(customer.id), "planId": str(plan.id), "prefundAmount": "20"}
    ).json()
    session = PaymentSession.objects.get(pk=data["payment"]["paymentSessionId"])
    payment = pay_session(session).payment  # 25: the 5.00 fee, then the 20.00 prefund
    subscription = Subscription.objects.get(pk=data["id"])
    invoice = Invoice.objects.get(kind=Invoice.Kind.START)
    assert (subscription.status, invoice.status) == ("active", "paid")

    assert refund(payment, "re_1", "18").refund.reversed_amount == D("0")  # from the prefund
    assert Invoice.objects.get(pk=invoice.pk).status == "paid"
    second = refund(payment, "re_2", "4")  # 2.00 of the prefund left, then 2.00 of the fee

    assert second.refund.reversed_amount == D("2")
    shown = api.get(f"/v0/invoices/{invoice.id}").json()
    assert (shown["status"], shown["amountPaid"], shown["amountDue"]) == ("open", "3.000000", "2.000000")
    assert wallet_balances(wallet=subscription.wallet).available == D("0")
    assert Subscription.objects.get(pk=subscription.pk).status == "active"  # no automatic change
    assert ledger_check() == []
