"""The admin's money actions cannot apply twice when a form is submitted twice (a double
click, a browser's resubmit): an adjustment's form carries a one-time token, a test payment
is once per session. (Refund and release: tests/usage/test_usage_admin.py.)"""

from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from apps.ledger.models import LedgerTransaction
from apps.ledger.selectors import ledger_check, wallet_balances
from apps.ledger.services import wallet_get_or_create
from apps.merchants.services import merchant_staff_create
from apps.payments.models import Adjustment, Payment, PaymentSession
from apps.payments.services import topup_session_create
from tests.concurrency import run_at_once
from tests.factories import MerchantFactory, make_customer

D = Decimal
ADD = "admin:payments_adjustment_add"


def staff_client(merchant, client=None):
    client = client or Client()
    user = merchant_staff_create(merchant=merchant, username="sam", email="sam@m.example", password="pw-123456789")
    client.force_login(user)
    return client


def form_token(client) -> str:
    page = client.get(reverse(ADD))
    assert page.status_code == 200
    return page.context["adminform"].form["form_token"].value()


def test_each_form_shown_has_its_own_token(merchant):
    client = staff_client(merchant)
    assert form_token(client) != form_token(client)


def test_an_adjustment_form_submitted_twice_adjusts_once(merchant):
    client = staff_client(merchant)
    customer = make_customer(merchant)
    body = {"customer": str(customer.id), "currency": "USDC", "amount": "3", "reason": "goodwill"}
    body["form_token"] = form_token(client)
    assert client.post(reverse(ADD), body).status_code == 302
    assert client.post(reverse(ADD), body).status_code == 302
    assert Adjustment.objects.count() == 1
    wallet = wallet_get_or_create(merchant=merchant, customer=customer, currency="USDC")
    assert wallet_balances(wallet=wallet).available == D("3")
    # a new form is a new adjustment
    body["form_token"] = form_token(client)
    assert client.post(reverse(ADD), body).status_code == 302
    assert Adjustment.objects.count() == 2
    assert ledger_check() == []


def test_a_token_cannot_be_reused_for_another_adjustment(merchant):
    client = staff_client(merchant)
    customer = make_customer(merchant)
    body = {"customer": str(customer.id), "currency": "USDC", "amount": "3", "reason": "goodwill"}
    body["form_token"] = form_token(client)
    client.post(reverse(ADD), body)
    refused = client.post(reverse(ADD), {**body, "amount": "30"})
    assert refused.status_code == 200
    assert "already submitted" in refused.content.decode()
    assert Adjustment.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_an_adjustment_form_submitted_twice_at_once_adjusts_once():
    merchant = MerchantFactory()
    customer = make_customer(merchant)
    token = form_token(staff_client(merchant))
    body = {"customer": str(customer.id), "currency": "USDC", "amount": "3", "reason": "goodwill", "form_token": token}
    user = merchant.staff.get()

    def submit(_):
        client = Client()
        client.force_login(user)
        try:
            return client.post(reverse(ADD), body).status_code
        finally:
            connection.close()

    assert run_at_once(4, submit) == [302] * 4
    assert Adjustment.objects.count() == 1
    wallet = wallet_get_or_create(merchant=merchant, customer=customer, currency="USDC")
    assert wallet_balances(wallet=wallet).available == D("3")


def test_validating_the_form_writes_nothing(merchant):
    """The adjustment is made by the admin's save, after validation: Form.clean() moves no money."""
    from django.contrib import admin
    from django.test import RequestFactory

    user = merchant_staff_create(merchant=merchant, username="sam", email="sam@m.example", password="pw-123456789")
    customer = make_customer(merchant)
    request = RequestFactory().get("/admin/")
    request.user, request.session = user, {}
    form_class = admin.site._registry[Adjustment].get_form(request, None)
    body = {"customer": str(customer.id), "currency": "USDC", "amount": "3", "reason": "goodwill", "form_token": "t"}
    form = form_class(body)
    assert form.is_valid(), form.errors
    assert not Adjustment.objects.exists()
    assert not LedgerTransaction.objects.filter(merchant=merchant).exists()


def test_an_insufficient_balance_is_a_form_error_and_nothing_is_written(merchant):
    from django.contrib.admin.models import LogEntry

    client = staff_client(merchant)
    customer = make_customer(merchant)
    token = form_token(client)
    body = {"customer": str(customer.id), "currency": "USDC", "amount": "-5", "reason": "too much", "form_token": token}
    refused = client.post(reverse(ADD), body)
    assert refused.status_code == 200
    form = refused.context["adminform"].form
    assert any("below zero" in error for error in form.non_field_errors())
    assert form["form_token"].value() == token  # the same form, shown again
    assert not Adjustment.objects.exists()
    assert not LedgerTransaction.objects.filter(merchant=merchant).exists()
    assert not LogEntry.objects.exists()
    # the corrected form (same token: nothing was made with it) adjusts once
    assert client.post(reverse(ADD), {**body, "amount": "2"}).status_code == 302
    assert client.post(reverse(ADD), {**body, "amount": "2"}).status_code == 302
    assert Adjustment.objects.get().amount == D("2")
    assert LogEntry.objects.count() == 2  # each submission is logged; one adjustment
    assert ledger_check() == []


def test_a_zero_adjustment_is_a_form_error(merchant):
    client = staff_client(merchant)
    customer = make_customer(merchant)
    body = {"customer": str(customer.id), "currency": "USDC", "amount": "0", "reason": "x"}
    refused = client.post(reverse(ADD), {**body, "form_token": form_token(client)})
    assert refused.status_code == 200
    assert "moves nothing" in refused.content.decode()
    assert not Adjustment.objects.exists()


def test_the_pay_action_submitted_twice_pays_once(test_api):
    sandbox = test_api.merchant
    session = topup_session_create(merchant=sandbox, customer=make_customer(sandbox), amount=D("5"), currency="USDC")
    client = staff_client(sandbox.live_merchant)
    client.post(reverse("admin-switch-mode"), {"mode": "sandbox"})
    data = {"action": "pay_in_sandbox", "index": 0, "_selected_action": [str(session.pk)]}
    first = client.post(reverse("admin:payments_paymentsession_changelist"), data, follow=True)
    assert "Paid 1 session(s)." in [str(m) for m in first.context["messages"]]
    again = client.post(reverse("admin:payments_paymentsession_changelist"), data, follow=True)
    assert any("already paid" in str(m) for m in again.context["messages"])
    assert Payment.objects.filter(session=session).count() == 1
    assert PaymentSession.objects.get(pk=session.pk).status == "paid"
    assert wallet_balances(wallet=session.wallet).available == D("5")
