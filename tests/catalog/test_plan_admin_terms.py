"""A subscribed plan keeps its currency and billing interval in the admin too: a form error, not a 500."""

import json

import pytest
from django.urls import reverse

from apps.catalog.models import Plan
from apps.merchants.services import merchant_staff_create
from apps.subscriptions.services import subscription_create, subscription_terminate
from tests.factories import make_customer, make_plan


@pytest.fixture
def staff(client, merchant):
    user = merchant_staff_create(merchant=merchant, username="cat", email="cat@m.example", password="pw-123456789")
    client.force_login(user)
    return client


@pytest.fixture
def plan(merchant):
    return make_plan(merchant, currency="USDC", interval="monthly", code="starter")


@pytest.fixture
def subscription(merchant, plan):
    return subscription_create(merchant=merchant, customer=make_customer(merchant), plan=plan)


def change(client, plan, **overrides):
    data = {
        "name": plan.name,
        "code": plan.code,
        "product": str(plan.product_id),
        "currency": plan.currency,
        "billing_interval": plan.billing_interval,
        "invoicing": plan.invoicing,
        "prices": [],
        "features": json.dumps(plan.features or {}),
        **overrides,
    }
    return client.post(reverse("admin:catalog_plan_change", args=[plan.pk]), data)


def form_errors(response):
    form = response.context["adminform"].form
    return {name: [str(e) for e in errors] for name, errors in form.errors.items()}


def test_changing_a_subscribed_plans_currency_is_a_form_error(staff, plan, subscription):
    response = change(staff, plan, currency="USD")
    assert response.status_code == 200
    (message,) = form_errors(response)["currency"]
    assert "subscription(s) that are not terminated" in message
    assert Plan.objects.get(pk=plan.pk).currency == "USDC"


def test_changing_a_subscribed_plans_interval_is_a_form_error(staff, plan, subscription):
    response = change(staff, plan, billing_interval="yearly")
    assert response.status_code == 200
    (message,) = form_errors(response)["__all__"]
    assert message.startswith("billingInterval: ")
    assert Plan.objects.get(pk=plan.pk).billing_interval == "monthly"


def test_other_changes_of_a_subscribed_plan_are_saved(staff, plan, subscription):
    response = change(staff, plan, name="Starter 2")
    assert response.status_code == 302
    assert Plan.objects.get(pk=plan.pk).name == "Starter 2"


def test_once_its_subscriptions_are_terminated_the_currency_may_change(staff, merchant, plan, subscription):
    subscription_terminate(merchant=merchant, subscription=subscription)
    response = change(staff, plan, currency="USD")
    assert response.status_code == 302
    assert Plan.objects.get(pk=plan.pk).currency == "USD"
