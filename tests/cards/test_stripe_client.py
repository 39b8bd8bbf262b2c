"""Stripe's configuration per mode: what makes a mode unavailable, and amounts in cents."""

from decimal import Decimal

import pytest
from django.test import override_settings

from apps.cards.stripe_client import (
    CardUnavailable,
    card_unavailable_reason,
    from_minor_units,
    stripe_client,
    to_minor_units,
)

SANDBOX_KEYS = {
    "STRIPE_TEST_SECRET_KEY": "sk_test_abc",
    "STRIPE_TEST_PUBLISHABLE_KEY": "pk_test_abc",
    "STRIPE_TEST_WEBHOOK_SECRET": "whsec_abc",
    "STRIPE_TEST_API_BASE": "http://127.0.0.1:9",
}


def test_a_mode_without_keys_is_unavailable_naming_the_missing_settings():
    assert card_unavailable_reason(livemode=True) == (
        "Stripe is not configured for live (STRIPE_SECRET_KEY, STRIPE_PUBLISHABLE_KEY, STRIPE_WEBHOOK_SECRET not set)."
    )
    assert card_unavailable_reason(livemode=False).startswith(
        "Stripe is not configured for the sandbox (STRIPE_TEST_SECRET_KEY, "
    )
    with pytest.raises(CardUnavailable, match="not configured for live"):
        stripe_client(livemode=True)


def test_the_sandbox_configured_leaves_live_unavailable():
    with override_settings(**SANDBOX_KEYS):
        assert card_unavailable_reason(livemode=False) is None
        assert stripe_client(livemode=False) is stripe_client(livemode=False)
        assert card_unavailable_reason(livemode=True) is not None


def test_a_test_key_cannot_serve_live_nor_a_live_key_the_sandbox():
    with override_settings(
        STRIPE_SECRET_KEY="sk_test_abc", STRIPE_PUBLISHABLE_KEY="pk_live_abc", STRIPE_WEBHOOK_SECRET="whsec_x"
    ):
        assert card_unavailable_reason(livemode=True) == ("STRIPE_SECRET_KEY is not a sk_live_... key, as live needs.")
    with override_settings(**{**SANDBOX_KEYS, "STRIPE_TEST_PUBLISHABLE_KEY": "pk_live_abc"}):
        assert card_unavailable_reason(livemode=False) == (
            "STRIPE_TEST_PUBLISHABLE_KEY is not a pk_test_... key, as the sandbox needs."
        )


def test_each_configuration_has_a_client_of_its_own():
    with override_settings(**SANDBOX_KEYS):
        first = stripe_client(livemode=False)
    with override_settings(**{**SANDBOX_KEYS, "STRIPE_TEST_API_BASE": "http://127.0.0.1:10"}):
        assert stripe_client(livemode=False) is not first


@pytest.mark.parametrize(
    ("amount", "cents"),
    [
        (Decimal("10"), 1000),
        (Decimal("0.01"), 1),
        (Decimal("0.011"), 2),
        (Decimal("0.010000000001"), 2),
        (Decimal("12.345000000000"), 1235),
    ],
)
def test_amounts_due_to_a_card_are_rounded_up_to_the_cent(amount, cents):
    assert to_minor_units(amount, "USD") == cents


def test_what_stripe_reports_in_cents_is_exact():
    assert from_minor_units(1235, "usd") == Decimal("12.35")
    assert from_minor_units(1, "USD") == Decimal("0.01")
