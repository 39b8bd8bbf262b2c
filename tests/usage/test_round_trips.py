"""The number of database round trips of the ingestion hot path stays fixed: it must not grow
with the number of events of a batch (a guard against per-row queries creeping in)."""

from decimal import Decimal

from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.customers.models import Customer
from apps.payments.services import adjustment_create
from apps.subscriptions.services import subscription_create
from tests.usage.world import Billing


def test_one_event_takes_a_fixed_number_of_round_trips(api):
    billing = Billing(api.merchant)
    metric = billing.metric()
    billing.fund("10")
    api.post("/v0/usage", billing.event("warm", metric))
    with CaptureQueriesContext(connection) as queries:
        assert api.post("/v0/usage", billing.event("measured", metric)).status_code == 201
    trips = [
        q["sql"]
        for q in queries.captured_queries
        # the test's own transaction turns the charge's into a savepoint; the shared ledger
        # accounts are cached once a transaction that read them commits, never inside a test
        if "SAVEPOINT" not in q["sql"] and not q["sql"].startswith('SELECT "ledger_account"')
    ]
    # 1: the key probe, the subscriptions and the wallet lock; 2: the ledger and the rows
    # (plus COMMIT in production)
    assert len(trips) == 2, "\n".join(sql[:120] for sql in trips)


def test_one_event_from_an_entitlement_takes_a_fixed_number_of_round_trips(api):
    billing = Billing(api.merchant)
    metric = billing.metric()
    billing.fund("10")
    body = {
        "customerId": str(billing.customer.id),
        "entitlementData": [{"billableMetricId": str(metric.id), "quantity": 4}],
    }
    entitlement = api.post("/v0/entitlements", body).json()
    api.post("/v0/usage", billing.event("warm", metric, entitlementId=entitlement["id"]))
    with CaptureQueriesContext(connection) as queries:
        response = api.post("/v0/usage", billing.event("measured", metric, entitlementId=entitlement["id"]))
        assert response.status_code == 201
    trips = [
        q["sql"]
        for q in queries.captured_queries
        if "SAVEPOINT" not in q["sql"] and not q["sql"].startswith('SELECT "ledger_account"')
    ]
    # 1: the key probe, the subscriptions and the wallet lock; 2, 3: the entitlement and its
    # items (resolving); 4, 5: the same, locked; 6: the ledger and the rows; 7, 8: the item
    # and the entitlement saved
    assert len(trips) == 8, "\n".join(sql[:120] for sql in trips)


def test_a_batch_takes_as_many_round_trips_for_40_events_as_for_4(api):
    billing = Billing(api.merchant)
    metric = billing.metric()
    customers = []
    for i in range(40):
        customer = Customer.objects.create(merchant=api.merchant, email=f"batch{i}@example.com")
        subscription_create(merchant=api.merchant, customer=customer, plan=billing.plan)
        adjustment_create(merchant=api.merchant, customer=customer, amount=Decimal("5"), currency="USDC", reason="seed")
        customers.append(customer)

    def batch(prefix, count):
        return {
            "events": [
                {
                    "idempotencyKey": f"{prefix}{i}",
                    "customerId": str(customers[i].id),
                    "properties": [{"billableMetricId": str(metric.id), "quantity": 1}],
                }
                for i in range(count)
            ]
        }

    api.post("/v0/usage/batch", batch("warm", 2))
    counts = []
    for prefix, size in (("small", 4), ("large", 40)):
        with CaptureQueriesContext(connection) as queries:
            assert api.post("/v0/usage/batch", batch(prefix, size)).status_code == 201
        counts.append(len(queries))
    assert counts[0] == counts[1], counts


def test_the_key_probe_is_planned_with_its_values_and_the_rest_is_prepared(api, settings):
    """A generic plan of the key probe made while the events table was nearly empty could pick
    the (merchant, timestamp) index and scan every event of the merchant for each key, for as
    long as the connection lived: the probe is planned with its values every time, the other
    hot statements stay prepared."""
    billing = Billing(api.merchant)
    metric = billing.metric()
    billing.fund("10")
    assert (
        api.post("/v0/usage/batch", {"events": [billing.event(f"k{i}", metric) for i in range(3)]}).status_code == 201
    )
    assert api.post("/v0/usage", billing.event("single", metric)).status_code == 201
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert settings.DATABASES["default"]["OPTIONS"]["prepare_threshold"] == 0  # (the default)
    assert any("INSERT INTO" in sql and "usage_usageevent" in sql for sql in prepared), prepared
    assert not any("e0.idempotency_key = k.key" in sql for sql in prepared), prepared
