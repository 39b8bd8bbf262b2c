"""Demo catalog for `make run`: a pay-as-you-go plan and the contract's example API tiers,
in both the live and the sandbox rows of the demo merchant. Idempotent: what exists is kept."""

from django.db import transaction

from apps.catalog import services
from apps.catalog.models import (
    Aggregation,
    BillableMetric,
    BillingInterval,
    Currency,
    PaymentTerm,
    Plan,
    Price,
    PriceModel,
    Product,
)
from apps.merchants.models import Merchant

PRODUCT_NAME = "Demo API"
METRIC_NAME = "API calls"
CALL_PRICE = "0.001"

# (code, name, rateLimit, monthlyQueryLimit, webhooks, monthly fee in USD or None)
TIERS = (
    ("free", "Free", 10, 100, 0, None),
    ("starter", "Starter", 100, 10_000, 3, "49.00"),
    ("growth", "Growth", 500, 100_000, 10, "199.00"),
    ("enterprise", "Enterprise", 2_000, None, 50, None),  # price by contract
)


def seed(*, live: Merchant, sandbox: Merchant) -> None:
    for merchant in (live, sandbox):
        seed_catalog(merchant=merchant)


def seed_catalog(*, merchant: Merchant) -> None:
    with transaction.atomic():
        product = Product.objects.filter(merchant=merchant, name=PRODUCT_NAME).first()
        if product is None:
            product = services.product_create(
                merchant=merchant, name=PRODUCT_NAME, description="The demo merchant's metered API."
            )
        metric = BillableMetric.objects.filter(merchant=merchant, product=product, name=METRIC_NAME).first()
        if metric is None:
            metric = services.billable_metric_create(
                merchant=merchant, product=product, name=METRIC_NAME, aggregation=Aggregation.COUNT, unit="call"
            )
        if not Plan.objects.filter(merchant=merchant, code="payg").exists():
            price = Price.objects.filter(
                merchant=merchant,
                billable_metric=metric,
                payment_term=PaymentTerm.INSTANT,
                currency=Currency.USDC,
                archived_at__isnull=True,
            ).first()
            if price is None:
                price = services.price_create(
                    merchant=merchant,
                    billable_metric=metric,
                    model=PriceModel.STANDARD,
                    payment_term=PaymentTerm.INSTANT,
                    currency=Currency.USDC,
                    properties={"unitPrice": CALL_PRICE},
                    invoice_display_name="API calls",
                )
            services.plan_create(
                merchant=merchant,
                name="Pay as you go",
                code="payg",
                product=product,
                currency=Currency.USDC,
                billing_interval=BillingInterval.MONTHLY,
                prices=[price],
            )
        # the merchant's query metric that API-key verify counts, priced 0 on every tier (the
        # quota is included): counted calls show on the tier's invoices
        query_price = Price.objects.filter(
            merchant=merchant,
            billable_metric=metric,
            payment_term=PaymentTerm.IN_ARREARS,
            currency=Currency.USD,
            archived_at__isnull=True,
        ).first()
        if query_price is None:
            query_price = services.price_create(
                merchant=merchant,
                billable_metric=metric,
                model=PriceModel.STANDARD,
                payment_term=PaymentTerm.IN_ARREARS,
                currency=Currency.USD,
                properties={"unitPrice": "0"},
                invoice_display_name="Queries (included)",
            )
        for code, name, rate_limit, query_limit, webhooks, fee in TIERS:
            if Plan.objects.filter(merchant=merchant, code=code).exists():
                continue
            prices = [query_price]
            if fee is not None:
                prices.append(
                    services.price_create(
                        merchant=merchant,
                        billable_metric=None,
                        model=PriceModel.STANDARD,
                        payment_term=PaymentTerm.IN_ADVANCE,
                        currency=Currency.USD,
                        amount=fee,
                        invoice_display_name=f"{name} plan",
                    )
                )
            services.plan_create(
                merchant=merchant,
                name=name,
                code=code,
                product=product,
                currency=Currency.USD,
                billing_interval=BillingInterval.MONTHLY,
                prices=prices,
                features={"rateLimit": rate_limit, "monthlyQueryLimit": query_limit, "webhooks": webhooks},
            )
