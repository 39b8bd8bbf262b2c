"""The tenant boundary: every tenant model carries `merchant`; no key reaches another
merchant's rows, and a sandbox key never sees live rows."""

import pytest
from django.apps import apps
from django.db import models

from apps.core.models import TenantModel
from apps.merchants.models import Merchant
from tests.tenancy_app.models import Widget

# Platform-level models: the one place without a required merchant, each for a reason.
PLATFORM_MODELS = {
    "merchants.Merchant": "is the tenant itself",
    "merchants.User": "platform operators have no merchant; staff users point at theirs",
    "ledger.Account": "the platform's own accounts (commission, clearing) belong to no merchant",
    "ledger.Balance": "a balance row belongs to its account (tenant or platform)",
    "cards.StripeEvent": "one Stripe account per mode serves every merchant; an event names the platform's rows",
}


def platform_models():
    return [m for m in apps.get_models() if m.__module__.startswith("apps.")]


def label(model) -> str:
    return f"{model._meta.app_label}.{model.__name__}"


def test_every_tenant_model_carries_merchant():
    missing = []
    for model in platform_models():
        if label(model) in PLATFORM_MODELS:
            continue
        try:
            field = model._meta.get_field("merchant")
        except Exception:
            missing.append(label(model))
            continue
        if not (isinstance(field, models.ForeignKey) and field.related_model is Merchant and not field.null):
            missing.append(f"{label(model)} (merchant must be a required FK to Merchant)")
        elif not issubclass(model, TenantModel):
            missing.append(f"{label(model)} (use apps.core.models.TenantModel)")
    assert missing == [], f"tenant models without a required merchant: {missing}"


def test_every_unique_constraint_of_a_tenant_model_includes_merchant():
    offenders = []
    for model in platform_models():
        if not issubclass(model, TenantModel):
            continue
        for constraint in model._meta.constraints:
            if not isinstance(constraint, models.UniqueConstraint):
                continue
            columns = set(constraint.fields) | {getattr(e, "name", None) for e in constraint.expressions}
            if "merchant" not in columns and constraint.name not in GLOBAL_CONSTRAINTS:
                offenders.append(f"{label(model)}.{constraint.name}")
        for together in model._meta.unique_together:
            if "merchant" not in together:
                offenders.append(f"{label(model)} unique_together {together}")
        for field in model._meta.fields:
            if field.one_to_one:
                continue  # unique because the row it points at is; tenancy follows that row
            if field.unique and not field.primary_key and label(model) + "." + field.name not in GLOBALLY_UNIQUE:
                offenders.append(f"{label(model)}.{field.name} is unique across merchants")
    assert offenders == []


# Globally unique by design: random identifiers that never collide across merchants.
GLOBALLY_UNIQUE = {
    "merchants.ApiKey.prefix",
    # a customer key is found by its hash alone (verify then checks that it is the merchant's)
    "apikeys.CustomerApiKey.prefix",
    "apikeys.CustomerApiKey.secret_hash",
    # a portal link is opened by its token alone (the link then names the merchant and customer)
    "portal.PortalLink.token_hash",
}
GLOBAL_CONSTRAINTS = {
    # the same money (a PaymentIntent, a chain transfer) is credited once, whichever merchant
    # or session reports it
    "payment_unique_external_reference": "payments.Payment",
    # a processor's refund or dispute (re_..., dp_...) belongs to one charge, so to one payment:
    # recorded once whichever merchant's payment claims it (REFUND_OF_ANOTHER_PAYMENT otherwise)
    "payment_refund_unique_reference": "payments.PaymentRefund",
    "payment_dispute_unique_reference": "payments.PaymentDispute",
}


def test_the_walk_sees_the_tenant_models():
    labels = {label(m) for m in platform_models()}
    assert {"merchants.ApiKey", "core.IdempotencyRecord"} <= labels


def test_another_merchants_key_gets_404_for_a_row(api, other_api):
    created = api.post("/v0/widgets", {"name": "mine"}).json()
    assert api.get(f"/v0/widgets/{created['id']}").status_code == 200
    response = other_api.get(f"/v0/widgets/{created['id']}")
    assert response.status_code == 404
    assert response.json()["code"] == "NOT_FOUND"
    assert other_api.get("/v0/widgets").json()["data"] == []


def test_sandbox_key_never_sees_live_rows_and_back(api, test_api):
    live = api.post("/v0/widgets", {"name": "live"}).json()
    sandbox = test_api.post("/v0/widgets", {"name": "sandbox"}).json()
    assert live["livemode"] is True and sandbox["livemode"] is False
    assert test_api.get(f"/v0/widgets/{live['id']}").status_code == 404
    assert api.get(f"/v0/widgets/{sandbox['id']}").status_code == 404
    assert [w["name"] for w in test_api.get("/v0/widgets").json()["data"]] == ["sandbox"]
    assert [w["name"] for w in api.get("/v0/widgets").json()["data"]] == ["live"]


@pytest.mark.django_db
def test_rows_are_stored_against_the_sandbox_twin(test_api, sandbox):
    test_api.post("/v0/widgets", {"name": "s"})
    assert Widget.objects.get(name="s").merchant == sandbox
