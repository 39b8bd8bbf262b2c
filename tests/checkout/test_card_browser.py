"""The checkout's card form in headless Chromium (Debian `chromium`, Playwright for Python with
executable_path) against localstripe's Stripe.js stand-in: an activation paid by card makes the
subscription active; a card declined at setup shows the error and leaves it pending; a card that
requires authentication goes through confirmCardPayment and is decided by the server again.
axe-core on the page; the CSP names Stripe.js's origin and nothing else; screenshots at 1280 and
375 px under artifacts/checkout/."""

from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from apps.ledger.selectors import ledger_check
from apps.payments.models import Payment, PaymentSession
from apps.subscriptions.models import Subscription
from apps.subscriptions.services import subscription_create
from tests.factories import MerchantFactory, make_customer, make_plan, sandbox_of
from tests.portal.test_browser import CHROMIUM, Watched, _axe_serious, browser  # noqa: F401 (the fixture)

ARTIFACTS = Path(django_settings.BASE_DIR) / "artifacts" / "checkout"
GOOD = "4242424242424242"
DECLINED = "4000000000000002"
AUTHENTICATE = "4000002500003155"

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing: `make test` installs it"),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def activation(live_server, settings, stripe_sandbox):
    settings.PUBLIC_BASE_URL = live_server.url
    merchant = sandbox_of(MerchantFactory(name="Card Shop"))
    plan = make_plan(merchant, currency="USD")

    def make(email):
        subscription = subscription_create(
            merchant=merchant, customer=make_customer(merchant, email=email), plan=plan, prefund_amount=Decimal("25")
        )
        return PaymentSession.objects.get(subscription=subscription)

    return make


def fill_card(page, number):
    page.get_by_label("Card number").fill(number)
    page.get_by_label("Expiry month (MM)").fill("12")
    page.get_by_label("Expiry year (YY)").fill("34")
    page.get_by_label("Security code (CVC)").fill("123")
    page.get_by_label("Postal code").fill("10001")


def test_an_activation_paid_by_card_in_chromium(browser, activation, live_server, localstripe):  # noqa: F811
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    watched = Watched(context)
    page = watched.page
    session = activation("declined@example.com")

    response = page.goto(f"{live_server.url}/checkout/{session.id}")
    policy = response.headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    assert directives["script-src"] == f"'self' {localstripe.url}"
    assert directives["connect-src"] == f"'self' {localstripe.url}"
    assert "frame-src" not in directives  # the stand-in opens no frame
    expect(page.locator("#card-needs-js")).to_be_hidden()
    expect(page.get_by_role("button", name="Pay 25.00 USD by card")).to_be_visible()
    for width in (1280, 375):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(ARTIFACTS / f"card-form-{width}.png"), full_page=True)
        assert _axe_serious(page) == [], f"card form at {width}px"
        assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0

    # declined when the card is set up: the error is shown, nothing is charged, still pending
    fill_card(page, DECLINED)
    page.get_by_role("button", name="Pay 25.00 USD by card").click()
    expect(page.get_by_role("alert")).to_contain_text("declined")
    page.screenshot(path=str(ARTIFACTS / "card-declined-375.png"), full_page=True)
    assert Subscription.objects.get(pk=session.subscription_id).status == "pending_payment"
    assert not Payment.objects.exists()

    # a good card on a fresh page: paid, active
    session = activation("good@example.com")
    page.set_viewport_size({"width": 375, "height": 800})
    page.goto(f"{live_server.url}/checkout/{session.id}")
    fill_card(page, GOOD)
    page.get_by_role("button", name="Pay 25.00 USD by card").click()
    expect(page.get_by_test_id("status")).to_contain_text("Paid on")
    page.screenshot(path=str(ARTIFACTS / "card-paid-375.png"), full_page=True)
    subscription = Subscription.objects.get(pk=session.subscription_id)
    assert subscription.status == "active"
    payment = Payment.objects.get(session=session)
    assert (payment.source, payment.amount) == ("card", Decimal("25.00"))
    page.set_viewport_size({"width": 1280, "height": 900})
    page.screenshot(path=str(ARTIFACTS / "card-paid-1280.png"), full_page=True)

    # a card that requires authentication: Stripe.js's confirmCardPayment, then the server decides
    session = activation("3ds@example.com")
    page.goto(f"{live_server.url}/checkout/{session.id}")
    fill_card(page, AUTHENTICATE)
    page.get_by_role("button", name="Pay 25.00 USD by card").click()
    # (localstripe asks for it when the card is set up, then again when it is charged)
    page.get_by_role("button", name="Complete authentication").click()
    expect(page.get_by_role("status")).to_contain_text("Your bank asks you to confirm this payment")
    page.screenshot(path=str(ARTIFACTS / "card-authenticate-1280.png"), full_page=True)
    page.get_by_role("button", name="Complete authentication").click()
    expect(page.get_by_test_id("status")).to_contain_text("Paid on")
    assert Subscription.objects.get(pk=session.subscription_id).status == "active"
    # the one console error: the browser's own report of the declined card's 402 from localstripe
    assert [p for p in watched.problems if "402 (Payment Required)" not in p] == []
    assert ledger_check() == []


def test_without_javascript_the_page_says_card_needs_it(browser, activation, live_server):  # noqa: F811
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 375, "height": 800}, java_script_enabled=False)
    page = context.new_page()
    page.goto(f"{live_server.url}/checkout/{activation('nojs@example.com').id}")
    expect(page.locator("#card-needs-js")).to_contain_text("Paying by card needs JavaScript")
    expect(page.locator("#card-form")).to_be_hidden()
    page.screenshot(path=str(ARTIFACTS / "card-no-javascript-375.png"), full_page=True)


def test_a_page_reloaded_while_its_card_payment_runs_says_so_and_shows_the_outcome(
    browser,  # noqa: F811
    activation,
    live_server,
    client,
):
    """The checkout opened again while a card payment of it is in flight does not offer to pay
    again (a second payment would be refused, 409 PAYMENT_IN_FLIGHT): it says a payment is being
    processed, asks the server for its outcome, and shows it: paid (charged once), or, for a
    card that waits for the bank's authentication, the authentication to complete."""
    from playwright.sync_api import expect

    from tests.cards.test_refunds_disputes import attempt_confirmed_in_stripe_only

    session = activation("reloaded@example.com")
    # a card payment started in an earlier page, confirmed in Stripe, its outcome not heard yet
    attempt, _ = attempt_confirmed_in_stripe_only(session, GOOD)
    # as the server renders it: the form disabled by the script while it asks for the outcome
    html = client.get(f"/checkout/{session.id}").content.decode()
    assert f'data-in-flight="{attempt.id}"' in html
    assert "is still being processed. Do not pay again" in html

    context = browser.new_context(viewport={"width": 375, "height": 900})
    watched = Watched(context)
    page = watched.page
    page.goto(f"{live_server.url}/checkout/{session.id}")
    expect(page.get_by_test_id("status")).to_contain_text("Paid on")
    page.screenshot(path=str(ARTIFACTS / "card-reloaded-paid-375.png"), full_page=True)
    assert Payment.objects.filter(session=session).count() == 1
    assert Subscription.objects.get(pk=session.subscription_id).status == "active"

    # a card that waits for authentication: the page takes the customer through it again
    session = activation("reloaded-3ds@example.com")
    attempt_confirmed_in_stripe_only(session, AUTHENTICATE)  # (waits for the bank's authentication)
    page.goto(f"{live_server.url}/checkout/{session.id}")
    expect(page.get_by_test_id("card-progress")).to_contain_text("Your bank asks you to confirm this payment")
    expect(page.get_by_role("button", name="Pay 25.00 USD by card")).to_be_disabled()
    page.screenshot(path=str(ARTIFACTS / "card-reloaded-authenticate-375.png"), full_page=True)
    page.get_by_role("button", name="Complete authentication").click()
    expect(page.get_by_test_id("status")).to_contain_text("Paid on")
    assert Payment.objects.filter(session=session).count() == 1
    assert watched.problems == []
    assert ledger_check() == []
