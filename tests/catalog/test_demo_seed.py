"""The demo catalog of `make run`, in both modes of the demo merchant, seeded idempotently."""

from decimal import Decimal

from apps.catalog.demo import seed
from apps.catalog.models import BillableMetric, Plan, Price, Product
from apps.core.demo import demo_seeders


def counts():
    return (Product.objects.count(), BillableMetric.objects.count(), Price.objects.count(), Plan.objects.count())


def test_seed_creates_the_catalog_in_both_modes_and_is_idempotent(merchant, sandbox):
    seed(live=merchant, sandbox=sandbox)
    first = counts()
    # per mode: 1 product, 1 metric, 1 call price + 1 query price (tiers) + 2 fees, 5 plans
    assert first == (2, 2, 8, 10)
    seed(live=merchant, sandbox=sandbox)
    assert counts() == first


def test_seeded_plans_match_the_contract_tiers(merchant, sandbox):
    seed(live=merchant, sandbox=sandbox)
    for row in (merchant, sandbox):
        plans = {p.code: p for p in Plan.objects.filter(merchant=row).prefetch_related("prices")}
        assert set(plans) == {"payg", "free", "starter", "growth", "enterprise"}
        payg = plans["payg"]
        assert (payg.name, payg.currency, payg.billing_interval) == ("Pay as you go", "USDC", "monthly")
        [call_price] = payg.prices.all()
        assert (call_price.model, call_price.payment_term, call_price.properties) == (
            "standard",
            "instant",
            {"unitPrice": "0.001"},
        )
        assert call_price.billable_metric.aggregation == "COUNT"
        assert call_price.billable_metric.unit == "call"
        expected = {
            "free": ({"rateLimit": 10, "monthlyQueryLimit": 100, "webhooks": 0}, None),
            "starter": ({"rateLimit": 100, "monthlyQueryLimit": 10000, "webhooks": 3}, Decimal("49")),
            "growth": ({"rateLimit": 500, "monthlyQueryLimit": 100000, "webhooks": 10}, Decimal("199")),
            "enterprise": ({"rateLimit": 2000, "monthlyQueryLimit": None, "webhooks": 50}, None),
        }
        for code, (features, fee) in expected.items():
            plan = plans[code]
            assert plan.currency == "USD"
            assert plan.features == features
            prices = list(plan.prices.all())
            # every tier prices the query metric that verify counts, at 0 (the quota is included)
            [query] = [p for p in prices if p.billable_metric_id is not None]
            assert query.billable_metric == call_price.billable_metric
            assert (query.payment_term, query.currency, query.properties) == ("in_arrears", "USD", {"unitPrice": "0"})
            fees = [p for p in prices if p.billable_metric_id is None]
            if fee is None:
                assert fees == []
            else:
                [price] = fees
                assert (price.billable_metric_id, price.model, price.payment_term, price.currency) == (
                    None,
                    "standard",
                    "in_advance",
                    "USD",
                )
                assert price.amount == fee


def test_seed_is_registered_for_make_run():
    assert seed in demo_seeders()


def test_seeded_catalog_is_served_by_the_api(api, merchant, sandbox):
    seed(live=merchant, sandbox=sandbox)
    page = api.get("/v0/plans", {"code": "starter"}).json()
    [starter] = page["data"]
    prices = [api.get(f"/v0/prices/{price_id}").json() for price_id in starter["prices"]]
    # (oldest first: the query metric's price at 0, shared by every tier, then the plan's fee)
    query, fee = prices
    assert (query["paymentTerm"], query["currency"], query["properties"]) == ("in_arrears", "USD", {"unitPrice": "0"})
    assert (fee["amount"], fee["currency"], fee["paymentTerm"]) == ("49.00", "USD", "in_advance")
