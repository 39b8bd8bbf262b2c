"""Payment sessions and the one payment service.

Paying a session, from whichever funding source, runs `payment_session_pay`: the
source's clearing account credits the customer's wallet, then whatever the session
covers is settled from the wallet (an activation: the subscription becomes active).
It runs exactly once per session however often or concurrently it is called.
"""

from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.core.errors import Conflict, Unprocessable
from apps.ledger.models import LedgerTransaction
from apps.ledger.services import Posting, clearing_account, ledger_post, wallet_get_or_create
from apps.subscriptions.models import PaymentSession, Subscription

TEST_SOURCE = "test"


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
    subscription: Subscription | None = None,
    invoice_id=None,
    success_url: str = "",
    cancel_url: str = "",
) -> PaymentSession:
    wallet = wallet or wallet_get_or_create(merchant=merchant, customer=customer, currency=currency)
    return PaymentSession.objects.create(
        merchant=merchant,
        purpose=purpose,
        mode=PaymentSession.Mode.SETUP if purpose == PaymentSession.Purpose.SETUP else PaymentSession.Mode.PAYMENT,
        amount=amount,
        currency=currency,
        customer=customer,
        wallet=wallet,
        subscription=subscription,
        invoice_id=invoice_id,
        expires_at=session_expiry(),
        success_url=success_url,
        cancel_url=cancel_url,
    )


def topup_session_create(*, merchant, customer, amount: Decimal, currency: str) -> PaymentSession:
    """A session that credits the customer's wallet in `currency` when paid."""
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
        )


def _settle(session: PaymentSession, now) -> None:
    """Settle what the session covers, once its money is on the wallet."""
    if session.purpose == PaymentSession.Purpose.ACTIVATION and session.subscription_id:
        Subscription.objects.filter(pk=session.subscription_id, status=Subscription.Status.PENDING_PAYMENT).update(
            status=Subscription.Status.ACTIVE, activated_at=now, updated_at=now
        )


def payment_session_pay(
    *, session_id, source: str, accept_expired: bool = False, merchant=None
) -> tuple[PaymentSession, bool]:
    """Record that the customer paid this session through `source` (test, stripe, chain:<name>).

    Returns (session, paid_now): paid_now is False when it had already been paid,
    in which case nothing moves. An expired session refuses payment unless the money
    has already arrived (`accept_expired`, for card and chain payments confirmed
    after the expiry: that money is credited all the same).
    """
    with transaction.atomic():
        queryset = PaymentSession.objects.all()
        if merchant is not None:
            queryset = queryset.filter(merchant=merchant)
        subscription_id = queryset.values_list("subscription_id", flat=True).get(pk=session_id)
        if subscription_id is not None:
            # the subscription before its session, as subscription_terminate locks them
            Subscription.objects.select_for_update(no_key=True).filter(pk=subscription_id).first()
        session = (
            queryset.select_for_update(no_key=True, of=("self",))
            .select_related("wallet", "merchant")
            .get(pk=session_id)
        )
        if session.status == PaymentSession.Status.PAID:
            return session, False
        now = timezone.now()
        expired = session.status == PaymentSession.Status.EXPIRED or session.expires_at <= now
        if expired and not accept_expired:
            raise Conflict(
                f"Payment session {session.id} expired at {session.expires_at.isoformat()}; create a new one.",
                code="PAYMENT_SESSION_EXPIRED",
            )
        if session.mode == PaymentSession.Mode.SETUP:
            raise Conflict(
                f"Payment session {session.id} sets up a payment method; it takes no payment.",
                code="PAYMENT_SESSION_IS_SETUP",
            )
        txn = None
        if session.amount > 0:
            txn = ledger_post(
                merchant=session.merchant,
                kind=LedgerTransaction.Kind.PAYMENT,
                currency=session.currency,
                postings=[
                    Posting(
                        clearing_account(source=source, currency=session.currency, livemode=session.merchant.livemode),
                        -session.amount,
                    ),
                    Posting(session.wallet.available_account, session.amount),
                ],
                reference=f"payment_session:{session.id}",
                description=f"{session.purpose} paid via {source}",
                metadata={"paymentSessionId": str(session.id), "source": source},
            )
        session.status = PaymentSession.Status.PAID
        session.paid_at = now
        session.paid_source = source
        session.ledger_transaction = txn
        session.save(update_fields=["status", "paid_at", "paid_source", "ledger_transaction", "updated_at"])
        _settle(session, now)
    return session, True


def payment_session_expire_due() -> int:
    """Mark pending sessions past their expiry as expired (a beat task runs this)."""
    now = timezone.now()
    return PaymentSession.objects.filter(status=PaymentSession.Status.PENDING, expires_at__lte=now).update(
        status=PaymentSession.Status.EXPIRED, updated_at=now
    )
