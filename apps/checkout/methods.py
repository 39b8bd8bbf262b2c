"""What the hosted checkout offers for a session: each way of paying and whether it is available."""

from dataclasses import dataclass

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
        methods.append(PaymentMethod("card", "Card", False, "Card payments are not yet available on this platform."))
    if session.currency == "USDC":
        methods.append(
            PaymentMethod("usdc", "USDC on chain", False, "USDC payments are not yet available on this platform.")
        )
    if not session.merchant.livemode:
        methods.append(
            PaymentMethod("test", "Test payment", True, "Sandbox only: pays what is due, as if the customer had paid.")
        )
    return methods
