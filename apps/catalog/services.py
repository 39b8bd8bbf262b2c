"""Writes of the catalog. The API and the admin both call these, so a price, a metric or a
plan is validated the same way whichever door it comes through.

Errors name the field as the API spells it (`paymentTerm`, `properties.tiers[1].upTo`):
400 (`FieldError`) for what the values alone get wrong, 404 for a reference to a row this
merchant row does not own, 409 for a taken plan code, and 422 (`Unprocessable`) for rules that
depend on stored rows (a metric's aggregation, a plan's currency).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.catalog import hooks
from apps.catalog.models import (
    ADDITIVE_AGGREGATIONS,
    Aggregation,
    BillableMetric,
    BillingInterval,
    Invoicing,
    PaymentTerm,
    Plan,
    Price,
    PriceModel,
    Product,
)
from apps.catalog.pricing import PriceConfigError, validate_properties
from apps.catalog.pricing.base import parse_decimal
from apps.catalog.selectors import reference_not_found
from apps.core.errors import Conflict, FieldError, Unprocessable
from apps.core.metadata import clean_metadata
from apps.core.models import violated_constraint
from apps.merchants.models import Merchant

PLAN_CODE_CONSTRAINT = "plan_unique_merchant_code"
MAX_GROUP_BY = 10
MAX_FEATURE_INT = 2**63 - 1


# --- helpers -------------------------------------------------------------------------------


def _only(changes: dict, allowed: set[str]) -> None:
    unknown = set(changes) - allowed
    if unknown:
        raise TypeError(f"cannot update {sorted(unknown)}; allowed: {sorted(allowed)}")


def _owned(row, *, merchant: Merchant, noun: str, field: str):
    """A referenced row must be this merchant row's own (else the same 404 as a missing id)."""
    if row.merchant_id != merchant.pk:
        raise reference_not_found(noun=noun, id=row.pk, field=field, merchant=merchant)
    return row


def _require_text(value: Any, *, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise FieldError(field, f"{field} is required and may not be blank.", code="FIELD_REQUIRED")
    return value


def _decimal(raw: Any, *, field: str, code: str) -> Decimal:
    """A non-negative amount or quantity sent as a string (never a JSON float), at most 12 places."""
    try:
        return parse_decimal(raw, field=field, code=code)
    except PriceConfigError as exc:
        raise FieldError(exc.field, exc.message, code=exc.code) from None


def _properties_error(exc: PriceConfigError) -> FieldError:
    field = exc.field
    if field != "model" and not field.startswith("properties"):
        field = f"properties.{field}"
    return FieldError(field, exc.message, code=exc.code)


# --- products ------------------------------------------------------------------------------


def product_clean(*, name: str, metadata: Any) -> dict:
    """Validate a product's values; return its metadata."""
    _require_text(name, field="name")
    return clean_metadata(metadata)


def product_create(*, merchant: Merchant, name: str, description: str = "", metadata: dict | None = None) -> Product:
    metadata = product_clean(name=name, metadata=metadata)
    with transaction.atomic():
        return Product.objects.create(merchant=merchant, name=name, description=description, metadata=metadata)


def product_update(*, product: Product, **changes: Any) -> Product:
    _only(changes, {"name", "description", "metadata"})
    changes["metadata"] = product_clean(
        name=changes.get("name", product.name), metadata=changes.get("metadata", product.metadata)
    )
    with transaction.atomic():
        for name, value in changes.items():
            setattr(product, name, value)
        product.save()
    return product


# --- billable metrics ----------------------------------------------------------------------


def billable_metric_group_by_clean(group_by: Any) -> list[str]:
    if group_by is None:
        return []
    if not isinstance(group_by, list):
        raise FieldError(
            "groupBy", 'groupBy must be a list of usage metadata keys, such as ["region"].', code="INVALID_GROUP_BY"
        )
    if len(group_by) > MAX_GROUP_BY:
        raise FieldError("groupBy", f"groupBy takes at most {MAX_GROUP_BY} keys.", code="INVALID_GROUP_BY")
    seen: set[str] = set()
    for index, key in enumerate(group_by):
        field = f"groupBy[{index}]"
        if not isinstance(key, str) or not key.strip() or len(key) > 100:
            raise FieldError(field, f"{field} must be a metadata key: a non-blank string of at most 100 characters.")
        if key in seen:
            raise FieldError(field, f"{field}: {key!r} is listed twice.", code="DUPLICATE_GROUP_BY")
        seen.add(key)
    return list(group_by)


def _check_instant_prices_allow(*, metric: BillableMetric, aggregation: str) -> None:
    if aggregation in ADDITIVE_AGGREGATIONS:
        return
    instant = metric.prices.filter(archived_at__isnull=True, payment_term=PaymentTerm.INSTANT).first()
    if instant is not None:
        raise Unprocessable(
            f"aggregation: metric {metric.pk} has the instant price {instant.pk}, and only SUM and COUNT metrics "
            f"can be priced per event; {aggregation} is known only at the end of the period. Change that price's "
            "paymentTerm to in_arrears (or archive it) first.",
            code="INSTANT_PRICE_NEEDS_SUM_OR_COUNT",
            details={"field": "aggregation", "priceId": str(instant.pk), "aggregation": aggregation},
        )


def billable_metric_clean(
    *,
    merchant: Merchant,
    product: Product,
    name: str,
    aggregation: str,
    group_by: Any,
    value_property: str = "",
    metric: BillableMetric | None = None,
) -> list[str]:
    """Validate a metric as a whole (a new one, or `metric` changed); return its group_by."""
    _owned(product, merchant=merchant, noun="product", field="productId")
    _require_text(name, field="name")
    group_by = billable_metric_group_by_clean(group_by)
    if aggregation == Aggregation.UNIQUE_COUNT and not value_property:
        raise FieldError(
            "valueProperty",
            "a UNIQUE_COUNT metric counts the distinct values of a usage metadata key; name that key here.",
            code="VALUE_PROPERTY_REQUIRED",
        )
    measure_changed = metric is not None and (
        aggregation != metric.aggregation or value_property != metric.value_property
    )
    if measure_changed and hooks.metric_has_usage(metric):
        raise Conflict(
            f"Billable metric {metric.id} already has usage, measured with aggregation {metric.aggregation} "
            f"and valueProperty {metric.value_property!r}; changing them would rewrite past meters. "
            "Create a new metric instead.",
            code="METRIC_HAS_USAGE",
        )
    if metric is not None and aggregation != metric.aggregation:
        _check_instant_prices_allow(metric=metric, aggregation=aggregation)
    return group_by


def billable_metric_create(
    *,
    merchant: Merchant,
    product: Product,
    name: str,
    aggregation: str,
    description: str = "",
    unit: str = "",
    value_property: str = "",
    group_by: list[str] | None = None,
) -> BillableMetric:
    group_by = billable_metric_clean(
        merchant=merchant,
        product=product,
        name=name,
        aggregation=aggregation,
        group_by=group_by,
        value_property=value_property,
    )
    with transaction.atomic():
        return BillableMetric.objects.create(
            merchant=merchant,
            product=product,
            name=name,
            description=description,
            unit=unit,
            aggregation=aggregation,
            value_property=value_property,
            group_by=group_by,
        )


def billable_metric_update(*, metric: BillableMetric, **changes: Any) -> BillableMetric:
    _only(changes, {"product", "name", "description", "unit", "aggregation", "value_property", "group_by"})
    with transaction.atomic():
        changes["group_by"] = billable_metric_clean(
            merchant=metric.merchant,
            metric=metric,
            product=changes.get("product", metric.product),
            name=changes.get("name", metric.name),
            aggregation=changes.get("aggregation", metric.aggregation),
            group_by=changes.get("group_by", metric.group_by),
            value_property=changes.get("value_property", metric.value_property),
        )
        for name, value in changes.items():
            setattr(metric, name, value)
        metric.save()
    return metric


# --- prices --------------------------------------------------------------------------------


def price_clean(
    *,
    merchant: Merchant,
    billable_metric: BillableMetric | None,
    model: str,
    payment_term: str,
    properties: Any,
    free_units: Any,
    amount: Any,
) -> dict[str, Any]:
    """Validate a price as a whole and return its stored values (`properties` normalized).

    Raises FieldError (400) for what the values alone get wrong, NotFound for a metric of
    another merchant row, Unprocessable (422) where the metric's aggregation forbids the term.
    """
    if billable_metric is None:
        return _fee_clean(
            model=model, payment_term=payment_term, properties=properties, free_units=free_units, amount=amount
        )
    _owned(billable_metric, merchant=merchant, noun="billable metric", field="billableMetricId")
    if amount is not None:
        raise FieldError(
            "amount",
            "amount is only for fees (prices without billableMetricId); a metered price is priced by its "
            'properties, such as {"unitPrice": "0.001"}.',
            code="AMOUNT_ONLY_FOR_FEES",
        )
    if properties is None:
        raise FieldError(
            "properties",
            f'a metered price needs properties for its {model} model, such as {{"unitPrice": "0.001"}} for standard.',
            code="PROPERTIES_REQUIRED",
        )
    try:
        normalized = validate_properties(model, properties)
    except PriceConfigError as exc:
        raise _properties_error(exc) from None
    if payment_term == PaymentTerm.IN_ADVANCE:
        raise FieldError(
            "paymentTerm",
            "in_advance is for fees (prices without billableMetricId): usage cannot be billed before it happens. "
            "A metered price is instant (charged per event) or in_arrears (invoiced at period end).",
            code="METERED_PRICE_IN_ADVANCE",
        )
    if model == PriceModel.VOLUME and payment_term == PaymentTerm.INSTANT:
        raise FieldError(
            "paymentTerm",
            "a volume price cannot be instant: its tier, and so the price of every unit, depends on the "
            "period's total, which is known only when the period ends. Use paymentTerm in_arrears, or the "
            "graduated model to price each event as it comes.",
            code="VOLUME_PRICE_NOT_INSTANT",
        )
    free = _decimal(0 if free_units is None else free_units, field="freeUnits", code="INVALID_FREE_UNITS")
    if payment_term == PaymentTerm.INSTANT and billable_metric.aggregation not in ADDITIVE_AGGREGATIONS:
        raise Unprocessable(
            f"paymentTerm: billable metric {billable_metric.pk} aggregates {billable_metric.aggregation}, which is "
            "known only at the end of the period, so it cannot be priced per event. Use paymentTerm in_arrears, "
            "or a SUM or COUNT metric for an instant price.",
            code="INSTANT_PRICE_NEEDS_SUM_OR_COUNT",
            details={
                "field": "paymentTerm",
                "billableMetricId": str(billable_metric.pk),
                "aggregation": billable_metric.aggregation,
            },
        )
    return {"model": model, "payment_term": payment_term, "properties": normalized, "free_units": free, "amount": None}


def _fee_clean(*, model: str, payment_term: str, properties: Any, free_units: Any, amount: Any) -> dict[str, Any]:
    if model != PriceModel.STANDARD:
        raise FieldError(
            "model",
            f"a fee (a price without billableMetricId) is a flat amount per period, so its model is standard; "
            f"got {model!r}. Give a billableMetricId to price usage with the {model} model.",
            code="FEE_MODEL_MUST_BE_STANDARD",
        )
    if amount is None:
        raise FieldError(
            "amount",
            'a fee (a price without billableMetricId) needs amount, such as "49.00".',
            code="FEE_AMOUNT_REQUIRED",
        )
    if properties not in (None, {}):
        raise FieldError(
            "properties",
            "a fee (a price without billableMetricId) has no properties: its price is amount.",
            code="FEE_HAS_NO_PROPERTIES",
        )
    if payment_term == PaymentTerm.INSTANT:
        raise FieldError(
            "paymentTerm",
            "a fee is charged once per billing period: in_advance (at the period start) or in_arrears (at its "
            "end); instant is for usage.",
            code="FEE_PAYMENT_TERM",
        )
    if free_units is not None and _decimal(free_units, field="freeUnits", code="INVALID_FREE_UNITS") != 0:
        raise FieldError("freeUnits", "a fee counts no usage, so it has no free units.", code="FEE_HAS_NO_FREE_UNITS")
    fee = _decimal(amount, field="amount", code="INVALID_AMOUNT")
    return {"model": model, "payment_term": payment_term, "properties": {}, "free_units": Decimal(0), "amount": fee}


def price_create(
    *,
    merchant: Merchant,
    billable_metric: BillableMetric | None,
    payment_term: str,
    currency: str,
    model: str = PriceModel.STANDARD,
    properties: Any = None,
    free_units: Any = 0,
    allow_price_override: bool = False,
    amount: Any = None,
    invoice_display_name: str = "",
) -> Price:
    values = price_clean(
        merchant=merchant,
        billable_metric=billable_metric,
        model=model,
        payment_term=payment_term,
        properties=properties,
        free_units=free_units,
        amount=amount,
    )
    with transaction.atomic():
        return Price.objects.create(
            merchant=merchant,
            billable_metric=billable_metric,
            currency=currency,
            allow_price_override=allow_price_override,
            invoice_display_name=invoice_display_name,
            **values,
        )


# What a price update may change (in form order: the admin lays its fields out from it).
PRICE_FIELDS = (
    "billable_metric",
    "model",
    "payment_term",
    "currency",
    "properties",
    "free_units",
    "allow_price_override",
    "amount",
    "invoice_display_name",
)


# What a price that has priced usage keeps (its API names): that usage was charged, or waits
# to be invoiced, by them. Its display name, allowPriceOverride and a fee's amount stay editable.
PRICE_TERMS = {
    "billable_metric": "billableMetricId",
    "model": "model",
    "payment_term": "paymentTerm",
    "currency": "currency",
    "properties": "properties",
    "free_units": "freeUnits",
}


def price_update_clean(*, price: Price, **changes: Any) -> dict[str, Any]:
    """Validate a change of `price`: the merged result as a new price would be, and against
    every plan that holds it (currency, one price per metric). Returns every field to set.

    A price that has priced usage keeps its terms (PRICE_TERMS): changing one is 409
    PRICE_IN_USE, whatever the new value's validity. Sending a term's current value is no change.
    """
    _only(changes, set(PRICE_FIELDS))
    _check_not_archived(price)
    _check_terms_kept_if_used(price=price, changes=changes)
    merged = {name: changes.get(name, getattr(price, name)) for name in PRICE_FIELDS}
    becomes_fee = merged["billable_metric"] is None
    if becomes_fee and "properties" not in changes and not price.is_fee:
        merged["properties"] = None  # a metered price turned into a fee drops its properties
    if not becomes_fee and "amount" not in changes and price.is_fee:
        merged["amount"] = None
    if becomes_fee and "free_units" not in changes:
        merged["free_units"] = None
    merged.update(
        price_clean(
            merchant=price.merchant,
            billable_metric=merged["billable_metric"],
            model=merged["model"],
            payment_term=merged["payment_term"],
            properties=merged["properties"],
            free_units=merged["free_units"],
            amount=merged["amount"],
        )
    )
    candidate = copy.copy(price)
    for name, value in merged.items():
        setattr(candidate, name, value)
    for plan in Plan.objects.filter(prices=price).prefetch_related("prices"):
        _check_price_fits_plan(price=candidate, plan=plan)
    return merged


def _changed_terms(*, price: Price, changes: dict[str, Any]) -> list[str]:
    """The API names of the terms in `changes` whose value differs from the price's.

    Values are compared as stored: properties in their canonical form under the (new) model,
    free units as numbers (none is 0 on a metered price). A value that cannot be read is a change.
    """
    changed = []
    for name, api_name in PRICE_TERMS.items():
        if name not in changes:
            continue
        new = changes[name]
        if name == "billable_metric":
            same = getattr(new, "pk", new) == price.billable_metric_id
        elif name == "properties":
            model = changes.get("model", price.model)
            stored = _canonical_properties(price.model, price.properties)
            same = stored is not None and _canonical_properties(model, new) == stored
        elif name == "free_units":
            same = _same_number(new, price.free_units)
        else:
            same = new == getattr(price, name)
        if not same:
            changed.append(api_name)
    return changed


def _canonical_properties(model: str, properties: Any) -> dict | None:
    if not properties:
        return {}
    try:
        return validate_properties(model, properties)
    except PriceConfigError:
        return None


def _same_number(raw: Any, current: Decimal) -> bool:
    try:
        return (Decimal(0) if raw is None else parse_decimal(raw, field="freeUnits", code="INVALID")) == current
    except PriceConfigError:
        return False


def _check_terms_kept_if_used(*, price: Price, changes: dict[str, Any]) -> None:
    changed = _changed_terms(price=price, changes=changes)
    if not changed or not hooks.price_has_usage(price):
        return
    fields = ", ".join(changed)
    raise Conflict(
        f"Price {price.pk} has priced usage, so its {fields} can no longer change: usage already charged "
        "or waiting to be invoiced was priced by them. Create a new price with the new values and switch "
        "the plan to it (PATCH /v0/plans/{id} with its prices). invoiceDisplayName, allowPriceOverride and "
        "a fee's amount stay editable.",
        code="PRICE_IN_USE",
        details={"priceId": str(price.pk), "fields": changed},
    )


def _touch_plans_of(price: Price) -> None:
    """A plan's updated_at changes with its prices: usage ingestion caches a plan's prices
    under (plan id, updated_at)."""
    Plan.objects.filter(prices=price).update(updated_at=timezone.now())


def price_update(*, price: Price, **changes: Any) -> Price:
    fields = price_update_clean(price=price, **changes)
    with transaction.atomic():
        for name, value in fields.items():
            setattr(price, name, value)
        price.save()
        _touch_plans_of(price)
    return price


def _check_not_archived(price: Price) -> None:
    if price.archived_at is not None:
        raise Unprocessable(
            f"Price {price.pk} is archived and can no longer be changed; create a new price instead.",
            code="PRICE_ARCHIVED",
            details={"priceId": str(price.pk)},
        )


def _check_price_fits_plan(*, price: Price, plan: Plan) -> None:
    if price.currency != plan.currency:
        raise Unprocessable(
            f"currency: this price is on plan {plan.code!r} ({plan.pk}), which bills in {plan.currency}; "
            f"a plan, its prices and its invoices share one currency, so it cannot become {price.currency}.",
            code="PRICE_CURRENCY_MISMATCH",
            details={
                "field": "currency",
                "planId": str(plan.pk),
                "planCurrency": plan.currency,
                "priceCurrency": price.currency,
            },
        )
    if price.billable_metric_id is not None:
        for other in plan.prices.all():
            if other.pk != price.pk and other.billable_metric_id == price.billable_metric_id:
                raise Unprocessable(
                    f"billableMetricId: plan {plan.code!r} ({plan.pk}) already prices billable metric "
                    f"{price.billable_metric_id} with price {other.pk}; a plan prices each metric once.",
                    code="PLAN_METRIC_PRICED_TWICE",
                    details={"field": "billableMetricId", "planId": str(plan.pk), "priceId": str(other.pk)},
                )


def price_archive(*, price: Price) -> Price:
    """DELETE: the price leaves the lists and cannot be added to plans; plans that hold it keep it."""
    with transaction.atomic():
        if price.archived_at is None:
            price.archived_at = timezone.now()
            price.save(update_fields=["archived_at", "updated_at"])
            _touch_plans_of(price)
    return price


# --- plans ---------------------------------------------------------------------------------


def _whole_number(value: Any, *, field: str, nullable: bool, meaning: str) -> int | None:
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > MAX_FEATURE_INT:
        allowed = "a whole number, 0 or more" + (", or null for no limit" if nullable else "")
        raise FieldError(field, f"{field} ({meaning}) must be {allowed}; got {value!r}.", code="INVALID_FEATURE")
    return value


def _is_static_feature(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, str):
        return len(value) <= 500
    return isinstance(value, int) and 0 <= value <= MAX_FEATURE_INT


def plan_features_clean(features: Any, *, current: dict | None = None) -> dict:
    """Validate `features` and return what is stored.

    `rateLimit` (requests per second) and `monthlyQueryLimit` are whole numbers, or null for
    no limit; `webhooks` a whole number; other named features are booleans, strings or whole
    numbers. With `current` (a PATCH) the keys sent are merged into it, and a named feature
    sent as null is removed.
    """
    if features is None:
        features = {}
    if not isinstance(features, dict):
        raise FieldError(
            "features",
            'features must be an object, such as {"rateLimit": 100, "monthlyQueryLimit": 10000, "webhooks": 3}.',
            code="INVALID_FEATURES",
        )
    result: dict[str, Any] = {"rateLimit": None, "monthlyQueryLimit": None, "webhooks": 0}
    result.update(current or {})
    for key, value in features.items():
        field = f"features.{key}"
        if not isinstance(key, str) or not key.strip() or len(key) > 100:
            raise FieldError("features", "feature names are non-blank strings of at most 100 characters.")
        if key == "rateLimit":
            result[key] = _whole_number(value, field=field, nullable=True, meaning="requests per second")
        elif key == "monthlyQueryLimit":
            result[key] = _whole_number(value, field=field, nullable=True, meaning="queries a month")
        elif key == "webhooks":
            result[key] = _whole_number(value, field=field, nullable=False, meaning="webhook endpoints allowed")
        elif value is None:
            result.pop(key, None)
        elif _is_static_feature(value):
            result[key] = value
        else:
            raise FieldError(
                field,
                f"{field} must be a boolean, a string of at most 500 characters or a whole number, 0 or more "
                f"(null removes it); got {value!r}.",
                code="INVALID_FEATURE",
            )
    return result


def _plan_prices_clean(*, merchant: Merchant, prices: Iterable[Price]) -> list[Price]:
    prices = list(prices)
    seen: set = set()
    for index, price in enumerate(prices):
        _owned(price, merchant=merchant, noun="price", field=f"prices[{index}]")
        if price.pk in seen:
            raise FieldError(f"prices[{index}]", f"price {price.pk} is listed twice.", code="DUPLICATE_PRICE")
        seen.add(price.pk)
    return prices


def _check_plan_prices(*, currency: str, prices: list[Price], kept: set) -> None:
    """422 rules between a plan and its prices. `kept` are ids already on the plan, which may
    stay there after being archived."""
    metrics: dict = {}
    for index, price in enumerate(prices):
        field = f"prices[{index}]"
        if price.archived_at is not None and price.pk not in kept:
            raise Unprocessable(
                f"{field}: price {price.pk} is archived and can no longer be added to a plan.",
                code="PRICE_ARCHIVED",
                details={"field": field, "priceId": str(price.pk)},
            )
        if price.currency != currency:
            raise Unprocessable(
                f"{field}: price {price.pk} is in {price.currency} but the plan bills in {currency}; "
                "a plan, its prices and its invoices share one currency.",
                code="PRICE_CURRENCY_MISMATCH",
                details={
                    "field": field,
                    "priceId": str(price.pk),
                    "priceCurrency": price.currency,
                    "planCurrency": currency,
                },
            )
        if price.billable_metric_id is not None:
            if price.billable_metric_id in metrics:
                raise Unprocessable(
                    f"{field}: price {price.pk} prices billable metric {price.billable_metric_id}, which "
                    f"prices[{metrics[price.billable_metric_id]}] already prices; a plan prices each metric once.",
                    code="PLAN_METRIC_PRICED_TWICE",
                    details={
                        "field": field,
                        "priceId": str(price.pk),
                        "billableMetricId": str(price.billable_metric_id),
                    },
                )
            metrics[price.billable_metric_id] = index


def _code_taken(*, merchant: Merchant, code: str, exclude=None) -> Conflict:
    other = Plan.objects.filter(merchant=merchant, code=code).exclude(pk=exclude).first()
    return Conflict(
        f"code: the plan code {code!r} is already used by plan {other.pk if other else '(being created)'}; "
        "plan codes are unique per merchant.",
        code="PLAN_CODE_TAKEN",
        details={"field": "code", "code": code, "planId": str(other.pk) if other else None},
    )


def plan_clean(
    *,
    merchant: Merchant,
    name: str,
    code: str,
    product: Product,
    currency: str,
    prices: Iterable[Price],
    features: Any,
    plan: Plan | None = None,
    merge_features: bool = False,
    billing_interval: str | None = None,
) -> tuple[dict, list[Price]]:
    """Validate a plan as a whole (a new one, or `plan` changed); return (features, prices).

    With `merge_features` (an API PATCH) the features sent are merged into the stored ones.
    A `plan` with live subscriptions keeps its currency and billing interval (None: unchanged).
    """
    if plan is not None:
        terms = {"currency": currency, "billing_interval": billing_interval}
        _check_subscribed_plan_keeps_terms(plan=plan, changes={k: v for k, v in terms.items() if v is not None})
    _require_text(name, field="name")
    _require_text(code, field="code")
    _owned(product, merchant=merchant, noun="product", field="productId")
    features = plan_features_clean(features, current=plan.features if plan and merge_features else None)
    prices = _plan_prices_clean(merchant=merchant, prices=prices)
    kept = {p.pk for p in plan.prices.all()} if plan is not None else set()
    _check_plan_prices(currency=currency, prices=prices, kept=kept)
    exclude = plan.pk if plan is not None else None
    if Plan.objects.filter(merchant=merchant, code=code).exclude(pk=exclude).exists():
        raise _code_taken(merchant=merchant, code=code, exclude=exclude)
    return features, prices


def plan_create(
    *,
    merchant: Merchant,
    name: str,
    code: str,
    product: Product,
    currency: str,
    billing_interval: str = BillingInterval.MONTHLY,
    prices: Iterable[Price] = (),
    features: dict | None = None,
    invoicing: str = Invoicing.AUTOMATIC,
) -> Plan:
    features, prices = plan_clean(
        merchant=merchant, name=name, code=code, product=product, currency=currency, prices=prices, features=features
    )
    try:
        with transaction.atomic():
            plan = Plan.objects.create(
                merchant=merchant,
                name=name,
                code=code,
                product=product,
                currency=currency,
                billing_interval=billing_interval,
                features=features,
                invoicing=invoicing,
            )
            plan.prices.set(prices)
    except IntegrityError as exc:
        if violated_constraint(exc) == PLAN_CODE_CONSTRAINT:
            raise _code_taken(merchant=merchant, code=code) from None
        raise
    return plan


def _check_subscribed_plan_keeps_terms(*, plan: Plan, changes: dict) -> None:
    """A plan with live subscriptions keeps its currency (their wallets are in it) and its
    billing interval (their periods are computed from it)."""
    for field, api_name in (("currency", "currency"), ("billing_interval", "billingInterval")):
        if field in changes and changes[field] != getattr(plan, field):
            live = hooks.plan_live_subscriptions(plan)
            if live:
                raise Conflict(
                    f"{api_name}: plan {plan.code!r} ({plan.pk}) has {live} subscription(s) that are not "
                    f"terminated, billed in its {field.replace('_', ' ')}; create a new plan instead.",
                    code="PLAN_HAS_SUBSCRIPTIONS",
                    details={"field": api_name},
                )


def plan_update(*, plan: Plan, merge_features: bool = True, **changes: Any) -> Plan:
    """PATCH: `prices` replaces the list; `features` is merged into the stored features
    (replaced with `merge_features=False`, as the admin's form edits them whole)."""
    _only(changes, {"name", "code", "product", "currency", "billing_interval", "prices", "features", "invoicing"})
    new_prices = changes.pop("prices", None)
    changes["features"], prices = plan_clean(
        merchant=plan.merchant,
        plan=plan,
        merge_features=merge_features,
        name=changes.get("name", plan.name),
        code=changes.get("code", plan.code),
        product=changes.get("product", plan.product),
        currency=changes.get("currency", plan.currency),
        billing_interval=changes.get("billing_interval", plan.billing_interval),
        prices=list(plan.prices.all()) if new_prices is None else new_prices,
        features=changes.get("features", {} if merge_features else plan.features),
    )
    try:
        with transaction.atomic():
            for name, value in changes.items():
                setattr(plan, name, value)
            plan.save()
            plan.prices.set(prices)
    except IntegrityError as exc:
        if violated_constraint(exc) == PLAN_CODE_CONSTRAINT:
            raise _code_taken(merchant=plan.merchant, code=plan.code, exclude=plan.pk) from None
        raise
    if hasattr(plan, "_prefetched_objects_cache"):
        plan._prefetched_objects_cache.pop("prices", None)
    return plan
