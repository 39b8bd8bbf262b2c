"""What paying an activation session does: the subscription it activates (registered on the
payments service by SubscriptionsConfig.ready)."""

from django.utils import timezone

from apps.payments.models import PaymentSession
from apps.payments.registry import PurposeHandler, register_purpose
from apps.subscriptions.hooks import activation_expired, activation_paid
from apps.subscriptions.models import Subscription
from apps.subscriptions.services.events import subscription_publish


class ActivationHandler(PurposeHandler):
    """Money for an activation pays what the start asks beside the prefund first (the start
    invoice, through the `on_activation_paid` hook); the prefund stays on the wallet (it is the
    customer's money for usage). Once the session is paid in full, the subscription waiting on it
    becomes active (subscription.activated, published in the payment's transaction). A session
    that expires unpaid is announced (`on_activation_expired`: the start invoice is voided)."""

    def lock_target(self, session) -> None:
        # the subscription before its session, as subscription_terminate locks them
        Subscription.objects.select_for_update(no_key=True).filter(pk=session.subscription_id).first()

    def payable(self, session) -> bool:
        return Subscription.objects.filter(
            pk=session.subscription_id, status=Subscription.Status.PENDING_PAYMENT
        ).exists()

    def apply(self, *, session, payment, amount, covered: bool) -> None:
        # what is due at the start beside the prefund (the start invoice) is paid first
        activation_paid(session, amount)
        if covered:
            now = timezone.now()
            activated = Subscription.objects.filter(
                pk=session.subscription_id, status=Subscription.Status.PENDING_PAYMENT
            ).update(status=Subscription.Status.ACTIVE, activated_at=now, updated_at=now)
            if activated:
                subscription = Subscription.objects.select_related("merchant", "wallet", "plan").get(
                    pk=session.subscription_id
                )
                subscription_publish(subscription=subscription, type="subscription.activated")

    def expired(self, session) -> None:
        activation_expired(session)


def register_purposes() -> None:
    register_purpose(PaymentSession.Purpose.ACTIVATION, ActivationHandler())
