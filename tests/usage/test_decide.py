"""Whether a priced charge may go ahead (apps/usage/services/charging/decide.py): pure
decisions, tested as tables, without a database."""

import ast
import inspect
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from apps.core.errors import PaymentRequired
from apps.entitlements.models import Entitlement
from apps.usage.services.charging import decide
from apps.usage.services.charging.decide import (
    Hold,
    HoldCharged,
    HoldItem,
    HoldUse,
    decide_hold_charge,
    decide_wallet_charge,
)

D = Decimal
NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
HOLD_ID = uuid.UUID("00000000-0000-4000-8000-0000000000e1")
CALLS = uuid.UUID("00000000-0000-4000-8000-00000000c411")
TOKENS = uuid.UUID("00000000-0000-4000-8000-0000000070c5")
CALLS_ITEM = uuid.UUID("00000000-0000-4000-8000-0000000000a1")
TOKENS_ITEM = uuid.UUID("00000000-0000-4000-8000-0000000000a2")


# amount, available, minimum -> the available balance after, or the 402's details
WALLET_CASES = [
    ("covered", "0.25", "10", "0", D("9.75")),
    ("takes all there is", "10", "10", "0", D("0")),
    ("keeps the minimum exactly", "9", "10", "1", D("1")),
    ("nothing costs nothing, even below the minimum", "0", "0.5", "1", D("0.5")),
    ("a negative minimum lets the balance go below zero", "3", "1", "-5", D("-2")),
    (
        "short",
        "10.5",
        "10",
        "0",
        {"available": "10.000000", "required": "10.500000", "minimumBalance": "0.000000", "currency": "USDC"},
    ),
    (
        "would go below the minimum",
        "0.000001",
        "1",
        "1",
        {"available": "1.000000", "required": "0.000001", "minimumBalance": "1.000000", "currency": "USDC"},
    ),
    (
        "already below the minimum",
        "0.1",
        "0.5",
        "1",
        {"available": "0.500000", "required": "0.100000", "minimumBalance": "1.000000", "currency": "USDC"},
    ),
]


@pytest.mark.parametrize(("case", "amount", "available", "minimum", "expected"), WALLET_CASES, ids=lambda v: v)
def test_a_wallet_charge_goes_ahead_only_above_the_minimum(case, amount, available, minimum, expected):
    outcome = decide_wallet_charge(amount=D(amount), available=D(available), minimum=D(minimum), currency="USDC")
    if isinstance(expected, dict):
        assert isinstance(outcome, PaymentRequired)
        assert (outcome.status_code, outcome.code, outcome.details) == (402, "INSUFFICIENT_BALANCE", expected)
        assert "retry with the same idempotencyKey" in str(outcome)
    else:
        assert outcome == expected


def hold(
    *, status="active", expires_in=timedelta(hours=1), max_uses=None, used_count=0, amount="1", calls="10", tokens="5"
):
    """A hold of `amount` for 10 calls and 5 tokens, with what is left of each."""
    return Hold(
        id=HOLD_ID,
        status=status,
        currency="USDC",
        expires_at=NOW + expires_in,
        max_uses=max_uses,
        used_count=used_count,
        remaining_amount=D(amount),
        items={
            CALLS_ITEM: HoldItem(CALLS_ITEM, CALLS, D(calls), D("0.5")),
            TOKENS_ITEM: HoldItem(TOKENS_ITEM, TOKENS, D(tokens), D("0.5")),
        },
    )


def calls(quantity, amount):
    return HoldUse(CALLS_ITEM, D(quantity), D(amount))


def tokens(quantity, amount):
    return HoldUse(TOKENS_ITEM, D(quantity), D(amount))


# the hold, the event's uses and amount -> why it is refused (the end of the 402's message)
REFUSED_CASES = [
    ("exhausted", hold(status="exhausted"), [calls(1, "0.1")], "0.1", f"entitlement {HOLD_ID} is exhausted"),
    ("released", hold(status="released"), [calls(1, "0.1")], "0.1", f"entitlement {HOLD_ID} is released"),
    (
        "expired at this instant",
        hold(expires_in=timedelta(0)),
        [calls(1, "0.1")],
        "0.1",
        f"entitlement {HOLD_ID} expired at {NOW.isoformat()}",
    ),
    (
        "no use left",
        hold(max_uses=3, used_count=3),
        [calls(1, "0.1")],
        "0.1",
        f"entitlement {HOLD_ID} was used 3 of 3 times",
    ),
    (
        "too few units of one metric",
        hold(tokens="2"),
        [calls(1, "0.1"), tokens(3, "0.3")],
        "0.4",
        f"entitlement {HOLD_ID} has 2 units of billable metric {TOKENS} left, not 3",
    ),
    (
        "too little money",
        hold(amount="0.3"),
        [calls(4, "0.4")],
        "0.4",
        f"entitlement {HOLD_ID} holds 0.300000 USDC, not 0.400000",
    ),
    # the first reason wins: status, expiry, uses, units, money
    (
        "expired and used up",
        hold(expires_in=-timedelta(seconds=1), max_uses=1, used_count=1),
        [calls(1, "0.1")],
        "0.1",
        f"entitlement {HOLD_ID} expired at {(NOW - timedelta(seconds=1)).isoformat()}",
    ),
]


@pytest.mark.parametrize(("case", "state", "uses", "amount", "reason"), REFUSED_CASES, ids=lambda v: v)
def test_a_hold_refuses_a_use_it_cannot_cover(case, state, uses, amount, reason):
    outcome = decide_hold_charge(hold=state, uses=uses, amount=D(amount), now=NOW)
    assert isinstance(outcome, PaymentRequired)
    assert (outcome.status_code, outcome.code) == (402, "ENTITLEMENT_EXHAUSTED")
    assert str(outcome) == f"This usage exceeds its entitlement: {reason}."


# the hold, the event's uses and amount -> (amount left, uses, {item: units left}, exhausted, released)
CHARGED_CASES = [
    ("part of one metric", hold(), [calls(3, "0.3")], "0.3", ("0.7", 1, {CALLS_ITEM: "7"}, False, "0")),
    (
        "two metrics",
        hold(),
        [calls(1, "0.1"), tokens(2, "0.2")],
        "0.3",
        ("0.7", 1, {CALLS_ITEM: "9", TOKENS_ITEM: "3"}, False, "0"),
    ),
    (
        "the last units of one metric, others left",
        hold(),
        [tokens(5, "0.5")],
        "0.5",
        ("0.5", 1, {TOKENS_ITEM: "0"}, False, "0"),
    ),
    (
        "the last units of every metric: the rest goes back",
        hold(calls="1", tokens="0"),
        [calls(1, "0.1")],
        "0.1",
        ("0.9", 1, {CALLS_ITEM: "0"}, True, "0.9"),
    ),
    (
        "the last use: the rest goes back",
        hold(max_uses=2, used_count=1),
        [calls(1, "0.1")],
        "0.1",
        ("0.9", 2, {CALLS_ITEM: "9"}, True, "0.9"),
    ),
    (
        "all the money, units left",
        hold(amount="0.5"),
        [calls(5, "0.5")],
        "0.5",
        ("0", 1, {CALLS_ITEM: "5"}, False, "0"),
    ),
    (
        "units within free units cost nothing",
        hold(),
        [calls(2, "0")],
        "0",
        ("1", 1, {CALLS_ITEM: "8"}, False, "0"),
    ),
]


@pytest.mark.parametrize(("case", "state", "uses", "amount", "expected"), CHARGED_CASES, ids=lambda v: v)
def test_a_hold_use_that_goes_ahead_leaves_what_it_did_not_take(case, state, uses, amount, expected):
    outcome = decide_hold_charge(hold=state, uses=uses, amount=D(amount), now=NOW)
    assert isinstance(outcome, HoldCharged)
    remaining, used, units_left, exhausted, released = expected
    assert outcome.remaining_amount == D(remaining)
    assert outcome.used_count == used
    assert {item_id: item.remaining_quantity for item_id, item in outcome.items.items()} == {
        item_id: D(units) for item_id, units in units_left.items()
    }
    for use in uses:
        before = state.items[use.item_id]
        assert outcome.items[use.item_id].remaining_amount == before.remaining_amount - use.amount
    assert (outcome.exhausted, outcome.released) == (exhausted, D(released))


def test_the_active_status_is_the_entitlements():
    assert decide.HOLD_ACTIVE == Entitlement.Status.ACTIVE


def test_deciding_reads_no_model_and_does_no_io():
    """Only the standard library and the pure money and error helpers: no ORM, no settings."""
    tree = ast.parse(inspect.getsource(decide))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert imported <= {
        "uuid",
        "collections.abc",
        "dataclasses",
        "datetime",
        "decimal",
        "apps.core.errors",
        "apps.core.money",
    }, imported
