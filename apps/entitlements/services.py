"""Entitlements: pre-authorizations that hold wallet funds for N units of usage.

Creating one moves the priced amount from the wallet's available balance to held
(402 INSUFFICIENT_BALANCE, nothing written, when it is not there), and keeps with each
item how it priced it. Usage that names it is charged from the hold what the hold
reserved for those units (apps.usage.services), and a refund of such usage while it is
active goes back to it. Releasing it (DELETE, expiry, exhaustion) moves what is left back
to available, once.
"""

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.catalog.models import BillableMetric, PaymentTerm
from apps.catalog.pricing import (
    PricingResult,
    Reservation,
    price_reservation,
    pricing_strategy,
    reservation_charge,
)
from apps.core.errors import NotFound, PaymentRequired, Unprocessable
from apps.core.jobs import job_lock
from apps.core.money import ZERO, format_amount
from apps.entitlements.models import Entitlement, EntitlementItem
from apps.entitlements.serializers import entitlement_data
from apps.ledger.lock_objects import lock_wallet_balances
from apps.ledger.models import LedgerTransaction
from apps.ledger.services import Posting, ledger_post
from apps.payments.registry import WalletCredit, wallet_credited
from apps.subscriptions.models import UsageCounter
from apps.subscriptions.periods import running_period_at
from apps.subscriptions.selectors import choose_subscription, usage_subscriptions
from apps.webhooks.outbox import publish

MAX_EXPIRES_IN = 30 * 24 * 3600


@dataclass(frozen=True)
class EntitlementRequest:
    billable_metric_id: object
    quantity: Decimal
    price: Decimal | None


def _period_units(*, merchant, subscription, prices, period_start) -> dict:
    """{price id: units already charged in the period}, for the prices that have any."""
    return dict(
        UsageCounter.objects.filter(
            merchant=merchant,
            subscription_id=subscription.id,
            price_id__in=[price.id for price in prices],
            period_start=period_start,
        ).values_list("price_id", "units")
    )


def entitlement_create(
    *,
    merchant,
    customer,
    requests: list[EntitlementRequest],
    max_uses: int | None = None,
    expires_in: int | None = None,
) -> Entitlement:
    if customer.archived_at is not None:
        raise Unprocessable(f"Customer {customer.id} is archived.", code="CUSTOMER_ARCHIVED")
    metric_ids = [r.billable_metric_id for r in requests]
    metrics = {m.id: m for m in BillableMetric.objects.filter(merchant=merchant, pk__in=metric_ids)}
    for index, request in enumerate(requests):
        if request.billable_metric_id not in metrics:
            raise NotFound(
                f"entitlementData[{index}].billableMetricId: no billable metric {request.billable_metric_id}.",
                code="BILLABLE_METRIC_NOT_FOUND",
            )
    subscriptions = usage_subscriptions(merchant=merchant, customer_ids=[customer.id])
    subscription = choose_subscription(customer_id=customer.id, metric_ids=metric_ids, subscriptions=subscriptions)
    now = timezone.now()
    period_start, _ = running_period_at(
        subscription.period_anchor,
        subscription.plan.billing_interval,
        now,
        subscription.switched_at,
    )
    wallet = subscription.wallet
    expires_at = now + timedelta(seconds=expires_in or settings.ENTITLEMENT_DEFAULT_TTL_SECONDS)

    with transaction.atomic():
        balances = lock_wallet_balances([wallet])
        available = balances[(wallet.available_account_id, 0)]
        prices = []
        for index, request in enumerate(requests):
            price = subscription.metric_prices.get(request.billable_metric_id)
            field = f"entitlementData[{index}]"
            if price is None:
                raise Unprocessable(
                    f"{field}: the plan of subscription {subscription.id} does not price billable metric "
                    f"{request.billable_metric_id}.",
                    code="METRIC_NOT_PRICED",
                )
            if price.payment_term != PaymentTerm.INSTANT:
                raise Unprocessable(
                    f"{field}: billable metric {request.billable_metric_id} is billed {price.payment_term}, at the "
                    "period's end; only instant prices can be reserved.",
                    code="PRICE_NOT_INSTANT",
                )
            if request.price is not None and not price.allow_price_override:
                raise Unprocessable(
                    f"{field}.price: price {price.id} does not allow a per-event price.",
                    code="PRICE_OVERRIDE_NOT_ALLOWED",
                )
            prices.append(price)
        # read under the wallet's lock, like the charges that move these counters
        units_by_price = _period_units(
            merchant=merchant, subscription=subscription, prices=prices, period_start=period_start
        )
        items, total = [], ZERO
        for request, price in zip(requests, prices, strict=True):
            # how this reservation is priced is kept with it: its uses are charged by it
            reservation = price_reservation(price, request.price, units_by_price.get(price.id, ZERO))
            amount = reservation.amount(request.quantity)
            total += amount
            items.append((request, price, reservation, amount))
        # the highest minimumAccountBalance of the active subscriptions sharing the wallet
        minimum = subscriptions.wallet_minimum[wallet.id]
        if available - total < minimum:
            currency = wallet.currency
            raise PaymentRequired(
                f"The wallet has {format_amount(available, currency)} {currency} available and must keep "
                f"{format_amount(minimum, currency)}; reserving this usage needs {format_amount(total, currency)}.",
                code="INSUFFICIENT_BALANCE",
                details={
                    "available": format_amount(available, currency),
                    "required": format_amount(total, currency),
                    "currency": currency,
                },
            )
        hold = None
        if total > ZERO:
            hold = ledger_post(
                merchant=merchant,
                kind=LedgerTransaction.Kind.HOLD,
                currency=wallet.currency,
                postings=[Posting(wallet.available_account, -total), Posting(wallet.held_account, total)],
                description="entitlement hold",
                metadata={"customerId": str(customer.id)},
            )
        entitlement = Entitlement.objects.create(
            merchant=merchant,
            customer=customer,
            wallet_id=wallet.id,
            subscription_id=subscription.id,
            currency=wallet.currency,
            reserved_amount=total,
            remaining_amount=total,
            max_uses=max_uses,
            expires_at=expires_at,
            hold_transaction=hold,
        )
        EntitlementItem.objects.bulk_create(
            [
                EntitlementItem(
                    merchant=merchant,
                    entitlement=entitlement,
                    billable_metric=metrics[request.billable_metric_id],
                    price=price,
                    unit_price_override=request.price,
                    quantity=request.quantity,
                    remaining_quantity=request.quantity,
                    reserved_amount=amount,
                    remaining_amount=amount,
                    pricing_model=reservation.strategy.name,
                    pricing_properties=reservation.strategy.to_properties(),
                    free_units=reservation.free_units,
                    units_before=reservation.units_before,
                )
                for request, price, reservation, amount in items
            ]
        )
    return entitlement


def item_reservation(item: EntitlementItem) -> Reservation:
    """How the item's reservation was priced (its snapshot), parsed once per loaded row."""
    reservation = getattr(item, "parsed_reservation", None)
    if reservation is None:
        reservation = item.parsed_reservation = Reservation(
            strategy=pricing_strategy(item.pricing_model, item.pricing_properties),
            free_units=item.free_units,
            units_before=item.units_before,
        )
    return reservation


def entitlement_item_charge(item: EntitlementItem, quantity: Decimal) -> PricingResult:
    """What a use of `quantity` of the item's units is charged: what the hold reserved for them,
    the units consumed in order (apps.catalog.pricing.reservation). The item is locked with
    its entitlement; the caller refuses a quantity beyond what is left."""
    return reservation_charge(
        item_reservation(item),
        reserved=item.quantity,
        consumed=item.quantity - item.remaining_quantity,
        quantity=quantity,
        remaining_amount=item.remaining_amount,
    )


def entitlement_is_live(entitlement: Entitlement, now) -> bool:
    """Whether usage can still be charged from the entitlement (and a refund go back to it)."""
    return entitlement.status == Entitlement.Status.ACTIVE and entitlement.expires_at > now


def entitlement_restore_use(*, entitlement: Entitlement, amount: Decimal, lines) -> None:
    """Give a live hold back what a refunded use of it took, as if that use had not happened:
    each line's units and amount to its metric's item, the amount to the hold, and the use.
    The caller locked the wallet's balance rows and the entitlement, and posts `amount` back to
    the held balance. `lines` are the refunded event's (billable_metric_id, quantity, amount)."""
    items = {
        item.billable_metric_id: item
        for item in EntitlementItem.objects.filter(entitlement=entitlement, merchant_id=entitlement.merchant_id)
    }
    for line in lines:
        item = items[line.billable_metric_id]
        item.remaining_quantity += line.quantity
        item.remaining_amount += line.amount or ZERO
    for item in items.values():
        item.save(update_fields=["remaining_quantity", "remaining_amount", "updated_at"])
    entitlement.remaining_amount += amount
    entitlement.used_count = max(0, entitlement.used_count - 1)
    entitlement.save(update_fields=["remaining_amount", "used_count", "updated_at"])


def _release(entitlement: Entitlement, status: str, now) -> None:
    """Move what is left on the hold back to available; the wallet and entitlement are locked."""
    if entitlement.remaining_amount > ZERO:
        wallet = entitlement.wallet
        entitlement.release_transaction = ledger_post(
            merchant=entitlement.merchant,
            kind=LedgerTransaction.Kind.HOLD_RELEASE,
            currency=entitlement.currency,
            postings=[
                Posting(wallet.held_account, -entitlement.remaining_amount),
                Posting(wallet.available_account, entitlement.remaining_amount),
            ],
            description=f"entitlement {status}",
            metadata={"entitlementId": str(entitlement.id)},
        )
        wallet_credited(WalletCredit(wallet=wallet, amount=entitlement.remaining_amount, cause="hold_release"))
        entitlement.remaining_amount = ZERO
    entitlement.status = status
    entitlement.released_at = now


def entitlement_after_use(*, entitlement: Entitlement) -> None:
    """Save an entitlement after usage was charged from it (inside that transaction, under
    its wallet's lock, its items already saved). Once exhausted (the charge marks it so), what
    remains of the hold goes back to available."""
    if entitlement.status == Entitlement.Status.EXHAUSTED and entitlement.released_at is None:
        _release(entitlement, Entitlement.Status.EXHAUSTED, timezone.now())
    entitlement.save(
        update_fields=["remaining_amount", "used_count", "status", "released_at", "release_transaction", "updated_at"]
    )


def entitlement_release(*, entitlement: Entitlement, status: str = Entitlement.Status.RELEASED) -> Entitlement:
    """Release what is left (DELETE, or expiry with status expired). Releasing twice changes nothing.
    Expiry publishes entitlement.expired (a release asked for by the merchant publishes nothing:
    the merchant made it)."""
    with transaction.atomic():
        lock_wallet_balances([entitlement.wallet])
        locked = (
            Entitlement.objects.select_for_update(no_key=True, of=("self",))
            .select_related("wallet", "merchant")
            .get(pk=entitlement.pk)
        )
        if locked.status == Entitlement.Status.ACTIVE:
            _release(locked, status, timezone.now())
            locked.save(
                update_fields=["remaining_amount", "status", "released_at", "release_transaction", "updated_at"]
            )
            if status == Entitlement.Status.EXPIRED:
                publish(
                    merchant=locked.merchant,
                    type="entitlement.expired",
                    data=entitlement_data(locked),
                    updated_at=locked.updated_at,
                )
    return locked


def entitlement_release_expired(*, limit: int = 500) -> int:
    """Release the holds of active entitlements past their expiry (a beat task)."""
    released = 0
    with job_lock("entitlements.release_expired") as acquired:
        if not acquired:
            return 0
        due = Entitlement.objects.filter(
            status=Entitlement.Status.ACTIVE, expires_at__lte=timezone.now()
        ).select_related("wallet")[:limit]
        for entitlement in due:
            if entitlement_release(entitlement=entitlement, status=Entitlement.Status.EXPIRED).status == "expired":
                released += 1
    return released
