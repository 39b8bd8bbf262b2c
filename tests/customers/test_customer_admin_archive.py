"""Archiving in the admin reports a customer the service refuses, row by row, instead of a 500."""

import pytest
from django.urls import reverse

from apps.customers.models import Customer
from apps.merchants.services import merchant_staff_create
from apps.subscriptions.services import subscription_create
from tests.factories import make_customer, make_plan

pytestmark = pytest.mark.django_db

LIST_URL = reverse("admin:customers_customer_changelist")


@pytest.fixture
def staff(client, merchant):
    user = merchant_staff_create(merchant=merchant, username="alice", email="alice@m.example", password="pw-123456789")
    client.force_login(user)
    return client


def archive(client, customers):
    data = {"action": "archive_customers", "_selected_action": [str(c.pk) for c in customers]}
    response = client.post(LIST_URL, data, follow=True)
    assert response.status_code == 200
    return [(m.level_tag, str(m)) for m in response.context["messages"]]


def test_a_customer_with_a_live_subscription_is_reported_and_the_others_archived(staff, merchant):
    subscribed = make_customer(merchant, email="subscribed@example.com", name="Sub")
    subscription_create(merchant=merchant, customer=subscribed, plan=make_plan(merchant))
    free = make_customer(merchant, email="free@example.com")

    messages = archive(staff, [subscribed, free])

    errors = [text for level, text in messages if level == "error"]
    assert len(errors) == 1
    assert errors[0].startswith("Sub <subscribed@example.com>: ")
    assert "subscription that is not terminated" in errors[0]
    assert ("success", "Archived 1 customer(s).") in messages
    assert Customer.objects.get(pk=subscribed.pk).archived_at is None
    assert Customer.objects.get(pk=free.pk).archived_at is not None


def test_when_every_row_is_refused_nothing_is_archived(staff, merchant):
    subscribed = make_customer(merchant, email="subscribed@example.com")
    subscription_create(merchant=merchant, customer=subscribed, plan=make_plan(merchant))

    messages = archive(staff, [subscribed])

    assert [level for level, _ in messages] == ["error", "info"]
    assert messages[1] == ("info", "Archived 0 customer(s).")
    assert Customer.objects.get(pk=subscribed.pk).archived_at is None
