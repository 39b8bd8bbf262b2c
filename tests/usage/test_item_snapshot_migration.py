"""entitlements 0005: items that existed before the snapshot get the one closest to what
charged their usage until then (see the migration's docstring)."""

import importlib
from decimal import Decimal

from django.apps import apps as django_apps
from django.db import connection

from apps.entitlements.models import EntitlementItem
from apps.entitlements.services import EntitlementRequest, entitlement_create
from tests.usage.world import Billing

D = Decimal
GRADUATED = {"tiers": [{"upTo": "100", "unitPrice": "0.01"}, {"upTo": None, "unitPrice": "0.001"}]}

migration = importlib.import_module("apps.entitlements.migrations.0005_item_pricing_snapshot")


def test_existing_items_get_their_override_or_the_prices_current_strategy_from_a_running_total_of_0(api):
    billing = Billing(api.merchant)
    tokens = billing.metric(aggregation="SUM", model="graduated", properties=GRADUATED, free_units="5")
    calls = billing.metric(properties={"unitPrice": "0.5"}, override=True, free_units="2")
    billing.fund("100")
    assert api.post("/v0/usage", billing.event("before", tokens, quantity=90)).status_code == 201
    entitlement = entitlement_create(
        merchant=billing.merchant,
        customer=billing.customer,
        requests=[EntitlementRequest(tokens.id, D(20), None), EntitlementRequest(calls.id, D(4), D("0.250"))],
    )
    with connection.cursor() as cursor:
        # as before the migration: nothing recorded (the test's own rows checked first)
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("ALTER TABLE entitlements_entitlementitem ALTER COLUMN pricing_model DROP NOT NULL")
        cursor.execute("ALTER TABLE entitlements_entitlementitem ALTER COLUMN pricing_properties DROP NOT NULL")
        cursor.execute(
            "UPDATE entitlements_entitlementitem SET pricing_model = NULL, pricing_properties = NULL, "
            "free_units = 0, units_before = 0"
        )

        migration.snapshot_existing_items(django_apps, None)

        cursor.execute("ALTER TABLE entitlements_entitlementitem ALTER COLUMN pricing_model SET NOT NULL")
        cursor.execute("ALTER TABLE entitlements_entitlementitem ALTER COLUMN pricing_properties SET NOT NULL")
    items = {item.billable_metric_id: item for item in EntitlementItem.objects.filter(entitlement=entitlement)}

    reserved_at_90 = items[tokens.id]
    assert (reserved_at_90.pricing_model, reserved_at_90.pricing_properties) == (
        "graduated",
        tokens.prices.get().properties,
    )
    assert (reserved_at_90.free_units, reserved_at_90.units_before) == (D(5), D(0))
    at_override = items[calls.id]
    assert (at_override.pricing_model, at_override.pricing_properties) == ("standard", {"unitPrice": "0.25"})
    assert (at_override.free_units, at_override.units_before) == (D(2), D(0))
