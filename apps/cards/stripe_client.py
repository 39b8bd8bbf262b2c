"""Stripe per mode: its settings (STRIPE_* for live, STRIPE_TEST_* for the sandbox) and a client.

Each mode has a `stripe.StripeClient` of its own, with its own key and API base (Stripe, or
localstripe for an offline sandbox), so nothing is shared between modes through the SDK's
module-level globals. A mode without its keys offers no card payments; `card_unavailable_reason`
says why, in words a person can act on."""

import threading
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

import stripe
from django.conf import settings

from apps.core.money import currency_decimals, round_amount

# Card payments are in USD (design.md); Stripe counts it in cents.
CARD_CURRENCY = "USD"


class CardUnavailable(Exception):
    """The card path cannot run in this mode; the message says why."""


@dataclass(frozen=True)
class StripeSettings:
    livemode: bool
    secret_key: str
    publishable_key: str
    webhook_secret: str
    api_base: str
    timeout: float
    max_network_retries: int

    @property
    def prefix(self) -> str:
        return "STRIPE_" if self.livemode else "STRIPE_TEST_"


def stripe_settings(*, livemode: bool) -> StripeSettings:
    prefix = "STRIPE_" if livemode else "STRIPE_TEST_"
    return StripeSettings(
        livemode=livemode,
        secret_key=getattr(settings, f"{prefix}SECRET_KEY"),
        publishable_key=getattr(settings, f"{prefix}PUBLISHABLE_KEY"),
        webhook_secret=getattr(settings, f"{prefix}WEBHOOK_SECRET"),
        api_base=getattr(settings, f"{prefix}API_BASE"),
        timeout=settings.STRIPE_TIMEOUT_SECONDS,
        max_network_retries=settings.STRIPE_MAX_NETWORK_RETRIES,
    )


def card_unavailable_reason(*, livemode: bool) -> str | None:
    """Why the card path cannot run in this mode, or None when it can."""
    config = stripe_settings(livemode=livemode)
    mode = "live" if livemode else "the sandbox"
    missing = [
        f"{config.prefix}{name}"
        for name, value in (
            ("SECRET_KEY", config.secret_key),
            ("PUBLISHABLE_KEY", config.publishable_key),
            ("WEBHOOK_SECRET", config.webhook_secret),
        )
        if not value
    ]
    if missing:
        return f"Stripe is not configured for {mode} ({', '.join(missing)} not set)."
    expected_secret, expected_publishable = ("sk_live_", "pk_live_") if livemode else ("sk_test_", "pk_test_")
    if not config.secret_key.startswith(expected_secret):
        return f"{config.prefix}SECRET_KEY is not a {expected_secret}... key, as {mode} needs."
    if not config.publishable_key.startswith(expected_publishable):
        return f"{config.prefix}PUBLISHABLE_KEY is not a {expected_publishable}... key, as {mode} needs."
    if not config.api_base.startswith(("https://", "http://")):
        return f"{config.prefix}API_BASE is not an http(s) address."
    return None


_clients: dict[StripeSettings, stripe.StripeClient] = {}
_clients_lock = threading.Lock()


def stripe_client(*, livemode: bool) -> stripe.StripeClient:
    """The mode's client (one per distinct configuration, kept by the process); raises
    CardUnavailable when the mode is not configured."""
    reason = card_unavailable_reason(livemode=livemode)
    if reason is not None:
        raise CardUnavailable(reason)
    config = stripe_settings(livemode=livemode)
    with _clients_lock:
        client = _clients.get(config)
        if client is None:
            client = stripe.StripeClient(
                config.secret_key,
                base_addresses={"api": config.api_base},
                # a request without an answer (a timeout, a dropped connection) or a 5xx is sent
                # again with the same idempotency key, so Stripe does it once
                max_network_retries=config.max_network_retries,
                http_client=stripe.RequestsClient(timeout=config.timeout),
            )
            _clients[config] = client
        return client


def to_minor_units(amount: Decimal, currency: str) -> int:
    """An amount due to the card in the currency's minor unit (cents), rounded up: what is
    asked of a card never falls short of what is due (design.md)."""
    return int(amount.scaleb(currency_decimals(currency.upper())).to_integral_value(rounding=ROUND_CEILING))


def from_minor_units(amount: int, currency: str) -> Decimal:
    """What Stripe reports (an integer of minor units) as an exact amount."""
    return round_amount(Decimal(int(amount)).scaleb(-currency_decimals(currency.upper())))
