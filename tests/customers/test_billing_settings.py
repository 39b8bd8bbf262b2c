"""A customer's billingSettings, keyed by wallet currency: stored, answered, merged by PATCH
currency by currency, validated field by field, edited in the admin through the same rules (the
threshold's wallet.low_balance: tests/webhooks/test_low_balance.py)."""

from decimal import Decimal

import pytest
from django.urls import reverse

from apps.customers.billing import CurrencyBillingSettings
from apps.customers.models import BillingSettings
from apps.customers.services import customer_create, customer_update
from apps.merchants.services import merchant_staff_create
from tests.factories import make_plan

pytestmark = pytest.mark.django_db

URL = "/v0/customers"
# auto-recharge charges a card: USD wallets only (tests/cards/test_auto_recharge.py)
USD_SETTINGS = {"lowBalanceThreshold": "5", "autoRecharge": {"enabled": True, "threshold": "10", "amount": "50"}}


def create(api, email="ada@example.com", **fields):
    response = api.post(URL, {"consumer": {"email": email}, **fields})
    assert response.status_code == 201, response.json()
    return response.json()


def refused_fields(response) -> list[str]:
    assert response.status_code == 400, response.json()
    return [error["field"] for error in response.json()["errors"]]


def test_create_stores_and_answers_billing_settings_per_currency(api):
    data = create(api, billingSettings={"USD": USD_SETTINGS, "USDC": {"lowBalanceThreshold": "2.5"}})
    assert data["billingSettings"] == {
        "USD": {
            "lowBalanceThreshold": "5.00",
            "autoRecharge": {"enabled": True, "threshold": "10.00", "amount": "50.00"},
        },
        "USDC": {
            "lowBalanceThreshold": "2.500000",
            "autoRecharge": {"enabled": False, "threshold": None, "amount": None},
        },
    }
    rows = {row.currency: row for row in BillingSettings.objects.filter(customer_id=data["id"])}
    assert rows["USD"].low_balance_threshold == Decimal("5")
    assert rows["USD"].merchant == api.merchant
    assert api.get(f"{URL}/{data['id']}").json()["billingSettings"] == data["billingSettings"]
    listed = api.get(URL).json()["data"]
    assert [c["billingSettings"] for c in listed] == [data["billingSettings"]]


def test_a_customer_without_settings_answers_null_for_every_currency(api):
    assert create(api)["billingSettings"] == {"USDC": None, "USD": None}


def test_patch_merges_currency_by_currency_and_moves_updated_at(api):
    customer = create(api, billingSettings={"USD": USD_SETTINGS})
    response = api.patch(f"{URL}/{customer['id']}", {"billingSettings": {"USDC": {"lowBalanceThreshold": "1"}}})
    assert response.status_code == 200, response.json()
    data = response.json()
    assert data["billingSettings"]["USD"]["autoRecharge"]["enabled"] is True  # not named: kept
    assert data["billingSettings"]["USDC"]["lowBalanceThreshold"] == "1.000000"
    assert data["updatedAt"] > customer["updatedAt"]

    # a currency's settings given replace them whole: what is left out is unset
    data = api.patch(f"{URL}/{customer['id']}", {"billingSettings": {"USD": {"lowBalanceThreshold": "3"}}}).json()
    assert data["billingSettings"]["USD"] == {
        "lowBalanceThreshold": "3.00",
        "autoRecharge": {"enabled": False, "threshold": None, "amount": None},
    }
    data = api.patch(f"{URL}/{customer['id']}", {"billingSettings": {"USDC": None}}).json()
    assert data["billingSettings"]["USDC"] is None and data["billingSettings"]["USD"] is not None
    data = api.patch(f"{URL}/{customer['id']}", {"billingSettings": None}).json()
    assert data["billingSettings"] == {"USDC": None, "USD": None}
    assert not BillingSettings.objects.exists()


def test_patch_of_the_same_settings_changes_nothing(api):
    customer = create(api, billingSettings={"USD": USD_SETTINGS})
    data = api.patch(f"{URL}/{customer['id']}", {"billingSettings": {"USD": USD_SETTINGS}}).json()
    assert data["updatedAt"] == customer["updatedAt"]


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"USDC": {"lowBalanceThreshold": "-1"}}, "billingSettings.USDC.lowBalanceThreshold"),
        ({"USDC": {"lowBalanceThreshold": 5.5}}, "billingSettings.USDC.lowBalanceThreshold"),  # a JSON float
        ({"USDC": {"lowBalanceThreshold": "0.0000000000001"}}, "billingSettings.USDC.lowBalanceThreshold"),
        ({"USDC": {"lowBalanceThreshold": "lots"}}, "billingSettings.USDC.lowBalanceThreshold"),
        ({"USDC": {"autoRecharge": {"enabled": True, "amount": "5"}}}, "billingSettings.USDC.autoRecharge.threshold"),
        (
            {"USDC": {"autoRecharge": {"enabled": True, "threshold": "1", "amount": "0"}}},
            "billingSettings.USDC.autoRecharge.amount",
        ),
        ({"USDC": {"autoRecharge": {"enabled": True, "threshold": "1"}}}, "billingSettings.USDC.autoRecharge.amount"),
        (
            {"USD": {"autoRecharge": {"enabled": True, "threshold": "1", "amount": "10.005"}}},
            "billingSettings.USD.autoRecharge.amount",
        ),
        ({"USDC": {"autoRecharge": {"threshold": "1", "amount": "5"}}}, "billingSettings.USDC.autoRecharge.enabled"),
        ({"USDC": {"autoRecharge": {"enabled": "true"}}}, "billingSettings.USDC.autoRecharge.enabled"),
        (
            {"USDC": {"autoRecharge": {"enabled": True, "threshold": "1", "amount": "5"}}},
            "billingSettings.USDC.autoRecharge.enabled",
        ),
        (
            {"USD": {"autoRecharge": {"enabled": True, "threshold": "1", "amount": "-5"}}},
            "billingSettings.USD.autoRecharge.amount",
        ),
        ({"USDC": {"lowBalance": "5"}}, "billingSettings.USDC.lowBalance"),
        ({"EUR": {"lowBalanceThreshold": "5"}}, "billingSettings.EUR"),
        ({"usdc": {"lowBalanceThreshold": "5"}}, "billingSettings.usdc"),
        ({"USDC": "5"}, "billingSettings.USDC"),
        (["USDC"], "billingSettings"),
    ],
)
def test_bad_settings_are_refused_naming_the_field_and_nothing_is_written(api, settings, field):
    assert field in refused_fields(api.post(URL, {"consumer": {"email": "x@example.com"}, "billingSettings": settings}))
    customer = create(api, "y@example.com", billingSettings={"USD": USD_SETTINGS})
    assert field in refused_fields(api.patch(f"{URL}/{customer['id']}", {"billingSettings": settings}))
    assert api.get(f"{URL}/{customer['id']}").json()["billingSettings"] == customer["billingSettings"]
    assert BillingSettings.objects.count() == 1


def test_a_disabled_auto_recharge_keeps_its_threshold_and_amount(api):
    settings = {"USD": {"autoRecharge": {"enabled": False, "threshold": "4", "amount": "20"}}}
    data = create(api, billingSettings=settings)
    assert data["billingSettings"]["USD"] == {
        "lowBalanceThreshold": None,
        "autoRecharge": {"enabled": False, "threshold": "4.00", "amount": "20.00"},
    }


def test_an_inline_customer_of_a_subscription_takes_billing_settings(test_api):
    plan = make_plan(test_api.merchant)
    body = {
        "customer": {"consumer": {"email": "in@example.com"}, "billingSettings": {"USDC": {"lowBalanceThreshold": "5"}}}
    }
    response = test_api.post("/v0/subscriptions", {**body, "planId": str(plan.id)})
    assert response.status_code == 201, response.json()
    customer = test_api.get(f"{URL}/{response.json()['customerId']}").json()
    assert customer["billingSettings"]["USDC"]["lowBalanceThreshold"] == "5.000000"


def test_the_service_refuses_settings_that_break_the_rules(merchant):
    customer, _ = customer_create(merchant=merchant, email="a@example.com")
    with pytest.raises(ValueError, match="autoRecharge.threshold"):
        customer_update(
            merchant=merchant,
            customer=customer,
            billing_settings={
                "USDC": CurrencyBillingSettings(auto_recharge_enabled=True, auto_recharge_amount=Decimal(1))
            },
        )
    with pytest.raises(ValueError, match="lowBalanceThreshold: must be a Decimal"):
        customer_update(
            merchant=merchant,
            customer=customer,
            billing_settings={"USDC": CurrencyBillingSettings(low_balance_threshold=5)},
        )
    with pytest.raises(ValueError, match="not a supported currency"):
        customer_update(merchant=merchant, customer=customer, billing_settings={"EUR": CurrencyBillingSettings()})
    assert not BillingSettings.objects.exists()


# --- admin ---------------------------------------------------------------------------------------


@pytest.fixture
def staff(client, merchant):
    user = merchant_staff_create(merchant=merchant, username="sam", email="sam@m.example", password="pw-123456789")
    client.force_login(user)
    return client


def admin_form(**fields):
    return {"name": "", "phone": "", "address": "{}", "external_id": "", "metadata": "{}", **fields}


def test_the_admin_shows_and_edits_billing_settings_through_the_same_rules(staff, merchant):
    customer, _ = customer_create(
        merchant=merchant,
        email="ada@example.com",
        billing_settings={"USD": CurrencyBillingSettings(low_balance_threshold=Decimal("2"))},
    )
    url = reverse("admin:customers_customer_change", args=[customer.pk])
    form = staff.get(url).context["adminform"].form
    assert form["billing_settings"].initial == {
        "USD": {"lowBalanceThreshold": "2.00", "autoRecharge": {"enabled": False, "threshold": None, "amount": None}}
    }

    bad = '{"USDC": {"autoRecharge": {"enabled": true, "threshold": "1", "amount": "0"}}}'
    response = staff.post(url, admin_form(billing_settings=bad))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["billing_settings"]
    assert any(error.startswith("USDC.autoRecharge.amount:") for error in errors), errors
    assert list(BillingSettings.objects.values_list("currency", flat=True)) == ["USD"]

    # the form holds the whole of the settings, replaced: USDC set, USD's auto-recharge on
    good = '{"USDC": {"lowBalanceThreshold": "7"}, "USD": {"autoRecharge": {"enabled": true, "threshold": "1", "amount": "9"}}}'
    assert staff.post(url, admin_form(billing_settings=good)).status_code == 302
    rows = {row.currency: row for row in BillingSettings.objects.all()}
    assert (rows["USDC"].low_balance_threshold, rows["USD"].auto_recharge_amount) == (Decimal(7), Decimal(9))
    assert "USD" in rows and len(rows) == 2


def test_the_admin_creates_a_customer_with_billing_settings(staff, merchant):
    response = staff.post(
        reverse("admin:customers_customer_add"),
        admin_form(email="new@example.com", billing_settings='{"USDC": {"lowBalanceThreshold": "1"}}'),
    )
    assert response.status_code == 302
    (row,) = BillingSettings.objects.all()
    assert (row.merchant, row.customer.email, row.low_balance_threshold) == (merchant, "new@example.com", Decimal(1))


def test_an_archived_customers_settings_are_shown_read_only(staff, merchant):
    customer, _ = customer_create(
        merchant=merchant,
        email="gone@example.com",
        billing_settings={"USDC": CurrencyBillingSettings(low_balance_threshold=Decimal("3"))},
    )
    staff.post(
        reverse("admin:customers_customer_changelist"),
        {"action": "archive_customers", "_selected_action": [str(customer.pk)]},
    )
    response = staff.get(reverse("admin:customers_customer_change", args=[customer.pk]))
    assert response.status_code == 200
    assert "3.000000" in response.content.decode()
