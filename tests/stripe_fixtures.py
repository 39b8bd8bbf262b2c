"""The card tests' Stripe: localstripe started once per test session (a plugin of tests/conftest.py)."""

import secrets
import socket

import pytest
from django.test import override_settings

from billing_platform import localstripe_server


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def localstripe(tmp_path_factory):
    """localstripe on a free 127.0.0.1 port, for the whole test session, with its own empty store."""
    directory = tmp_path_factory.mktemp("localstripe")
    server = localstripe_server.start(
        port=_free_port(), store=directory / "store.pickle", log_path=directory / "localstripe.log"
    )
    yield server
    server.stop()


@pytest.fixture
def stripe_sandbox(localstripe):
    """The sandbox's Stripe settings pointed at localstripe (live stays unconfigured)."""
    config = {
        "STRIPE_TEST_SECRET_KEY": "sk_test_localstripe",
        "STRIPE_TEST_PUBLISHABLE_KEY": "pk_test_localstripe",
        "STRIPE_TEST_WEBHOOK_SECRET": f"whsec_{secrets.token_hex(16)}",
        "STRIPE_TEST_API_BASE": localstripe.url,
    }
    with override_settings(**config):
        yield config
