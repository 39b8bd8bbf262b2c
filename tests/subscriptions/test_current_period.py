"""A subscription's current period is computed when it is read, so it moves on with time."""

from datetime import UTC, datetime

import pytest
from django.urls import reverse

from apps.merchants.services import merchant_staff_create
from apps.subscriptions.models import Subscription
from tests.factories import make_customer, make_plan


@pytest.fixture
def subscription_id(api, time_machine):
    time_machine.move_to(datetime(2026, 1, 31, 12, 0, tzinfo=UTC), tick=False)
    plan = make_plan(api.merchant)
    customer = make_customer(api.merchant)
    response = api.post("/v0/subscriptions", {"customerId": str(customer.id), "planId": str(plan.id)})
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["currentPeriodStart"], body["currentPeriodEnd"]) == ("2026-01-31T12:00:00Z", "2026-02-28T12:00:00Z")
    return body["id"]


def period(body):
    return body["currentPeriodStart"], body["currentPeriodEnd"]


def test_get_shows_the_current_period_once_the_first_has_ended(api, subscription_id, time_machine):
    time_machine.move_to(datetime(2026, 3, 5, 8, 0, tzinfo=UTC), tick=False)
    body = api.get(f"/v0/subscriptions/{subscription_id}").json()
    assert period(body) == ("2026-02-28T12:00:00Z", "2026-03-31T12:00:00Z")
    (listed,) = api.get("/v0/subscriptions").json()["data"]
    assert period(listed) == ("2026-02-28T12:00:00Z", "2026-03-31T12:00:00Z")


def test_a_period_boundary_opens_the_next_period(api, subscription_id, time_machine):
    time_machine.move_to(datetime(2026, 3, 31, 12, 0, tzinfo=UTC), tick=False)
    body = api.get(f"/v0/subscriptions/{subscription_id}").json()
    assert period(body) == ("2026-03-31T12:00:00Z", "2026-04-30T12:00:00Z")


def test_a_terminated_subscription_keeps_the_period_it_ended_in_cut_at_the_termination(
    api, subscription_id, time_machine
):
    time_machine.move_to(datetime(2026, 3, 5, 8, 0, tzinfo=UTC), tick=False)
    terminated = api.post(f"/v0/subscriptions/{subscription_id}/termination", {"reason": "done"})
    assert terminated.status_code == 200, terminated.json()
    assert period(terminated.json()) == ("2026-02-28T12:00:00Z", "2026-03-05T08:00:00Z")
    time_machine.move_to(datetime(2026, 7, 1, tzinfo=UTC), tick=False)
    body = api.get(f"/v0/subscriptions/{subscription_id}").json()
    assert period(body) == ("2026-02-28T12:00:00Z", "2026-03-05T08:00:00Z")


def test_before_started_at_the_period_is_the_first(api, subscription_id, time_machine):
    time_machine.move_to(datetime(2026, 1, 1, tzinfo=UTC), tick=False)
    subscription = Subscription.objects.select_related("plan").get(pk=subscription_id)
    assert subscription.current_period == (
        datetime(2026, 1, 31, 12, 0, tzinfo=UTC),
        datetime(2026, 2, 28, 12, 0, tzinfo=UTC),
    )


def test_the_admin_list_shows_the_current_period(client, api, subscription_id, time_machine):
    time_machine.move_to(datetime(2026, 3, 5, 8, 0, tzinfo=UTC), tick=False)
    staff = merchant_staff_create(merchant=api.merchant, username="st", email="st@m.example", password="pw-123456789")
    client.force_login(staff)
    response = client.get(reverse("admin:subscriptions_subscription_changelist"))
    assert response.status_code == 200
    html = response.content.decode()
    assert '<td class="field-current_period_start nowrap">Feb. 28, 2026, noon</td>' in html
    assert '<td class="field-current_period_end nowrap">March 31, 2026, noon</td>' in html
