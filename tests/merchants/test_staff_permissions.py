"""Merchant staff have a defined permission set (the "Merchant staff" group): what they need on
their merchant's models, nothing on the platform's, and money rows are never deletable."""

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, Permission
from django.test import Client, RequestFactory
from django.urls import reverse

from apps.ledger.models import Entry, LedgerTransaction
from apps.merchants.models import User
from apps.merchants.permissions import MERCHANT_STAFF_GROUP, merchant_staff_group_sync
from apps.merchants.services import merchant_staff_create
from apps.payments.models import Adjustment, Payment
from apps.usage.models import UsageEvent
from tests.usage.world import Billing

# The set README.md (Admin) documents. tenancy_app.widget is the tests' own tenant model.
STAFF_PERMISSIONS = {
    "catalog": {"product": "vac", "billablemetric": "vac", "price": "vac", "plan": "vac"},
    "customers": {"customer": "vac"},
    "ledger": {"ledgertransaction": "v", "entry": "v", "account": "v", "wallet": "v"},
    "payments": {
        "paymentsession": "vc",
        "paymentattempt": "v",
        "payment": "v",
        "paymentrefund": "v",
        "paymentdispute": "v",
        "adjustment": "va",
    },
    "subscriptions": {"subscription": "vc", "billingperiod": "v"},
    "invoices": {"invoice": "vc", "invoiceline": "v"},
    "entitlements": {"entitlement": "vc", "entitlementitem": "v"},
    "usage": {"usageevent": "vc", "usageline": "v", "dispute": "vc"},
    "merchants": {"apikey": "vac"},
    "webhooks": {"webhookendpoint": "vc", "delivery": "vc", "deliveryattempt": "v"},
    "apikeys": {"customerapikey": "vc", "tierchange": "v"},
    "settlements": {"settlement": "v", "walletaddress": "v"},
    "tenancy_app": {"widget": "vac"},
}
ACTIONS = {"v": "view", "a": "add", "c": "change"}
MONEY_MODELS = (LedgerTransaction, Entry, Payment, UsageEvent, Adjustment)


def codenames(group) -> set[str]:
    return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}


@pytest.fixture
def world(api):
    billing = Billing(api.merchant)
    metric = billing.metric()
    billing.fund("5")
    assert api.post("/v0/usage", billing.event("perm-1", metric)).status_code == 201
    customer = billing.customer
    adjusted = api.post(
        f"/v0/customers/{customer.id}/adjustments", {"amount": "1", "currency": "USDC", "reason": "goodwill"}
    )
    assert adjusted.status_code == 201
    return billing


@pytest.fixture
def staff(world):
    user = merchant_staff_create(
        merchant=world.merchant, username="sam", email="sam@m.example", password="pw-123456789"
    )
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def operator(db):
    user = User.objects.create_superuser(username="op", email="op@platform.example", password="pw-123456789")
    client = Client()
    client.force_login(user)
    return client


def test_the_staff_group_holds_exactly_the_documented_set(db):
    group = Group.objects.get(name=MERCHANT_STAFF_GROUP)
    expected = {
        f"{app}.{ACTIONS[letter]}_{model}"
        for app, models in STAFF_PERMISSIONS.items()
        for model, letters in models.items()
        for letter in letters
    }
    assert codenames(group) == expected
    assert not any(".delete_" in name for name in codenames(group))


def test_staff_created_through_the_service_are_in_the_group(merchant):
    user = merchant_staff_create(merchant=merchant, username="sam", email="sam@m.example", password="pw-123456789")
    assert list(user.groups.values_list("name", flat=True)) == [MERCHANT_STAFF_GROUP]
    assert user.has_perm("catalog.add_product") and not user.has_perm("catalog.delete_product")


def test_the_group_follows_the_code_after_a_hand_edit(db):
    group = Group.objects.get(name=MERCHANT_STAFF_GROUP)
    before = codenames(group)
    group.permissions.add(Permission.objects.get(codename="delete_adjustment"))
    group.permissions.remove(Permission.objects.get(codename="view_product"))
    merchant_staff_group_sync()
    assert codenames(group) == before


NEEDED = [
    "catalog_product",
    "catalog_billablemetric",
    "catalog_price",
    "catalog_plan",
    "customers_customer",
    "ledger_ledgertransaction",
    "ledger_account",
    "ledger_wallet",
    "payments_paymentsession",
    "payments_payment",
    "payments_adjustment",
    "subscriptions_subscription",
    "subscriptions_billingperiod",
    "invoices_invoice",
    "entitlements_entitlement",
    "usage_usageevent",
    "usage_dispute",
    "merchants_apikey",
    "apikeys_customerapikey",
    "apikeys_tierchange",
]


def test_staff_open_the_pages_they_need(staff):
    for name in NEEDED:
        assert staff.get(reverse(f"admin:{name}_changelist")).status_code == 200, name
    for name in ("catalog_product", "catalog_plan", "customers_customer", "payments_adjustment", "merchants_apikey"):
        assert staff.get(reverse(f"admin:{name}_add")).status_code == 200, name


def test_staff_get_403_on_platform_only_pages(staff):
    for name in ("merchants_merchant", "merchants_user", "auth_group"):
        assert staff.get(reverse(f"admin:{name}_changelist")).status_code == 403, name
        assert staff.get(reverse(f"admin:{name}_add")).status_code == 403, name
    for name in ("payments_paymentsession", "payments_payment", "ledger_ledgertransaction", "usage_usageevent"):
        assert staff.get(reverse(f"admin:{name}_add")).status_code == 403, name
    index = staff.get(reverse("admin:index")).content.decode()
    assert "/admin/merchants/merchant/" not in index and "/admin/auth/group/" not in index


def action_names(changelist) -> set[str]:
    form = changelist.context["action_form"]
    return set() if form is None else {name for name, _ in form.fields["action"].choices if name}


@pytest.mark.parametrize("who", ["staff", "operator"])
def test_money_rows_are_never_deletable(request, world, who):
    client = request.getfixturevalue(who)
    for model in MONEY_MODELS:
        assert model.objects.filter(merchant=world.merchant).exists(), model
    user = client.get(reverse("admin:index")).context["user"]
    admin_request = RequestFactory().get("/admin/")
    admin_request.user, admin_request.session = user, {}
    checked = set()
    for model, model_admin in admin.site._registry.items():
        inlines = model_admin.get_inline_instances(admin_request)
        for shown in [model_admin, *inlines]:
            if shown.model in MONEY_MODELS:
                row = shown.model.objects.filter(merchant=world.merchant).first()
                assert not shown.has_delete_permission(admin_request, row), shown
                checked.add(shown.model)
        if model not in MONEY_MODELS:
            continue
        opts = model._meta
        row = model.objects.filter(merchant=world.merchant).first()
        delete = reverse(f"admin:{opts.app_label}_{opts.model_name}_delete", args=[row.pk])
        assert client.post(delete, {"post": "yes"}).status_code == 403, model
        assert model.objects.filter(pk=row.pk).exists(), model
        assert "delete_selected" not in action_names(
            client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        )
    assert checked == set(MONEY_MODELS)


def test_actions_that_move_money_need_the_change_permission(world):
    """A user who may only view usage events can neither see nor run the refund action."""
    user = User.objects.create_user(username="viewer", password="pw-123456789", is_staff=True, merchant=world.merchant)
    user.user_permissions.add(Permission.objects.get(codename="view_usageevent"))
    client = Client()
    client.force_login(user)
    url = reverse("admin:usage_usageevent_changelist")
    page = client.get(url)
    assert page.status_code == 200
    assert "refund_events" not in action_names(page)
    event = UsageEvent.objects.get(merchant=world.merchant)
    client.post(url, {"action": "refund_events", "index": 0, "_selected_action": [str(event.pk)]})
    event.refresh_from_db()
    assert event.refunded_at is None
    user.user_permissions.add(Permission.objects.get(codename="change_usageevent"))
    assert "refund_events" in action_names(client.get(url))


def test_an_operator_adds_a_staff_user_who_joins_the_group(operator, merchant):
    response = operator.post(
        reverse("admin:merchants_user_add"),
        {
            "username": "newstaff",
            "password1": "a-long-pass-phrase-1",
            "password2": "a-long-pass-phrase-1",
            "usable_password": "true",
            "merchant": str(merchant.pk),
            "is_staff": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    user = User.objects.get(username="newstaff")
    assert user.merchant == merchant and user.groups.filter(name=MERCHANT_STAFF_GROUP).exists()


def test_the_staff_group_needs_a_merchant(operator):
    user = User.objects.create_user(username="platform", password="pw-123456789", is_staff=True)
    group = Group.objects.get(name=MERCHANT_STAFF_GROUP)
    page = operator.get(reverse("admin:merchants_user_change", args=[user.pk]))
    data = {
        key: value
        for key, value in page.context["adminform"].form.initial.items()
        if key in ("username", "email", "first_name", "last_name")
    }
    data.update({"is_active": "on", "is_staff": "on", "groups": [str(group.pk)], "date_joined_0": "2026-01-01"})
    data.update({"date_joined_1": "00:00:00"})
    refused = operator.post(reverse("admin:merchants_user_change", args=[user.pk]), data)
    assert refused.status_code == 200
    assert "set the merchant" in refused.content.decode()
    assert not user.groups.exists()
