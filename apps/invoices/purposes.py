"""What paying an invoice's payment session does (registered on the payments service by
InvoicesConfig.ready): one invoice-payment transaction from the wallet (the money arrived there
first, or was there already), revenue and commission split as for usage; paid when covered."""

import secrets

from django.utils import timezone

from apps.core.bulk import update_objects
from apps.core.money import ZERO, split_commission
from apps.invoices.models import Invoice
from apps.invoices.services.dunning import invoice_card_failed_locked, on_invoice_paid
from apps.invoices.services.events import invoices_publish
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
    return invoices_apply_payments([(invoice, amount, payment)])[0]


def invoices_apply_payments(items) -> list:
    """`invoice_apply_payment` for several (invoice, amount, payment) at once: one ledger
    transaction per invoice payment, all posted together (their revenue and commission on one
    shard of each shared account, so that the batch holds as few of those rows as one
    payment), the invoices updated and invoice.paid published set-wise. Returns what was
    applied to each."""
    applied, specs, changed, paid = [], [], [], []
    shards: dict = {}
    accounts: dict = {}
    now = timezone.now()
    for invoice, amount, payment in items:
        amount = min(amount, invoice.amount_due)
        if amount <= ZERO or invoice.status not in (Invoice.Status.OPEN, Invoice.Status.UNCOLLECTIBLE):
            applied.append(ZERO)
            continue
        merchant = invoice.merchant
        commission, revenue = split_commission(amount, merchant.commission_rate)
        key = (merchant.id, invoice.currency)
        if key not in accounts:  # (once per batch: a process remembers them only once committed)
            accounts[key] = (
                merchant_revenue_account(merchant=merchant, currency=invoice.currency),
                platform_commission_account(currency=invoice.currency, livemode=merchant.livemode),
            )
        revenue_account, commission_account = accounts[key]
        postings = [
            Posting(invoice.wallet.available_account, -amount),
            Posting(revenue_account, revenue, shard=_batch_shard(shards, revenue_account, len(items))),
        ]
        if commission:
            postings.append(
                Posting(commission_account, commission, shard=_batch_shard(shards, commission_account, len(items)))
            )
        specs.append(
            TransactionSpec(
                merchant=merchant,
                kind=LedgerTransaction.Kind.INVOICE_PAYMENT,
                currency=invoice.currency,
                postings=postings,
                reference=f"invoice_payment:{invoice.id}:{payment.id}",
                description=f"invoice {invoice.number} paid via {payment.source}",
                metadata={"invoiceId": str(invoice.id), "paymentId": str(payment.id)},
            )
        )
        invoice.amount_paid += amount
        invoice.updated_at = now
        if invoice.amount_paid >= invoice.total:
            invoice.status = Invoice.Status.PAID
            invoice.paid_at = now
            paid.append(invoice)
        changed.append(invoice)
        applied.append(amount)
    if not specs:
        return applied
    update_objects(changed, ["amount_paid", "status", "paid_at", "updated_at"])
    invoices_publish(paid, "invoice.paid")
    for invoice in paid:
        on_invoice_paid(invoice)
    # last: the shared revenue and commission rows it locks, which every usage charge takes
    # too, are held only until the commit
    ledger_post_many(specs)
    return applied


def _batch_shard(shards: dict, account, size: int):
    """One shard of a shared account for all the payments of a batch (None, a shard per
    posting as the ledger picks it, for a single payment)."""
    if size == 1 or account.shard_count == 1:
        return None
    if account.id not in shards:
        shards[account.id] = secrets.randbelow(account.shard_count)
    return shards[account.id]


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

    def payable_many(self, sessions) -> set:
        payable = set(
            Invoice.objects.filter(
                pk__in=[session.invoice_id for session in sessions],
                status__in=(Invoice.Status.OPEN, Invoice.Status.UNCOLLECTIBLE),
            ).values_list("pk", flat=True)
        )
        return {session.id for session in sessions if session.invoice_id in payable}

    def off_session_failed(self, *, session, attempt) -> None:
        # a saved card charged for the invoice failed: it stays open with its link, in dunning
        invoice = (
            Invoice.objects.select_for_update(of=("self",))
            .select_related("merchant", "customer", "wallet", "payment_session", "subscription")
            .filter(pk=session.invoice_id)
            .first()
        )
        if invoice is not None:
            invoice_card_failed_locked(invoice, timezone.now())

    def apply_many(self, items) -> None:
        missing = [session.invoice_id for session, _, _, invoice in items if invoice is None]
        loaded = (
            Invoice.objects.select_related("merchant", "wallet__available_account")
            .prefetch_related("lines")
            .in_bulk(missing)
            if missing
            else {}
        )
        invoices_apply_payments(
            [
                (invoice if invoice is not None else loaded[session.invoice_id], amount, payment)
                for session, payment, amount, invoice in items
            ]
        )


def register_purposes() -> None:
    register_purpose(PaymentSession.Purpose.INVOICE, InvoiceHandler())
