"""A customer with usage, an invoice and a portal link, for the portal's tests (in USDC unless told)."""

from datetime import timedelta
from decimal import Decimal

from django.test import Client

from apps.invoices.services.invoices import invoice_create_one_off
from apps.portal.services import portal_link_create
from tests.conftest import Api
from tests.factories import issue_key
from tests.usage.world import Billing


class PortalWorld:
    def __init__(self, merchant, *, email="ada@example.com", currency="USDC"):
        self.merchant = merchant
        self.billing = Billing(merchant, email=email, currency=currency)
        self.metric = self.billing.metric(properties={"unitPrice": "0.25"})
        self.billing.fund("10")
        self.api = Api(issue_key(merchant), merchant)
        for n in range(3):
            response = self.api.post("/v0/usage", self.billing.event(f"{email}-call-{n}", self.metric, quantity=2))
            assert response.status_code == 201, response.content
        self.customer = self.billing.customer
        self.subscription = self.billing.subscription
        self.invoice = invoice_create_one_off(
            merchant=merchant,
            customer=self.customer,
            currency=currency,
            lines=[("Onboarding workshop", Decimal("100"))],
            auto_collect=False,
        )

    def link(self, expires_in=timedelta(minutes=15)) -> str:
        return portal_link_create(merchant=self.merchant, subscription=self.subscription, expires_in=expires_in).url

    def client(self, **options) -> Client:
        """A browser whose portal session is open."""
        client = Client(**options)
        response = client.get(self.link())
        assert response.status_code == 302, response.content
        return client
