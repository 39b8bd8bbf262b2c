"""POST /v0/subscriptions/{id}/portal and the single-use link it returns."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client

from apps.portal.models import PortalLink
from apps.portal.services import LinkRefused, portal_link_create, portal_link_open
from tests.factories import MerchantFactory, sandbox_of
from tests.portal.world import PortalWorld


@pytest.fixture
def world(sandbox):
    return PortalWorld(sandbox)


def _path(url: str) -> str:
    return url.split("://", 1)[1].split("/", 1)[1].join(["/", ""])


@pytest.mark.parametrize("body", [{}, {"expiresIn": None}])
def test_portal_link_defaults_to_15_minutes_and_stores_only_a_hash(world, time_machine, body):
    time_machine.move_to("2026-12-06T10:00:00Z", tick=False)
    response = world.api.post(f"/v0/subscriptions/{world.subscription.id}/portal", body)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["object"] == "subscriptionPortal"
    assert body["expiresAt"] == "2026-12-06T10:15:00Z"
    token = body["url"].rsplit("/", 1)[1]
    assert body["url"].startswith("http") and "/portal/open/pt_" in body["url"]
    link = PortalLink.objects.get()
    assert token not in link.token_hash and len(link.token_hash) == 64
    assert link.customer_id == world.customer.id and link.merchant_id == world.merchant.id


@pytest.mark.parametrize(
    ("expires_in", "seconds"),
    [(60, 60), ("PT1H", 3600), ("P1D", 86400), (86400, 86400), ("pt30m", 1800)],
)
def test_portal_link_takes_seconds_or_an_iso_8601_duration(world, time_machine, expires_in, seconds):
    time_machine.move_to("2026-12-06T10:00:00Z", tick=False)
    response = world.api.post(f"/v0/subscriptions/{world.subscription.id}/portal", {"expiresIn": expires_in})
    assert response.status_code == 201, response.content
    link = PortalLink.objects.get()
    assert (link.expires_at - link.created_at) == timedelta(seconds=seconds)


@pytest.mark.parametrize("expires_in", [0, -5, 86401, "PT25H", "P2D", "an hour", "01:00:00", 1.5, True, [60]])
def test_portal_link_refuses_a_bad_expiry_with_a_clear_message(world, expires_in):
    response = world.api.post(f"/v0/subscriptions/{world.subscription.id}/portal", {"expiresIn": expires_in})
    assert response.status_code == 400, response.content
    error = response.json()["errors"][0]
    assert error["field"] == "expiresIn"
    assert "seconds" in error["message"]
    assert not PortalLink.objects.exists()


def test_portal_link_of_another_merchant_or_mode_is_404(world, merchant):
    other = MerchantFactory()
    for stranger in (other, merchant):  # (merchant is the live twin of the world's sandbox)
        from tests.conftest import Api
        from tests.factories import issue_key

        response = Api(issue_key(stranger), stranger).post(f"/v0/subscriptions/{world.subscription.id}/portal", {})
        assert response.status_code == 404
        assert response.json()["code"] == "SUBSCRIPTION_NOT_FOUND"
    assert not PortalLink.objects.exists()


def test_a_link_opens_once_then_is_refused_with_410(world):
    url = world.link()
    first = Client()
    response = first.get(_path(url))
    assert response.status_code == 302 and response["Location"] == "/portal/"
    cookie = response.cookies["portal_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/portal/"
    assert not cookie["secure"]  # (plain http in tests; Secure over HTTPS below)
    assert first.get("/portal/").status_code == 200
    again = Client().get(_path(url))
    assert again.status_code == 410
    assert "already used" in again.content.decode()
    assert "portal_session" not in again.cookies or not again.cookies["portal_session"].value


@pytest.mark.parametrize(
    "agent",
    [
        "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
        "facebookexternalhit/1.1",
        "Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5",
        "WhatsApp/2.23.20.0",
    ],
)
def test_a_chat_apps_link_preview_does_not_use_the_link_up(world, agent):
    url = world.link()
    preview = Client(HTTP_USER_AGENT=agent).get(_path(url))
    assert preview.status_code == 200 and "portal_session" not in preview.cookies
    assert preview["X-Robots-Tag"] == "noindex, nofollow"
    assert PortalLink.objects.get().used_at is None
    assert Client().head(_path(url)).status_code == 405  # (a HEAD neither)
    opened = Client(HTTP_USER_AGENT="Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0").get(_path(url))
    assert opened.status_code == 302 and opened.cookies["portal_session"].value
    assert PortalLink.objects.get().used_at is not None


def test_the_cookie_is_secure_over_https(world):
    response = Client().get(_path(world.link()), secure=True)
    assert response.status_code == 302
    assert response.cookies["portal_session"]["secure"]


def test_an_expired_link_is_refused_with_410(world, time_machine):
    time_machine.move_to("2026-12-06T10:00:00Z", tick=False)
    url = world.link(expires_in=timedelta(minutes=5))
    time_machine.move_to("2026-12-06T10:05:00Z", tick=False)
    response = Client().get(_path(url))
    assert response.status_code == 410
    assert "expired" in response.content.decode()
    assert PortalLink.objects.get().used_at is None


def test_an_unknown_link_is_refused_with_404(db):
    for token in ("pt_nothing", "garbage", "pt_" + "x" * 200):
        response = Client().get(f"/portal/open/{token}")
        assert response.status_code == 404
        assert "does not exist" in response.content.decode()


def test_pages_without_a_session_are_refused_with_403(db):
    response = Client().get("/portal/")
    assert response.status_code == 403
    assert "session has ended" in response.content.decode()


def test_the_session_ends_after_30_idle_minutes_and_each_page_renews_it(world, time_machine):
    time_machine.move_to("2026-12-06T10:00:00Z", tick=True)
    client = world.client()
    time_machine.move_to("2026-12-06T10:29:00Z", tick=True)
    assert client.get("/portal/").status_code == 200  # renewed here
    time_machine.move_to("2026-12-06T10:58:00Z", tick=True)
    assert client.get("/portal/").status_code == 200
    time_machine.move_to("2026-12-06T11:29:00Z", tick=True)
    assert client.get("/portal/").status_code == 403


def test_a_tampered_cookie_is_refused(world):
    client = world.client()
    value = client.cookies["portal_session"].value
    client.cookies["portal_session"] = value[:-2] + ("AA" if not value.endswith("AA") else "BB")
    assert client.get("/portal/").status_code == 403


@pytest.mark.django_db(transaction=True)
def test_two_opens_at_once_start_one_session():
    world = PortalWorld(sandbox_of(MerchantFactory()))
    token = world.link().rsplit("/", 1)[1]
    barrier = threading.Barrier(2)
    results = []

    def open_it():
        try:
            barrier.wait()
            try:
                portal_link_open(token=token)
                results.append("opened")
            except LinkRefused as refused:
                results.append(refused.reason)
        finally:
            connection.close()

    threads = [threading.Thread(target=open_it) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["opened", "used"]


def test_links_are_per_subscription_customer(world):
    issued = portal_link_create(merchant=world.merchant, subscription=world.subscription, expires_in=timedelta(hours=1))
    assert issued.link.customer_id == world.subscription.customer_id
