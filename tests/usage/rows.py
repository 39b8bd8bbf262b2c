"""Usage rows for meter tests, written straight through the ORM (no ledger transaction):
the aggregation engine reads UsageLine alone, whatever priced it."""

import datetime as dt
import itertools
import uuid
from decimal import Decimal

from apps.catalog.models import BillableMetric, PaymentTerm, Price, Product
from apps.subscriptions.services import subscription_create
from apps.usage.models import UsageEvent, UsageLine
from tests.factories import make_customer, make_plan

_keys = itertools.count(1)


def at(text: str) -> dt.datetime:
    """An aware UTC datetime from "2025-03-01T10:00"."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


class UsageWorld:
    """One merchant's product, plan, customer and subscription, and a way to report usage."""

    def __init__(self, merchant, *, email="meter@example.com"):
        self.merchant = merchant
        self.product = Product.objects.create(merchant=merchant, name="Meters")
        self.plan = make_plan(merchant)
        self.customer = make_customer(merchant, email=email)
        self.subscription = subscription_create(merchant=merchant, customer=self.customer, plan=self.plan)

    def another_customer(self, email: str):
        customer = make_customer(self.merchant, email=email)
        subscription = subscription_create(merchant=self.merchant, customer=customer, plan=self.plan)
        return customer, subscription

    def metric(self, aggregation: str, *, value_property: str = "", group_by=()) -> BillableMetric:
        metric = BillableMetric.objects.create(
            merchant=self.merchant,
            product=self.product,
            name=f"{aggregation.lower()} metric",
            aggregation=aggregation,
            value_property=value_property,
            group_by=list(group_by),
        )
        Price.objects.create(
            merchant=self.merchant,
            billable_metric=metric,
            payment_term=PaymentTerm.IN_ARREARS,
            currency="USDC",
            properties={"unitPrice": "0.001"},
        )
        return metric

    def price(self, metric: BillableMetric, term: str) -> Price:
        """Another price of `metric`, on `term`."""
        return Price.objects.create(
            merchant=self.merchant,
            billable_metric=metric,
            payment_term=term,
            currency="USDC",
            properties={"unitPrice": "0.002"},
        )

    def report(
        self,
        metric: BillableMetric,
        when: dt.datetime | str,
        *,
        quantity="1",
        value="same",
        value_text=None,
        metadata=None,
        customer=None,
        subscription=None,
        refunded=False,
        created_at: dt.datetime | None = None,
        price: Price | None = None,
    ) -> UsageLine:
        """One event reporting `metric`; `value` defaults to the quantity (no valueProperty).
        The line is priced by `price` (default: the metric's first price), on its term."""
        when = at(when) if isinstance(when, str) else when
        price = price or metric.prices.order_by("created_at").first()
        customer = customer or self.customer
        subscription = subscription or self.subscription
        quantity = Decimal(quantity)
        value = quantity if value == "same" else (None if value is None else Decimal(value))
        if value_text is None:
            value_text = "" if value is None else str(value)
        event = UsageEvent.objects.create(
            merchant=self.merchant,
            idempotency_key=f"meter-{next(_keys)}-{uuid.uuid4()}",
            request_hash="0" * 64,
            customer=customer,
            subscription=subscription,
            timestamp=when,
            currency="USDC",
            amount=Decimal("0"),
            commission_amount=Decimal("0"),
            owner_revenue_amount=Decimal("0"),
            metadata=metadata or {},
            refunded_at=when + dt.timedelta(minutes=1) if refunded else None,
        )
        if created_at is not None:
            UsageEvent.objects.filter(pk=event.pk).update(created_at=created_at)
        return UsageLine.objects.create(
            merchant=self.merchant,
            event=event,
            position=0,
            billable_metric=metric,
            price=price,
            customer=customer,
            subscription=subscription,
            timestamp=when,
            quantity=quantity,
            value=value,
            value_text=value_text,
            payment_term=price.payment_term,
        )
