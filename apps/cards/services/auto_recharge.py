"""Auto-recharge (`billingSettings.autoRecharge`, USD wallets: cards are in USD): when the
available balance falls below the threshold, the default saved card is charged `amount` once,
as a top-up through the payments service; again only after the balance has been back at or
above the threshold.

1. The crossing is found by the posting that makes it, in the statement that already follows
   every posting for wallet.low_balance (apps.customers.low_balance: the same probe of the
   settings row, no statement of its own), under the wallet lock the ledger holds: postings
   of one wallet are serialized by it, so concurrent postings crossing at once flip the
   settings' `auto_recharge_triggered` once, and the customers app tells this module
   (`hooks.auto_recharge_due`) of that one flip.
2. A Celery task is enqueued after the commit (never a call to Stripe in the posting's
   transaction).
3. The task (`auto_recharge_run`) locks the settings row and, while still triggered and no
   charge was made for this crossing, creates a top-up session and records it on the row
   (committed: the crossing's claim), then charges the default card off-session outside the
   transaction. What was charged is credited through the payments service (the wallet's
   credit then pays what it covers, and the posting that credits it clears the trigger once
   the balance is back at or above the threshold).
4. A charge that cannot be made (no saved card, Stripe not configured for the mode) is
   recorded as a card attempt of the session that failed with the reason, so the merchant
   hears payment.failed (`failureReason`) as for a declined card or one that needs the
   customer's authentication. Nothing is retried: the next crossing tries again, so a card
   that fails never loops. A task delivered twice finds the crossing claimed and charges
   nothing more.
"""

import logging

from django.db import transaction

from apps.cards.services.off_session import OffSessionCharge, card_charge_off_session
from apps.cards.stripe_client import CARD_CURRENCY
from apps.customers.models import BillingSettings
from apps.payments.models import PaymentAttempt, PaymentSource
from apps.payments.services import payment_attempt_fail, payment_attempt_start, topup_session_create

logger = logging.getLogger(__name__)

NOT_CHARGED = "Auto-recharge could not charge the card: {reason}"


def auto_recharge_enqueue(settings_ids: list) -> None:
    """The customers app's hook (inside the posting's transaction): charge each after the commit."""
    for settings_id in settings_ids:
        transaction.on_commit(lambda settings_id=str(settings_id): _delay(settings_id))


def _delay(settings_id: str) -> None:
    from apps.cards.tasks import auto_recharge

    try:
        auto_recharge.delay(settings_id)
    except Exception:
        # the crossing stays recorded (triggered, no session): nothing charges it until the
        # balance is back at or above the threshold and falls again; the log says why
        logger.warning("Auto-recharge of billing settings %s not enqueued", settings_id, exc_info=True)


def auto_recharge_run(*, settings_id) -> OffSessionCharge | None:
    """Charge the crossing's auto-recharge once (see the module); None when there is nothing
    to charge (not triggered any more, disabled, or already claimed for this crossing). Must
    run outside any database transaction (it calls Stripe)."""
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
        attempt = payment_attempt_start(session_id=session.id, source=PaymentSource.CARD, merchant=session.merchant)
        attempt = payment_attempt_fail(attempt_id=attempt.id, reason=NOT_CHARGED.format(reason=charge.reason))
        logger.info("Auto-recharge of customer %s not charged: %s (%s)", customer.id, charge.reason, charge.code)
        return OffSessionCharge(attempt, charge.card, attempt.failure_reason, charge.code)
    if charge.attempt.status != PaymentAttempt.Status.SUCCEEDED:
        logger.info(
            "Auto-recharge of customer %s: attempt %s %s", customer.id, charge.attempt.id, charge.attempt.status
        )
    return charge
