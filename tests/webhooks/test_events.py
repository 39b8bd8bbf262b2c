"""The events that exist today, each published by the real service in the transaction of its
change, with `data` the resource in its API shape (the API's own answer for it, plus `updatedAt`
where the shape lacks it); nothing for a change that rolls back, nothing twice for a replay, and
each event on the merchant row (live or sandbox) of its change."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from apps.core.formats import iso
from apps.customers.services import customer_create
from apps.entitlements.models import Entitlement
from apps.entitlements.services import entitlement_release_expired
from apps.merchants.services import merchant_staff_create
from apps.payments import registry
from apps.payments.models import Payment, PaymentSession
from apps.subscriptions.models import Subscription
from apps.webhooks.delivery import payload, relay_events
from apps.webhooks.models import Delivery, Event
from apps.webhooks.services import webhook_endpoint_create
from tests.factories import make_plan
from tests.usage.world import Billing

# Real commits: a publisher outside its change's transaction would meet the outbox's refusal here.
pytestmark = pytest.mark.django_db(transaction=True)


def events(type=None, merchant=None) -> list[Event]:
    queryset = Event.objects.order_by("created_at", "id")
    if type is not None:
        queryset = queryset.filter(type=type)
    if merchant is not None:
        queryset = queryset.filter(merchant=merchant)
    return list(queryset)


def types() -> list[str]:
    return [event.type for event in events()]


def the_event(type: str, merchant) -> Event:
    found = events(type)
    assert len(found) == 1, [(event.type, event.data.get("id")) for event in found]
    assert found[0].merchant == merchant
    return found[0]


def without_updated_at(data: dict) -> dict:
    return {key: value for key, value in data.items() if key != "updatedAt"}


class Boom(Exception):
    pass


# --- customer.created ---------------------------------------------------------------------------


def test_customer_created_carries_the_apis_answer_once(api):
    response = api.post("/v0/customers", {"consumer": {"email": "ada@example.com"}, "externalId": "crm-1"})
    assert response.status_code == 201
    event = the_event("customer.created", api.merchant)
    assert event.data == response.json()
    # the same email again is the same customer, unchanged: nothing happened
    assert api.post("/v0/customers", {"consumer": {"email": "ADA@example.com"}}).status_code == 200
    assert types() == ["customer.created"]


def test_an_idempotency_key_replay_publishes_nothing_more(api):
    body = {"consumer": {"email": "ada@example.com"}}
    first = api.post("/v0/customers", body, HTTP_IDEMPOTENCY_KEY="k-1")
    again = api.post("/v0/customers", body, HTTP_IDEMPOTENCY_KEY="k-1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert the_event("customer.created", api.merchant).data == first.json()


def test_a_customer_created_in_the_admin_is_published(client, merchant):
    staff = merchant_staff_create(merchant=merchant, username="sam", email="sam@m.example", password="pw-123456789")
    client.force_login(staff)
    form = {"email": "new@example.com", "name": "", "phone": "", "address": "{}", "external_id": "", "metadata": "{}"}
    assert client.post(reverse("admin:customers_customer_add"), form).status_code == 302
    assert the_event("customer.created", merchant).data["consumer"]["email"] == "new@example.com"


def test_a_customer_created_in_a_transaction_that_rolls_back_publishes_nothing(merchant):
    with pytest.raises(Boom), transaction.atomic():
        customer_create(merchant=merchant, email="ada@example.com")
        raise Boom
    assert types() == []


def test_an_inline_customer_and_its_subscription_are_published_with_an_idempotency_key_once(api):
    plan = make_plan(api.merchant)
    body = {"customer": {"consumer": {"email": "in@example.com"}}, "planId": str(plan.id)}
    first = api.post("/v0/subscriptions", body, HTTP_IDEMPOTENCY_KEY="sub-1")
    assert first.status_code == 201, first.json()
    assert api.post("/v0/subscriptions", body, HTTP_IDEMPOTENCY_KEY="sub-1").json() == first.json()
    assert types() == ["customer.created", "subscription.created", "subscription.activated"]
    customer = api.get(f"/v0/customers/{first.json()['customerId']}").json()
    assert the_event("customer.created", api.merchant).data == {**customer, "wallets": []}


# --- subscriptions ------------------------------------------------------------------------------


def test_a_prefunded_subscription_is_created_then_activated_when_paid(test_api):
    sandbox = test_api.merchant
    plan = make_plan(sandbox)
    customer = test_api.post("/v0/customers", {"consumer": {"email": "ada@example.com"}}).json()
    created = test_api.post(
        "/v0/subscriptions", {"customerId": customer["id"], "planId": str(plan.id), "prefundAmount": "20"}
    )
    assert created.status_code == 201
    assert the_event("subscription.created", sandbox).data == created.json()
    assert created.json()["status"] == "pending_payment"
    assert not events("subscription.activated")

    session_id = created.json()["payment"]["paymentSessionId"]
    paid = test_api.post(f"/v0/testHelpers/paymentSessions/{session_id}/pay")
    assert paid.status_code == 200
    activated = the_event("subscription.activated", sandbox)
    answer = test_api.get(f"/v0/subscriptions/{created.json()['id']}").json()
    assert activated.data == answer
    assert (answer["status"], answer["balance"], answer["payment"]["status"]) == ("active", "20.000000", "paid")
    # the payment comes first, then what it did
    assert types()[-2:] == ["payment.succeeded", "subscription.activated"]

    # paying again is a replay: nothing more
    assert test_api.post(f"/v0/testHelpers/paymentSessions/{session_id}/pay").status_code == 200
    assert len(events("payment.succeeded")) == 1 and len(events("subscription.activated")) == 1


def test_a_subscription_with_nothing_due_is_created_active_and_published_activated(api):
    plan = make_plan(api.merchant)
    customer = api.post("/v0/customers", {"consumer": {"email": "ada@example.com"}}).json()
    created = api.post("/v0/subscriptions", {"customerId": customer["id"], "planId": str(plan.id)}).json()
    assert the_event("subscription.created", api.merchant).data == created
    assert the_event("subscription.activated", api.merchant).data == created
    assert types() == ["customer.created", "subscription.created", "subscription.activated"]


def test_a_termination_is_published_once(api):
    plan = make_plan(api.merchant)
    customer = api.post("/v0/customers", {"consumer": {"email": "ada@example.com"}}).json()
    subscription = api.post(
        "/v0/subscriptions", {"customerId": customer["id"], "planId": str(plan.id), "prefundAmount": "5"}
    ).json()
    ended = api.post(f"/v0/subscriptions/{subscription['id']}/termination", {"reason": "moved on"})
    assert ended.status_code == 200
    event = the_event("subscription.terminated", api.merchant)
    assert event.data == ended.json()
    assert (event.data["status"], event.data["terminationReason"], event.data["payment"]["status"]) == (
        "terminated",
        "moved on",
        "expired",
    )
    assert api.post(f"/v0/subscriptions/{subscription['id']}/termination").status_code == 409
    assert len(events("subscription.terminated")) == 1


def test_a_payment_that_fails_after_its_credit_publishes_nothing(test_api, monkeypatch):
    """The whole payment rolls back (here a wallet-credited listener fails): no payment.succeeded,
    no subscription.activated, the session still pending."""
    plan = make_plan(test_api.merchant)
    customer = test_api.post("/v0/customers", {"consumer": {"email": "ada@example.com"}}).json()
    subscription = test_api.post(
        "/v0/subscriptions", {"customerId": customer["id"], "planId": str(plan.id), "prefundAmount": "20"}
    ).json()

    def fail(credit):
        raise Boom

    monkeypatch.setattr(registry, "_wallet_credited", [*registry._wallet_credited, fail])
    session_id = subscription["payment"]["paymentSessionId"]
    assert test_api.post(f"/v0/testHelpers/paymentSessions/{session_id}/pay").status_code == 500
    assert types() == ["customer.created", "subscription.created"]
    assert not Payment.objects.exists()
    assert PaymentSession.objects.get(pk=session_id).status == PaymentSession.Status.PENDING
    assert Subscription.objects.get(pk=subscription["id"]).status == Subscription.Status.PENDING_PAYMENT


# --- payment.succeeded --------------------------------------------------------------------------


def test_payment_succeeded_is_the_contracts_payment(test_api):
    customer = test_api.post("/v0/customers", {"consumer": {"email": "ada@example.com"}}).json()
    session = test_api.post(f"/v0/customers/{customer['id']}/topups", {"amount": "25", "currency": "USDC"}).json()
    assert test_api.post(f"/v0/testHelpers/paymentSessions/{session['id']}/pay").status_code == 200
    payment = Payment.objects.get()
    event = the_event("payment.succeeded", test_api.merchant)
    assert event.data == {
        "id": str(payment.id),
        "object": "payment",
        "livemode": False,
        "amount": "25.000000",
        "currency": "USDC",
        "source": "test",
        "externalReference": f"test:{session['id']}",
        "paymentSessionId": session["id"],
        "invoiceId": None,
        "customerId": customer["id"],
        "status": "succeeded",
        "amountRefunded": "0.000000",
        "createdAt": iso(payment.created_at),
        "updatedAt": iso(payment.updated_at),
    }
    assert payload(event)["livemode"] is False


# --- entitlement.expired ------------------------------------------------------------------------


@pytest.fixture
def billing(api):
    world = Billing(api.merchant)
    world.calls = world.metric(properties={"unitPrice": "0.1"})
    world.fund("10")
    return world


def reserve(api, billing, quantity=10):
    body = {
        "customerId": str(billing.customer.id),
        "entitlementData": [{"billableMetricId": str(billing.calls.id), "quantity": quantity}],
    }
    response = api.post("/v0/entitlements", body)
    assert response.status_code == 201, response.json()
    return response.json()


def test_an_expired_hold_released_by_the_task_is_published_but_a_release_by_delete_is_not(api, billing):
    expiring, deleted = reserve(api, billing), reserve(api, billing, quantity=5)
    assert api.delete(f"/v0/entitlements/{deleted['id']}").status_code == 200
    Entitlement.objects.filter(pk=expiring["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert entitlement_release_expired() == 1
    event = the_event("entitlement.expired", api.merchant)
    entitlement = Entitlement.objects.get(pk=expiring["id"])
    assert event.data == {
        **api.get(f"/v0/entitlements/{expiring['id']}").json(),
        "updatedAt": iso(entitlement.updated_at),
    }
    assert (event.data["status"], event.data["remainingBalance"]) == ("expired", "0.000000")
    assert entitlement_release_expired() == 0
    assert len(events("entitlement.expired")) == 1


# --- disputes -----------------------------------------------------------------------------------


@pytest.fixture
def charged(api, billing):
    event = api.post("/v0/usage", billing.event("u-1", billing.calls, quantity=6))
    assert event.status_code == 201, event.json()
    return event.json()


def test_a_dispute_opened_and_accepted_is_published_opened_then_resolved(api, charged):
    opened = api.post("/v0/disputes", {"usageEventId": charged["id"], "message": "never called"})
    assert opened.status_code == 201
    event = the_event("dispute.opened", api.merchant)
    assert without_updated_at(event.data) == opened.json()
    assert event.data["updatedAt"]
    assert api.post("/v0/disputes", {"usageEventId": charged["id"], "message": "again"}).status_code == 409
    assert len(events("dispute.opened")) == 1

    accepted = api.post(f"/v0/disputes/{opened.json()['id']}/accept")
    assert accepted.status_code == 200
    resolved = the_event("dispute.resolved", api.merchant)
    assert without_updated_at(resolved.data) == accepted.json()
    assert resolved.data["status"] == "accepted"
    assert resolved.data["updatedAt"] > event.data["updatedAt"]
    assert api.post(f"/v0/disputes/{opened.json()['id']}/decline", {"reason": "x"}).status_code == 409
    assert len(events("dispute.resolved")) == 1


def test_a_declined_dispute_is_published_resolved(api, charged):
    dispute = api.post("/v0/disputes", {"usageEventId": charged["id"], "message": "too high"}).json()
    declined = api.post(f"/v0/disputes/{dispute['id']}/decline", {"reason": "as measured"})
    assert declined.status_code == 200
    resolved = the_event("dispute.resolved", api.merchant)
    assert without_updated_at(resolved.data) == declined.json()
    assert (resolved.data["status"], resolved.data["declineReason"]) == ("declined", "as measured")


def test_a_usage_replay_publishes_nothing(api, charged, billing):
    before = types()
    again = api.post("/v0/usage", billing.event("u-1", billing.calls, quantity=6))
    assert again.status_code == 201 and again.json()["id"] == charged["id"]
    assert types() == before


# --- live and sandbox ---------------------------------------------------------------------------


def test_sandbox_events_reach_only_sandbox_endpoints(api, test_api):
    live_endpoint = webhook_endpoint_create(merchant=api.merchant, url="https://hooks.example.com/live", events=["*"])
    sandbox_endpoint = webhook_endpoint_create(
        merchant=test_api.merchant, url="http://127.0.0.1:9/sandbox", events=["customer.created"]
    )
    test_customer = test_api.post("/v0/customers", {"consumer": {"email": "ada@example.com"}}).json()
    live_customer = api.post("/v0/customers", {"consumer": {"email": "ada@example.com"}}).json()
    (sandbox_event,) = events("customer.created", merchant=test_api.merchant)
    (live_event,) = events("customer.created", merchant=api.merchant)
    assert (sandbox_event.data["id"], sandbox_event.data["livemode"]) == (test_customer["id"], False)
    assert (live_event.data["id"], live_event.data["livemode"]) == (live_customer["id"], True)
    assert relay_events() == 2
    deliveries = {(d.endpoint_id, d.event_id) for d in Delivery.objects.all()}
    assert deliveries == {(sandbox_endpoint.id, sandbox_event.id), (live_endpoint.id, live_event.id)}
