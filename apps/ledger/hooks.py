"""What the ledger lets the apps above it add to a posting, without importing them.

The ledger knows amounts, not reasons. An app above it that must react to a wallet's balance
moving, in the same transaction and without another round trip (the customers app's
low-balance crossing, heard as wallet.low_balance), registers here, in its `AppConfig.ready()`,
a builder: `build(account_ids, now)` receives the ids of the wallet accounts (available and
held) whose balance a posting moved and returns a `FollowUp` (one statement, sent after the
balance update in the posting's own round trip, and what to do with its rows) or None.
A follow-up's error aborts the posting's transaction like any of the ledger's own.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from apps.core.bulk import Statement


@dataclass(frozen=True)
class FollowUp:
    statement: Statement
    # Called with the statement's rows, inside the posting's transaction.
    after: Callable[[list[tuple]], None]


FollowUpBuilder = Callable[[Sequence[uuid.UUID], datetime], "FollowUp | None"]

_builders: list[FollowUpBuilder] = []


def register_posting_follow_up(build: FollowUpBuilder) -> None:
    """Register `build(wallet_account_ids, now)`; registering twice keeps one."""
    if build not in _builders:
        _builders.append(build)


def posting_follow_ups(wallet_account_ids: Sequence[uuid.UUID], now: datetime) -> list[FollowUp]:
    if not wallet_account_ids:
        return []
    return [f for f in (build(wallet_account_ids, now) for build in _builders) if f is not None]
