"""Entitlement items keep how their reservation was priced (a snapshot), so that usage against a
hold is charged what it reserved (apps.catalog.pricing.reservation).

Items that exist before this migration did not record it, and no stored row tells what it was:
they reserved at the price's model and properties of the time, from the period's running total
of the time, neither of which was kept. They get the snapshot closest to what charged their
usage until now:

- an item reserved at a per-unit price (`unit_price_override`): a standard price at that price,
  with the price's free units as they are now and a running total of 0. Usage was charged that
  price per unit after the free units left at each use; it is now charged the same price per unit
  (rounded over the units consumed rather than per use), and free units count as if the period
  had charged nothing before the hold;
- any other item: the price's model and properties as they are now, its free units as they are
  now, and a running total of 0. Usage was re-priced at each use from the price of the day and the
  running total of the day; it is now priced as if the reservation had started the period. For a
  graduated price reserved mid-period, or for free units, that is not what it reserved.

For these items R(quantity) may therefore differ from `reserved_amount`. What protects the
wallet holds all the same: a use is never charged more than the item has left, the use that takes
every unit left is charged exactly what is left, so a hold used up charges exactly what it
reserved, and whatever is not used goes back to the wallet when the hold is released.
"""

import apps.core.fields
from django.db import migrations, models


def _plain(value):
    whole, _, fraction = format(value, "f").partition(".")
    fraction = fraction.rstrip("0")
    return f"{whole}.{fraction}" if fraction else whole


def snapshot_existing_items(apps, schema_editor):
    EntitlementItem = apps.get_model("entitlements", "EntitlementItem")
    batch = []
    for item in EntitlementItem.objects.select_related("price").order_by("pk").iterator(chunk_size=1000):
        if item.unit_price_override is not None:
            item.pricing_model = "standard"
            item.pricing_properties = {"unitPrice": _plain(item.unit_price_override)}
        else:
            item.pricing_model = item.price.model
            item.pricing_properties = item.price.properties
        item.free_units = item.price.free_units
        item.units_before = 0
        batch.append(item)
        if len(batch) == 1000:
            EntitlementItem.objects.bulk_update(
                batch, ["pricing_model", "pricing_properties", "free_units", "units_before"]
            )
            batch = []
    if batch:
        EntitlementItem.objects.bulk_update(batch, ["pricing_model", "pricing_properties", "free_units", "units_before"])


class Migration(migrations.Migration):
    dependencies = [
        ("entitlements", "0004_item_remaining_amount"),
        ("catalog", "0002_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="entitlementitem",
            name="free_units",
            field=apps.core.fields.AmountField(decimal_places=12, default=0, max_digits=38),
        ),
        migrations.AddField(
            model_name="entitlementitem",
            name="units_before",
            field=apps.core.fields.AmountField(decimal_places=12, default=0, max_digits=38),
        ),
        migrations.AddField(
            model_name="entitlementitem",
            name="pricing_model",
            field=models.CharField(
                choices=[
                    ("standard", "Standard"),
                    ("graduated", "Graduated"),
                    ("volume", "Volume"),
                    ("package", "Package"),
                    ("percentage", "Percentage"),
                ],
                max_length=16,
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="entitlementitem",
            name="pricing_properties",
            field=models.JSONField(null=True),
        ),
        migrations.RunPython(snapshot_existing_items, migrations.RunPython.noop, elidable=False),
        migrations.AlterField(
            model_name="entitlementitem",
            name="pricing_model",
            field=models.CharField(
                choices=[
                    ("standard", "Standard"),
                    ("graduated", "Graduated"),
                    ("volume", "Volume"),
                    ("package", "Package"),
                    ("percentage", "Percentage"),
                ],
                max_length=16,
            ),
        ),
        migrations.AlterField(
            model_name="entitlementitem",
            name="pricing_properties",
            field=models.JSONField(),
        ),
    ]
