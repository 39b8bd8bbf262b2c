"""What the hosted checkout offers for a session: each way of paying and whether it is available."""

from dataclasses import dataclass
from urllib.parse import urlsplit

from apps.cards.stripe_client import card_unavailable_reason, stripe_settings
from apps.payments.chains import usdc_unavailable_reason
from apps.payments.models import PaymentSession

STRIPE_JS = "https://js.stripe.com/v3/"
STRIPE_API = "https://api.stripe.com"
# The frames Stripe.js opens (its card fields, 3D Secure): Stripe's own origins.
STRIPE_FRAMES = ("https://js.stripe.com", "https://hooks.stripe.com")


@dataclass(frozen=True)
class PaymentMethod:
    name: str
    label: str
    available: bool
    note: str


def stripe_js_url(*, livemode: bool) -> str:
    """Stripe.js, or the stand-in that a Stripe-compatible server (localstripe) serves itself."""
    base = stripe_settings(livemode=livemode).api_base
    return STRIPE_JS if base == STRIPE_API else f"{base}/js.stripe.com/v3/"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def card_csp(*, livemode: bool) -> dict:
    """What the checkout page's Content-Security-Policy adds for its card form: Stripe.js's
    origin as a script source, the API it talks to, and Stripe's frames (localstripe's stand-in
    opens none); nothing else."""
    script = _origin(stripe_js_url(livemode=livemode))
    api = _origin(stripe_settings(livemode=livemode).api_base)
    policy = {"script-src": [script], "connect-src": [api]}
    if script == _origin(STRIPE_JS):
        policy["frame-src"] = list(STRIPE_FRAMES)
    return policy


def payment_methods(session: PaymentSession) -> list[PaymentMethod]:
    methods = []
    if session.currency == "USD":
        reason = card_unavailable_reason(livemode=session.merchant.livemode)
        if reason is None:
            methods.append(
                PaymentMethod("card", "Card", True, "Visa, Mastercard and other cards, processed by Stripe.")
            )
        else:
            methods.append(PaymentMethod("card", "Card", False, f"Card unavailable: {reason}"))
    if session.currency == "USDC" and session.mode == PaymentSession.Mode.PAYMENT:
        reason = usdc_unavailable_reason(livemode=session.merchant.livemode)
        if reason is None:
            methods.append(
                PaymentMethod(
                    "usdc",
                    "USDC on chain",
                    True,
                    "Send USDC from a wallet you hold; the payment counts once the chain confirms it.",
                )
            )
        else:
            methods.append(PaymentMethod("usdc", "USDC on chain", False, f"USDC unavailable: {reason}"))
    if not session.merchant.livemode and session.mode != PaymentSession.Mode.SETUP:
        # (a setup session asks for a card, not for money: the test payment has nothing to pay)
        methods.append(
            PaymentMethod("test", "Test payment", True, "Sandbox only: pays what is due, as if the customer had paid.")
        )
    return methods
