"""The purposes payments owns itself."""

from apps.payments.models import PaymentSession
from apps.payments.registry import PurposeHandler, register_purpose


class TopUpHandler(PurposeHandler):
    """A top-up's target is the wallet: crediting it is all there is to do."""


def register_own_purposes() -> None:
    register_purpose(PaymentSession.Purpose.TOP_UP, TopUpHandler())
