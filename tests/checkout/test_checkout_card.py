"""The checkout's card endpoints, as its Stripe.js form calls them, against localstripe."""

from decimal import Decimal

import pytest

from apps.cards.models import SavedCard
from apps.ledger.selectors import ledger_check
from apps.payments.models import Payment
from apps.payments.services import topup_session_create
from apps.webhooks.models import Event
from tests.cards.test_card_path import DECLINED_AT_SETUP, FAILS_WHEN_CHARGED, GOOD, confirm_card_setup
from tests.factories import make_customer

D = Decimal


class Setup:
    def __init__(self, answer):
        self.setup_intent_id = answer["setupIntentId"]
        self.client_secret = answer["clientSecret"]
        self.publishable_key = answer["publishableKey"]
        self.api_base = answer["stripeJsUrl"].removesuffix("/js.stripe.com/v3/")


@pytest.fixture
def topup(sandbox, stripe_sandbox):
    session = topup_session_create(merchant=sandbox, customer=make_customer(sandbox), amount=D("7.50"), currency="USD")
    session.success_url = "https://shop.example/ok"
    session.save(update_fields=["success_url"])
    return session


def pay(client, session, number):
    answer = client.post(f"/checkout/{session.id}/card/setup")
    assert answer.status_code == 200, answer.content
    setup = Setup(answer.json())
    confirm_card_setup(setup, number)
    return client.post(
        f"/checkout/{session.id}/card/pay", {"setupIntentId": setup.setup_intent_id}, content_type="application/json"
    )


@pytest.mark.django_db
def test_the_checkout_pays_a_top_up_by_card(client, topup, localstripe):
    answer = client.post(f"/checkout/{topup.id}/card/setup").json()
    assert answer["stripeJsUrl"] == f"{localstripe.url}/js.stripe.com/v3/"
    assert answer["publishableKey"] == "pk_test_localstripe"
    response = pay(client, topup, GOOD)
    assert response.status_code == 200
    answer = response.json()
    assert answer == {
        "status": "succeeded",
        "paymentAttemptId": answer["paymentAttemptId"],
        "failureReason": None,
        "paymentSessionStatus": "paid",
        "redirect": "https://shop.example/ok",
        "nextAction": None,
    }
    assert Payment.objects.get().amount == D("7.50")
    assert Event.objects.filter(type="payment.succeeded").count() == 1
    assert ledger_check() == []
    # paid: no more card for it
    assert client.post(f"/checkout/{topup.id}/card/setup").json()["code"] == "PAYMENT_SESSION_CLOSED"


@pytest.mark.django_db
def test_a_card_declined_at_setup_or_when_charged_leaves_the_session_payable(client, topup):
    response = pay(client, topup, DECLINED_AT_SETUP)
    assert (response.status_code, response.json()["code"]) == (402, "CARD_NOT_SAVED")
    response = pay(client, topup, FAILS_WHEN_CHARGED)
    assert response.status_code == 200
    assert response.json()["status"] == "failed"
    assert response.json()["paymentSessionStatus"] == "pending"
    assert response.json()["failureReason"] == "Your card was declined."
    assert pay(client, topup, GOOD).json()["paymentSessionStatus"] == "paid"
    assert SavedCard.objects.count() == 2


@pytest.mark.django_db
def test_the_browser_cannot_claim_a_setup_it_did_not_confirm(client, topup):
    setup = client.post(f"/checkout/{topup.id}/card/setup").json()
    response = client.post(
        f"/checkout/{topup.id}/card/pay", {"setupIntentId": setup["setupIntentId"]}, content_type="application/json"
    )
    assert (response.status_code, response.json()["code"]) == (402, "CARD_NOT_SAVED")
    response = client.post(f"/checkout/{topup.id}/card/pay", "nope", content_type="application/json")
    assert response.status_code == 400
    assert not Payment.objects.exists()


@pytest.mark.django_db
def test_without_sandbox_keys_the_card_endpoints_answer_503_with_the_reason(client, sandbox):
    session = topup_session_create(merchant=sandbox, customer=make_customer(sandbox), amount=D("5"), currency="USD")
    response = client.post(f"/checkout/{session.id}/card/setup")
    assert response.status_code == 503
    assert response.json()["message"].startswith("Card unavailable: Stripe is not configured for the sandbox")


def _csp(response) -> dict:
    policy = response["Content-Security-Policy"]
    return dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())


@pytest.mark.django_db
def test_the_page_offers_the_card_form_and_its_csp_names_only_stripe_js(client, topup, localstripe):
    response = client.get(f"/checkout/{topup.id}")
    html = response.content.decode()
    assert 'id="card-form"' in html and f'src="{localstripe.url}/js.stripe.com/v3/"' in html
    assert "Paying by card needs JavaScript" in html
    directives = _csp(response)
    assert directives["script-src"] == f"'self' {localstripe.url}"
    assert directives["connect-src"] == f"'self' {localstripe.url}"
    assert "frame-src" not in directives


@pytest.mark.django_db
def test_with_stripe_itself_the_csp_adds_its_script_api_and_frames_only(client, merchant, settings):
    settings.STRIPE_SECRET_KEY = "sk_live_x"
    settings.STRIPE_PUBLISHABLE_KEY = "pk_live_x"
    settings.STRIPE_WEBHOOK_SECRET = "whsec_x"
    session = topup_session_create(merchant=merchant, customer=make_customer(merchant), amount=D("5"), currency="USD")
    response = client.get(f"/checkout/{session.id}")
    assert 'src="https://js.stripe.com/v3/"' in response.content.decode()
    directives = _csp(response)
    assert directives["script-src"] == "'self' https://js.stripe.com"
    assert directives["connect-src"] == "'self' https://api.stripe.com"
    assert directives["frame-src"] == "https://js.stripe.com https://hooks.stripe.com"
    assert directives["default-src"] == "'none'"


@pytest.mark.django_db
def test_live_without_keys_says_card_is_unavailable_with_the_reason(client, merchant):
    session = topup_session_create(merchant=merchant, customer=make_customer(merchant), amount=D("5"), currency="USD")
    response = client.get(f"/checkout/{session.id}")
    html = response.content.decode()
    assert response.status_code == 200
    assert "Card unavailable: Stripe is not configured for live (STRIPE_SECRET_KEY" in html
    assert 'id="card-form"' not in html and "js.stripe.com" not in html
    assert "js.stripe.com" not in response["Content-Security-Policy"]


@pytest.mark.django_db
def test_asking_for_a_card_payment_waiting_for_authentication_reads_stripe_once_and_gives_its_secret(
    client, topup, caplog
):
    """The page's polling (`card/confirm`) of an attempt whose PaymentIntent waits for the bank's
    authentication: one retrieval of the PaymentIntent settles what it can and gives the client
    secret for confirmCardPayment (the checkout asks every 5 s while a page is open)."""
    from tests.cards.test_refunds_disputes import attempt_confirmed_in_stripe_only
    from tests.invoices.test_card_collection import NEEDS_AUTHENTICATION

    attempt, intent_id = attempt_confirmed_in_stripe_only(topup, NEEDS_AUTHENTICATION)
    caplog.clear()
    with caplog.at_level("INFO", logger="stripe"):
        answer = client.post(
            f"/checkout/{topup.id}/card/confirm", {"paymentAttemptId": str(attempt.id)}, content_type="application/json"
        )
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert (body["status"], body["paymentSessionStatus"]) == ("in_flight", "pending")
    assert body["nextAction"]["type"] == "authenticate" and body["nextAction"]["clientSecret"].startswith(intent_id)
    requests = [r.getMessage() for r in caplog.records if "Request to Stripe api" in r.getMessage()]
    assert len(requests) == 1 and f"/v1/payment_intents/{intent_id}" in requests[0], requests
