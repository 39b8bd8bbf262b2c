"""Auto-recharge (`billingSettings.autoRecharge`, USD wallets: cards are in USD): when the
available balance falls below the threshold, the default saved card is charged `amount` once,
as a top-up through the payments service; again only after the balance has been back at or
above the threshold. It works as wallet.low_balance does (apps.customers.low_balance):

1. every posting that moves a wallet's balance (usage, a hold, an adjustment, a payment)
   carries one more statement in its own round trip (`apps.ledger.hooks`): for the moved USD
   wallets whose customer has auto-recharge enabled, compare the available balance (after the
   posting, under the wallet lock the ledger holds) with the threshold and flip the settings'
   `auto_recharge_triggered` where the answer changed (back above: the crossing's session is
   forgotten);
2. for each flip downwards, a Celery task is enqueued after the commit (never a call to Stripe
   in the posting's transaction);
3. the task (`auto_recharge_run`) locks the settings row and, while still triggered and no
   charge was made for this crossing, creates a top-up session and records it on the row
   (committed), then charges the default card off-session outside the transaction. A failure
   (declined, needs authentication, no card) publishes payment.failed where an attempt was
   made and is not retried: the next crossing tries again, so there is no retry storm. A task
   delivered twice finds the session recorded and charges nothing more.
"""

import functools
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime

from django.db import transaction

from apps.cards.services.off_session import OffSessionCharge, card_charge_off_session
from apps.cards.stripe_client import CARD_CURRENCY
from apps.core.bulk import Statement, array_param
from apps.customers.models import BillingSettings
from apps.ledger.hooks import FollowUp
from apps.ledger.models import Balance, Wallet
from apps.payments.models import PaymentAttempt
from apps.payments.services import topup_session_create

logger = logging.getLogger(__name__)


@functools.cache
def _sql() -> str:
    settings, wallets, balances = BillingSettings._meta.db_table, Wallet._meta.db_table, Balance._meta.db_table
    return (
        "WITH cur AS ("  # noqa: S608 (names from models, no user input)
        "SELECT s.id AS settings_id, coalesce(a.amount < s.auto_recharge_threshold, false) AS low "
        f"FROM {wallets} w "
        # lateral: one probe of the settings' unique index per wallet (as low_balance does)
        f"CROSS JOIN LATERAL (SELECT id, auto_recharge_threshold FROM {settings} "
        "WHERE merchant_id = w.merchant_id AND customer_id = w.customer_id AND currency = w.currency "
        "AND auto_recharge_enabled LIMIT 1) s "
        f"CROSS JOIN LATERAL (SELECT coalesce(sum(amount), 0) AS amount FROM {balances} "
        "WHERE account_id = w.available_account_id) a "
        f"WHERE w.available_account_id = ANY(%s::uuid[]) AND w.currency = '{CARD_CURRENCY}'), "
        f"flipped AS (UPDATE {settings} s SET auto_recharge_triggered = cur.low, auto_recharge_session_id = NULL "
        "FROM cur WHERE s.id = cur.settings_id AND s.auto_recharge_triggered <> cur.low "
        "RETURNING s.id, cur.low) "
        "SELECT id FROM flipped WHERE low"
    )


def _enqueue(rows: list[tuple]) -> None:
    from apps.cards.tasks import auto_recharge

    for (settings_id,) in rows:
        transaction.on_commit(lambda settings_id=str(settings_id): _delay(auto_recharge, settings_id))


def _delay(task, settings_id: str) -> None:
    try:
        task.delay(settings_id)
    except Exception:
        # the crossing is recorded (triggered, no session): nothing charges it until the
        # balance recovers and falls again; the operator sees why in the log
        logger.warning("Auto-recharge of billing settings %s not enqueued", settings_id, exc_info=True)


def auto_recharge_follow_up(wallet_account_ids: Sequence[uuid.UUID], now: datetime) -> FollowUp:
    """The statement a posting that moved these wallet accounts carries (see the module)."""
    return FollowUp(statement=Statement(_sql(), [array_param(wallet_account_ids)]), after=_enqueue)


def auto_recharge_run(*, settings_id) -> OffSessionCharge | None:
    """Charge the crossing's auto-recharge once (see the module); None when there is nothing
    to charge (not triggered any more, disabled, or already charged for this crossing)."""
    with transaction.atomic():
        row = (
            BillingSettings.objects.select_for_update(of=("self",))
            .select_related("merchant", "customer")
            .filter(pk=settings_id)
            .first()
        )
        if (
            row is None
            or not row.auto_recharge_enabled
            or not row.auto_recharge_triggered
            or row.auto_recharge_session_id is not None
            or row.currency != CARD_CURRENCY
            or row.customer.archived_at is not None
        ):
            return None
        session = topup_session_create(
            merchant=row.merchant, customer=row.customer, amount=row.auto_recharge_amount, currency=row.currency
        )
        row.auto_recharge_session_id = session.id
        row.save(update_fields=["auto_recharge_session_id", "updated_at"])
        customer = row.customer
    charge = card_charge_off_session(session_id=session.id, customer=customer)
    if charge.attempt is None:
        logger.info("Auto-recharge of %s not charged: %s", customer.id, charge.reason)
    elif charge.attempt.status != PaymentAttempt.Status.SUCCEEDED:
        logger.info("Auto-recharge of %s: attempt %s %s", customer.id, charge.attempt.id, charge.attempt.status)
    return charge
