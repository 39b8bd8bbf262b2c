"""The portal's payment-methods page (Django's test client, against localstripe): a card added
through the hosted checkout's setup session and back, the default changed, a card removed after
a confirmation (detached in Stripe, the default moved), another customer's card a 404 in every
mode, the CSRF token on every form, and why a card cannot be added (no Stripe keys, no USD)."""

import pytest
from django.test import override_settings

from apps.cards.models import SavedCard
from apps.cards.stripe_client import stripe_client
from apps.ledger.selectors import ledger_check
from apps.payments.models import Payment, PaymentAttempt, PaymentSession
from tests.cards.test_card_path import GOOD, confirm_card_setup
from tests.checkout.test_checkout_card import Setup
from tests.factories import MerchantFactory, sandbox_of
from tests.portal.world import PortalWorld

# (localstripe names every test card a visa; its last 4 tell it apart)
SECOND = "5555555555554444"
pytestmark = pytest.mark.django_db


@pytest.fixture
def world(sandbox, stripe_sandbox):
    return PortalWorld(sandbox, currency="USD")


@pytest.fixture
def client(world):
    return world.client()


def html(response) -> str:
    return response.content.decode()


def add_card(client, number=GOOD) -> tuple[SavedCard, PaymentSession, dict]:
    """What the customer does: "Add a card" in the portal, then the checkout's card form (its
    endpoints, as checkout-card.js calls them, and Stripe.js's confirmCardSetup on localstripe)."""
    response = client.post("/portal/payment-methods/new")
    assert response.status_code == 302, html(response)
    session = PaymentSession.objects.filter(purpose=PaymentSession.Purpose.SETUP).order_by("-created_at").first()
    assert response["Location"].endswith(f"/checkout/{session.id}")
    answer = client.post(f"/checkout/{session.id}/card/setup")
    assert answer.status_code == 200, answer.content
    setup = Setup(answer.json())
    assert confirm_card_setup(setup, number).status_code == 200
    saved = client.post(
        f"/checkout/{session.id}/card/pay", {"setupIntentId": setup.setup_intent_id}, content_type="application/json"
    )
    assert saved.status_code == 200, saved.content
    card = SavedCard.objects.filter(customer=session.customer).order_by("-created_at").first()
    return card, session, saved.json()


def rows(client) -> list[tuple[str, bool]]:
    """The cards the page lists, in its order: ("Visa ending 4242", default?)."""
    page = html(client.get("/portal/payment-methods"))
    listed = []
    for chunk in page.split("<tr data-card=")[1:]:
        label = chunk.split('<td data-label="Card"><span>', 1)[1].split("</span>", 1)[0]
        listed.append((label, 'data-default="true"' in chunk.split(">", 1)[0]))
    return listed


def test_the_page_is_in_the_navigation_and_lists_no_card_yet(client):
    response = client.get("/portal/payment-methods")
    assert response.status_code == 200
    page = html(response)
    assert '<a href="/portal/payment-methods" aria-current="page">Payment methods</a>' in page
    assert 'data-testid="no-cards"' in page and 'action="/portal/payment-methods/new"' in page
    assert 'data-testid="unavailable"' not in page
    assert "Payment methods</a>" in html(client.get("/portal/"))


def test_a_card_added_through_the_checkout_setup_session_is_listed_as_the_default(world, client):
    response = client.post("/portal/payment-methods/new")
    session = PaymentSession.objects.get(purpose=PaymentSession.Purpose.SETUP)
    assert (session.mode, session.currency, session.customer_id, session.merchant_id) == (
        "setup",
        "USD",
        world.customer.id,
        world.merchant.id,
    )
    assert session.success_url.endswith("/portal/payment-methods?done=added")
    assert session.cancel_url.endswith("/portal/payment-methods")
    # the hosted checkout asks for a card and nothing else: no amount, no test payment
    checkout = html(client.get(response["Location"]))
    assert "Save card" in checkout and "Nothing is charged now" in checkout
    assert 'data-method="test"' not in checkout and 'data-testid="amount"' not in checkout
    session.delete()

    card, session, answer = add_card(client)
    # the checkout's form goes straight back to the portal's page
    assert answer == {"status": "saved", "card": {"brand": "visa", "last4": "4242"}, "redirect": session.success_url}
    session.refresh_from_db()
    assert session.status == "paid"
    page = html(client.get("/portal/payment-methods?done=added"))
    assert "Your card was saved." in page
    assert "Visa ending 4242" in page and "12/2034" in page and ">Default<" in page
    assert rows(client) == [("Visa ending 4242", True)]
    assert card.is_default and card.customer_id == world.customer.id
    # the checkout page of the done session says so
    assert "Your card was saved on" in html(client.get(f"/checkout/{session.id}"))
    assert not Payment.objects.filter(session__purpose=PaymentSession.Purpose.SETUP).exists()
    assert not PaymentAttempt.objects.filter(session__purpose=PaymentSession.Purpose.SETUP).exists()
    assert ledger_check() == []


def test_make_default_then_remove_the_default_moves_it_to_the_newest_card_left(world, client):
    first, _, _ = add_card(client)
    second, _, _ = add_card(client, SECOND)
    third, _, _ = add_card(client)
    assert rows(client) == [("Visa ending 4242", True), ("Visa ending 4242", False), ("Visa ending 4444", False)]

    response = client.post(f"/portal/payment-methods/{second.id}/default")
    assert (response.status_code, response["Location"]) == (302, "/portal/payment-methods?done=default")
    assert "Your default card was changed." in html(client.get(response["Location"]))
    assert rows(client)[0] == ("Visa ending 4444", True)
    assert [c.pk for c in SavedCard.objects.filter(is_default=True)] == [second.pk]
    # again: nothing changes
    assert client.post(f"/portal/payment-methods/{second.id}/default").status_code == 302
    assert [c.pk for c in SavedCard.objects.filter(is_default=True)] == [second.pk]

    # removing the default: the confirmation names the card that becomes the default
    confirm = html(client.get(f"/portal/payment-methods/{second.id}/remove"))
    assert "Visa ending 4444" in confirm and "Visa ending 4242 becomes your default" in confirm
    response = client.post(f"/portal/payment-methods/{second.id}/remove")
    assert (response.status_code, response["Location"]) == (302, "/portal/payment-methods?done=removed")
    assert "The card was removed." in html(client.get(response["Location"]))
    second.refresh_from_db()
    assert second.removed_at is not None and not second.is_default
    # detached from the customer in Stripe, after the commit
    pm = stripe_client(livemode=False).v1.payment_methods.retrieve(second.stripe_payment_method_id)
    assert pm.customer is None
    third.refresh_from_db()
    assert third.is_default and rows(client) == [("Visa ending 4242", True), ("Visa ending 4242", False)]

    # a card that is not the default: the default stays; the last card: no default at all
    assert client.post(f"/portal/payment-methods/{first.id}/remove").status_code == 302
    assert rows(client) == [("Visa ending 4242", True)]
    last = html(client.get(f"/portal/payment-methods/{third.id}/remove"))
    assert "no card is left to pay your invoices" in last
    assert client.post(f"/portal/payment-methods/{third.id}/remove").status_code == 302
    assert rows(client) == [] and not SavedCard.objects.filter(is_default=True).exists()
    assert ledger_check() == []


def test_remove_asks_first_and_the_same_form_sent_twice_removes_once(client):
    card, _, _ = add_card(client)
    confirm = client.get(f"/portal/payment-methods/{card.id}/remove")
    assert confirm.status_code == 200
    page = html(confirm)
    assert "Remove this card?" in page and "Visa ending 4242" in page
    assert f'action="/portal/payment-methods/{card.id}/remove"' in page and 'name="csrfmiddlewaretoken"' in page
    card.refresh_from_db()
    assert card.removed_at is None  # asking removed nothing
    assert client.post(f"/portal/payment-methods/{card.id}/remove").status_code == 302
    card.refresh_from_db()
    removed_at = card.removed_at
    assert removed_at is not None
    again = client.post(f"/portal/payment-methods/{card.id}/remove")
    assert (again.status_code, again["Location"]) == (302, "/portal/payment-methods?done=removed")
    card.refresh_from_db()
    assert card.removed_at == removed_at
    # a removed card cannot be made the default, nor asked about
    assert client.post(f"/portal/payment-methods/{card.id}/default").status_code == 404
    assert client.get(f"/portal/payment-methods/{card.id}/remove").status_code == 404


def test_another_customers_card_is_a_404_in_every_mode_and_changes_nothing(world, client, merchant):
    mine, _, _ = add_card(client)
    neighbour = PortalWorld(world.merchant, email="bob@example.com", currency="USD")
    theirs, _, _ = add_card(neighbour.client())
    elsewhere = PortalWorld(sandbox_of(MerchantFactory()), email="cy@example.com", currency="USD")
    foreign, _, _ = add_card(elsewhere.client())
    for card in (theirs, foreign):
        for method, suffix in (("post", "default"), ("get", "remove"), ("post", "remove")):
            response = getattr(client, method)(f"/portal/payment-methods/{card.id}/{suffix}")
            assert response.status_code == 404, (card, method, suffix)
            assert "There is nothing here for your account." in html(response)
    assert client.get("/portal/payment-methods/not-a-uuid/remove").status_code == 404
    assert rows(client) == [("Visa ending 4242", True)]
    assert SavedCard.objects.filter(removed_at__isnull=False).count() == 0
    assert SavedCard.objects.filter(is_default=True).count() == 3

    # the live twin of the same merchant, for a customer with the same email: none of the sandbox's cards
    live = PortalWorld(merchant, email=world.customer.email, currency="USD")
    live_client = live.client()
    assert rows(live_client) == []
    assert live_client.post(f"/portal/payment-methods/{mine.id}/default").status_code == 404
    assert live_client.post(f"/portal/payment-methods/{mine.id}/remove").status_code == 404
    mine.refresh_from_db()
    assert mine.removed_at is None and mine.is_default
    assert ledger_check() == []


@pytest.mark.parametrize("action", ["new", "default", "remove"])
def test_every_payment_method_form_needs_the_csrf_token(world, client, action):
    card, _, _ = add_card(client)
    sessions = PaymentSession.objects.count()
    guarded = world.client(enforce_csrf_checks=True)
    path = "/portal/payment-methods/new" if action == "new" else f"/portal/payment-methods/{card.id}/{action}"
    assert guarded.post(path).status_code == 403
    assert PaymentSession.objects.count() == sessions
    card.refresh_from_db()
    assert card.removed_at is None and card.is_default
    # the page's own forms carry the token
    page = html(guarded.get("/portal/payment-methods"))
    assert (
        page.count('name="csrfmiddlewaretoken"') == 2
    )  # (sign out, add a card; the default card has no "make default")
    token = guarded.cookies["csrftoken"].value
    assert guarded.post(path, {"csrfmiddlewaretoken": token}).status_code == 302


def test_without_stripe_keys_in_live_the_page_says_why_and_adds_nothing(merchant, settings):
    settings.STRIPE_SECRET_KEY = ""
    settings.STRIPE_PUBLISHABLE_KEY = ""
    settings.STRIPE_WEBHOOK_SECRET = ""
    live = PortalWorld(merchant, currency="USD")
    client = live.client()
    page = html(client.get("/portal/payment-methods"))
    assert "Sandbox" not in page
    assert 'data-testid="unavailable"' in page
    assert "Card payments are not available: Stripe is not configured for live" in page
    assert "STRIPE_SECRET_KEY" in page
    assert 'action="/portal/payment-methods/new"' not in page
    refused = client.post("/portal/payment-methods/new")
    assert refused.status_code == 503 and "Card payments are not available" in html(refused)
    assert not PaymentSession.objects.filter(purpose=PaymentSession.Purpose.SETUP).exists()
    assert ledger_check() == []


def test_a_live_key_of_the_wrong_kind_is_named(merchant):
    with override_settings(
        STRIPE_SECRET_KEY="sk_test_wrong", STRIPE_PUBLISHABLE_KEY="pk_live_x", STRIPE_WEBHOOK_SECRET="whsec_x"
    ):
        page = html(PortalWorld(merchant, currency="USD").client().get("/portal/payment-methods"))
    assert "STRIPE_SECRET_KEY is not a sk_live_... key" in page


def test_a_customer_without_a_usd_wallet_sees_why_and_adds_nothing(sandbox, stripe_sandbox):
    usdc = PortalWorld(sandbox)
    client = usdc.client()
    page = html(client.get("/portal/payment-methods"))
    assert 'data-testid="unavailable"' in page
    assert "Cards pay amounts in USD only" in page and "billed in USDC" in page
    assert 'action="/portal/payment-methods/new"' not in page
    refused = client.post("/portal/payment-methods/new")
    assert refused.status_code == 409 and "Cards pay amounts in USD only" in html(refused)
    assert not PaymentSession.objects.filter(purpose=PaymentSession.Purpose.SETUP).exists()
    assert ledger_check() == []


def test_an_expired_card_is_marked_expired(client):
    card, _, _ = add_card(client)
    SavedCard.objects.filter(pk=card.pk).update(exp_month=1, exp_year=2020)
    page = html(client.get("/portal/payment-methods"))
    assert "01/2020" in page and "(expired)" in page
    SavedCard.objects.filter(pk=card.pk).update(exp_month=12, exp_year=2034)
    assert "(expired)" not in html(client.get("/portal/payment-methods"))


@pytest.mark.django_db(transaction=True)
def test_remove_detaches_the_card_in_stripe_outside_any_transaction(sandbox, stripe_sandbox, monkeypatch):
    from django.db import connection

    from apps.cards.services import payment_methods

    world = PortalWorld(sandbox, currency="USD")
    client = world.client()
    card, _, _ = add_card(client)
    seen = []
    real = payment_methods.stripe_client

    def watched(*, livemode):
        # (what the card's row says at the moment Stripe is called: removed and committed)
        seen.append((connection.in_atomic_block, SavedCard.objects.get(pk=card.pk).removed_at is not None))
        return real(livemode=livemode)

    monkeypatch.setattr(payment_methods, "stripe_client", watched)
    assert client.post(f"/portal/payment-methods/{card.id}/remove").status_code == 302
    assert seen == [(False, True)]
    assert stripe_client(livemode=False).v1.payment_methods.retrieve(card.stripe_payment_method_id).customer is None
    assert ledger_check() == []
