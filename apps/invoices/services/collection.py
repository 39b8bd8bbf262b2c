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
from django.utils import timezone

from apps.cards.models import SavedCard
from apps.cards.services.charges import STRIPE_RETRY_AFTER
from apps.cards.services.off_session import OffSessionCharge, card_charge_off_session
from apps.cards.stripe_client import CARD_CURRENCY
from apps.core.errors import ApiError, Conflict, PaymentRequired, ServiceUnavailable
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


def card_collectable(invoice: Invoice) -> bool:
    """Whether the open invoice can be charged to a saved card: in USD (cards are), and its
    customer has a default card."""
    return (
        invoice.currency == CARD_CURRENCY
        and SavedCard.objects.filter(
            customer_id=invoice.customer_id, merchant_id=invoice.merchant_id, is_default=True, removed_at__isnull=True
        ).exists()
    )


def customers_with_default_card(invoices: list[Invoice]) -> set:
    """The ids of these invoices' customers that have a default saved card (one query)."""
    customer_ids = {invoice.customer_id for invoice in invoices if invoice.currency == CARD_CURRENCY}
    if not customer_ids:
        return set()
    return set(
        SavedCard.objects.filter(customer_id__in=customer_ids, is_default=True, removed_at__isnull=True).values_list(
            "customer_id", flat=True
        )
    )


def invoice_collect_by_card(*, invoice_id, now=None) -> OffSessionCharge | None:
    """Charge what the open invoice still asks for to its customer's default card, off-session
    (outside any transaction: it calls Stripe). None when the invoice takes no payment (paid,
    void, draft). A charge that failed puts the invoice in dunning (`invoice_card_failed`)."""
    from apps.invoices.services.dunning import invoice_card_failed
    from apps.invoices.services.invoices import invoice_payment_session

    with transaction.atomic():
        invoice = (
            Invoice.objects.select_for_update(of=("self",))
            .select_related("merchant", "customer", "wallet", "payment_session", "subscription")
            .filter(pk=invoice_id)
            .first()
        )
        if invoice is None or invoice.status not in (Invoice.Status.OPEN, Invoice.Status.UNCOLLECTIBLE):
            return None
        if invoice.currency != CARD_CURRENCY:
            return OffSessionCharge(
                None,
                None,
                f"Cards pay {CARD_CURRENCY} invoices; this one is in {invoice.currency}.",
                "CARD_CURRENCY_UNSUPPORTED",
            )
        session_id = invoice_payment_session(invoice).id
        customer = invoice.customer
    charge = card_charge_off_session(session_id=session_id, customer=customer)
    if charge.attempt is not None and charge.attempt.status == PaymentAttempt.Status.FAILED:
        invoice_card_failed(invoice_id=invoice_id, now=now or timezone.now())
    return charge


def invoice_pay_now(*, merchant, invoice_id) -> Invoice:
    """POST /v0/invoices/{id}/pay: from the wallet (`invoice_collect_now`), else the default
    saved card, off-session; 402 with the reason when neither can (the wallet's shortfall and
    the card's refusal), 409 PAYMENT_IN_FLIGHT while another payment of it runs."""
    try:
        return invoice_collect_now(merchant=merchant, invoice_id=invoice_id)
    except PaymentRequired as wallet_refusal:
        charge = invoice_collect_by_card(invoice_id=invoice_id)
        if charge is None or charge.succeeded:
            return Invoice.objects.get(pk=invoice_id, merchant=merchant)
        if charge.code == "CARD_CURRENCY_UNSUPPORTED":
            raise  # not a card's currency (USDC): the wallet's answer stands
        if charge.code == "PAYMENT_IN_FLIGHT":
            raise Conflict(charge.reason, code="PAYMENT_IN_FLIGHT") from None
        if charge.code == "STRIPE_UNAVAILABLE":
            # Stripe did not answer before the card was charged: send again, not a refusal
            raise ServiceUnavailable(
                f"{charge.reason} The invoice stays open.",
                code="STRIPE_UNAVAILABLE",
                details={"wallet": wallet_refusal.details},
                headers={"Retry-After": STRIPE_RETRY_AFTER},
            ) from None
        if charge.attempt is not None and charge.attempt.status == PaymentAttempt.Status.IN_FLIGHT:
            raise Conflict(
                f"The card payment {charge.attempt.external_reference} is still being confirmed by Stripe; "
                "the invoice is paid once it succeeds.",
                code="PAYMENT_IN_FLIGHT",
            ) from None
        code = "INSUFFICIENT_BALANCE" if charge.code == "NO_SAVED_CARD" else charge.code
        raise PaymentRequired(
            f"{wallet_refusal.message} Saved card: {charge.reason}",
            code=code,
            details={
                "wallet": wallet_refusal.details,
                "card": {
                    "code": charge.code,
                    "reason": charge.reason,
                    "paymentMethodId": charge.card.stripe_payment_method_id if charge.card else None,
                },
            },
        ) from None
