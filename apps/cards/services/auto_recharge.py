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
5. Beat (`auto_recharges_resume`, every minute) enqueues again what a lost message or a
   stopped worker left behind: a crossing never claimed (the broker was down after the
   posting's commit), or one claimed more than CLAIM_GRACE ago whose session is still pending
   without any attempt (the worker stopped between the claim and the charge). Each run locks
   the settings row and checks the same, so a resumed run and a late original charge once.
"""

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.cards.services.off_session import OffSessionCharge, card_charge_off_session
from apps.cards.stripe_client import CARD_CURRENCY
from apps.core.errors import ApiError
from apps.core.jobs import enqueue_after_commit
from apps.customers.models import BillingSettings
from apps.payments.models import PaymentAttempt, PaymentSession, PaymentSource
from apps.payments.services import payment_attempt_fail, payment_attempt_start, topup_session_create

logger = logging.getLogger(__name__)

NOT_CHARGED = "Auto-recharge could not charge the card: {reason}"
# A claimed crossing whose session has no attempt this long after it was claimed was left
# behind by a worker that stopped before charging (a charge starts within seconds).
CLAIM_GRACE = timedelta(minutes=5)


def auto_recharge_enqueue(settings_ids: list) -> None:
    """The customers app's hook (inside the posting's transaction): charge each after the commit."""
    from apps.cards.tasks import auto_recharge

    for settings_id in settings_ids:
        # (the crossing stays recorded: beat resumes one no worker charged)
        enqueue_after_commit(auto_recharge, str(settings_id), caught_up_by="resume_auto_recharges")


def _left_behind():
    """Auto-recharge sessions claimed more than CLAIM_GRACE ago, still pending, never attempted."""
    return PaymentSession.objects.filter(
        purpose=PaymentSession.Purpose.TOP_UP,
        status=PaymentSession.Status.PENDING,
        created_at__lt=timezone.now() - CLAIM_GRACE,
        expires_at__gt=timezone.now(),
        attempts__isnull=True,
    )


def auto_recharges_left_behind(*, limit: int = 500) -> list:
    """The ids of the billing settings whose crossing was never charged (see the module, 5)."""
    return list(
        BillingSettings.objects.filter(auto_recharge_enabled=True, auto_recharge_triggered=True, currency=CARD_CURRENCY)
        .filter(Q(auto_recharge_session_id__isnull=True) | Q(auto_recharge_session_id__in=_left_behind().values("id")))
        .order_by("updated_at")
        .values_list("id", flat=True)[:limit]
    )


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
            or row.currency != CARD_CURRENCY
            or row.customer.archived_at is not None
        ):
            return None
        if row.auto_recharge_session_id is None:
            session = topup_session_create(
                merchant=row.merchant, customer=row.customer, amount=row.auto_recharge_amount, currency=row.currency
            )
            row.auto_recharge_session_id = session.id
            row.save(update_fields=["auto_recharge_session_id", "updated_at"])
        else:
            session = _left_behind().filter(pk=row.auto_recharge_session_id).first()
            if session is None:
                return None  # charged (or being charged) for this crossing already
        customer = row.customer
    charge = card_charge_off_session(session_id=session.id, customer=customer)
    if charge.attempt is None:
        try:
            attempt = payment_attempt_start(session_id=session.id, source=PaymentSource.CARD, merchant=session.merchant)
        except ApiError:
            return charge  # another run charges this session (in flight), or did (paid)
        attempt = payment_attempt_fail(attempt_id=attempt.id, reason=NOT_CHARGED.format(reason=charge.reason))
        logger.info("Auto-recharge of customer %s not charged: %s (%s)", customer.id, charge.reason, charge.code)
        return OffSessionCharge(attempt, charge.card, attempt.failure_reason, charge.code)
    if charge.attempt.status != PaymentAttempt.Status.SUCCEEDED:
        logger.info(
            "Auto-recharge of customer %s: attempt %s %s", customer.id, charge.attempt.id, charge.attempt.status
        )
    return charge
