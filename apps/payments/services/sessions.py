"""Payment sessions: creating them, and their expiry."""

from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.core.errors import Unprocessable
from apps.ledger.services import wallet_get_or_create
from apps.payments.models import PaymentSession
from apps.payments.registry import purpose_handler


def session_expiry():
    return timezone.now() + timedelta(seconds=settings.PAYMENT_SESSION_TTL_SECONDS)


def payment_session_create(
    *,
    merchant,
    purpose: str,
    amount: Decimal,
    currency: str,
    customer,
    wallet=None,
    subscription=None,
    invoice_id=None,
    success_url: str = "",
    cancel_url: str = "",
) -> PaymentSession:
    wallet = wallet or wallet_get_or_create(merchant=merchant, customer=customer, currency=currency)
    return PaymentSession.objects.create(
        **_session_fields(
            merchant=merchant,
            purpose=purpose,
            amount=amount,
            currency=currency,
            customer=customer,
            wallet=wallet,
            subscription=subscription,
            invoice_id=invoice_id,
            success_url=success_url,
            cancel_url=cancel_url,
        )
    )


def _session_fields(*, merchant, purpose: str, wallet, success_url: str = "", cancel_url: str = "", **fields) -> dict:
    return {
        "merchant": merchant,
        "purpose": purpose,
        "mode": PaymentSession.Mode.SETUP if purpose == PaymentSession.Purpose.SETUP else PaymentSession.Mode.PAYMENT,
        "wallet": wallet,
        "expires_at": session_expiry(),
        "success_url": success_url,
        "cancel_url": cancel_url,
        **fields,
    }


def payment_sessions_create(*, sessions: list[dict]) -> list[PaymentSession]:
    """Several sessions at once (one insert): each a dict of `payment_session_create`'s
    arguments, its wallet given."""
    rows = [PaymentSession(**_session_fields(**fields)) for fields in sessions]
    return PaymentSession.objects.bulk_create(rows)


def topup_session_create(
    *, merchant, customer, amount: Decimal, currency: str, success_url: str = "", cancel_url: str = ""
) -> PaymentSession:
    """A session that credits the customer's wallet in `currency` when paid; the checkout sends
    the customer back to `success_url` once paid (the portal's top-up does)."""
    if customer.archived_at is not None:
        raise Unprocessable(
            f"Customer {customer.id} is archived; its wallet takes no top-up.", code="CUSTOMER_ARCHIVED"
        )
    with transaction.atomic():
        return payment_session_create(
            merchant=merchant,
            purpose=PaymentSession.Purpose.TOP_UP,
            amount=amount,
            currency=currency,
            customer=customer,
            success_url=success_url,
            cancel_url=cancel_url,
        )


def payment_sessions_expire(*, sessions) -> int:
    """Expire these sessions now where still pending (their target ended: a subscription
    terminated). Run under the target's lock; money arriving later stays on the wallet. Each
    purpose's handler hears of it (`PurposeHandler.expired`)."""
    now = timezone.now()
    expired = 0
    for session in sessions.filter(status=PaymentSession.Status.PENDING).select_for_update().order_by("pk"):
        session.status = PaymentSession.Status.EXPIRED
        session.expires_at = now
        session.save(update_fields=["status", "expires_at", "updated_at"])
        purpose_handler(session.purpose).expired(session)
        expired += 1
    return expired


def payment_session_expire_due(*, limit: int = 1000) -> int:
    """Mark pending sessions past their expiry as expired, each in its own transaction with its
    target locked first, telling its purpose's handler (a beat task runs this)."""
    now = timezone.now()
    due = list(
        PaymentSession.objects.filter(status=PaymentSession.Status.PENDING, expires_at__lte=now)
        .order_by("expires_at")
        .values_list("pk", "purpose")[:limit]
    )
    expired = 0
    for session_id, purpose in due:
        handler = purpose_handler(purpose)
        with transaction.atomic():
            unlocked = PaymentSession.objects.get(pk=session_id)
            handler.lock_target(unlocked)
            session = PaymentSession.objects.select_for_update().get(pk=session_id)
            if session.status != PaymentSession.Status.PENDING or session.expires_at > now:
                continue
            session.status = PaymentSession.Status.EXPIRED
            session.save(update_fields=["status", "updated_at"])
            handler.expired(session)
            expired += 1
    return expired
