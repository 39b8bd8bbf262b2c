"""Wallet adjustments: the API and the admin go through one service."""

from decimal import Decimal

import pytest
from django.urls import reverse

from apps.ledger.selectors import account_balance, ledger_check, wallet_balances
from apps.ledger.services import merchant_revenue_account, wallet_get_or_create
from apps.merchants.services import merchant_staff_create
from apps.payments.models import Adjustment
from tests.factories import make_customer


@pytest.fixture
def customer(api):
    return make_customer(api.merchant)


def adjust(api, customer, **body):
    return api.post(f"/v0/customers/{customer.id}/adjustments", body)


def test_credit_moves_money_from_merchant_revenue_to_the_wallet(api, customer):
    response = adjust(api, customer, amount="15.25", currency="USDC", reason="goodwill")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["object"] == "adjustment"
    assert body["amount"] == "15.250000"
    assert body["reason"] == "goodwill"
    wallet = wallet_get_or_create(merchant=api.merchant, customer=customer, currency="USDC")
    assert body["walletId"] == str(wallet.id)
    assert wallet_balances(wallet=wallet).available == Decimal("15.25")
    revenue = merchant_revenue_account(merchant=api.merchant, currency="USDC")
    assert account_balance(account=revenue) == Decimal("-15.25")  # the merchant owes the platform
    assert ledger_check() == []


def test_debit_within_the_balance_and_refused_beyond_it(api, customer):
    adjust(api, customer, amount="10", currency="USD", reason="credit")
    assert adjust(api, customer, amount="-4", currency="USD", reason="correction").status_code == 201
    refused = adjust(api, customer, amount="-6.01", currency="USD", reason="too much")
    assert refused.status_code == 402
    assert refused.json()["code"] == "INSUFFICIENT_BALANCE"
    assert "6.00" in refused.json()["message"]
    wallet = wallet_get_or_create(merchant=api.merchant, customer=customer, currency="USD")
    assert wallet_balances(wallet=wallet).available == Decimal("6")
    assert Adjustment.objects.count() == 2


def test_adjustments_are_listed_newest_first(api, customer):
    adjust(api, customer, amount="1", currency="USDC", reason="first")
    adjust(api, customer, amount="2", currency="USDC", reason="second")
    body = api.get(f"/v0/customers/{customer.id}/adjustments").json()
    assert [a["reason"] for a in body["data"]] == ["second", "first"]
    assert body["pagination"]["total"] == 2


@pytest.mark.parametrize(
    "body, field",
    [
        ({"amount": 1.5, "currency": "USDC", "reason": "x"}, "amount"),
        ({"amount": "1", "currency": "EUR", "reason": "x"}, "currency"),
        ({"amount": "1", "currency": "USDC"}, "reason"),
    ],
)
def test_bad_adjustment_is_400(api, customer, body, field):
    response = adjust(api, customer, **body)
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == field


def test_zero_adjustment_is_400(api, customer):
    """Judged from the request alone: 400, as the contract puts a field out of range."""
    response = adjust(api, customer, amount="0", currency="USDC", reason="nothing")
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "field": "amount",
            "message": "an adjustment of 0 moves nothing; send a positive credit or a negative debit.",
            "code": "ZERO_ADJUSTMENT",
        }
    ]


def test_another_merchants_customer_is_404(other_api, customer):
    assert adjust(other_api, customer, amount="1", currency="USDC", reason="x").status_code == 404
    assert other_api.get(f"/v0/customers/{customer.id}/adjustments").status_code == 404


def test_admin_adjustment_goes_through_the_same_service(client, api, customer):
    staff = merchant_staff_create(merchant=api.merchant, username="sam", email="sam@m.example", password="pw-123456789")
    client.force_login(staff)
    url = reverse("admin:payments_adjustment_add")
    response = client.post(
        url,
        {"customer": str(customer.id), "currency": "USDC", "amount": "3", "reason": "admin credit", "form_token": "t1"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    adjustment = Adjustment.objects.get()
    assert adjustment.actor == "admin sam"
    assert adjustment.merchant == api.merchant
    refused = client.post(
        url,
        {"customer": str(customer.id), "currency": "USDC", "amount": "-5", "reason": "too much", "form_token": "t2"},
    )
    assert refused.status_code == 200
    assert "below zero" in refused.content.decode()
    assert Adjustment.objects.count() == 1
    assert ledger_check() == []


def test_admin_ledger_pages_render_for_staff(client, api, customer):
    adjust(api, customer, amount="3", currency="USDC", reason="x")
    staff = merchant_staff_create(merchant=api.merchant, username="sam", email="sam@m.example", password="pw-123456789")
    client.force_login(staff)
    for name in ("ledger_wallet", "ledger_ledgertransaction", "payments_adjustment", "ledger_account"):
        assert client.get(reverse(f"admin:{name}_changelist")).status_code == 200
    wallet = wallet_get_or_create(merchant=api.merchant, customer=customer, currency="USDC")
    page = client.get(reverse("admin:ledger_wallet_change", args=[wallet.pk]))
    assert page.status_code == 200
    assert "3.000000" in page.content.decode()
