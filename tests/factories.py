import factory

from apps.merchants.models import Merchant
from apps.merchants.services import api_key_create, merchant_create


class MerchantFactory(factory.Factory):
    """Creates a live merchant with its sandbox twin through the service."""

    class Meta:
        model = Merchant

    name = factory.Sequence(lambda n: f"Merchant {n}")
    contact_email = factory.Sequence(lambda n: f"billing{n}@merchant.example")

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return merchant_create(**kwargs)


def sandbox_of(merchant: Merchant) -> Merchant:
    return Merchant.objects.get(live_merchant=merchant)


def issue_key(merchant: Merchant, **kwargs) -> str:
    _, secret = api_key_create(merchant=merchant, **kwargs)
    return secret


def make_plan(merchant, *, currency="USDC", interval="monthly", code=None, prices=()):
    """A plan straight in the database (catalog validation is tested in tests/catalog)."""
    from apps.catalog.models import Plan, Product

    product = Product.objects.create(merchant=merchant, name="API")
    plan = Plan.objects.create(
        merchant=merchant,
        name=f"Plan {code or interval}",
        code=code or f"plan-{Plan.objects.filter(merchant=merchant).count() + 1}",
        product=product,
        currency=currency,
        billing_interval=interval,
    )
    plan.prices.set(prices)
    return plan


def make_customer(merchant, email="customer@example.com", **fields):
    from apps.customers.models import Customer

    return Customer.objects.create(merchant=merchant, email=email, **fields)


def pay_session(session, amount=None, reference=None):
    """Money arriving for a session as the payments service receives it (a test payment of
    `amount`, default what is still due), in either mode."""
    from apps.payments.models import PaymentSource
    from apps.payments.services import Arrival, amount_due, payment_receive

    arrival = Arrival(
        source=PaymentSource.TEST,
        amount=amount if amount is not None else amount_due(session),
        currency=session.currency,
        external_reference=reference or f"test:{session.id}",
        clearing="test",
    )
    return payment_receive(session_id=session.id, arrival=arrival)
