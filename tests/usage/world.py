"""A priced world for charging tests: a plan with instant prices, a funded customer."""

from decimal import Decimal

from apps.catalog.models import BillableMetric, PaymentTerm, Price, Product
from apps.ledger.selectors import account_balance, wallet_balances
from apps.ledger.services import merchant_revenue_account, platform_commission_account
from apps.payments.services import topup_session_create
from apps.subscriptions.services import subscription_create
from tests.factories import make_customer, make_plan, pay_session

D = Decimal


class Billing:
    def __init__(self, merchant, *, currency="USDC", email="buyer@example.com", minimum="0"):
        self.merchant = merchant
        self.currency = currency
        self.product = Product.objects.create(merchant=merchant, name="Compute")
        self.plan = make_plan(merchant, currency=currency)
        self.customer = make_customer(merchant, email=email)
        self.subscription = subscription_create(
            merchant=merchant, customer=self.customer, plan=self.plan, minimum_account_balance=D(minimum)
        )
        self.wallet = self.subscription.wallet

    def metric(
        self,
        *,
        aggregation="COUNT",
        model="standard",
        properties=None,
        term=PaymentTerm.INSTANT,
        free_units="0",
        override=False,
        value_property="",
    ):
        metric = BillableMetric.objects.create(
            merchant=self.merchant,
            product=self.product,
            name=f"metric {BillableMetric.objects.count() + 1}",
            aggregation=aggregation,
            value_property=value_property,
        )
        price = Price.objects.create(
            merchant=self.merchant,
            billable_metric=metric,
            model=model,
            payment_term=term,
            currency=self.currency,
            properties=properties if properties is not None else {"unitPrice": "0.001"},
            free_units=D(free_units),
            allow_price_override=override,
        )
        self.plan.prices.add(price)
        # as the catalog services do: a plan's updated_at moves with its prices
        self.plan.save(update_fields=["updated_at"])
        return metric

    def fund(self, amount):
        session = topup_session_create(
            merchant=self.merchant, customer=self.customer, amount=D(amount), currency=self.currency
        )
        pay_session(session)

    def available(self):
        return wallet_balances(wallet=self.wallet).available

    def held(self):
        return wallet_balances(wallet=self.wallet).held

    def revenue(self):
        return account_balance(account=merchant_revenue_account(merchant=self.merchant, currency=self.currency))

    def commission(self):
        return account_balance(
            account=platform_commission_account(currency=self.currency, livemode=self.merchant.livemode)
        )

    def event(self, key, metric, quantity=1, **extra):
        body = {
            "idempotencyKey": key,
            "customerId": str(self.customer.id),
            "properties": [{"billableMetricId": str(metric.id), "quantity": quantity}],
        }
        body.update(extra)
        return body
