"""Real-time usage charging: each reported event is priced and paid for exactly once.

One code path serves single events (`usage_record`, and `combining` for concurrent single
reports) and batches (`usage_record_batch`), with or without entitlement holds. The flow,
module by module (`record` runs it, and starts again when a concurrent request stored a key
first):

1. `apps.usage.inputs.parse_usage_event` judges each event from the request alone (400s).
2. `lookup`: in one round trip, which keys are stored already, the subscriptions the events
   can be charged to (with their customers, plans, prices and wallets) and, for single
   reports, their wallets' balance rows, locked. Stored keys are answered by
   `resolve.replay` (the first response, or 409 for another body).
3. `resolve`: the rules that depend on stored data (404, 409, 422), loading what the
   subscriptions did not bring (`lookup.named_rows`); each event becomes a `ResolvedEvent`.
4. `charge`, in one database transaction:
   - events whose price depends on no locked row are priced (`rate`) and their rows built
     (`rows`) first;
   - the wallets' balance rows are locked (in one order, by `apps.ledger.lock_objects`),
     then the entitlements named and the period's running totals are read (`lookup`);
   - event by event: priced where it depends on them (`rate`: graduated tiers, packages
     and free units continue from the running totals), then `decide` (pure) says whether
     it may go ahead: the wallet's minimum balance, or the entitlement's hold (402,
     nothing written for that event);
   - `write`: the ledger transactions, events, lines and running totals in one round
     trip, then the entitlements used.
5. An answer is returned only after the commit (`usage_event_data` of the rows written).

An event's `idempotencyKey` is its identity for good: a replay returns the first response and
moves nothing; a concurrent duplicate waits on the unique index until the first commits, then
returns its response; another body under the same key is 409.

Round trips of a single report that names no entitlement: two (lookup with the lock; write),
plus the commit; a batch's do not grow with its size (tests/usage/test_round_trips.py).
"""

from apps.usage.services.charging.record import (
    MAX_BATCH_EVENTS,
    record_many,
    record_one,
    usage_record,
    usage_record_batch,
)

__all__ = ["MAX_BATCH_EVENTS", "record_many", "record_one", "usage_record", "usage_record_batch"]
