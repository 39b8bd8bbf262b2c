"""List endpoints read a page in a fixed number of queries, whatever the number of rows on it."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.ledger.models import Wallet
from apps.ledger.services import wallet_get_or_create
from apps.merchants.services import merchant_staff_create
from apps.payments.services import adjustment_create
from apps.subscriptions.services import subscription_create
from tests.factories import make_customer, make_plan, pay_session

pytestmark = pytest.mark.django_db


def queries_of(get):
    with CaptureQueriesContext(connection) as captured:
        response = get()
    assert response.status_code == 200
    return len(captured), response


def add_customers_with_wallets(merchant, start, count):
    for n in range(start, start + count):
        customer = make_customer(merchant, email=f"c{n}@example.com")
        for currency in ("USD", "USDC"):
            wallet_get_or_create(merchant=merchant, customer=customer, currency=currency)
        adjustment_create(merchant=merchant, customer=customer, amount=Decimal(n + 1), currency="USDC", reason="credit")


def add_subscriptions(merchant, plan, start, count):
    for n in range(start, start + count):
        customer = make_customer(merchant, email=f"s{n}@example.com")
        subscription = subscription_create(
            merchant=merchant, customer=customer, plan=plan, prefund_amount=Decimal(n + 1)
        )
        if n % 2:
            pay_session(subscription.payment_sessions.get())


def test_the_customer_list_costs_the_same_queries_for_2_or_6_customers(api):
    add_customers_with_wallets(api.merchant, 0, 2)
    api.get("/v0/customers")  # the key and its merchant are cached after the first request
    two, response = queries_of(lambda: api.get("/v0/customers"))
    assert len(response.json()["data"]) == 2
    add_customers_with_wallets(api.merchant, 2, 4)
    six, response = queries_of(lambda: api.get("/v0/customers"))
    data = response.json()["data"]
    assert len(data) == 6
    assert two == six
    by_email = {c["consumer"]["email"]: c for c in data}
    assert [(w["currency"], w["balance"]) for w in by_email["c4@example.com"]["wallets"]] == [
        ("USD", "0.00"),
        ("USDC", "5.000000"),
    ]
    single = api.get(f"/v0/customers/{by_email['c4@example.com']['id']}").json()
    assert single["wallets"] == by_email["c4@example.com"]["wallets"]


def test_the_subscription_list_costs_the_same_queries_for_2_or_6_subscriptions(test_api):
    merchant = test_api.merchant
    plan = make_plan(merchant)
    add_subscriptions(merchant, plan, 0, 2)
    test_api.get("/v0/subscriptions")
    two, response = queries_of(lambda: test_api.get("/v0/subscriptions"))
    assert len(response.json()["data"]) == 2
    add_subscriptions(merchant, plan, 2, 4)
    six, response = queries_of(lambda: test_api.get("/v0/subscriptions"))
    data = response.json()["data"]
    assert len(data) == 6
    assert two == six
    for body in data:
        single = test_api.get(f"/v0/subscriptions/{body['id']}").json()
        assert (body["balance"], body["payment"]) == (single["balance"], single["payment"])
    assert sorted((s["balance"], s["payment"]["status"]) for s in data) == [
        ("0.000000", "pending"),
        ("0.000000", "pending"),
        ("0.000000", "pending"),
        ("2.000000", "paid"),
        ("4.000000", "paid"),
        ("6.000000", "paid"),
    ]


def test_the_wallet_admin_list_costs_the_same_queries_for_2_or_6_customers(client, merchant):
    user = merchant_staff_create(merchant=merchant, username="w", email="w@m.example", password="pw-123456789")
    client.force_login(user)
    url = reverse("admin:ledger_wallet_changelist")
    add_customers_with_wallets(merchant, 0, 1)
    client.get(url)
    two, _ = queries_of(lambda: client.get(url))
    add_customers_with_wallets(merchant, 1, 2)
    six, response = queries_of(lambda: client.get(url))
    assert Wallet.objects.filter(merchant=merchant).count() == 6
    assert two == six
    html = response.content.decode()
    assert '<td class="field-available">3.000000</td>' in html
    assert '<td class="field-held">0.000000</td>' in html


def test_the_account_admin_list_costs_the_same_queries_for_few_or_many_accounts(client, merchant):
    user = merchant_staff_create(merchant=merchant, username="a", email="a@m.example", password="pw-123456789")
    client.force_login(user)
    url = reverse("admin:ledger_account_changelist")
    add_customers_with_wallets(merchant, 0, 1)
    client.get(url)
    few, _ = queries_of(lambda: client.get(url))
    add_customers_with_wallets(merchant, 1, 2)
    many, response = queries_of(lambda: client.get(url))
    assert few == many
    html = response.content.decode()
    # each customer's USDC wallet was credited n + 1; the merchant's revenue gave 1 + 2 + 3
    for amount in ("1.000000", "2.000000", "3.000000", "-6.000000"):
        assert f'<td class="field-balance">{amount}</td>' in html, amount
