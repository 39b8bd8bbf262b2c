"""The admin base: merchant staff see, choose and save only their merchant's rows."""

import pytest
from django.urls import reverse

from apps.merchants.models import User
from apps.merchants.services import merchant_staff_create
from tests.factories import MerchantFactory, sandbox_of
from tests.tenancy_app.models import Widget


@pytest.fixture
def two_merchants(db):
    a, b = MerchantFactory(name="Alpha"), MerchantFactory(name="Beta")
    Widget.objects.create(merchant=a, name="alpha-live")
    Widget.objects.create(merchant=sandbox_of(a), name="alpha-sandbox")
    Widget.objects.create(merchant=b, name="beta-live")
    return a, b


@pytest.fixture
def staff_client(client, two_merchants):
    a, _ = two_merchants
    user = merchant_staff_create(merchant=a, username="alice", email="alice@alpha.example", password="pw-123456789")
    client.force_login(user)
    return client


def changelist_names(client):
    response = client.get(reverse("admin:tenancy_app_widget_changelist"))
    assert response.status_code == 200
    return sorted(w.name for w in response.context["cl"].result_list)


def test_staff_sees_only_their_merchants_live_rows(staff_client):
    assert changelist_names(staff_client) == ["alpha-live"]


def test_staff_cannot_open_another_merchants_row(staff_client, two_merchants):
    beta_widget = Widget.objects.get(name="beta-live")
    response = staff_client.get(reverse("admin:tenancy_app_widget_change", args=[beta_widget.pk]))
    assert response.status_code in (302, 404)
    assert Widget.objects.get(pk=beta_widget.pk).name == "beta-live"


def test_foreign_key_choices_are_scoped(staff_client):
    response = staff_client.get(reverse("admin:tenancy_app_widget_add"))
    form = response.context["adminform"].form
    assert "merchant" not in form.fields
    assert sorted(w.name for w in form.fields["parent"].queryset) == ["alpha-live"]


def test_saving_assigns_the_staff_merchant_and_refuses_foreign_parents(staff_client, two_merchants):
    a, _ = two_merchants
    beta_widget = Widget.objects.get(name="beta-live")
    url = reverse("admin:tenancy_app_widget_add")
    refused = staff_client.post(url, {"name": "sneaky", "parent": str(beta_widget.pk)})
    assert refused.status_code == 200  # form redisplayed with an error
    assert not Widget.objects.filter(name="sneaky").exists()
    staff_client.post(url, {"name": "new-one"})
    assert Widget.objects.get(name="new-one").merchant == a


def test_mode_switch_shows_the_sandbox_rows(staff_client, two_merchants):
    a, _ = two_merchants
    staff_client.post(reverse("admin-switch-mode"), {"mode": "sandbox", "next": "/admin/"})
    assert changelist_names(staff_client) == ["alpha-sandbox"]
    staff_client.post(reverse("admin:tenancy_app_widget_add"), {"name": "made-in-sandbox"})
    assert Widget.objects.get(name="made-in-sandbox").merchant == sandbox_of(a)
    staff_client.post(reverse("admin-switch-mode"), {"mode": "live"})
    assert changelist_names(staff_client) == ["alpha-live"]


def test_superuser_sees_everything(client, two_merchants):
    admin_user = User.objects.create_superuser(username="root", email="root@platform.example", password="pw-123456789")
    client.force_login(admin_user)
    assert changelist_names(client) == ["alpha-live", "alpha-sandbox", "beta-live"]


def test_staff_cannot_manage_merchants_or_users(staff_client):
    assert staff_client.get(reverse("admin:merchants_merchant_changelist")).status_code == 403
    assert staff_client.get(reverse("admin:merchants_user_changelist")).status_code == 403


def test_superuser_creating_a_merchant_creates_its_sandbox(client, db):
    from apps.merchants.models import Merchant

    admin_user = User.objects.create_superuser(username="root", email="root@platform.example", password="pw-123456789")
    client.force_login(admin_user)
    client.post(
        reverse("admin:merchants_merchant_add"),
        {"name": "Gamma", "contact_email": "g@gamma.example", "commission_rate": "0.07", "payout_wallet_address": ""},
    )
    live = Merchant.objects.get(name="Gamma", livemode=True)
    assert Merchant.objects.get(live_merchant=live).commission_rate == live.commission_rate


def test_a_service_refusing_a_save_is_a_form_error_and_nothing_stays(staff_client):
    from django.contrib.admin.models import LogEntry

    response = staff_client.post(reverse("admin:tenancy_app_widget_add"), {"name": "refused-by-the-service"})
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert form.non_field_errors() == ["The service refused this widget."]
    assert form["name"].value() == "refused-by-the-service"  # the same POST, shown again
    assert not Widget.objects.filter(name="refused-by-the-service").exists()
    assert not LogEntry.objects.exists()
