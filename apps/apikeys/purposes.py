"""What paying a tier_change session does (registered on the payments service by the app's
ready()): once paid in full, its subscription moves to the bought tier now (prorated)."""

from apps.apikeys.models import TierChange
from apps.apikeys.services import tier_change_apply
from apps.payments.models import PaymentSession
from apps.payments.registry import PurposeHandler, register_purpose
from apps.subscriptions.models import Subscription


class TierChangeHandler(PurposeHandler):
    def lock_target(self, session) -> None:
        # the subscription before its session, as plan changes and terminations lock them
        Subscription.objects.select_for_update(no_key=True).filter(pk=session.subscription_id).first()

    def payable(self, session) -> bool:
        return TierChange.objects.filter(
            session=session,
            applied_at__isnull=True,
            subscription__status__in=Subscription.CHARGEABLE,
        ).exists()

    def apply(self, *, session, payment, amount, covered: bool) -> None:
        if not covered:
            return  # (the money stays on the wallet until the rest arrives)
        change = TierChange.objects.select_for_update().filter(session=session, applied_at__isnull=True).first()
        if change is not None:
            tier_change_apply(change=change)


def register_purposes() -> None:
    register_purpose(PaymentSession.Purpose.TIER_CHANGE, TierChangeHandler())
