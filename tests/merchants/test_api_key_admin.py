"""A new API key's secret is shown once, on a page of its own: never in a message, a cookie or
the session, and never stored as it is (the row keeps an HMAC of it)."""

import re

import pytest
from django.test import Client
from django.urls import reverse

from apps.core.redis import get_redis
from apps.core.secrets import hash_secret
from apps.merchants.models import ApiKey
from apps.merchants.services import merchant_staff_create
from tests.conftest import Api
from tests.factories import MerchantFactory

SECRET_PAGE = re.compile(r"^/admin/merchants/apikey/([0-9a-f-]+)/secret/([A-Za-z0-9_-]+)/$")


@pytest.fixture(autouse=True)
def _no_held_secrets(db):
    client = get_redis()
    for key in client.scan_iter("admin:secret-reveal:*"):
        client.delete(key)


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def staff(merchant):
    return logged_in(
        merchant_staff_create(merchant=merchant, username="sam", email="sam@m.example", password="pw-1234567")
    )


def held_entries() -> list[bytes]:
    client = get_redis()
    return [client.get(key) for key in client.scan_iter("admin:secret-reveal:*")]


def everything_sent(response) -> str:
    return "\n".join([response.content.decode(), str(response.headers), response.cookies.output()])


def test_creating_a_key_shows_its_secret_once_on_its_own_page(staff, merchant):
    created = staff.post(reverse("admin:merchants_apikey_add"), {"name": "ci"})
    assert created.status_code == 302
    key = ApiKey.objects.get(name="ci")
    assert key.merchant == merchant and key.rate_limit is None  # rate_limit: the operator's field
    location = created["Location"]
    assert SECRET_PAGE.match(location)[1] == str(key.pk)
    held = held_entries()
    session_before = str(dict(staff.session.items()))

    page = staff.get(location)
    assert page.status_code == 200
    assert "no-store" in page["Cache-Control"] and page["Referrer-Policy"] == "no-referrer"
    secret = page.context["secret"]
    assert secret.startswith(key.prefix) and secret.startswith("sk_live_") and secret in page.content.decode()
    assert Api(secret, merchant).get("/v0/merchants/me").status_code == 200

    # Only the page showed it: not the POST's answer, its cookies, the messages or the session.
    assert secret not in everything_sent(created)
    assert not [str(m) for m in page.context["messages"] if secret in str(m)]
    assert secret not in session_before and secret not in str(dict(staff.session.items()))
    assert len(held) == 1 and secret.encode() not in held[0]  # held sealed, and gone once shown
    assert held_entries() == []
    # stored as an HMAC of the secret, with its visible prefix
    assert key.secret_hash == hash_secret(secret) != secret
    assert not [f.name for f in ApiKey._meta.concrete_fields if secret in str(getattr(key, f.attname))]

    for again in (staff.get(location), staff.get(location)):  # a reload, a later visit
        assert again.status_code == 410
        assert again.context["secret"] is None and secret not in again.content.decode()
        assert "already shown" in again.content.decode()


def test_the_secret_page_is_only_for_its_key_and_its_merchant(staff, merchant):
    location = staff.post(reverse("admin:merchants_apikey_add"), {"name": "ci"})["Location"]
    key_id, token = SECRET_PAGE.match(location).groups()
    other = MerchantFactory()
    stranger = logged_in(
        merchant_staff_create(merchant=other, username="eve", email="e@o.example", password="pw-1234567")
    )
    assert stranger.get(location).status_code == 404  # another merchant's key: not found, and not spent
    other_key = staff.post(reverse("admin:merchants_apikey_add"), {"name": "other"})
    other_key_id = SECRET_PAGE.match(other_key["Location"])[1]
    mixed = staff.get(reverse("admin:merchants_apikey_secret", args=[other_key_id, token]))
    assert mixed.status_code == 410 and mixed.context["secret"] is None
    assert staff.get(location.replace(token, token[:-2])).status_code == 410
    assert staff.get(reverse("admin:merchants_apikey_secret", args=[key_id, "%%%"])).status_code == 410


def test_rolling_a_key_shows_the_new_secret_once_and_revokes_the_old(staff, merchant, api):
    old_key = ApiKey.objects.get(merchant=merchant)
    data = {"action": "roll_key", "index": 0, "_selected_action": [str(old_key.pk)]}
    rolled = staff.post(reverse("admin:merchants_apikey_changelist"), data)
    assert rolled.status_code == 302
    new_id = SECRET_PAGE.match(rolled["Location"])[1]
    page = staff.get(rolled["Location"])
    secret = page.context["secret"]
    assert secret not in everything_sent(rolled)
    new_key = ApiKey.objects.get(pk=new_id)
    assert (new_key.name, new_key.rate_limit, new_key.revoked_at) == (old_key.name, old_key.rate_limit, None)
    old_key.refresh_from_db()
    assert old_key.revoked_at is not None
    assert api.get("/v0/merchants/me").status_code == 401
    assert Api(secret, merchant).get("/v0/merchants/me").status_code == 200
    assert staff.get(rolled["Location"]).status_code == 410
    # a revoked key is not rolled again
    refused = staff.post(reverse("admin:merchants_apikey_changelist"), data, follow=True)
    assert any("revoked" in str(m) for m in refused.context["messages"])
    assert ApiKey.objects.filter(merchant=merchant).count() == 2
