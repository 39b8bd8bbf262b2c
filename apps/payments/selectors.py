from django.db.models import QuerySet

from apps.core.errors import NotFound
from apps.payments.models import Adjustment, PaymentSession


def payment_session_get(*, merchant, session_id) -> PaymentSession:
    session = PaymentSession.objects.select_related("merchant").filter(merchant=merchant, pk=session_id).first()
    if session is None:
        raise NotFound(f"No payment session {session_id}.", code="PAYMENT_SESSION_NOT_FOUND")
    return session


def latest_sessions(*, purpose: str):
    """A queryset of sessions of one purpose, newest first (for a subscription's prefetch)."""
    return PaymentSession.objects.filter(purpose=purpose).order_by("-created_at", "-id")


def adjustment_list(*, merchant, customer) -> QuerySet[Adjustment]:
    """A customer's adjustments, newest first."""
    return (
        Adjustment.objects.filter(merchant=merchant, customer=customer)
        .select_related("merchant")
        .order_by("-created_at", "-id")
    )
