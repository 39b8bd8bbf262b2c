"""The portal in headless Chromium (Debian `chromium`, driven by Playwright for Python): open a
link, see balance and usage, download an invoice PDF, top up through the sandbox's test payment,
create and revoke an API key, be refused a used link, an expired link and another customer's
invoice; save cards through the hosted checkout's card form (localstripe's Stripe.js stand-in),
make one the default, remove one; axe-core on every page; screenshots at 1280 and 375 px under
artifacts/portal/."""

import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from apps.catalog.demo import seed_catalog
from apps.entitlements.services import EntitlementRequest, entitlement_create
from tests.factories import MerchantFactory, sandbox_of
from tests.portal.world import PortalWorld

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(django_settings.BASE_DIR) / "artifacts" / "portal"
WIDTHS = (1280, 375)
PAGES = [
    ("overview", "/portal/"),
    ("usage", "/portal/usage"),
    ("invoices", "/portal/invoices"),
    ("top-up", "/portal/top-up"),
    ("keys", "/portal/keys"),
    ("disputes", "/portal/disputes"),
    ("payment-methods", "/portal/payment-methods"),
]

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing: `make test` installs it"),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def browser(monkeypatch):
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are sync
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from django.db import connections
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield browser
        finally:
            browser.close()
            # (the database connections this test's thread opened while Playwright's loop ran
            # are this context's own: closed here, or the test database could not be dropped)
            connections.close_all()


@pytest.fixture
def site(live_server, settings):
    settings.PUBLIC_BASE_URL = live_server.url
    merchant = sandbox_of(MerchantFactory(name="Judge Zero"))
    seed_catalog(merchant=merchant)
    world = PortalWorld(merchant)
    entitlement_create(
        merchant=merchant,
        customer=world.customer,
        requests=[EntitlementRequest(billable_metric_id=world.metric.pk, quantity=os_decimal("2"), price=None)],
    )
    return world


def os_decimal(text):
    from decimal import Decimal

    return Decimal(text)


class Watched:
    """A page whose console errors (a CSP refusal is one) and failed requests are collected."""

    def __init__(self, context):
        self.page = context.new_page()
        self.problems = []
        self.page.on("console", lambda m: m.type == "error" and self.problems.append(m.text))
        self.page.on("pageerror", lambda e: self.problems.append(str(e)))


def _axe_serious(page) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def test_portal_end_to_end_in_chromium(browser, site, live_server):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    link = site.link()
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, accept_downloads=True, timezone_id="America/New_York"
    )
    watched = Watched(context)
    page = watched.page

    # open the link: the overview, with the balance (10 - 1.50 used - 0.50 held) and the usage
    response = page.goto(link)
    assert response.status == 200 and page.url == f"{live_server.url}/portal/"
    expect(page.get_by_test_id("balance-USDC")).to_contain_text("8.000000 USDC")
    expect(page.get_by_test_id("balance-USDC")).to_contain_text("0.500000 USDC held")
    expect(page.get_by_test_id("period-usage")).to_contain_text(site.metric.name)
    expect(page.get_by_test_id("period-usage")).to_contain_text("1.500000 USDC")
    # times shown in the browser's zone (New York here), UTC kept in the title
    first_time = page.locator("time[data-local]").first
    assert first_time.get_attribute("title").endswith(" UTC")
    assert "UTC" not in first_time.inner_text() and "EST" in first_time.inner_text()

    page.get_by_role("link", name="Usage").click()
    expect(page.get_by_test_id("metric")).to_contain_text(site.metric.name)
    expect(page.get_by_test_id("metric").locator("tfoot")).to_contain_text("6")
    chart = page.locator("figure.chart img")
    expect(chart).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=chart.element_handle())

    # the invoice's PDF
    page.get_by_role("link", name="Invoices").click()
    with page.expect_download() as download:
        page.get_by_role("link", name=f"PDF of invoice {site.invoice.number}").click()
    pdf = Path(download.value.path()).read_bytes()
    assert pdf.startswith(b"%PDF")

    # top up 25 through the hosted checkout's test payment, back to the new balance
    page.get_by_role("link", name="Top up", exact=True).first.click()
    page.get_by_label("Amount").fill("25")
    page.get_by_role("button", name="Continue to payment").click()
    assert "/checkout/" in page.url
    page.get_by_role("button", name="(test)").click()
    expect(page.get_by_role("status")).to_contain_text("payment was received")
    expect(page.get_by_test_id("balance-USDC")).to_contain_text("33.000000 USDC")

    # an API key: created and shown once, then revoked
    page.get_by_role("link", name="API keys").click()
    page.get_by_label("Name of the new key").fill("ci runner")
    page.get_by_role("button", name="Create a key").click()
    secret = page.get_by_test_id("secret").input_value()
    assert secret.startswith("ak_test_")
    page.get_by_role("link", name="API keys").click()
    expect(page.get_by_test_id("secret")).to_have_count(0)
    page.get_by_role("button", name="Revoke").click()
    expect(page.get_by_test_id("keys")).to_contain_text("Revoked")

    # a dispute on a usage event, then its status
    page.get_by_role("link", name="Disputes").click()
    page.get_by_label("What is wrong").fill("This call failed on your side.")
    page.get_by_role("button", name="Open dispute").click()
    expect(page.get_by_role("status")).to_contain_text("Your dispute was sent")
    expect(page.get_by_test_id("disputes")).to_contain_text("Open")

    # every page: no serious accessibility violation, no console error (CSP), screenshots
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        for name, path in PAGES:
            response = page.goto(f"{live_server.url}{path}")
            assert response.status == 200, name
            page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)
            assert _axe_serious(page) == [], f"{name} at {width}px"
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{name} at {width}px scrolls sideways by {overflow}px"
    assert watched.problems == []

    # another customer's invoice: 404
    stranger = PortalWorld(site.merchant, email="bob@example.com")
    response = page.goto(f"{live_server.url}/portal/invoices/{stranger.invoice.id}/pdf")
    assert response.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
    page.screenshot(path=str(ARTIFACTS / "not-found-375.png"), full_page=True)

    # the same link again, in another browser: refused
    other = browser.new_context(viewport={"width": 375, "height": 800})
    again = other.new_page()
    response = again.goto(link)
    assert response.status == 410
    expect(again.get_by_role("heading", level=1)).to_have_text("This portal link was already used")
    assert _axe_serious(again) == []
    again.screenshot(path=str(ARTIFACTS / "refused-used-375.png"), full_page=True)
    response = again.goto(f"{live_server.url}/portal/")
    assert response.status == 403

    # an expired link: refused
    short = site.link(expires_in=timedelta(seconds=1))
    time.sleep(1.2)
    response = again.goto(short)
    assert response.status == 410
    expect(again.get_by_role("heading", level=1)).to_have_text("This portal link has expired")
    again.screenshot(path=str(ARTIFACTS / "refused-expired-1280.png"), full_page=True)
    other.close()
    context.close()
    assert os.listdir(ARTIFACTS)


@pytest.fixture
def card_site(live_server, settings, stripe_sandbox):
    settings.PUBLIC_BASE_URL = live_server.url
    return PortalWorld(sandbox_of(MerchantFactory(name="Card Shop")), email="cards@example.com", currency="USD")


def _check_page(page, name):
    """axe, no sideways scroll, screenshots at both widths."""
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)
        assert _axe_serious(page) == [], f"{name} at {width}px"
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{name} at {width}px scrolls sideways by {overflow}px"
    page.set_viewport_size({"width": 1280, "height": 900})


def test_payment_methods_add_make_default_and_remove_in_chromium(browser, card_site, live_server, localstripe):
    from playwright.sync_api import expect

    from apps.cards.models import SavedCard
    from apps.cards.stripe_client import stripe_client
    from apps.ledger.selectors import ledger_check
    from tests.checkout.test_card_browser import GOOD, fill_card

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    watched = Watched(context)
    page = watched.page
    page.goto(card_site.link())
    page.get_by_role("link", name="Payment methods").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Payment methods")
    expect(page.get_by_test_id("no-cards")).to_be_visible()
    _check_page(page, "payment-methods-empty")

    def add(number):
        page.get_by_role("button", name="Add a card").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Save a payment method")
        assert "/checkout/" in page.url
        expect(page.get_by_role("button", name="(test)")).to_have_count(0)  # a setup session pays nothing
        fill_card(page, number)
        page.get_by_role("button", name="Save card").click()
        # the checkout's form leads straight back to the portal
        expect(page.get_by_role("status")).to_have_text("Your card was saved.")
        assert page.url == f"{live_server.url}/portal/payment-methods?done=added"

    # the first card: listed, the default
    page.get_by_role("button", name="Add a card").click()
    expect(page.locator("#card-needs-js")).to_be_hidden()
    _check_page(page, "payment-methods-checkout")
    page.go_back()
    add(GOOD)
    cards = page.get_by_test_id("cards")
    expect(cards.locator("tbody tr")).to_have_count(1)
    expect(cards.locator("tr[data-default]")).to_contain_text("Visa ending 4242")
    expect(cards.locator("tr[data-default]")).to_contain_text("12/2034")
    expect(cards.locator("tr[data-default]")).to_contain_text("Default")

    # a second card (localstripe calls every test card a visa): saved beside it, not the default
    add("5555555555554444")
    expect(cards.locator("tbody tr")).to_have_count(2)
    expect(cards.locator("tr[data-default]")).to_contain_text("ending 4242")

    # make the second the default
    page.get_by_role("button", name="Make default: Visa ending 4444").click()
    expect(page.get_by_role("status")).to_have_text("Your default card was changed.")
    expect(cards.locator("tr[data-default]")).to_contain_text("ending 4444")
    expect(cards.locator("tbody tr").first).to_contain_text("ending 4444")
    _check_page(page, "payment-methods-two-cards")

    # remove the first, after the confirmation
    page.get_by_role("link", name="Remove Visa ending 4242").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Remove this card?")
    _check_page(page, "payment-methods-remove")
    page.get_by_role("button", name="Remove card").click()
    expect(page.get_by_role("status")).to_have_text("The card was removed.")
    expect(cards.locator("tbody tr")).to_have_count(1)
    expect(cards.locator("tr[data-default]")).to_contain_text("ending 4444")
    _check_page(page, "payment-methods-one-card")

    removed = SavedCard.objects.get(last4="4242")
    kept = SavedCard.objects.get(last4="4444")
    assert removed.removed_at is not None and not removed.is_default
    assert kept.removed_at is None and kept.is_default and kept.customer_id == card_site.customer.id
    assert stripe_client(livemode=False).v1.payment_methods.retrieve(removed.stripe_payment_method_id).customer is None
    assert watched.problems == []
    context.close()
    assert ledger_check() == []


def test_a_balance_below_zero_shows_what_the_customer_owes(browser, live_server, settings):
    """A refund of money already spent leaves the balance below zero: the overview says what the
    customer owes, readably and accessibly, at both widths."""
    from playwright.sync_api import expect

    from apps.payments.models import Payment
    from apps.payments.services import payment_refund

    settings.PUBLIC_BASE_URL = live_server.url
    world = PortalWorld(sandbox_of(MerchantFactory(name="Judge Zero")))
    funding = Payment.objects.get(customer=world.customer)
    # the 10 that funded the wallet given back whole after 1.50 was spent
    payment_refund(
        source=funding.source,
        payment_reference=funding.external_reference,
        refund_reference="re_portal_owed",
        amount=funding.amount,
        clearing="test",
        livemode=False,
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    watched = Watched(context)
    page = watched.page
    assert page.goto(world.link()).status == 200
    expect(page.get_by_test_id("balance-USDC")).to_contain_text("-1.500000 USDC")
    expect(page.get_by_test_id("owed-USDC")).to_contain_text("You owe 1.500000 USDC")
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.reload()
        page.screenshot(path=str(ARTIFACTS / f"owed-{width}.png"), full_page=True)
        assert _axe_serious(page) == [], f"owed at {width}px"
        assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    assert watched.problems == []
    context.close()
    from apps.ledger.selectors import ledger_check

    assert ledger_check() == []
