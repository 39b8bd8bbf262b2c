"""`make run`'s demo customer API key: on the free tier in the sandbox, printed with a curl that
verifies it; each run issues a fresh key and revokes the previous run's (a secret is shown once)."""

import re
import shlex
from io import StringIO

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from apps.apikeys.demo import DEMO_KEY_EMAIL, seed
from apps.apikeys.models import CustomerApiKey
from apps.apikeys.services import tier_checkout
from apps.apikeys.tiers import tier_get
from apps.apikeys.verify import verify
from apps.catalog.demo import seed as seed_catalog
from apps.core.demo import demo_seeders
from apps.merchants.models import Merchant
from tests.factories import pay_session

pytestmark = pytest.mark.django_db

KEY = re.compile(r"Customer API key:\s+(ak_test_\S+)")


def test_the_demo_key_is_on_free_in_the_sandbox_and_a_rerun_replaces_it(merchant, sandbox):
    assert seed(live=merchant, sandbox=sandbox) == []  # (no catalog yet: no tier to put a key on)
    seed_catalog(live=merchant, sandbox=sandbox)
    first_lines = seed(live=merchant, sandbox=sandbox)
    first = KEY.search("\n".join(first_lines))[1]
    assert f"({DEMO_KEY_EMAIL} in the sandbox, tier free: 10/s, 100 a month;" in "\n".join(first_lines)
    answer = verify(merchant=sandbox, secret=first, cost=1)
    assert (answer.code, answer.tier) == ("VALID", "free")
    assert verify(merchant=merchant, secret=first, cost=1).code == "NOT_FOUND"  # a sandbox key
    second = KEY.search("\n".join(seed(live=merchant, sandbox=sandbox)))[1]
    assert second != first
    assert verify(merchant=sandbox, secret=first, cost=1).code == "REVOKED"
    again = verify(merchant=sandbox, secret=second, cost=1)
    assert (again.code, again.used) == ("VALID", 2)  # the same subscription: its quota goes on
    keys = CustomerApiKey.objects.filter(merchant=sandbox)
    assert keys.count() == 2 and keys.filter(revoked_at__isnull=True).count() == 1
    assert {key.customer.email for key in keys} == {DEMO_KEY_EMAIL}


def test_a_tier_bought_while_trying_the_demo_is_kept_by_the_next_run(merchant, sandbox):
    seed_catalog(live=merchant, sandbox=sandbox)
    seed(live=merchant, sandbox=sandbox)
    key = CustomerApiKey.objects.get(merchant=sandbox)
    checkout = tier_checkout(subscription=key.subscription, tier=tier_get(merchant=sandbox, code="starter"))
    pay_session(checkout.session)
    lines = "\n".join(seed(live=merchant, sandbox=sandbox))
    assert "tier starter: 100/s, 10,000 a month" in lines
    assert verify(merchant=sandbox, secret=KEY.search(lines)[1], cost=1).tier == "starter"


def test_the_banner_prints_a_curl_that_verifies_the_key(db):
    assert seed in demo_seeders()
    out = StringIO()
    call_command("seed_demo", "--port", "8123", stdout=out)
    banner = out.getvalue()
    secret = KEY.search(banner)[1]
    (curl,) = [line.strip() for line in banner.splitlines() if "/v0/apiKeys/verify" in line]
    words = shlex.split(curl.removeprefix("Verify it:").strip())
    assert words[:4] == ["curl", "-X", "POST", "http://127.0.0.1:8123/v0/apiKeys/verify"]
    headers = dict(words[i + 1].split(": ", 1) for i, word in enumerate(words) if word == "-H")
    body = words[words.index("-d") + 1]
    assert secret in body
    client = APIClient()
    response = client.post(
        "/v0/apiKeys/verify",
        body,
        content_type=headers["Content-Type"],
        HTTP_AUTHORIZATION=headers["Authorization"],
    )
    assert response.status_code == 200, response.content
    answer = response.json()
    assert (answer["valid"], answer["code"], answer["tier"], answer["remaining"]) == (True, "VALID", "free", 99)
    sandbox = Merchant.objects.get(livemode=False, live_merchant__contact_email="billing@demo-api.example")
    assert answer["customerId"] == str(CustomerApiKey.objects.get(merchant=sandbox).customer_id)
