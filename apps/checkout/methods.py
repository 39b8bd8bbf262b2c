"""What the hosted checkout offers for a session: each way of paying and whether it is available."""

from dataclasses import dataclass

from apps.cards.stripe_client import card_unavailable_reason
from apps.payments.models import PaymentSession


@dataclass(frozen=True)
class PaymentMethod:
    name: str
    label: str
    available: bool
    note: str


def payment_methods(session: PaymentSession) -> list[PaymentMethod]:
    methods = []
    if session.currency == "USD":
        # the page's card form (Stripe.js) comes with the rest of issue 17; until then the
        # card is offered by no page, configured or not
        reason = card_unavailable_reason(livemode=session.merchant.livemode) or (
            "this checkout page does not collect cards yet."
        )
        methods.append(PaymentMethod("card", "Card", False, f"Card unavailable: {reason}"))
    if session.currency == "USDC":
        methods.append(
            PaymentMethod("usdc", "USDC on chain", False, "USDC payments are not yet available on this platform.")
        )
    if not session.merchant.livemode:
        methods.append(
            PaymentMethod("test", "Test payment", True, "Sandbox only: pays what is due, as if the customer had paid.")
        )
    return methods
