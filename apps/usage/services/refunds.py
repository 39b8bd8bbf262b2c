"""Refunds and disputes of usage events.

A refund posts one transaction that reverses the event's own figures (the wallet gets
the price back, the merchant's revenue and the platform's commission give back their
shares), once: its ledger reference is unique per event. Events charged in a batch
share a ledger transaction, so a refund reverses the event's share, not the whole
transaction.

Usage charged from an entitlement that is still active goes back to that hold (the wallet's
held balance), with its units, its amount and its use (as if it had not happened), so that
it can be used again; once the entitlement is released, expired or exhausted, the refund goes
to the wallet's available balance.

Rows are locked in the charge's order: the wallet's balance rows, then the entitlement (whose
lock guards its items), then the event; accepting a dispute locks the dispute's own row, which
no charge takes, after the wallet's.

A dispute opened publishes dispute.opened, and its acceptance or refusal dispute.resolved, in
the transaction of the change, with the dispute in its API shape.
"""

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from apps.core.errors import Conflict
from apps.entitlements.models import Entitlement
from apps.entitlements.services import entitlement_is_live, entitlement_restore_use
from apps.ledger.lock_objects import lock_wallet_balances, locked_rows
from apps.ledger.models import LedgerTransaction
from apps.ledger.services import Posting, ledger_post, merchant_revenue_account, platform_commission_account
from apps.payments.registry import WalletCredit, wallet_credited
from apps.subscriptions.models import BillingPeriod, UsageCounter
from apps.usage.models import Dispute, UsageEvent, UsageLine
from apps.usage.pricing import needs_counter
from apps.usage.serializers import DisputeSerializer
from apps.webhooks.outbox import publish


def _publish_dispute(dispute: Dispute, type: str) -> None:
    publish(merchant=dispute.merchant, type=type, data=DisputeSerializer(dispute).data, updated_at=dispute.updated_at)


def _already_refunded(event: UsageEvent) -> Conflict:
    return Conflict(
        f"Usage event {event.id} was already refunded at {event.refunded_at.isoformat()}.",
        code="USAGE_ALREADY_REFUNDED",
    )


def _uncount(event: UsageEvent, lines: list[UsageLine]) -> None:
    """Take a refunded event's units out of its period's running totals, so that free units,
    graduated tiers and packages of later events are as if it had not happened (under the
    wallet lock)."""
    subscription = event.subscription
    # (the counters of a period are keyed by its start: its row's, which a plan change may have
    # begun, and which the subscription's current anchor no longer gives for an older period)
    period_start = (
        BillingPeriod.objects.filter(subscription=subscription, start__lte=event.timestamp, end__gt=event.timestamp)
        .values_list("start", flat=True)
        .first()
    )
    if period_start is None:
        return
    for line in lines:
        if needs_counter(line.price):
            UsageCounter.objects.filter(
                merchant=event.merchant, subscription=subscription, price=line.price, period_start=period_start
            ).update(units=F("units") - line.quantity, updated_at=timezone.now())


def _lock_event(merchant, event: UsageEvent) -> UsageEvent:
    return locked_rows(UsageEvent.objects.select_related("merchant")).get(pk=event.pk, merchant=merchant)


def _lock_entitlement(event: UsageEvent) -> Entitlement | None:
    """The entitlement the event was charged from, locked (after the wallet, before the event)."""
    if event.entitlement_id is None:
        return None
    return locked_rows(Entitlement.objects).get(pk=event.entitlement_id, merchant_id=event.merchant_id)


def _refund_locked(
    merchant, locked: UsageEvent, wallet, reason: str, entitlement: Entitlement | None = None
) -> UsageEvent:
    """Refund an event whose wallet balance rows, entitlement (`entitlement`, when the event
    names one) and own row the caller locked (in that order) and found not refunded: the lock
    and that check make it once."""
    lines = list(locked.lines.select_related("price"))
    to_hold = entitlement is not None and entitlement_is_live(entitlement, timezone.now())
    if to_hold:
        entitlement_restore_use(entitlement=entitlement, amount=locked.amount, lines=lines)
    if locked.amount > 0:
        currency = locked.currency
        locked.refund_transaction = ledger_post(
            merchant=merchant,
            kind=LedgerTransaction.Kind.REVERSAL,
            currency=currency,
            postings=[
                Posting(wallet.held_account if to_hold else wallet.available_account, locked.amount),
                Posting(merchant_revenue_account(merchant=merchant, currency=currency), -locked.owner_revenue_amount),
                Posting(
                    platform_commission_account(currency=currency, livemode=merchant.livemode),
                    -locked.commission_amount,
                ),
            ],
            # (unique per event: a second refund could not post, whatever the path)
            reference=f"usage_refund:{locked.id}",
            description=f"refund of usage {locked.idempotency_key}: {reason}"[:500],
            metadata={"usageEventId": str(locked.id)},
        )
        if not to_hold:
            wallet_credited(WalletCredit(wallet=wallet, amount=locked.amount, cause="refund"))
    _uncount(locked, lines)
    locked.refunded_at = timezone.now()
    locked.refund_reason = reason
    locked.save(update_fields=["refunded_at", "refund_reason", "refund_transaction", "updated_at"])
    return locked


def usage_refund(*, merchant, event: UsageEvent, reason: str = "") -> UsageEvent:
    wallet = event.subscription.wallet
    with transaction.atomic():
        lock_wallet_balances([wallet])
        entitlement = _lock_entitlement(event)
        locked = _lock_event(merchant, event)
        if locked.refunded_at is not None:
            raise _already_refunded(locked)
        return _refund_locked(merchant, locked, wallet, reason, entitlement)


def dispute_open(*, merchant, event: UsageEvent, message: str, opened_by: str = Dispute.OpenedBy.MERCHANT) -> Dispute:
    if event.refunded_at is not None:
        raise Conflict(
            f"Usage event {event.id} was refunded at {event.refunded_at.isoformat()}; there is nothing to dispute.",
            code="USAGE_ALREADY_REFUNDED",
        )
    try:
        with transaction.atomic():
            dispute = Dispute.objects.create(
                merchant=merchant,
                usage_event=event,
                customer_id=event.customer_id,
                message=message,
                opened_by=opened_by,
            )
            _publish_dispute(dispute, "dispute.opened")
            return dispute
    except IntegrityError:
        existing = Dispute.objects.filter(merchant=merchant, usage_event=event, status=Dispute.Status.OPEN).first()
        raise Conflict(
            f"Usage event {event.id} already has an open dispute ({existing.id if existing else 'being opened'}).",
            code="DISPUTE_ALREADY_OPEN",
        ) from None


def _lock_open(merchant, dispute: Dispute) -> Dispute:
    locked = locked_rows(Dispute.objects).get(pk=dispute.pk, merchant=merchant)
    if locked.status != Dispute.Status.OPEN:
        raise Conflict(f"Dispute {locked.id} is already {locked.status}.", code="DISPUTE_NOT_OPEN")
    return locked


def dispute_accept(*, merchant, dispute: Dispute) -> Dispute:
    """Accept the dispute: the event is refunded (if it was not already), once."""
    event = dispute.usage_event
    wallet = event.subscription.wallet
    with transaction.atomic():
        lock_wallet_balances([wallet])
        locked = _lock_open(merchant, dispute)
        entitlement = _lock_entitlement(event)
        locked_event = _lock_event(merchant, event)
        if locked_event.refunded_at is None:
            _refund_locked(merchant, locked_event, wallet, f"dispute {locked.id} accepted", entitlement)
        locked.status = Dispute.Status.ACCEPTED
        locked.resolved_at = timezone.now()
        locked.save(update_fields=["status", "resolved_at", "updated_at"])
        _publish_dispute(locked, "dispute.resolved")
    return locked


def dispute_decline(*, merchant, dispute: Dispute, reason: str) -> Dispute:
    with transaction.atomic():
        locked = _lock_open(merchant, dispute)
        locked.status = Dispute.Status.DECLINED
        locked.decline_reason = reason
        locked.resolved_at = timezone.now()
        locked.save(update_fields=["status", "decline_reason", "resolved_at", "updated_at"])
        _publish_dispute(locked, "dispute.resolved")
    return locked
