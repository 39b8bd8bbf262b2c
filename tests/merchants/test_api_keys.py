import pytest
from django.db import connection

from apps.merchants.models import ApiKey
from apps.merchants.services import api_key_create, api_key_revoke
from tests.conftest import Api
from tests.factories import issue_key


def test_merchants_me_reports_the_key_merchant(api):
    response = api.get("/v0/merchants/me")
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == str(api.merchant.id)
    assert body["livemode"] is True
    assert body["name"] == api.merchant.name
    assert body["contactEmail"] == api.merchant.contact_email
    assert body["commissionRate"] == "0.05"


def test_sandbox_key_reports_the_same_public_id_with_livemode_false(api, test_api):
    live = api.get("/v0/merchants/me").json()
    sandbox = test_api.get("/v0/merchants/me").json()
    assert sandbox["id"] == live["id"]
    assert sandbox["livemode"] is False
    assert test_api.secret.startswith("sk_test_")
    assert api.secret.startswith("sk_live_")


def test_database_never_holds_a_secret(merchant):
    key, secret = api_key_create(merchant=merchant, name="ci")
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM merchants_apikey")
        rows = cursor.fetchall()
    dump = repr(rows)
    assert secret not in dump
    assert secret[len(key.prefix) :] not in dump
    assert key.prefix in dump  # only the visible prefix is stored in the clear


@pytest.mark.parametrize(
    "header, code",
    [
        (None, "MISSING_API_KEY"),
        ("Bearer", "MALFORMED_AUTHORIZATION"),
        ("Basic abc", "MALFORMED_AUTHORIZATION"),
        ("Bearer sk_live_doesnotexist00000000000000000000", "INVALID_API_KEY"),
        ("Bearer pk_live_whatever", "INVALID_API_KEY"),
    ],
)
def test_missing_or_bad_key_is_401_with_a_clear_message(client, db, header, code):
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.get("/v0/merchants/me", **extra)
    assert response.status_code == 401
    body = response.json()
    assert body["code"] == code
    assert body["error"] == "authentication_error"
    assert body["message"]
    # the DRF views and the plain ingestion views name the scheme alike
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    usage = client.post("/v0/usage", data="{}", content_type="application/json", **extra)
    assert usage.status_code == 401 and usage.json()["code"] == code
    assert usage["WWW-Authenticate"] == 'Bearer realm="api"'


def test_a_key_with_a_right_prefix_and_wrong_secret_is_rejected(api, client):
    tampered = api.secret[:-4] + ("AAAA" if not api.secret.endswith("AAAA") else "BBBB")
    response = client.get("/v0/merchants/me", HTTP_AUTHORIZATION=f"Bearer {tampered}")
    assert response.status_code == 401
    assert response.json()["code"] == "INVALID_API_KEY"


def test_revoked_key_is_rejected(api):
    assert api.get("/v0/merchants/me").status_code == 200
    api_key_revoke(key=ApiKey.objects.get(merchant=api.merchant))
    response = api.get("/v0/merchants/me")
    assert response.status_code == 401
    assert response.json()["code"] == "API_KEY_REVOKED"


def test_last_used_time_is_recorded(api):
    key = ApiKey.objects.get(merchant=api.merchant)
    assert key.last_used_at is None
    api.get("/v0/merchants/me")
    key.refresh_from_db()
    assert key.last_used_at is not None


def test_merchant_id_mismatch_is_403(api, other_api):
    response = api.post("/v0/widgets", {"name": "w", "merchantId": str(other_api.merchant.id)})
    assert response.status_code == 403
    assert response.json()["code"] == "MERCHANT_MISMATCH"


def test_merchant_public_id_works_with_live_and_sandbox_keys(merchant, sandbox):
    for row in (merchant, sandbox):
        api = Api(issue_key(row), row)
        response = api.post("/v0/widgets", {"name": "w", "merchantId": str(merchant.id)})
        assert response.status_code == 201, response.json()
        assert response.json()["livemode"] is row.livemode


def test_sandbox_row_id_is_not_accepted_as_merchant_id(test_api, sandbox):
    response = test_api.post("/v0/widgets", {"name": "w", "merchantId": str(sandbox.id)})
    assert response.status_code == 403


def test_the_key_cache_lasts_as_long_as_the_setting_says_now(api, settings):
    """API_KEY_CACHE_SECONDS is read when a key is remembered, not when the module loads: a
    key changed behind the services' back is seen at once when the setting is 0."""
    from django.utils import timezone

    settings.API_KEY_CACHE_SECONDS = 0
    assert api.get("/v0/merchants/me").status_code == 200
    ApiKey.objects.filter(merchant=api.merchant).update(revoked_at=timezone.now())  # (no api_key_forget)
    assert api.get("/v0/merchants/me").status_code == 401
