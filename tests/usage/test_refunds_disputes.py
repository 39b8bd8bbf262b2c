"""Refunds and disputes reverse a charge exactly once."""

from decimal import Decimal

import pytest

from apps.ledger.models import LedgerTransaction
from apps.ledger.selectors import ledger_check
from tests.usage.world import Billing

D = Decimal


@pytest.fixture
def charged(api):
    billing = Billing(api.merchant)
    metric = billing.metric(properties={"unitPrice": "0.3"})
    billing.fund("10")
    event = api.post("/v0/usage", billing.event("charged", metric, quantity=2)).json()
    return billing, event


def test_refund_reverses_the_charge_exactly_once(api, charged):
    billing, event = charged
    assert billing.available() == D("9.4")
    response = api.patch(f"/v0/usage/{event['id']}", {"refund": True, "reason": "bad output"})
    assert response.status_code == 200
    body = response.json()
    assert body["refunded"] is True
    assert body["refundReason"] == "bad output"
    assert billing.available() == D("10")
    assert billing.revenue() == 0 and billing.commission() == 0
    again = api.patch(f"/v0/usage/{event['id']}", {"refund": True})
    assert again.status_code == 409
    assert again.json()["code"] == "USAGE_ALREADY_REFUNDED"
    assert billing.available() == D("10")
    assert LedgerTransaction.objects.filter(kind="reversal").count() == 1
    assert ledger_check() == []


def test_refund_of_one_event_of_a_batch_reverses_only_its_share(api):
    billing = Billing(api.merchant)
    metric = billing.metric(properties={"unitPrice": "1"})
    billing.fund("10")
    batch = api.post("/v0/usage/batch", {"events": [billing.event(f"b{i}", metric) for i in range(3)]}).json()
    assert LedgerTransaction.objects.filter(kind="usage").count() == 1
    api.patch(f"/v0/usage/{batch['successful'][1]['id']}", {"refund": True})
    assert billing.available() == D("8")
    assert ledger_check() == []


def test_refund_input_is_checked(api, charged, other_api):
    _, event = charged
    assert api.patch(f"/v0/usage/{event['id']}", {"refund": False}).status_code == 400
    assert api.patch(f"/v0/usage/{event['id']}", {}).status_code == 400
    assert other_api.patch(f"/v0/usage/{event['id']}", {"refund": True}).status_code == 404


def test_accepting_a_dispute_refunds_the_event_once(api, charged):
    billing, event = charged
    opened = api.post("/v0/disputes", {"usageEventId": event["id"], "message": "I never made this call"})
    assert opened.status_code == 201
    dispute = opened.json()
    assert dispute["object"] == "dispute"
    assert dispute["status"] == "open"
    duplicate = api.post("/v0/disputes", {"usageEventId": event["id"], "message": "again"})
    assert duplicate.status_code == 409
    assert duplicate.json()["code"] == "DISPUTE_ALREADY_OPEN"
    listed = api.get("/v0/disputes", {"status": "open"}).json()
    assert [d["id"] for d in listed["data"]] == [dispute["id"]]
    accepted = api.post(f"/v0/disputes/{dispute['id']}/accept")
    assert accepted.status_code == 200
    assert accepted.json()["status"] == "accepted"
    assert billing.available() == D("10")
    assert api.post(f"/v0/disputes/{dispute['id']}/accept").status_code == 409
    assert api.get(f"/v0/usage/{event['id']}").json()["refunded"] is True
    assert api.post("/v0/disputes", {"usageEventId": event["id"], "message": "more"}).status_code == 409
    assert ledger_check() == []


def test_declining_a_dispute_moves_nothing(api, charged):
    billing, event = charged
    dispute = api.post("/v0/disputes", {"usageEventId": event["id"], "message": "too expensive"}).json()
    declined = api.post(f"/v0/disputes/{dispute['id']}/decline", {"reason": "usage confirmed in logs"})
    assert declined.status_code == 200
    assert declined.json()["status"] == "declined"
    assert declined.json()["declineReason"] == "usage confirmed in logs"
    assert billing.available() == D("9.4")
    assert api.post(f"/v0/disputes/{dispute['id']}/decline", {"reason": "x"}).status_code == 409
    assert api.post(f"/v0/disputes/{dispute['id']}/decline", {}).status_code in (400, 409)


def test_disputes_are_tenant_scoped(api, charged, other_api):
    _, event = charged
    dispute = api.post("/v0/disputes", {"usageEventId": event["id"], "message": "x"}).json()
    assert other_api.get(f"/v0/disputes/{dispute['id']}").status_code == 404
    assert other_api.post(f"/v0/disputes/{dispute['id']}/accept").status_code == 404
    assert other_api.post("/v0/disputes", {"usageEventId": event["id"], "message": "x"}).status_code == 404


def test_a_refund_gives_back_its_free_units(api):
    billing = Billing(api.merchant)
    metric = billing.metric(properties={"unitPrice": "1"}, free_units="100")
    billing.fund("1000")
    first = api.post("/v0/usage", billing.event("a", metric, quantity=150)).json()
    assert first["billing"]["price"] == "50.000000"
    api.patch(f"/v0/usage/{first['id']}", {"refund": True})
    again = api.post("/v0/usage", billing.event("b", metric, quantity=100)).json()
    assert again["billing"]["price"] == "0.000000"
