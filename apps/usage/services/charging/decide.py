"""Whether a priced charge may go ahead, and what it leaves: pure decisions, no ORM, no I/O.

The caller (`charge`) reads the locked rows, asks here with their values, and applies the
answer (or refuses the event with the 402 returned, writing nothing for it).

- An event that names no entitlement is paid from the wallet's available balance, which must
  keep the wallet's minimum (the highest minimumAccountBalance of the active subscriptions
  sharing it): `decide_wallet_charge`, 402 INSUFFICIENT_BALANCE otherwise.
- An event that names an entitlement is paid from its hold, which must be active, not expired,
  with a use left, the units of each line left and the event's amount: `decide_hold_charge`,
  402 ENTITLEMENT_EXHAUSTED otherwise. Once its last use or last unit is taken, the hold is
  exhausted and what is left of it goes back to the wallet's available balance.
"""

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from apps.core.errors import PaymentRequired
from apps.core.money import ZERO, format_amount

# Entitlement.Status.ACTIVE (this module reads no model; tests/usage/test_decide.py holds them equal)
HOLD_ACTIVE = "active"


@dataclass(frozen=True, slots=True)
class HoldItem:
    """What is left of one item (one metric) of a hold."""

    id: uuid.UUID
    billable_metric_id: uuid.UUID
    remaining_quantity: Decimal
    remaining_amount: Decimal


@dataclass(frozen=True, slots=True)
class Hold:
    """An entitlement as locked, with every one of its items."""

    id: uuid.UUID
    status: str
    currency: str
    expires_at: datetime
    max_uses: int | None
    used_count: int
    remaining_amount: Decimal
    items: Mapping[uuid.UUID, HoldItem]


@dataclass(frozen=True, slots=True)
class HoldUse:
    """What one line of the event takes from an item of the hold (one line per item)."""

    item_id: uuid.UUID
    quantity: Decimal
    amount: Decimal


@dataclass(frozen=True, slots=True)
class HoldCharged:
    """The hold after a use that goes ahead."""

    remaining_amount: Decimal
    used_count: int
    # the items the use took from, as they are after it
    items: dict[uuid.UUID, HoldItem]
    # no use or no unit left: the hold ends, and `released` (what was left of it) goes back
    # to the wallet's available balance
    exhausted: bool
    released: Decimal


def decide_wallet_charge(
    *, amount: Decimal, available: Decimal, minimum: Decimal, currency: str
) -> Decimal | PaymentRequired:
    """The wallet's available balance after a charge of `amount`, or the 402 refusing the
    charge: it would leave less than `minimum` (a charge of nothing always goes ahead)."""
    if amount > ZERO and available - amount < minimum:
        return PaymentRequired(
            f"The wallet has {format_amount(available, currency)} {currency} available and "
            f"must keep {format_amount(minimum, currency)}; this usage costs "
            f"{format_amount(amount, currency)}. Top up the wallet and retry with the same "
            "idempotencyKey.",
            code="INSUFFICIENT_BALANCE",
            details={
                "available": format_amount(available, currency),
                "required": format_amount(amount, currency),
                "minimumBalance": format_amount(minimum, currency),
                "currency": currency,
            },
        )
    return available - amount


def _hold_refusal(hold: Hold, uses: Sequence[HoldUse], amount: Decimal, now: datetime) -> str | None:
    if hold.status != HOLD_ACTIVE:
        return f"entitlement {hold.id} is {hold.status}"
    if hold.expires_at <= now:
        return f"entitlement {hold.id} expired at {hold.expires_at.isoformat()}"
    if hold.max_uses is not None and hold.used_count >= hold.max_uses:
        return f"entitlement {hold.id} was used {hold.used_count} of {hold.max_uses} times"
    for use in uses:
        item = hold.items[use.item_id]
        if use.quantity > item.remaining_quantity:
            return (
                f"entitlement {hold.id} has {item.remaining_quantity} units of billable metric "
                f"{item.billable_metric_id} left, not {use.quantity}"
            )
    if amount > hold.remaining_amount:
        return (
            f"entitlement {hold.id} holds {format_amount(hold.remaining_amount, hold.currency)} "
            f"{hold.currency}, not {format_amount(amount, hold.currency)}"
        )
    return None


def decide_hold_charge(
    *, hold: Hold, uses: Sequence[HoldUse], amount: Decimal, now: datetime
) -> HoldCharged | PaymentRequired:
    """The hold after a use of `amount` taking `uses` from its items at `now`, or the 402
    refusing it (the hold is not active, expired, used up, or short of units or money)."""
    refusal = _hold_refusal(hold, uses, amount, now)
    if refusal:
        return PaymentRequired(f"This usage exceeds its entitlement: {refusal}.", code="ENTITLEMENT_EXHAUSTED")
    used_count = hold.used_count + 1
    remaining_amount = hold.remaining_amount - amount
    taken = {}
    for use in uses:
        item = hold.items[use.item_id]
        taken[item.id] = HoldItem(
            item.id,
            item.billable_metric_id,
            item.remaining_quantity - use.quantity,
            item.remaining_amount - use.amount,
        )
    exhausted = (hold.max_uses is not None and used_count >= hold.max_uses) or all(
        taken.get(item_id, item).remaining_quantity <= ZERO for item_id, item in hold.items.items()
    )
    return HoldCharged(remaining_amount, used_count, taken, exhausted, remaining_amount if exhausted else ZERO)
