"""The services that record usage: one event, a batch, or single reports charged together.

Each runs the same steps for its events (see the package's overview): lookup, replays,
resolve, charge; and starts again, up to CONFLICT_RETRIES times, when a concurrent request
stored one of its keys first (those events are then replays) or a prepared statement went stale.
"""

from collections import defaultdict
from contextlib import nullcontext
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from apps.core.bulk import StalePreparedStatement
from apps.core.errors import ApiError, Conflict, FieldError
from apps.core.money import ZERO, format_amount, round_amount
from apps.merchants.models import Merchant
from apps.usage.inputs import UsageInput, parse_usage_event
from apps.usage.serializers import usage_event_data
from apps.usage.services.charging.charge import charge
from apps.usage.services.charging.lookup import lookup, stored_events
from apps.usage.services.charging.resolve import ResolvedEvent, replay, resolve
from apps.usage.services.charging.write import DuplicateRace

MAX_BATCH_EVENTS = 1000
CONFLICT_RETRIES = 3

# {index: the event's response body, or the ApiError that refuses it}
Outcomes = dict[int, dict | ApiError]


def usage_record(*, merchant: Merchant, raw: dict) -> dict:
    """Charge one usage event (or replay it). Raises the ApiError that refuses it."""
    now = timezone.now()
    return record_one(merchant, parse_usage_event(raw, now=now), now)


def record_one(merchant: Merchant, event: UsageInput, now: datetime) -> dict:
    """Charge one parsed event (or replay it); raises the ApiError that refuses it. One
    transaction from the lookup on: the wallet is locked as its subscription is read."""
    outcome = record_many(merchant, {0: event}, now, lock_first=True)[0]
    if isinstance(outcome, ApiError):
        raise outcome
    return outcome


def _contended(event: UsageInput) -> Conflict:
    return Conflict(f"idempotencyKey {event.idempotency_key!r} is contended; retry.", code="IDEMPOTENCY_KEY_IN_USE")


def _record_attempt(
    merchant: Merchant,
    pending: dict[int, UsageInput],
    now: datetime,
    outcomes: Outcomes,
    lock_first: bool,
    shared_transaction: bool,
) -> None:
    """One attempt of `record_many` for the `pending` events: fills `outcomes`; raises
    DuplicateRace or StalePreparedStatement when it must start again."""
    found = lookup(merchant, list(pending.values()), lock_wallets=lock_first)
    for index, event in list(pending.items()):
        if event.idempotency_key in found.existing:
            try:
                outcomes[index] = replay(found.existing[event.idempotency_key], event.request_hash)
            except ApiError as error:
                outcomes[index] = error
            del pending[index]
    if not pending:
        return
    indexes = list(pending)
    resolved = resolve(merchant, [pending[i] for i in indexes], now, found.subscriptions)
    to_charge: list[tuple[int, ResolvedEvent]] = []
    for index, outcome in zip(indexes, resolved, strict=True):
        if isinstance(outcome, ApiError):
            outcomes[index] = outcome
        else:
            to_charge.append((index, outcome))
    if not to_charge:
        return
    charged = charge(merchant, [r for _, r in to_charge], now, found.balances, shared_transaction=shared_transaction)
    refused: dict[int, UsageInput] = {}
    for (index, _), outcome in zip(to_charge, charged, strict=True):
        if isinstance(outcome, ApiError):
            outcomes[index] = outcome
            refused[index] = pending[index]
        else:
            outcomes[index] = usage_event_data(outcome.row, outcome.line_rows)
    if refused:
        _replay_what_a_concurrent_request_stored(merchant, refused, outcomes)


def _replay_what_a_concurrent_request_stored(merchant: Merchant, refused: dict[int, UsageInput], outcomes) -> None:
    """An event refused under the wallet's lock (the balance, its hold) may be one that a
    concurrent request with the same key charged while this one waited for that lock: the
    lookup's probe of stored keys ran before the wait, so it could not see it. The refusal
    would then answer 402 for a key that was charged, once. A fresh read of the refused keys
    (rare: refusals only) turns those into the replay of what was stored."""
    stored = stored_events(merchant, {event.idempotency_key for event in refused.values()})
    for index, event in refused.items():
        if event.idempotency_key in stored:
            try:
                outcomes[index] = replay(stored[event.idempotency_key], event.request_hash)
            except ApiError as error:
                outcomes[index] = error


def record_many(
    merchant: Merchant,
    parsed: dict[int, UsageInput],
    now: datetime,
    *,
    lock_first: bool = False,
    shared_transaction: bool = True,
) -> Outcomes:
    """Charge parsed events together ({index: UsageInput}); each succeeds or fails on its own.

    Returns {index: the event's response body, or the ApiError that refuses it}. The same
    key twice: the later one is a replay of the first, or a 409 if its body differs.

    `lock_first`: one transaction from the lookup on, the wallets locked as the subscriptions
    are read (one round trip fewer; for single reports and small rounds). Refusals are
    outcomes, not exceptions, so such a transaction that wrote nothing ends in a COMMIT: a
    ROLLBACK would make psycopg forget the connection's prepared statements. Without it, a
    large batch resolves its events before it takes any lock, so that concurrent batches hold
    their wallets for less time.

    `shared_transaction`: one ledger transaction per currency for all the events (a batch), or
    one per event (single reports charged together, each answered as if alone).
    """
    outcomes: Outcomes = {}
    first_index: dict[str, int] = {}
    duplicates: dict[int, int] = {}
    for index, event in parsed.items():
        if event.idempotency_key in first_index:
            duplicates[index] = first_index[event.idempotency_key]
        else:
            first_index[event.idempotency_key] = index

    for _ in range(CONFLICT_RETRIES):
        pending = {i: e for i, e in parsed.items() if i not in duplicates and i not in outcomes}
        try:
            with transaction.atomic() if lock_first else nullcontext():
                _record_attempt(merchant, pending, now, outcomes, lock_first, shared_transaction)
        except (DuplicateRace, StalePreparedStatement):
            continue
        break
    else:
        for index, event in parsed.items():
            if index not in outcomes and index not in duplicates:
                outcomes[index] = _contended(event)

    for index, first in duplicates.items():
        if parsed[first].request_hash == parsed[index].request_hash:
            outcomes[index] = outcomes[first]
        else:
            key = parsed[index].idempotency_key
            outcomes[index] = Conflict(
                f"idempotencyKey {key!r} appears earlier in this batch (events[{first}]) with a different body.",
                code="IDEMPOTENCY_KEY_REUSED",
            )
    return outcomes


def _failure(index: int, key, error: ApiError) -> dict:
    body = error.as_body()
    body["status"] = error.status_code
    return {"index": index, "idempotencyKey": key, "error": body}


def usage_record_batch(*, merchant: Merchant, raw_events) -> tuple[int, dict]:
    """Charge up to 1,000 events; each succeeds or fails on its own. Returns (status, body)."""
    if not isinstance(raw_events, list) or not raw_events:
        raise FieldError("events", "must be a non-empty list of usage events", code="REQUIRED")
    if len(raw_events) > MAX_BATCH_EVENTS:
        raise FieldError(
            "events", f"holds {len(raw_events)} events; a batch holds at most {MAX_BATCH_EVENTS}", code="TOO_MANY"
        )
    now = timezone.now()
    results: dict[int, dict] = {}
    failures: dict[int, dict] = {}
    parsed: dict[int, UsageInput] = {}
    for index, raw in enumerate(raw_events):
        try:
            parsed[index] = parse_usage_event(raw, prefix=f"events[{index}].", now=now)
        except ApiError as error:
            key = raw.get("idempotencyKey") if isinstance(raw, dict) else None
            failures[index] = _failure(index, key, error)
    for index, outcome in record_many(merchant, parsed, now).items():
        if isinstance(outcome, ApiError):
            failures[index] = _failure(index, parsed[index].idempotency_key, outcome)
        else:
            results[index] = outcome

    successful = [results[i] for i in sorted(results)]
    failed = [failures[i] for i in sorted(failures)]
    charged_total: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for body in successful:
        charged_total[body["billing"]["currency"]] += Decimal(body["billing"]["totalAmount"])
    summary = {
        "total": len(raw_events),
        "succeeded": len(successful),
        "failed": len(failed),
        "charged": {
            currency: format_amount(round_amount(amount), currency) for currency, amount in charged_total.items()
        },
    }
    status = 201 if not failed else 207
    return status, {"object": "usageBatch", "successful": successful, "failed": failed, "summary": summary}
