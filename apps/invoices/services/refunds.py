"""Invoice payments undone in part or whole: a refund of the money that paid them (the payments
service's "payment refunded" hook) and a void. Each reverses what is left of an invoice
payment, revenue and commission in the proportion the payment booked them; the one that takes
the last of it takes back exactly the commission left, so nothing stays behind by rounding."""

from decimal import Decimal

from django.db.models import Sum
from django.utils import timezone

from apps.core.money import MONEY_CONTEXT, ZERO, round_amount
from apps.invoices.models import Invoice
from apps.invoices.services.dunning import on_invoice_paid
from apps.invoices.services.events import invoices_publish
from apps.ledger.models import Entry, LedgerTransaction
from apps.ledger.services import (
    Posting,
    TransactionSpec,
    ledger_post_many,
    merchant_revenue_account,
    platform_commission_account,
)
from apps.payments.registry import RefundFailedNotice, RefundNotice, RefundReversal

REFUND_PREFIX = "invoice_refund"


def _split(txn_ids, wallet_account_id, commission_account_id) -> tuple[Decimal, Decimal]:
    """(moved from the wallet, commission) over these transactions' entries."""
    rows = (
        Entry.objects.filter(
            transaction_id__in=list(txn_ids), account_id__in=[wallet_account_id, commission_account_id]
        )
        .values("account_id")
        .annotate(total=Sum("amount"))
        .order_by()
    )
    totals = {row["account_id"]: row["total"] for row in rows}
    return -totals.get(wallet_account_id, ZERO), totals.get(commission_account_id, ZERO)


def _commission_account(invoice: Invoice):
    return platform_commission_account(currency=invoice.currency, livemode=invoice.merchant.livemode)


def invoice_payment_booked(invoice: Invoice, txn: LedgerTransaction) -> tuple[Decimal, Decimal]:
    """(amount, commission) that the invoice payment `txn` booked."""
    return _split([txn.id], invoice.wallet.available_account_id, _commission_account(invoice).id)


def invoice_payment_left(invoice: Invoice, txn: LedgerTransaction) -> tuple[Decimal, Decimal]:
    """(amount, commission) of the invoice payment `txn` not yet undone by refunds."""
    commission_account = _commission_account(invoice)
    paid, commission = _split([txn.id], invoice.wallet.available_account_id, commission_account.id)
    undone = LedgerTransaction.objects.filter(
        merchant_id=invoice.merchant_id, reference__startswith=f"{REFUND_PREFIX}:{txn.id}:"
    ).values_list("id", flat=True)
    back, commission_back = _split(undone, invoice.wallet.available_account_id, commission_account.id)
    # (a reversal moves money to the wallet: its wallet entries are positive, its commission negative)
    return paid + back, commission + commission_back


def invoice_payment_reversal(
    invoice: Invoice, txn: LedgerTransaction, amount: Decimal, *, reference: str, description: str
) -> tuple[Decimal, TransactionSpec | None]:
    """The transaction that reverses `amount` (at most what is left) of the invoice payment
    `txn`: back on the wallet, revenue and commission in the proportion the payment booked
    them (the last of it: exactly the commission left). Returns (what it reverses, the spec)."""
    left, commission_left = invoice_payment_left(invoice, txn)
    amount = min(amount, left)
    if amount <= ZERO:
        return ZERO, None
    if amount == left:
        commission_back = commission_left
    else:
        booked, commission_booked = invoice_payment_booked(invoice, txn)
        commission_back = min(commission_left, round_amount(MONEY_CONTEXT.divide(amount * commission_booked, booked)))
    merchant = invoice.merchant
    postings = [
        Posting(invoice.wallet.available_account, amount),
        Posting(merchant_revenue_account(merchant=merchant, currency=invoice.currency), -(amount - commission_back)),
    ]
    if commission_back:
        postings.append(Posting(_commission_account(invoice), -commission_back))
    spec = TransactionSpec(
        merchant=merchant,
        kind=LedgerTransaction.Kind.REVERSAL,
        currency=invoice.currency,
        postings=postings,
        reference=reference,
        description=description[:500],
        metadata={"invoiceId": str(invoice.id), "invoicePaymentTransactionId": str(txn.id)},
    )
    return amount, spec


def invoice_payment_reverse(
    invoice: Invoice, txn: LedgerTransaction, amount: Decimal, *, reference: str, description: str
) -> Decimal:
    """Post `invoice_payment_reversal` now; returns what was reversed."""
    reversed_amount, spec = invoice_payment_reversal(invoice, txn, amount, reference=reference, description=description)
    if spec is not None:
        ledger_post_many([spec])
    return reversed_amount


def on_payment_refunded(notice: RefundNotice) -> RefundReversal | None:
    """The payments service's hook, for a payment that paid an invoice (its session's invoice:
    an invoice's link, or an activation's start invoice). A refund takes first what the payment
    left on the wallet (an excess, an activation's prefund), then reverses the invoice payment
    for the rest, and the invoice is open again for what that undid (amountPaid reduced). A
    void invoice gave its payments back whole already: nothing to reverse."""
    payment = notice.payment
    session = payment.session
    if session is None or session.invoice_id is None:
        return None
    invoice = (
        Invoice.objects.select_for_update(of=("self",))
        .select_related("merchant", "wallet__available_account")
        .filter(pk=session.invoice_id, merchant_id=payment.merchant_id)
        .first()
    )
    if invoice is None or invoice.status == Invoice.Status.VOID:
        return None
    txn = LedgerTransaction.objects.filter(
        merchant_id=invoice.merchant_id,
        kind=LedgerTransaction.Kind.INVOICE_PAYMENT,
        reference=f"invoice_payment:{invoice.id}:{payment.id}",
    ).first()
    if txn is None:
        return None
    # what is left of the payment (less earlier refunds) and is not on the invoice: what it left
    # on the wallet, less what earlier refunds took of it, plus what a failed refund gave back
    # that the invoice did not take again (earlier refunds take that first, and so does this one)
    on_invoice, _ = invoice_payment_left(invoice, txn)
    free_left = max(ZERO, payment.amount - payment.amount_refunded - on_invoice)
    to_reverse = min(max(ZERO, notice.amount - free_left), invoice.amount_paid)
    reversed_amount, spec = invoice_payment_reversal(
        invoice,
        txn,
        to_reverse,
        reference=f"{REFUND_PREFIX}:{txn.id}:{notice.refund_id}",
        description=f"refund of invoice {invoice.number} ({payment.source} payment {payment.external_reference})",
    )
    if spec is None:
        return None
    invoice.amount_paid -= reversed_amount
    if invoice.status == Invoice.Status.PAID:
        invoice.status = Invoice.Status.OPEN
        invoice.paid_at = None
    invoice.updated_at = timezone.now()
    invoice.save(update_fields=["amount_paid", "status", "paid_at", "updated_at"])
    return RefundReversal(amount=reversed_amount, specs=(spec,))


def on_payment_refund_failed(notice: RefundFailedNotice) -> RefundReversal | None:
    """The payments service's hook, for a refund the processor failed or canceled after it had
    reversed an invoice payment (`refund.reversed_amount`): its money is back on the wallet,
    and pays the invoice again, up to what the invoice still asks (an invoice paid meanwhile by
    other money, or void, leaves it on the wallet). Revenue and commission go back as the
    reversal took them (all of it: exactly its commission; a part: in proportion); the invoice
    is paid again (invoice.paid) once covered."""
    payment, refund = notice.payment, notice.refund
    session = payment.session
    if refund.reversed_amount <= ZERO or session is None or session.invoice_id is None:
        return None
    invoice = (
        Invoice.objects.select_for_update(of=("self",))
        .select_related("merchant", "wallet__available_account")
        .filter(pk=session.invoice_id, merchant_id=payment.merchant_id)
        .first()
    )
    if invoice is None or invoice.status not in (Invoice.Status.OPEN, Invoice.Status.UNCOLLECTIBLE):
        return None
    txn = LedgerTransaction.objects.filter(
        merchant_id=invoice.merchant_id,
        kind=LedgerTransaction.Kind.INVOICE_PAYMENT,
        reference=f"invoice_payment:{invoice.id}:{payment.id}",
    ).first()
    reversal = (
        None
        if txn is None
        else LedgerTransaction.objects.filter(
            merchant_id=invoice.merchant_id, reference=f"{REFUND_PREFIX}:{txn.id}:{refund.id}"
        ).first()
    )
    amount = min(refund.reversed_amount, invoice.amount_due)
    if reversal is None or amount <= ZERO:
        return None
    commission_account = _commission_account(invoice)
    reversed_amount, commission_reversed = _split(
        [reversal.id], invoice.wallet.available_account_id, commission_account.id
    )
    # (the reversal moved money to the wallet and took commission back: both signs flipped)
    reversed_amount, commission_reversed = -reversed_amount, -commission_reversed
    if amount == reversed_amount:
        commission = commission_reversed
    else:
        commission = round_amount(MONEY_CONTEXT.divide(amount * commission_reversed, reversed_amount))
    merchant = invoice.merchant
    postings = [
        Posting(invoice.wallet.available_account, -amount),
        Posting(merchant_revenue_account(merchant=merchant, currency=invoice.currency), amount - commission),
    ]
    if commission:
        postings.append(Posting(commission_account, commission))
    spec = TransactionSpec(
        merchant=merchant,
        kind=LedgerTransaction.Kind.REVERSAL,
        currency=invoice.currency,
        postings=postings,
        # under the refunds' prefix of this invoice payment: what is left of it counts it back
        reference=f"{REFUND_PREFIX}:{txn.id}:{refund.id}:restored",
        description=f"refund of invoice {invoice.number} {refund.status}: paid again "
        f"({payment.source} payment {payment.external_reference})"[:500],
        reverses=reversal,
        metadata={"invoiceId": str(invoice.id), "invoicePaymentTransactionId": str(txn.id)},
    )
    invoice.amount_paid += amount
    invoice.updated_at = timezone.now()
    paid_again = invoice.amount_paid >= invoice.total
    if paid_again:
        invoice.status = Invoice.Status.PAID
        invoice.paid_at = invoice.updated_at
    invoice.save(update_fields=["amount_paid", "status", "paid_at", "updated_at"])
    if paid_again:
        on_invoice_paid(invoice)
        invoices_publish([invoice], "invoice.paid")
    return RefundReversal(amount=amount, specs=(spec,))
