"""Every admin page of every registered model renders, for an operator and for merchant staff."""

import pytest
from django.contrib import admin
from django.urls import reverse

from apps.merchants.models import User
from apps.merchants.services import merchant_staff_create
from tests.usage.world import Billing


@pytest.fixture
def populated(api):
    billing = Billing(api.merchant)
    metric = billing.metric()
    billing.fund("5")
    api.post("/v0/usage", billing.event("admin-smoke", metric))
    return api.merchant


@pytest.mark.parametrize("who", ["operator", "staff"])
def test_every_changelist_and_the_index_render(client, populated, who):
    if who == "operator":
        user = User.objects.create_superuser(username="op", email="op@platform.example", password="pw-123456789")
    else:
        user = merchant_staff_create(merchant=populated, username="st", email="st@m.example", password="pw-123456789")
    client.force_login(user)
    assert client.get(reverse("admin:index")).status_code == 200
    for model, model_admin in admin.site._registry.items():
        if not model_admin.has_view_permission(_request_for(user)):
            continue
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        response = client.get(url)
        assert response.status_code == 200, f"{url}: {response.status_code}"
        first = model_admin.get_queryset(_request_for(user)).first()
        if first is not None:
            change = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[first.pk])
            assert client.get(change).status_code == 200, change


def _request_for(user):
    from django.test import RequestFactory

    request = RequestFactory().get("/admin/")
    request.user = user
    request.session = {}
    return request
