"""POST/GET/DELETE /v0/customers/{id}/paymentMethods against localstripe: a setup session that
the checkout's card path completes (the card saved, nothing charged), the saved cards in the
contract's shape, the default moving when a card is removed (detached in Stripe), tenancy and
bad input."""

from decimal import Decimal

import pytest

from apps.cards.models import SavedCard
from apps.cards.services.charges import card_save, card_setup_start
from apps.cards.services.saved_cards import saved_card_set_default
from apps.cards.stripe_client import stripe_client
from apps.ledger.selectors import ledger_check
from apps.payments.models import Payment, PaymentAttempt, PaymentSession
from tests.cards.test_card_path import GOOD, confirm_card_setup
from tests.conftest import Api
from tests.factories import MerchantFactory, issue_key, make_customer, sandbox_of

D = Decimal
CARD_KEYS = {"id", "object", "livemode", "brand", "last4", "expMonth", "expYear", "default", "createdAt"}


@pytest.fixture
def customer(sandbox, stripe_sandbox):
    return make_customer(sandbox, email="cards@example.com")


def add_card(test_api, customer, number=GOOD):
    """What a customer does: the setup session's checkout collects the card (Stripe.js's
    confirmCardSetup), and the server saves it from the SetupIntent."""
    answer = test_api.post(f"/v0/customers/{customer.id}/paymentMethods")
    assert answer.status_code == 201, answer.json()
    session = PaymentSession.objects.get(pk=answer.json()["id"])
    setup = card_setup_start(session_id=session.id)
    assert confirm_card_setup(setup, number).status_code == 200
    return card_save(customer=customer, setup_intent_id=setup.setup_intent_id), session


@pytest.mark.django_db
def test_post_answers_a_setup_session_whose_checkout_saves_the_card_and_charges_nothing(test_api, customer):
    answer = test_api.post(
        f"/v0/customers/{customer.id}/paymentMethods", {"successUrl": "https://merchant.example/cards"}
    )
    assert answer.status_code == 201
    body = answer.json()
    assert (body["object"], body["purpose"], body["mode"], body["currency"], body["status"]) == (
        "paymentSession",
        "setup",
        "setup",
        "USD",
        "pending",
    )
    assert D(body["amount"]) == 0
    assert body["checkoutUrl"].endswith(f"/checkout/{body['id']}") and body["url"] == body["checkoutUrl"]
    assert body["livemode"] is False and body["customerId"] == str(customer.id)

    session = PaymentSession.objects.get(pk=body["id"])
    setup = card_setup_start(session_id=session.id)
    assert confirm_card_setup(setup, GOOD).status_code == 200
    card = card_save(customer=customer, setup_intent_id=setup.setup_intent_id)

    session.refresh_from_db()
    assert (session.status, session.amount_paid, session.success_url) == (
        "paid",
        D("0"),
        "https://merchant.example/cards",
    )
    assert not Payment.objects.exists() and not PaymentAttempt.objects.exists()
    listed = test_api.get(f"/v0/customers/{customer.id}/paymentMethods")
    assert listed.status_code == 200
    data = listed.json()
    assert data["object"] == "list" and data["pagination"]["total"] == 1
    (shown,) = data["data"]
    assert set(shown) == CARD_KEYS
    assert shown == {
        "id": card.stripe_payment_method_id,
        "object": "paymentMethod",
        "livemode": False,
        "brand": "visa",
        "last4": "4242",
        "expMonth": 12,
        "expYear": 2034,
        "default": True,
        "createdAt": shown["createdAt"],
    }
    assert shown["id"].startswith("pm_")
    assert ledger_check() == []


@pytest.mark.django_db
def test_the_first_card_is_the_default_and_removing_it_moves_the_default_to_the_newest_left(test_api, customer):
    first, _ = add_card(test_api, customer)
    second, _ = add_card(test_api, customer, "5555555555554444")
    third, _ = add_card(test_api, customer)
    listed = test_api.get(f"/v0/customers/{customer.id}/paymentMethods").json()["data"]
    # newest first, as every list (`default` marks the card charged off-session)
    assert [(c["id"], c["default"]) for c in listed] == [
        (third.stripe_payment_method_id, False),
        (second.stripe_payment_method_id, False),
        (first.stripe_payment_method_id, True),
    ]
    assert listed[1]["last4"] == "4444"

    removed = test_api.delete(f"/v0/customers/{customer.id}/paymentMethods/{first.stripe_payment_method_id}")
    assert removed.status_code == 200
    assert removed.json()["id"] == first.stripe_payment_method_id and removed.json()["default"] is False
    # detached from the customer in Stripe too (after the commit)
    assert stripe_client(livemode=False).v1.payment_methods.retrieve(first.stripe_payment_method_id).customer is None
    listed = test_api.get(f"/v0/customers/{customer.id}/paymentMethods").json()["data"]
    assert [(c["id"], c["default"]) for c in listed] == [
        (third.stripe_payment_method_id, True),
        (second.stripe_payment_method_id, False),
    ]
    # a card that is not the default leaves the default where it is
    saved_card_set_default(customer=customer, card_id=second.stripe_payment_method_id)
    assert test_api.delete(f"/v0/customers/{customer.id}/paymentMethods/{third.id}").status_code == 200
    listed = test_api.get(f"/v0/customers/{customer.id}/paymentMethods").json()["data"]
    assert [(c["id"], c["default"]) for c in listed] == [(second.stripe_payment_method_id, True)]
    # the last one removed: no card, no default
    assert test_api.delete(f"/v0/customers/{customer.id}/paymentMethods/{second.stripe_payment_method_id}").status_code
    assert test_api.get(f"/v0/customers/{customer.id}/paymentMethods").json()["data"] == []
    assert SavedCard.objects.filter(is_default=True).count() == 0
    # removed twice: it is no longer one of the customer's cards
    again = test_api.delete(f"/v0/customers/{customer.id}/paymentMethods/{first.stripe_payment_method_id}")
    assert (again.status_code, again.json()["code"]) == (404, "PAYMENT_METHOD_NOT_FOUND")


@pytest.mark.django_db
def test_another_merchants_or_the_other_modes_customer_is_404_and_nothing_is_written(
    test_api, customer, merchant, stripe_sandbox
):
    card, _ = add_card(test_api, customer)
    sessions = PaymentSession.objects.count()
    stranger = Api(issue_key(sandbox_of(MerchantFactory())), None)
    live = Api(issue_key(merchant), merchant)  # the same merchant's live key: the sandbox customer is not its
    for api in (stranger, live):
        assert api.post(f"/v0/customers/{customer.id}/paymentMethods").status_code == 404
        assert api.get(f"/v0/customers/{customer.id}/paymentMethods").status_code == 404
        gone = api.delete(f"/v0/customers/{customer.id}/paymentMethods/{card.stripe_payment_method_id}")
        assert gone.status_code == 404
    assert PaymentSession.objects.count() == sessions
    assert SavedCard.objects.get().removed_at is None
    # a card of another customer of the same merchant is not this customer's
    other = make_customer(customer.merchant, email="other@example.com")
    answer = test_api.delete(f"/v0/customers/{other.id}/paymentMethods/{card.stripe_payment_method_id}")
    assert (answer.status_code, answer.json()["code"]) == (404, "PAYMENT_METHOD_NOT_FOUND")
    assert test_api.get(f"/v0/customers/{other.id}/paymentMethods").json()["data"] == []


@pytest.mark.django_db
def test_bad_input_is_a_clear_4xx_and_writes_nothing(test_api, customer):
    path = f"/v0/customers/{customer.id}/paymentMethods"
    unknown = test_api.post(path, {"currency": "USD"})
    assert unknown.status_code == 400
    assert unknown.json()["errors"][0]["field"] == "currency"
    bad_url = test_api.post(path, {"successUrl": "not a url"})
    assert bad_url.status_code == 400 and bad_url.json()["errors"][0]["field"] == "successUrl"
    assert test_api.get("/v0/customers/not-a-uuid/paymentMethods").status_code == 404
    assert test_api.delete(f"{path}/pm_unknown").status_code == 404
    assert not PaymentSession.objects.exists()
    customer.archived_at = customer.created_at
    customer.save(update_fields=["archived_at"])
    archived = test_api.post(path)
    assert (archived.status_code, archived.json()["code"]) == (422, "CUSTOMER_ARCHIVED")
    assert not PaymentSession.objects.exists()


@pytest.mark.django_db
def test_a_setup_session_takes_no_payment(test_api, customer):
    body = test_api.post(f"/v0/customers/{customer.id}/paymentMethods").json()
    paid = test_api.post(f"/v0/testHelpers/paymentSessions/{body['id']}/pay")
    assert (paid.status_code, paid.json()["code"]) == (409, "PAYMENT_SESSION_IS_SETUP")


def test_the_schema_documents_the_payment_methods_operations(client):
    schema = client.get("/v0/schema", HTTP_ACCEPT="application/json").json()
    listed = schema["paths"]["/v0/customers/{customer_id}/paymentMethods"]
    assert listed["post"]["operationId"] == "customers_payment_methods_create"
    assert listed["get"]["operationId"] == "customers_payment_methods_list"
    detail = schema["paths"]["/v0/customers/{customer_id}/paymentMethods/{payment_method_id}"]
    assert detail["delete"]["operationId"] == "customers_payment_methods_delete"
    card = schema["components"]["schemas"]["SavedCard"]
    assert {"id", "brand", "last4", "expMonth", "expYear", "default"} <= set(card["properties"])
