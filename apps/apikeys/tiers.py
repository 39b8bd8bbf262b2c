"""Tiers: plans whose `features` hold `rateLimit` and `monthlyQueryLimit` (the contract's "API
keys for a merchant's customers, with tiers"). A tier's `code` is its name, matched without case
("Free" is free); its query metric is the COUNT metric the plan prices (at 0 in v0: the quota is
included), which verify's counted calls are recorded as."""

from dataclasses import dataclass

from apps.catalog.models import Aggregation, Plan, Price
from apps.core.errors import Unprocessable

FREE = "free"


@dataclass(frozen=True)
class Tier:
    plan: Plan
    rate_limit: int
    monthly_limit: int | None  # None: unlimited
    query_price: Price

    @property
    def code(self) -> str:
        return self.plan.code

    @property
    def query_metric_id(self):
        return self.query_price.billable_metric_id


def is_tier(plan: Plan) -> bool:
    """A plan whose features give a per-second limit (a whole number) and a monthly quota (a
    whole number, or null for unlimited)."""
    features = plan.features or {}
    rate, quota = features.get("rateLimit"), features.get("monthlyQueryLimit", False)
    whole = lambda value: isinstance(value, int) and not isinstance(value, bool)  # noqa: E731
    return whole(rate) and (quota is None or whole(quota))


def _tier_plans(merchant):
    return [plan for plan in Plan.objects.filter(merchant=merchant).order_by("created_at", "id") if is_tier(plan)]


def tier_of(plan: Plan) -> Tier:
    """The tier that `plan` is (422 NOT_A_TIER, TIER_WITHOUT_QUERY_METRIC when it cannot be)."""
    if not is_tier(plan):
        raise Unprocessable(
            f"Plan {plan.code} is not a tier: its features need rateLimit and monthlyQueryLimit.", code="NOT_A_TIER"
        )
    query_price = next(
        (
            price
            for price in plan.prices.select_related("billable_metric").order_by("created_at", "id")
            if price.billable_metric_id is not None and price.billable_metric.aggregation == Aggregation.COUNT
        ),
        None,
    )
    if query_price is None:
        raise Unprocessable(
            f"Tier {plan.code} prices no query metric: add a price (0) for the merchant's COUNT query metric to it.",
            code="TIER_WITHOUT_QUERY_METRIC",
        )
    features = plan.features
    limit = features.get("monthlyQueryLimit")
    return Tier(
        plan=plan,
        rate_limit=int(features["rateLimit"]),
        monthly_limit=None if limit is None else int(limit),
        query_price=query_price,
    )


def tier_get(*, merchant, code: str, field: str = "tier") -> Tier:
    """The merchant's tier named `code`, without case (422 UNKNOWN_TIER naming the tiers)."""
    plans = _tier_plans(merchant)
    for plan in plans:
        if plan.code.lower() == code.strip().lower():
            return tier_of(plan)
    if code.strip().lower() == FREE:
        raise _no_free_tier()
    names = ", ".join(plan.code for plan in plans) or "none"
    raise Unprocessable(f"{field}: no tier {code!r}; this merchant's tiers are: {names}.", code="UNKNOWN_TIER")


def _no_free_tier() -> Unprocessable:
    return Unprocessable(
        "This merchant has no free tier (a plan with code free whose features hold rateLimit and "
        "monthlyQueryLimit); keys fall back to it, so create it first.",
        code="NO_FREE_TIER",
    )


def free_tier(*, merchant) -> Tier:
    """The merchant's free tier (422 NO_FREE_TIER)."""
    for plan in _tier_plans(merchant):
        if plan.code.lower() == FREE:
            return tier_of(plan)
    raise _no_free_tier()


def tier_plans(*, merchant) -> list[Plan]:
    """The merchant's tier plans, oldest first (what a customer may move its keys to)."""
    return _tier_plans(merchant)
