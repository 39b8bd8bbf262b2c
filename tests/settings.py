"""Test settings: the production settings plus a test-only tenant app (tests.tenancy_app)."""

import os

os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production-" + "x" * 40)
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")

from billing_platform.settings import *  # noqa: E402,F403
from billing_platform.settings import INSTALLED_APPS  # noqa: E402

INSTALLED_APPS = [*INSTALLED_APPS, "tests.tenancy_app"]
ROOT_URLCONF = "tests.urls"
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Unit tests run tasks inline; integration tests start a real worker on Redis, which they
# start with CELERY_TASK_ALWAYS_EAGER=false so that tasks it queues go through Redis too.
CELERY_TASK_ALWAYS_EAGER = os.environ.get("CELERY_TASK_ALWAYS_EAGER", "true").lower() != "false"
CELERY_TASK_EAGER_PROPAGATES = True

# One test database per run, so that several suites can share one server at once.
DATABASES["default"]["TEST"] = {"NAME": os.environ.get("TEST_DATABASE_NAME", f"test_billing_{os.getpid()}")}  # noqa: F405

# The tests deliver webhooks to receivers on 127.0.0.1 (tests of the address rule set it back).
WEBHOOK_ALLOW_PRIVATE_URLS = "true"
# Tests relay and dispatch themselves, at the times they choose (one test wakes the relay).
WEBHOOK_WAKE_RELAY = False

# No Stripe account from a developer's .env leaks into the tests: the tests that use Stripe
# point a mode at the localstripe they start (tests/stripe_fixtures.py).
STRIPE_SECRET_KEY = STRIPE_PUBLISHABLE_KEY = STRIPE_WEBHOOK_SECRET = ""
STRIPE_TEST_SECRET_KEY = STRIPE_TEST_PUBLISHABLE_KEY = STRIPE_TEST_WEBHOOK_SECRET = ""

# Every test client shares one address (127.0.0.1), so the per-address limits of the public
# surfaces are off here; tests/core/test_public_limits.py turns each on.
PUBLIC_RATE_LIMITS = dict.fromkeys(PUBLIC_RATE_LIMITS, "0")  # noqa: F405

# No chain from a developer's .env either: the chain tests point a mode at the anvil they start
# (tests/chain_fixtures.py).
USDC_CHAINS = USDC_TEST_CHAINS = SANDBOX_CHAIN_UNAVAILABLE = ""
