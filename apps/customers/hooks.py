"""What the customers app asks of the apps above it, without importing them.

Customers stand below subscriptions (see the layers in conventions). Archiving (deleting) a
customer must be refused while another app still bills it; each such app registers here, in
its `AppConfig.ready()`, a guard that raises an ApiError (a 409 naming the reason) to refuse.
A guard runs inside the archiving transaction, with the customer's row locked.

Auto-recharge: the crossing below the threshold is noticed here (the posting's follow-up of
apps.customers.low_balance), the card is charged by the cards app, which listens for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apps.customers.models import Customer

ArchiveGuard = Callable[["Customer"], None]

_archive_guards: list[ArchiveGuard] = []


def register_archive_guard(guard: ArchiveGuard) -> None:
    """Register `guard(customer)`, raising to refuse archiving; registering twice keeps one."""
    if guard not in _archive_guards:
        _archive_guards.append(guard)


def check_archive(customer: Customer) -> None:
    for guard in _archive_guards:
        guard(customer)


AutoRechargeListener = Callable[[list], None]

_auto_recharge_due: list[AutoRechargeListener] = []


def on_auto_recharge_due(listener: AutoRechargeListener) -> None:
    """Register `listener(settings_ids)`: told of the billing settings whose wallet a posting
    just took below the auto-recharge threshold (apps.customers.low_balance), inside the
    posting's transaction; the cards app charges the saved card after the commit."""
    if listener not in _auto_recharge_due:
        _auto_recharge_due.append(listener)


def auto_recharge_due(settings_ids: list) -> None:
    for listener in _auto_recharge_due:
        listener(settings_ids)
