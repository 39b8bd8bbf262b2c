"""Collection from the wallet (design.md, "How payment sessions, wallets, subscriptions and
invoices connect"): the wallet's own balance pays whole open invoices only, oldest first, when
the available balance less the highest minimum balance of the subscriptions sharing the wallet
covers the amount due, and never an invoice with a payment attempt in flight. It pays through
the payments service (source wallet), so payment.succeeded is published like any payment.

The sweep runs at finalize, on every credit to a wallet (the payments service's "wallet
credited" hook: top-ups, positive adjustments, usage refunds, released holds, voids, excess
payments) and for `POST /v0/invoices/{id}/pay`, inside the caller's transaction. Invoices are
locked with SKIP LOCKED: one locked elsewhere is being paid, voided or finalized by that
transaction, which sweeps it itself; so a sweep never waits on an invoice while it holds the
wallet, and never deadlocks with a payment that holds the invoice and waits for the wallet.
"""

from decimal import Decimal

from django.db import transaction
from django.db.models import Max

from apps.core.errors import ApiError, Conflict, PaymentRequired
from apps.core.money import ZERO
from apps.invoices.models import Invoice
from apps.payments.models import PaymentAttempt
from apps.payments.registry import WalletCredit
from apps.payments.services import payment_from_wallet, payments_from_wallet
from apps.subscriptions.models import Subscription


def wallet_minimum(wallet) -> Decimal:
    """The highest minimum balance of the live subscriptions sharing the wallet."""
    value = (
        Subscription.objects.filter(wallet=wallet)
        .exclude(status=Subscription.Status.TERMINATED)
        .aggregate(m=Max("minimum_account_balance"))["m"]
    )
    return value if value is not None else ZERO


def wallets_minimum(wallet_ids) -> dict:
    """`wallet_minimum` of each of these wallets (those without a live subscription: absent)."""
    return dict(
        Subscription.objects.filter(wallet_id__in=list(wallet_ids))
        .exclude(status=Subscription.Status.TERMINATED)
        .values("wallet_id")
        .annotate(m=Max("minimum_account_balance"))
        .values_list("wallet_id", "m")
        .order_by()
    )


def _in_flight(invoice: Invoice) -> bool:
    return PaymentAttempt.objects.filter(
        merchant_id=invoice.merchant_id, invoice_id=invoice.id, status=PaymentAttempt.Status.IN_FLIGHT
    ).exists()


def collect_from_wallet(invoice: Invoice, minimum: Decimal) -> None:
    """Pay the (locked, open) invoice from its wallet, whole; raises the reason it cannot
    (402 INSUFFICIENT_BALANCE, 409 PAYMENT_IN_FLIGHT)."""
    from apps.invoices.services.invoices import invoice_payment_session

    session = invoice_payment_session(invoice)
    payment_from_wallet(session_id=session.id, minimum=minimum, merchant=invoice.merchant)


def wallet_sweep(wallet, *, invoices: list[Invoice] | None = None) -> list[Invoice]:
    """Pay the wallet's open invoices (or only `invoices`, already locked) that it covers,
    oldest first, stopping at the first it cannot cover; returns those paid."""
    if invoices is None:
        invoices = list(
            Invoice.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("merchant", "customer", "wallet", "payment_session", "subscription")
            .filter(wallet=wallet, status=Invoice.Status.OPEN, auto_collect=True)
            .order_by("finalized_at", "number")
        )
    if not invoices:
        return []
    minimum = wallet_minimum(wallet)
    paid = []
    for invoice in invoices:
        if invoice.status != Invoice.Status.OPEN or _in_flight(invoice):
            continue
        try:
            collect_from_wallet(invoice, minimum)
        except PaymentRequired:
            break
        except ApiError:
            continue
        paid.append(invoice)
    return paid


def invoices_collect(invoices: list[Invoice]) -> list[Invoice]:
    """Collect each of these (locked, open) invoices from its wallet, whole, where the wallet
    covers it, in the order given: what `wallet_sweep(invoice.wallet, invoices=[invoice])` does
    for each (finalize), set-wise: one payment from the wallet each, through the payments
    service (`payments_from_wallet`), each payment lowering what the next invoice of the same
    wallet finds. An invoice the wallet does not cover stays open, with its dueAt and payment
    link. Returns those paid (the invoices are paid in place: the payments service hands them
    to the invoice handler)."""
    if not invoices:
        return []
    from apps.invoices.services.invoices import invoice_payment_session

    minimums = wallets_minimum({invoice.wallet_id for invoice in invoices})
    sessions = [invoice_payment_session(invoice) for invoice in invoices]
    received = payments_from_wallet(sessions=sessions, minimums=minimums, targets=invoices)
    return [invoice for invoice, result in zip(invoices, received, strict=True) if result is not None]


def on_wallet_credited(credit: WalletCredit) -> None:
    """The payments service's hook: money reached the wallet; pay what it now covers."""
    wallet_sweep(credit.wallet)


def invoice_collect_now(*, merchant, invoice_id) -> Invoice:
    """Collect the invoice now, whole, from its wallet (POST /v0/invoices/{id}/pay, the admin's
    action): open or uncollectible only (409 INVOICE_NOT_OPEN), else the reason collection
    cannot (402 INSUFFICIENT_BALANCE, 409 PAYMENT_IN_FLIGHT). Returns the invoice, paid."""
    from apps.invoices.services.invoices import invoice_lock

    with transaction.atomic():
        invoice = invoice_lock(merchant=merchant, invoice_id=invoice_id)
        if invoice.status not in (Invoice.Status.OPEN, Invoice.Status.UNCOLLECTIBLE):
            raise Conflict(
                f"Invoice {invoice.id} is {invoice.status}; only an open or uncollectible invoice can be paid.",
                code="INVOICE_NOT_OPEN",
            )
        collect_from_wallet(invoice, wallet_minimum(invoice.wallet))
        invoice.refresh_from_db()
    return invoice
