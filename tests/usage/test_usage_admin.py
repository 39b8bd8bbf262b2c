"""The usage admin: merchant staff see only their events, disputes and entitlements, and
refund, resolve and release through the same services as the API."""

from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.urls import reverse

from apps.entitlements.models import Entitlement
from apps.ledger.models import LedgerTransaction
from apps.ledger.selectors import ledger_check
from apps.merchants.models import User
from apps.merchants.services import merchant_staff_create
from apps.usage.admin import MetricFilter
from apps.usage.models import Dispute, UsageEvent
from tests.usage.world import Billing

D = Decimal


def build_world(api, email):
    """Two events (one per metric), an open dispute on the first, an active entitlement."""
    billing = Billing(api.merchant, email=email)
    calls = billing.metric(properties={"unitPrice": "0.3"})
    tokens = billing.metric(properties={"unitPrice": "0.1"})
    billing.fund("10")
    first = api.post("/v0/usage", billing.event("ev-calls", calls, quantity=2))
    second = api.post("/v0/usage", billing.event("ev-tokens", tokens, quantity=5))
    assert first.status_code == 201, first.json()
    assert second.status_code == 201, second.json()
    dispute = api.post("/v0/disputes", {"usageEventId": first.json()["id"], "message": "not me"})
    assert dispute.status_code == 201, dispute.json()
    entitlement = api.post(
        "/v0/entitlements",
        {
            "customerId": str(billing.customer.id),
            "entitlementData": [{"billableMetricId": str(calls.id), "quantity": 5}],
        },
    )
    assert entitlement.status_code == 201, entitlement.json()
    return SimpleNamespace(
        billing=billing,
        calls=calls,
        tokens=tokens,
        calls_event=UsageEvent.objects.get(pk=first.json()["id"]),
        tokens_event=UsageEvent.objects.get(pk=second.json()["id"]),
        dispute=Dispute.objects.get(pk=dispute.json()["id"]),
        entitlement=Entitlement.objects.get(pk=entitlement.json()["id"]),
    )


@pytest.fixture
def mine(api):
    return build_world(api, "mine@example.com")


@pytest.fixture
def theirs(other_api):
    return build_world(other_api, "theirs@example.com")


@pytest.fixture
def staff(client, api, mine, theirs):
    user = merchant_staff_create(merchant=api.merchant, username="sam", email="sam@m.example", password="pw-123456789")
    client.force_login(user)
    return client


def changelist(client, name, params=None):
    response = client.get(reverse(f"admin:{name}_changelist"), params or {})
    assert response.status_code == 200
    return response


def result_ids(response):
    return {row.pk for row in response.context["cl"].result_list}


def run_action(client, name, action, rows, **extra):
    data = {"action": action, "index": 0, "_selected_action": [str(row.pk) for row in rows], **extra}
    response = client.post(reverse(f"admin:{name}_changelist"), data, follow=True)
    assert response.status_code == 200
    return [str(m) for m in response.context["messages"]]


def metric_choices(response):
    spec = next(s for s in response.context["cl"].filter_specs if isinstance(s, MetricFilter))
    return dict(spec.lookup_choices)


def test_staff_see_only_their_merchants_rows(staff, mine, theirs):
    events = changelist(staff, "usage_usageevent")
    assert result_ids(events) == {mine.calls_event.pk, mine.tokens_event.pk}
    assert result_ids(changelist(staff, "usage_dispute")) == {mine.dispute.pk}
    assert result_ids(changelist(staff, "entitlements_entitlement")) == {mine.entitlement.pk}
    page = events.content.decode()
    assert "mine@example.com" in page and "theirs@example.com" not in page


def test_staff_cannot_open_another_merchants_rows(staff, theirs):
    for name, row in (
        ("usage_usageevent", theirs.calls_event),
        ("usage_dispute", theirs.dispute),
        ("entitlements_entitlement", theirs.entitlement),
    ):
        response = staff.get(reverse(f"admin:{name}_change", args=[row.pk]))
        assert response.status_code in (302, 404)


def test_metric_filter_lists_only_the_staff_merchants_metrics(staff, mine, theirs):
    response = changelist(staff, "usage_usageevent")
    assert metric_choices(response) == {str(mine.calls.pk): mine.calls.name, str(mine.tokens.pk): mine.tokens.name}
    filtered = changelist(staff, "usage_usageevent", {"metric": str(mine.tokens.pk)})
    assert result_ids(filtered) == {mine.tokens_event.pk}
    assert result_ids(changelist(staff, "usage_usageevent", {"metric": str(theirs.calls.pk)})) == set()
    assert result_ids(changelist(staff, "usage_usageevent", {"metric": "not-a-uuid"})) == set()


def test_metric_filter_follows_the_mode_switch(staff, mine, sandbox):
    sandbox_metric = Billing(sandbox, email="mine@example.com").metric()
    assert str(sandbox_metric.pk) not in metric_choices(changelist(staff, "usage_usageevent"))
    staff.post(reverse("admin-switch-mode"), {"mode": "sandbox", "next": "/admin/"})
    response = changelist(staff, "usage_usageevent")
    assert result_ids(response) == set()
    assert metric_choices(response) == {str(sandbox_metric.pk): sandbox_metric.name}


def test_superuser_sees_every_merchants_events_and_metrics(client, mine, theirs):
    root = User.objects.create_superuser(username="root", email="root@platform.example", password="pw-123456789")
    client.force_login(root)
    response = changelist(client, "usage_usageevent")
    assert len(result_ids(response)) == 4
    assert set(metric_choices(response)) == {str(m.pk) for m in (mine.calls, mine.tokens, theirs.calls, theirs.tokens)}


def test_every_changelist_filter_and_change_page_renders(staff, mine):
    for params in (
        {},
        {"refunded": "yes"},
        {"refunded": "no"},
        {"currency": "USDC"},
        {"q": "mine@example.com"},
        {"q": "ev-calls"},
        {"q": str(mine.calls_event.pk)},
        {"timestamp__year": str(mine.calls_event.timestamp.year)},
    ):
        changelist(staff, "usage_usageevent", params)
    assert result_ids(changelist(staff, "usage_usageevent", {"q": "ev-calls"})) == {mine.calls_event.pk}
    assert result_ids(changelist(staff, "usage_usageevent", {"refunded": "yes"})) == set()
    changelist(staff, "usage_dispute", {"status": "open", "opened_by": "merchant"})
    changelist(staff, "entitlements_entitlement", {"status": "active"})
    for name, row in (
        ("usage_usageevent", mine.calls_event),
        ("usage_dispute", mine.dispute),
        ("entitlements_entitlement", mine.entitlement),
    ):
        response = staff.get(reverse(f"admin:{name}_change", args=[row.pk]))
        assert response.status_code == 200
    event_page = staff.get(reverse("admin:usage_usageevent_change", args=[mine.calls_event.pk])).content.decode()
    assert "0.600000" in event_page  # the event's charge and its line's amount


def test_staff_cannot_add_change_or_delete_usage_events(staff, mine):
    assert staff.get(reverse("admin:usage_usageevent_add")).status_code == 403
    assert staff.get(reverse("admin:usage_usageevent_delete", args=[mine.calls_event.pk])).status_code == 403
    assert staff.post(reverse("admin:usage_usageevent_delete", args=[mine.calls_event.pk])).status_code == 403
    assert staff.get(reverse("admin:usage_dispute_add")).status_code == 403
    assert staff.get(reverse("admin:entitlements_entitlement_add")).status_code == 403
    response = changelist(staff, "usage_usageevent")
    actions = [name for name, _ in response.context["action_form"].fields["action"].choices]
    assert "delete_selected" not in actions and "refund_events" in actions
    staff.post(
        reverse("admin:usage_usageevent_changelist"),
        {"action": "delete_selected", "index": 0, "_selected_action": [str(mine.calls_event.pk)], "post": "yes"},
    )
    assert UsageEvent.objects.filter(pk=mine.calls_event.pk).exists()
    page = staff.get(reverse("admin:usage_usageevent_change", args=[mine.calls_event.pk])).content.decode()
    assert 'name="_save"' not in page


def test_refund_action_refunds_once(staff, mine, theirs):
    billing = mine.billing
    before = billing.available()
    messages = run_action(staff, "usage_usageevent", "refund_events", [mine.calls_event])
    assert "Refunded 1 usage event(s)." in messages
    assert billing.available() == before + D("0.6")
    event = UsageEvent.objects.get(pk=mine.calls_event.pk)
    assert event.refunded_at is not None
    assert event.refund_reason == "refunded in the admin"
    again = run_action(staff, "usage_usageevent", "refund_events", [mine.calls_event])
    assert any("already refunded" in m for m in again)
    assert "Refunded 0 usage event(s)." in again
    assert billing.available() == before + D("0.6")
    assert LedgerTransaction.objects.filter(kind="reversal", merchant=billing.merchant).count() == 1
    assert result_ids(changelist(staff, "usage_usageevent", {"refunded": "yes"})) == {mine.calls_event.pk}
    assert ledger_check() == []


def test_refund_action_gives_usage_from_a_live_hold_back_to_the_hold(staff, api, mine):
    billing = mine.billing
    used = api.post(
        "/v0/usage", billing.event("from-hold", mine.calls, quantity=2, entitlementId=str(mine.entitlement.id))
    )
    assert used.status_code == 201, used.json()
    held, available = billing.held(), billing.available()

    messages = run_action(staff, "usage_usageevent", "refund_events", [UsageEvent.objects.get(pk=used.json()["id"])])

    assert "Refunded 1 usage event(s)." in messages
    assert (billing.held(), billing.available()) == (held + D("0.6"), available)
    entitlement = Entitlement.objects.get(pk=mine.entitlement.pk)
    assert (entitlement.remaining_amount, entitlement.used_count) == (D("1.5"), 0)
    assert ledger_check() == []


def test_refund_action_cannot_reach_another_merchants_event(staff, theirs):
    run_action(staff, "usage_usageevent", "refund_events", [theirs.calls_event])
    assert UsageEvent.objects.get(pk=theirs.calls_event.pk).refunded_at is None


def test_refund_action_takes_the_reason_of_the_action_bar(staff, mine):
    run_action(staff, "usage_usageevent", "refund_events", [mine.tokens_event], reason="model hallucinated")
    assert UsageEvent.objects.get(pk=mine.tokens_event.pk).refund_reason == "model hallucinated"
    assert ledger_check() == []


def test_accept_action_refunds_the_disputed_event(staff, mine):
    billing = mine.billing
    before = billing.available()
    messages = run_action(staff, "usage_dispute", "accept_disputes", [mine.dispute])
    assert "Accepted 1 dispute(s)." in messages
    dispute = Dispute.objects.get(pk=mine.dispute.pk)
    assert dispute.status == Dispute.Status.ACCEPTED
    assert dispute.resolved_at is not None
    assert UsageEvent.objects.get(pk=mine.calls_event.pk).refunded_at is not None
    assert billing.available() == before + D("0.6")
    again = run_action(staff, "usage_dispute", "accept_disputes", [mine.dispute])
    assert any("already accepted" in m for m in again)
    assert billing.available() == before + D("0.6")
    assert ledger_check() == []


def test_decline_action_declines_without_refunding(staff, mine):
    billing = mine.billing
    before = billing.available()
    messages = run_action(staff, "usage_dispute", "decline_disputes", [mine.dispute])
    assert "Declined 1 dispute(s)." in messages
    dispute = Dispute.objects.get(pk=mine.dispute.pk)
    assert dispute.status == Dispute.Status.DECLINED
    assert dispute.decline_reason == "declined in the admin"
    assert UsageEvent.objects.get(pk=mine.calls_event.pk).refunded_at is None
    assert billing.available() == before
    accept_after = run_action(staff, "usage_dispute", "accept_disputes", [mine.dispute])
    assert any("already declined" in m for m in accept_after)
    assert Dispute.objects.get(pk=mine.dispute.pk).status == Dispute.Status.DECLINED
    assert UsageEvent.objects.get(pk=mine.calls_event.pk).refunded_at is None


def test_decline_action_takes_the_reason_of_the_action_bar(staff, mine):
    run_action(staff, "usage_dispute", "decline_disputes", [mine.dispute], reason="logs show the call")
    assert Dispute.objects.get(pk=mine.dispute.pk).decline_reason == "logs show the call"


def test_release_action_releases_the_hold_once(staff, mine):
    billing = mine.billing
    held, available = billing.held(), billing.available()
    assert held == D("1.5")
    messages = run_action(staff, "entitlements_entitlement", "release_holds", [mine.entitlement])
    assert "Released 1 hold(s)." in messages
    entitlement = Entitlement.objects.get(pk=mine.entitlement.pk)
    assert entitlement.status == Entitlement.Status.RELEASED
    assert entitlement.remaining_amount == 0
    assert billing.held() == 0
    assert billing.available() == available + D("1.5")
    again = run_action(staff, "entitlements_entitlement", "release_holds", [mine.entitlement])
    assert any("already released" in m for m in again)
    assert billing.available() == available + D("1.5")
    assert ledger_check() == []
