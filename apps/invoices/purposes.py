"""What paying an invoice's payment session does (registered on the payments service by
InvoicesConfig.ready): one invoice-payment transaction from the wallet (the money arrived there
first, or was there already), revenue and commission split as for usage; paid when covered."""

from django.utils import timezone

from apps.core.money import ZERO, split_commission
from apps.invoices.models import Invoice
from apps.invoices.services.dunning import on_invoice_paid
from apps.invoices.services.events import invoice_publish
from apps.ledger.models import LedgerTransaction
from apps.ledger.services import (
    Posting,
    TransactionSpec,
    ledger_post_many,
    merchant_revenue_account,
    platform_commission_account,
)
from apps.payments.models import PaymentSession
from apps.payments.registry import PurposeHandler, register_purpose


def invoice_apply_payment(invoice: Invoice, amount, payment):
    """Pay up to `amount` of the (locked) invoice from its wallet, where the money is (it arrived
    there, or was there already): one invoice-payment transaction, revenue and commission split
    as for usage; paid (invoice.paid) once covered. Returns what was applied."""
    amount = min(amount, invoice.amount_due)
    if amount <= ZERO or invoice.status not in (Invoice.Status.OPEN, Invoice.Status.UNCOLLECTIBLE):
        return ZERO
    merchant = invoice.merchant
    commission, revenue = split_commission(amount, merchant.commission_rate)
    postings = [
        Posting(invoice.wallet.available_account, -amount),
        Posting(merchant_revenue_account(merchant=merchant, currency=invoice.currency), revenue),
    ]
    if commission:
        postings.append(
            Posting(platform_commission_account(currency=invoice.currency, livemode=merchant.livemode), commission)
        )
    ledger_post_many(
        [
            TransactionSpec(
                merchant=merchant,
                kind=LedgerTransaction.Kind.INVOICE_PAYMENT,
                currency=invoice.currency,
                postings=postings,
                reference=f"invoice_payment:{invoice.id}:{payment.id}",
                description=f"invoice {invoice.number} paid via {payment.source}",
                metadata={"invoiceId": str(invoice.id), "paymentId": str(payment.id)},
            )
        ]
    )
    invoice.amount_paid += amount
    fields = ["amount_paid", "updated_at"]
    if invoice.amount_paid >= invoice.total:
        invoice.status = Invoice.Status.PAID
        invoice.paid_at = timezone.now()
        fields += ["status", "paid_at"]
    invoice.save(update_fields=fields)
    if invoice.status == Invoice.Status.PAID:
        invoice_publish(invoice, "invoice.paid")
        on_invoice_paid(invoice)
    return amount


class InvoiceHandler(PurposeHandler):
    def lock_target(self, session) -> None:
        # the invoice before its session, as every writer of both locks them
        Invoice.objects.select_for_update(of=("self",)).filter(pk=session.invoice_id).first()

    def payable(self, session) -> bool:
        return Invoice.objects.filter(
            pk=session.invoice_id, status__in=(Invoice.Status.OPEN, Invoice.Status.UNCOLLECTIBLE)
        ).exists()

    def apply(self, *, session, payment, amount, covered: bool) -> None:
        invoice = Invoice.objects.select_related("merchant", "wallet").get(pk=session.invoice_id)
        invoice_apply_payment(invoice, amount, payment)


def register_purposes() -> None:
    register_purpose(PaymentSession.Purpose.INVOICE, InvoiceHandler())
