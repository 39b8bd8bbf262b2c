"""What the catalog asks of the apps above it, without importing them.

The catalog stands below usage (see the layers in conventions): it cannot read usage rows,
yet a price or a metric that has priced usage must keep what that usage was priced and
measured by. The apps that record usage register here, in their `AppConfig.ready()`, a
function answering "does this price (or metric) have usage?"; the catalog asks them all.

A check runs inside the caller's transaction and should be one indexed existence query.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apps.catalog.models import BillableMetric, Price

PriceUsageCheck = Callable[["Price"], bool]
MetricUsageCheck = Callable[["BillableMetric"], bool]

_price_usage_checks: list[PriceUsageCheck] = []
_metric_usage_checks: list[MetricUsageCheck] = []


def register_price_usage_check(check: PriceUsageCheck) -> None:
    """Register `check(price) -> bool`: whether some usage was priced by `price`. Registering
    the same function twice (a second `ready()`) keeps one."""
    if check not in _price_usage_checks:
        _price_usage_checks.append(check)


def register_metric_usage_check(check: MetricUsageCheck) -> None:
    """Register `check(metric) -> bool`: whether some usage of `metric` was recorded."""
    if check not in _metric_usage_checks:
        _metric_usage_checks.append(check)


def price_has_usage(price: Price) -> bool:
    return any(check(price) for check in _price_usage_checks)


def metric_has_usage(metric: BillableMetric) -> bool:
    return any(check(metric) for check in _metric_usage_checks)
