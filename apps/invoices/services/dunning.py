"""Dunning: what happens to a finalized invoice still unpaid at its due date.

At `dueAt` (a last collection from the wallet, then from the saved card, failing first; or
earlier, when an off-session charge of the saved card fails, whenever its failure is known: at
once, by Stripe's webhook or by beat's resolver of card attempts left in flight): invoice.payment_failed, and the
subscription it bills goes past_due (subscription.past_due; usage is still charged to it within
its minimum balance, instant charges being prepaid). Collection from the wallet is retried
INVOICE_DUNNING_RETRY_DAYS after `dueAt` (1, 3 and 7 days by default), then from the default
saved card (an off-session charge, outside the invoice's transaction); a credit to the wallet
pays it at any time too. Paid at any point: once none of its invoices is overdue, the
subscription is active again (subscription.updated). Still unpaid after the last retry: dunning
ends (`dunningEndedAt`), the invoice stays open until paid, voided or marked uncollectible, and
the "dunning ended" listeners act; with none registered for the subscription's plan the default
terminates the subscription.

One-off invoices publish invoice.payment_failed at `dueAt` but never change a subscription; a
start invoice is not dunned while its subscription waits for its activation.

Each step locks the invoice and acts only if it is still due, so the beat's reruns and a second
worker are harmless.
"""

from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.core.errors import ApiError
from apps.invoices.models import Invoice
from apps.invoices.services.events import invoice_publish
from apps.subscriptions.models import Subscription
from apps.subscriptions.services import subscription_terminate
from apps.subscriptions.services.events import subscription_mark_current, subscription_mark_past_due

DunningEnded = Callable[[Invoice], bool]
_dunning_ended: list[DunningEnded] = []


def on_dunning_ended(listener: DunningEnded) -> None:
    """`listener(invoice)` -> True when it handled the end of dunning of the invoice's
    subscription (the API-keys app: a tier plan goes back to free); else the default terminates
    the subscription. Runs in the transaction that ends dunning, the invoice locked."""
    if listener not in _dunning_ended:
        _dunning_ended.append(listener)


def _retry_at(invoice: Invoice, retries: int) -> datetime | None:
    schedule = settings.INVOICE_DUNNING_RETRY_DAYS
    if retries >= len(schedule):
        return None
    return invoice.due_at + timedelta(days=schedule[retries])


def _locked(invoice_id) -> Invoice:
    return (
        Invoice.objects.select_for_update(of=("self",))
        .select_related("merchant", "customer", "wallet", "payment_session", "subscription")
        .get(pk=invoice_id)
    )


def _try_collect(invoice: Invoice) -> bool:
    """Collect the (locked, open) invoice from its wallet now; whether it is paid."""
    from apps.invoices.services.collection import collect_from_wallet, wallet_minimum

    try:
        collect_from_wallet(invoice, wallet_minimum(invoice.wallet))
    except ApiError:
        return False
    invoice.refresh_from_db()
    return invoice.status == Invoice.Status.PAID


def _dunned(invoice: Invoice) -> bool:
    """Whether the invoice's non-payment acts on its subscription."""
    subscription = invoice.subscription
    if invoice.kind == Invoice.Kind.ONE_OFF or subscription is None:
        return False
    return subscription.status != Subscription.Status.PENDING_PAYMENT


def _card_next(invoice: Invoice) -> bool:
    """Whether the (locked, open) invoice unpaid by its wallet is tried on the saved card next."""
    from apps.invoices.services.collection import card_collectable

    return card_collectable(invoice)


def _mark_payment_failed(invoice: Invoice, now: datetime) -> None:
    """The (locked, open) invoice was not paid when asked: invoice.payment_failed (once),
    the first retry scheduled, its subscription past_due."""
    invoice.payment_failed_at = now
    fields = ["payment_failed_at", "updated_at"]
    if _dunned(invoice):
        invoice.next_collection_at = _retry_at(invoice, 0)
        fields.append("next_collection_at")
    invoice.save(update_fields=fields)
    invoice_publish(invoice, "invoice.payment_failed")
    if _dunned(invoice):
        subscription_mark_past_due(subscription_id=invoice.subscription_id)


def invoice_card_failed(*, invoice_id, now: datetime | None = None) -> bool:
    """An off-session charge of the invoice's saved card failed (declined, or it needs the
    customer's authentication): the invoice stays open with its payment link and enters
    dunning now, whatever its due date (invoice.payment_failed, once; a retry of dunning that
    fails changes only the retry count). Whether it entered dunning now."""
    now = now or timezone.now()
    with transaction.atomic():
        return invoice_card_failed_locked(_locked(invoice_id), now)


def invoice_card_failed_locked(invoice: Invoice, now: datetime) -> bool:
    """`invoice_card_failed` for an invoice the caller has locked (the invoice purpose's
    handler, told by the payments service that an off-session attempt failed, whenever that
    became known: at once, by Stripe's webhook, or by beat's resolver)."""
    if invoice.status != Invoice.Status.OPEN or invoice.payment_failed_at or invoice.dunning_ended_at:
        return False
    if invoice.kind == Invoice.Kind.START and not _dunned(invoice):
        return False
    _mark_payment_failed(invoice, now)
    return True


def invoice_payment_failed(*, invoice_id, now: datetime | None = None) -> bool:
    """The invoice's due date passed unpaid (see the module); whether it was acted on. The
    wallet is tried under the invoice's lock; the saved card (a call to Stripe) after that
    transaction, and a charge that fails puts the invoice in dunning (`invoice_card_failed`)."""
    from apps.invoices.services.collection import invoice_collect_by_card

    now = now or timezone.now()

    def due(invoice: Invoice) -> bool:
        return (
            invoice.status == Invoice.Status.OPEN
            and not invoice.payment_failed_at
            and not invoice.dunning_ended_at
            and invoice.due_at <= now
            and not (invoice.kind == Invoice.Kind.START and not _dunned(invoice))
        )

    with transaction.atomic():
        invoice = _locked(invoice_id)
        if not due(invoice):
            return False
        if _try_collect(invoice):
            return True
        if not _card_next(invoice):
            _mark_payment_failed(invoice, now)
            return True
    charge = invoice_collect_by_card(invoice_id=invoice_id, now=now)
    if charge is not None and (charge.succeeded or charge.attempt is not None):
        return True  # paid, or failed and put in dunning (or still confirming: its outcome decides)
    with transaction.atomic():
        invoice = _locked(invoice_id)
        if due(invoice):
            _mark_payment_failed(invoice, now)
    return True


def invoice_retry_collection(*, invoice_id, now: datetime | None = None) -> bool:
    """A retry of the dunning schedule (see the module); whether it was made. The wallet is
    tried under the invoice's lock, then the saved card after that transaction."""
    from apps.invoices.services.collection import invoice_collect_by_card

    now = now or timezone.now()
    with transaction.atomic():
        invoice = _locked(invoice_id)
        if (
            invoice.status != Invoice.Status.OPEN
            or invoice.next_collection_at is None
            or invoice.next_collection_at > now
        ):
            return False
        if _try_collect(invoice):
            return True
        scheduled = invoice.next_collection_at
        card_next = _card_next(invoice)
        if not card_next:
            _retry_failed(invoice, now)
            return True
    charge = invoice_collect_by_card(invoice_id=invoice_id, now=now)
    if charge is not None and charge.succeeded:
        return True
    with transaction.atomic():
        invoice = _locked(invoice_id)
        # (a concurrent run that made this retry already moved the schedule on)
        if invoice.status == Invoice.Status.OPEN and invoice.next_collection_at == scheduled:
            _retry_failed(invoice, now)
    return True


def _retry_failed(invoice: Invoice, now: datetime) -> None:
    invoice.collection_retries += 1
    invoice.next_collection_at = _retry_at(invoice, invoice.collection_retries)
    fields = ["collection_retries", "next_collection_at", "updated_at"]
    if invoice.next_collection_at is None:
        invoice.dunning_ended_at = now
        fields.append("dunning_ended_at")
    invoice.save(update_fields=fields)
    if invoice.dunning_ended_at is not None:
        _end_dunning(invoice)


def _end_dunning(invoice: Invoice) -> None:
    """Dunning gave up on the invoice: a listener acts, else the subscription is terminated,
    which issues an unpaid renewal invoice again for the time served (its fee's share used; see
    apps.invoices.services.proration), open without further dunning."""
    if any(listener(invoice) for listener in _dunning_ended):
        return
    subscription = invoice.subscription
    if subscription.status == Subscription.Status.TERMINATED:
        return
    subscription_terminate(
        merchant=invoice.merchant,
        subscription=subscription,
        reason=f"invoice {invoice.number} unpaid after the last collection retry",
    )


def on_invoice_paid(invoice: Invoice) -> None:
    """An invoice was paid: its subscription is current again once none of its invoices is
    overdue (called where the invoice turns paid, in that transaction)."""
    if invoice.subscription_id is None or invoice.payment_failed_at is None:
        return
    overdue = (
        Invoice.objects.filter(
            subscription_id=invoice.subscription_id, status=Invoice.Status.OPEN, payment_failed_at__isnull=False
        )
        .exclude(kind=Invoice.Kind.ONE_OFF)
        .exclude(pk=invoice.pk)
        .exists()
    )
    if not overdue:
        subscription_mark_current(subscription_id=invoice.subscription_id)


def dun_due(*, now: datetime | None = None, limit: int = 1000) -> int:
    """Every dunning step due at `now` (the beat task runs this); returns how many were made."""
    now = now or timezone.now()
    failed = list(
        Invoice.objects.filter(
            status=Invoice.Status.OPEN, due_at__lte=now, payment_failed_at__isnull=True, dunning_ended_at__isnull=True
        )
        .order_by("due_at")
        .values_list("pk", flat=True)[:limit]
    )
    retries = list(
        Invoice.objects.filter(status=Invoice.Status.OPEN, next_collection_at__lte=now)
        .order_by("next_collection_at")
        .values_list("pk", flat=True)[:limit]
    )
    made = sum(invoice_payment_failed(invoice_id=pk, now=now) for pk in failed)
    made += sum(invoice_retry_collection(invoice_id=pk, now=now) for pk in retries)
    return made
