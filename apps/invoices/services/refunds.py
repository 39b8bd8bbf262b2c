"""Invoice payments undone in part or whole: a refund of the money that paid them (the payments
service's "payment refunded" hook) and a void. Each reverses what is left of an invoice
payment, revenue and commission in the proportions the payment gave them; the one that takes
the last of it takes back exactly the commission left, so nothing stays behind by rounding."""

from decimal import Decimal

from django.db.models import Sum
from django.utils import timezone

from apps.core.money import MONEY_CONTEXT, ZERO, round_amount
from apps.invoices.models import Invoice
from apps.ledger.models import Entry, LedgerTransaction
from apps.ledger.services import Posting, ledger_post, merchant_revenue_account, platform_commission_account
from apps.payments.registry import RefundNotice

REFUND_PREFIX = "invoice_refund"


def _split(txn_ids, wallet_account_id, commission_account_id) -> tuple[Decimal, Decimal]:
    """(moved from the wallet, commission) over these transactions' entries."""
    rows = (
        Entry.objects.filter(
            transaction_id__in=list(txn_ids), account_id__in=[wallet_account_id, commission_account_id]
        )
        .values("account_id")
        .annotate(total=Sum("amount"))
    )
    totals = {row["account_id"]: row["total"] for row in rows}
    return -totals.get(wallet_account_id, ZERO), totals.get(commission_account_id, ZERO)


def invoice_payment_left(invoice: Invoice, txn: LedgerTransaction) -> tuple[Decimal, Decimal]:
    """(amount, commission) of the invoice payment `txn` not yet undone by refunds."""
    commission_account = platform_commission_account(currency=invoice.currency, livemode=invoice.merchant.livemode)
    paid, commission = _split([txn.id], invoice.wallet.available_account_id, commission_account.id)
    undone = LedgerTransaction.objects.filter(
        merchant_id=invoice.merchant_id, reference__startswith=f"{REFUND_PREFIX}:{txn.id}:"
    ).values_list("id", flat=True)
    back, commission_back = _split(undone, invoice.wallet.available_account_id, commission_account.id)
    # (a reversal moves money to the wallet: its wallet entries are positive, its commission negative)
    return paid + back, commission + commission_back


def invoice_payment_reverse(
    invoice: Invoice, txn: LedgerTransaction, amount: Decimal, *, reference: str, description: str
) -> Decimal:
    """Reverse `amount` (at most what is left) of the invoice payment `txn`: back on the
    wallet, revenue and commission in proportion. Returns what was reversed."""
    left, commission_left = invoice_payment_left(invoice, txn)
    amount = min(amount, left)
    if amount <= ZERO:
        return ZERO
    if amount == left:
        commission_back = commission_left
    else:
        commission_back = round_amount(MONEY_CONTEXT.divide(amount * commission_left, left))
    merchant = invoice.merchant
    postings = [
        Posting(invoice.wallet.available_account, amount),
        Posting(merchant_revenue_account(merchant=merchant, currency=invoice.currency), -(amount - commission_back)),
    ]
    if commission_back:
        postings.append(
            Posting(
                platform_commission_account(currency=invoice.currency, livemode=merchant.livemode), -commission_back
            )
        )
    ledger_post(
        merchant=merchant,
        kind=LedgerTransaction.Kind.REVERSAL,
        currency=invoice.currency,
        postings=postings,
        reference=reference,
        description=description[:500],
        reverses=None,
        metadata={"invoiceId": str(invoice.id), "invoicePaymentTransactionId": str(txn.id)},
    )
    return amount


def on_payment_refunded(notice: RefundNotice) -> Decimal:
    """The payments service's hook: a refund of a payment that paid an invoice (its session's
    invoice: an invoice's link, or an activation's start invoice) reverses that invoice payment
    up to the refund, and the invoice is open again for what it undid. A void invoice was given
    back whole already: nothing to reverse."""
    payment = notice.payment
    session = payment.session
    if session is None or session.invoice_id is None:
        return ZERO
    invoice = (
        Invoice.objects.select_for_update(of=("self",))
        .select_related("merchant", "wallet__available_account")
        .filter(pk=session.invoice_id, merchant_id=payment.merchant_id)
        .first()
    )
    if invoice is None or invoice.status == Invoice.Status.VOID:
        return ZERO
    txn = LedgerTransaction.objects.filter(
        merchant_id=invoice.merchant_id,
        kind=LedgerTransaction.Kind.INVOICE_PAYMENT,
        reference=f"invoice_payment:{invoice.id}:{payment.id}",
    ).first()
    if txn is None:
        return ZERO
    reversed_amount = invoice_payment_reverse(
        invoice,
        txn,
        min(notice.amount, invoice.amount_paid),
        reference=f"{REFUND_PREFIX}:{txn.id}:{notice.refund_id}",
        description=f"refund of invoice {invoice.number} ({payment.source} payment {payment.external_reference})",
    )
    if reversed_amount > ZERO:
        invoice.amount_paid -= reversed_amount
        if invoice.status == Invoice.Status.PAID:
            invoice.status = Invoice.Status.OPEN
            invoice.paid_at = None
        invoice.updated_at = timezone.now()
        invoice.save(update_fields=["amount_paid", "status", "paid_at", "updated_at"])
    return reversed_amount
