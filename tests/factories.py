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
