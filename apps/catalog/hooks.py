"""What the catalog asks of the apps above it, without importing them.

The catalog stands below usage and subscriptions (see the layers in conventions): it cannot
read their rows, yet a price or a metric that has priced usage must keep what that usage was
priced and measured by, and a plan with live subscriptions keeps the currency and interval they
are billed in. The apps above register here, in their `AppConfig.ready()`, functions answering
"does this price (or metric) have usage?" and "how many live subscriptions does this plan
have?"; the catalog asks them all.

A check runs inside the caller's transaction and should be one indexed existence query.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apps.catalog.models import BillableMetric, Plan, Price

PriceUsageCheck = Callable[["Price"], bool]
MetricUsageCheck = Callable[["BillableMetric"], bool]
PlanSubscriptionCount = Callable[["Plan"], int]

_price_usage_checks: list[PriceUsageCheck] = []
_metric_usage_checks: list[MetricUsageCheck] = []
_plan_subscription_counts: list[PlanSubscriptionCount] = []


def register_price_usage_check(check: PriceUsageCheck) -> None:
    """Register `check(price) -> bool`: whether some usage was priced by `price`. Registering
    the same function twice (a second `ready()`) keeps one."""
    if check not in _price_usage_checks:
        _price_usage_checks.append(check)


def register_metric_usage_check(check: MetricUsageCheck) -> None:
    """Register `check(metric) -> bool`: whether some usage of `metric` was recorded."""
    if check not in _metric_usage_checks:
        _metric_usage_checks.append(check)


def register_plan_subscription_count(count: PlanSubscriptionCount) -> None:
    """Register `count(plan) -> int`: how many subscriptions to `plan` are not terminated."""
    if count not in _plan_subscription_counts:
        _plan_subscription_counts.append(count)


def plan_live_subscriptions(plan: Plan) -> int:
    return sum(count(plan) for count in _plan_subscription_counts)


def price_has_usage(price: Price) -> bool:
    return any(check(price) for check in _price_usage_checks)


def metric_has_usage(metric: BillableMetric) -> bool:
    return any(check(metric) for check in _metric_usage_checks)
