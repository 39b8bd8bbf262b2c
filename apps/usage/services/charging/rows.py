"""Building the rows a charge inserts: usage events, their lines, the ledger transactions
that pay for them and the period's running totals, as plain values (no model instances).

Events are prepared in key order (two requests sharing keys then wait on each other in one
order), each as a `StoredEvent` with its `StoredLine`s: the values written, which the answer
reads too (`usage_event_data`). Their INSERTs are encoded here, before the wallets are locked
where the prices allow it; only `balance_after` is known under the lock (`write` patches it in).
"""

import uuid
from collections import defaultdict
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from operator import attrgetter

from apps.core.bulk import Statement, insert_rows, new_id
from apps.core.money import ZERO
from apps.ledger.models import LedgerTransaction
from apps.ledger.services import Posting, TransactionSpec, merchant_revenue_account, platform_commission_account
from apps.merchants.models import Merchant
from apps.subscriptions.selectors import AccountRef
from apps.usage.models import UsageEvent, UsageLine
from apps.usage.services.charging.lookup import CounterKey, Counters
from apps.usage.services.charging.resolve import ResolvedEvent


@dataclass(slots=True)
class StoredEvent:
    """The values of a usage event row as written (what `usage_event_data` reads)."""

    id: str
    created_at: datetime
    updated_at: datetime
    merchant_id: uuid.UUID
    idempotency_key: str
    request_hash: str
    customer_id: uuid.UUID
    subscription_id: uuid.UUID
    entitlement_id: uuid.UUID | None
    timestamp: datetime
    currency: str
    amount: Decimal
    commission_amount: Decimal
    owner_revenue_amount: Decimal
    balance_after: Decimal | None
    ledger_transaction_id: uuid.UUID | None
    invoice_id: uuid.UUID | None
    metadata: dict
    refund_reason: str
    merchant: Merchant


@dataclass(slots=True)
class StoredLine:
    """The values of a usage line row as written (its id is made by the server: no answer shows it)."""

    created_at: datetime
    updated_at: datetime
    merchant_id: uuid.UUID
    event_id: str
    position: int
    billable_metric_id: uuid.UUID
    price_id: uuid.UUID
    customer_id: uuid.UUID
    subscription_id: uuid.UUID
    timestamp: datetime
    quantity: Decimal
    value: Decimal | None
    value_text: str
    payment_term: str
    unit_price: Decimal | None
    amount: Decimal | None


# The columns written, in the order of the fields above (the event's `merchant` is for the answer).
EVENT_COLUMNS = tuple(f.name for f in fields(StoredEvent) if f.name != "merchant")
LINE_COLUMNS = tuple(f.name for f in fields(StoredLine))
SERVER_IDS = {"id": "gen_random_uuid()"}
BALANCE_AFTER_PARAM = EVENT_COLUMNS.index("balance_after")
COUNTER_COLUMNS = (
    "id",
    "created_at",
    "updated_at",
    "merchant_id",
    "subscription_id",
    "price_id",
    "period_start",
    "units",
)


@dataclass(slots=True)
class PreparedRows:
    """The events about to be written, in key order, and the INSERTs of their rows."""

    events: list[ResolvedEvent]
    event_insert: Statement
    line_insert: Statement


def _transaction_group(event: ResolvedEvent, shared_transaction: bool) -> tuple[str, str | None]:
    # A batch posts one ledger transaction per currency for all its events: a debit per
    # wallet (or hold) and one credit each to the merchant's revenue and the platform's
    # commission; each event keeps its own figures, which sum to the transaction's. Single
    # reports charged together (combining) keep one ledger transaction each, as alone.
    return (event.currency, None if shared_transaction else event.input.idempotency_key)


def prepare_rows(
    merchant: Merchant, events: list[ResolvedEvent], now: datetime, *, shared_transaction: bool
) -> PreparedRows:
    """Build and encode the rows of priced events (their balance_after is set by `write`)."""
    transaction_ids: dict[tuple[str, str | None], uuid.UUID] = {}
    # in key order, so that two requests sharing keys wait on each other in one order
    ordered = sorted(events, key=lambda e: e.input.idempotency_key)
    for event in ordered:
        event.transaction_id = None
        if event.amount > ZERO:
            group = _transaction_group(event, shared_transaction)
            event.transaction_id = transaction_ids.get(group)
            if event.transaction_id is None:
                event.transaction_id = transaction_ids[group] = uuid.uuid4()
        event.row = StoredEvent(
            new_id(),
            now,
            now,
            merchant.id,
            event.input.idempotency_key,
            event.input.request_hash,
            event.customer.id,
            event.subscription.id,
            event.entitlement.id if event.entitlement else None,
            event.input.timestamp,
            event.currency,
            event.amount,
            event.commission,
            event.owner_revenue,
            None,  # balance_after: known under the lock, set by write
            event.transaction_id,
            None,
            event.input.metadata,
            "",
            merchant,
        )
        event.line_rows = [
            StoredLine(
                now,
                now,
                merchant.id,
                event.row.id,
                position,
                line.metric.id,
                line.price.id,
                event.customer.id,
                event.subscription.id,
                event.input.timestamp,
                line.quantity,
                line.value,
                line.value_text,
                line.payment_term,
                line.unit_price,
                line.amount,
            )
            for position, line in enumerate(event.lines)
        ]
    event_values, line_values = attrgetter(*EVENT_COLUMNS), attrgetter(*LINE_COLUMNS)
    return PreparedRows(
        ordered,
        insert_rows(UsageEvent, EVENT_COLUMNS, [event_values(e.row) for e in ordered]),
        insert_rows(
            UsageLine,
            LINE_COLUMNS,
            [line_values(line) for e in ordered for line in e.line_rows],
            generated=SERVER_IDS,
        ),
    )


def ledger_specs(merchant: Merchant, events: list[ResolvedEvent]) -> list[TransactionSpec]:
    """The ledger transactions that pay for the charged `events` (one per transaction id that
    `prepare_rows` gave them): the wallets' available balances (or holds) debited, the
    merchant's revenue and the platform's commission credited."""
    groups: dict[uuid.UUID, list[ResolvedEvent]] = defaultdict(list)
    for event in events:
        if event.transaction_id is not None:
            groups[event.transaction_id].append(event)
    specs = []
    for transaction_id, members in groups.items():
        currency = members[0].currency
        debits: dict[uuid.UUID, tuple[AccountRef, Decimal]] = {}
        for event in members:
            wallet = event.subscription.wallet
            source = wallet.held_account if event.entitlement is not None else wallet.available_account
            debits[source.id] = (source, debits.get(source.id, (source, ZERO))[1] + event.amount)
        total = sum((e.amount for e in members), ZERO)
        commission = sum((e.commission for e in members), ZERO)
        specs.append(
            TransactionSpec(
                merchant=merchant,
                kind=LedgerTransaction.Kind.USAGE,
                currency=currency,
                postings=[
                    *(Posting(source, -amount) for source, amount in debits.values()),
                    Posting(merchant_revenue_account(merchant=merchant, currency=currency), total - commission),
                    Posting(platform_commission_account(currency=currency, livemode=merchant.livemode), commission),
                ],
                description=f"usage: {len(members)} event(s)",
                metadata={"events": len(members)},
                id=transaction_id,
            )
        )
    return specs


def counter_rows(merchant: Merchant, counters: Counters, touched: set[CounterKey], now: datetime) -> list[tuple]:
    """The period's running totals that the charge moved, as rows of COUNTER_COLUMNS."""
    return [(new_id(), now, now, merchant.id, *key, counters[key]) for key in sorted(touched, key=str)]
