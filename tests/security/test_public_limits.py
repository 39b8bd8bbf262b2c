"""Per-address rate limits on every public surface (apps.core.ratelimit): past each limit, 429 with
Retry-After; requests with a valid key never count against the API's."""

import json

import pytest
from django.test import Client

from apps.core.redis import get_redis

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_counters():
    client = get_redis()
    for key in client.scan_iter("ratelimit:ip:*"):
        client.delete(key)
    yield
    for key in client.scan_iter("ratelimit:ip:*"):
        client.delete(key)


def limit(settings, scope: str, text: str) -> None:
    settings.PUBLIC_RATE_LIMITS = {**settings.PUBLIC_RATE_LIMITS, scope: text}


def assert_429(response, *, json_body: bool):
    assert response.status_code == 429, response.content
    wait = int(response["Retry-After"])
    assert 1 <= wait <= 60
    if json_body:
        body = response.json()
        assert body["code"] == "RATE_LIMITED" and body["details"]["retryAfter"] == wait
        assert f"retry in {wait} s" in body["message"]
    else:
        # a page a person reads: what happened, when to try again, and it reloads itself then
        assert response["Content-Type"] == "text/html; charset=utf-8"
        html = response.content.decode()
        assert "<h1>Too many requests</h1>" in html and f"retry in {wait} s" in html
        # a GET reloads itself once the wait is over; after a POST the form is sent again by hand
        refresh = f'<meta http-equiv="refresh" content="{wait}">'
        assert (refresh in html) == (response.wsgi_request.method == "GET")


def test_api_requests_without_a_key_are_limited_per_address(settings):
    limit(settings, "api_unauthenticated", "3/60")
    client = Client()
    for _ in range(3):
        assert client.get("/v0/customers").status_code == 401
    assert_429(client.get("/v0/customers"), json_body=True)
    # another address is not affected
    assert Client(REMOTE_ADDR="10.0.0.7").get("/v0/customers").status_code == 401


def test_api_keys_that_do_not_authenticate_count_and_past_the_limit_answer_429(settings):
    limit(settings, "api_unauthenticated", "2/60")
    guesser = Client(HTTP_AUTHORIZATION="Bearer sk_test_" + "x" * 32)
    assert guesser.get("/v0/merchants/me").status_code == 401
    assert guesser.get("/v0/merchants/me").status_code == 401
    assert_429(guesser.get("/v0/merchants/me"), json_body=True)
    assert_429(Client().get("/v0/merchants/me"), json_body=True)  # no key at all: refused first


def test_valid_keys_never_count_against_the_address_limit(settings, api):
    limit(settings, "api_unauthenticated", "1/60")
    for _ in range(5):
        assert api.get("/v0/merchants/me").status_code == 200
    assert not list(get_redis().scan_iter("ratelimit:ip:*"))


def test_the_schema_and_docs_are_limited_per_address(settings):
    limit(settings, "api_unauthenticated", "1/60")
    client = Client()
    assert client.get("/v0/schema").status_code == 200
    assert_429(client.get("/v0/docs"), json_body=True)


def test_portal_links_are_limited_per_address(settings):
    limit(settings, "portal_link", "2/60")
    client = Client()
    for _ in range(2):
        assert client.get("/portal/open/pt_" + "y" * 32).status_code == 404
    assert_429(client.get("/portal/open/pt_" + "z" * 32), json_body=False)


def test_portal_pages_are_limited_per_address(settings):
    limit(settings, "portal", "2/60")
    client = Client()
    for _ in range(2):
        assert client.get("/portal/").status_code == 403  # no portal session
    assert_429(client.get("/portal/invoices"), json_body=False)


def test_checkout_pages_and_actions_have_their_own_limits(settings):
    limit(settings, "checkout", "2/60")
    limit(settings, "checkout_actions", "1/60")
    client = Client()
    page = "/checkout/00000000-0000-0000-0000-000000000000"
    for _ in range(2):
        assert client.get(page).status_code == 404
    assert_429(client.get(page), json_body=False)
    assert client.post(f"{page}/test-payment").status_code in (403, 404)  # (CSRF or no session: not limited yet)
    assert_429(client.post(f"{page}/card/pay"), json_body=False)
    # the page's own scripts send JSON and read the error envelope's message
    assert_429(client.post(f"{page}/card/pay", "{}", content_type="application/json"), json_body=True)


def test_inbound_webhooks_are_limited_per_address(settings):
    limit(settings, "webhooks", "2/60")
    client = Client()
    body = json.dumps({"id": "evt_1", "type": "payment_intent.succeeded"})
    for _ in range(2):
        assert client.post("/webhooks/stripe", body, content_type="application/json").status_code == 400
    assert_429(client.post("/webhooks/stripe", body, content_type="application/json"), json_body=True)


def test_a_limit_of_0_is_off(settings):
    limit(settings, "portal_link", "0")
    client = Client()
    for _ in range(30):
        assert client.get("/portal/open/pt_" + "y" * 32).status_code == 404


def test_behind_trusted_proxies_each_client_is_counted_by_the_address_the_outermost_proxy_saw(settings):
    """Behind TRUSTED_PROXY_COUNT proxies the rate limits count by the X-Forwarded-For entry the
    outermost one appended: two clients behind one proxy are counted apart, and what a client
    puts in the header itself (entries further left) changes nothing."""
    from django.test import RequestFactory

    from apps.core.ratelimit import client_address

    limit(settings, "api_unauthenticated", "2/60")
    proxy = Client(REMOTE_ADDR="10.0.0.2")
    # without trusted proxies: every client behind the proxy shares its address
    assert [proxy.get("/v0/customers", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}").status_code for n in (1, 2, 3)] == [
        401,
        401,
        429,
    ]
    settings.TRUSTED_PROXY_COUNT = 1
    for _ in range(2):
        assert proxy.get("/v0/customers", HTTP_X_FORWARDED_FOR="203.0.113.7").status_code == 401
    # the same client with made-up addresses on the left is still the one the proxy saw
    assert_429(proxy.get("/v0/customers", HTTP_X_FORWARDED_FOR="198.51.100.1, 203.0.113.7"), json_body=True)
    assert proxy.get("/v0/customers", HTTP_X_FORWARDED_FOR="203.0.113.8").status_code == 401

    request = RequestFactory(REMOTE_ADDR="10.0.0.2")
    assert client_address(request.get("/", HTTP_X_FORWARDED_FOR="1.1.1.1, 203.0.113.9")) == "203.0.113.9"
    assert client_address(request.get("/")) == "10.0.0.2"  # no header: the connection's
    assert client_address(request.get("/", HTTP_X_FORWARDED_FOR="not-an-address")) == "10.0.0.2"
    # a client that reaches the web process directly (not from a proxy's network) names nothing
    direct = RequestFactory(REMOTE_ADDR="198.51.100.20")
    assert client_address(direct.get("/", HTTP_X_FORWARDED_FOR="203.0.113.9")) == "198.51.100.20"
    settings.TRUSTED_PROXY_COUNT = 2  # a load balancer, then nginx
    assert client_address(request.get("/", HTTP_X_FORWARDED_FOR="1.1.1.1, 203.0.113.9, 10.0.0.1")) == "203.0.113.9"
    assert client_address(request.get("/", HTTP_X_FORWARDED_FOR="203.0.113.9")) == "10.0.0.2"  # too few: not trusted


def test_ipv6_clients_are_counted_by_their_64_network(settings):
    limit(settings, "api_unauthenticated", "2/60")
    assert Client(REMOTE_ADDR="2001:db8:1:2::1").get("/v0/customers").status_code == 401
    assert Client(REMOTE_ADDR="2001:db8:1:2:ffff::9").get("/v0/customers").status_code == 401
    # another address of the same /64 is the same client
    assert_429(Client(REMOTE_ADDR="2001:db8:1:2:abcd::5").get("/v0/customers"), json_body=True)
    assert Client(REMOTE_ADDR="2001:db8:1:3::1").get("/v0/customers").status_code == 401  # another network


def test_the_admins_lockout_counts_by_the_same_client_address(settings):
    from axes.helpers import get_client_ip_address
    from django.test import RequestFactory

    settings.TRUSTED_PROXY_COUNT = 1
    request = RequestFactory(REMOTE_ADDR="10.0.0.2").post("/admin/login/", HTTP_X_FORWARDED_FOR="203.0.113.5")
    assert get_client_ip_address(request) == "203.0.113.5"
    settings.TRUSTED_PROXY_COUNT = 0
    assert get_client_ip_address(request) == "10.0.0.2"
