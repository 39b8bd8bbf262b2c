# the card tests' localstripe (one per test session) and the sandbox pointed at it
from tests.cards.conftest import localstripe, stripe_sandbox  # noqa: F401
