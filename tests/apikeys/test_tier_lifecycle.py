"""A paid tier's renewal that is never paid: dunning ends and the subscription goes back to the
free tier instead of ending (its keys keep working, on free's limits); the renewal is issued
again for the share of the tier's fee served."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from apps.apikeys.services import api_key_create
from apps.catalog.demo import seed_catalog
from apps.customers.models import Customer
from apps.invoices.models import Invoice
from apps.invoices.services.dunning import dun_due
from apps.ledger.selectors import ledger_check
from apps.payments.services import topup_session_create
from apps.subscriptions.models import Subscription
from apps.subscriptions.services import periods_advance
from apps.webhooks.models import Event
from tests.factories import pay_session

pytestmark = pytest.mark.django_db

D = Decimal


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_an_unpaid_renewal_moves_a_paid_tier_back_to_free_at_dunnings_end(api, merchant, time_machine):
    time_machine.move_to(at("2026-01-10T08:00"), tick=False)
    seed_catalog(merchant=merchant)
    customer = Customer.objects.create(merchant=merchant, email="ops@acme.example")
    pay_session(topup_session_create(merchant=merchant, customer=customer, amount=D("250"), currency="USD"))
    created = api_key_create(merchant=merchant, customer=customer, tier_code="growth")
    secret, subscription_id = created.secret, created.key.subscription_id
    assert created.payment is None  # 199 from the wallet: 51 left

    def verify():
        return api.post("/v0/apiKeys/verify", {"apiKey": secret, "cost": 0}).json()

    assert verify()["tier"] == "growth"
    time_machine.move_to(at("2026-02-10T09:02"), tick=False)
    periods_advance(subscription_id=subscription_id)
    renewal = Invoice.objects.get(subscription_id=subscription_id, kind="period")
    assert renewal.status == "open" and renewal.total == D("199")  # 51 cannot pay it
    for moment in ("2026-02-17T09:02", "2026-02-18T09:02", "2026-02-20T09:02", "2026-02-24T09:02"):
        time_machine.move_to(at(moment), tick=False)
        dun_due()
    subscription = Subscription.objects.select_related("plan").get(pk=subscription_id)
    assert subscription.plan.code == "free" and subscription.status != "terminated"
    answer = verify()
    assert (answer["code"], answer["tier"], answer["rateLimit"]) == ("VALID", "free", 10)
    renewal.refresh_from_db()
    assert renewal.status == "void"
    again = Invoice.objects.get(subscription_id=subscription_id, kind="period", status="open")
    # Growth served 02-10 08:00 -> 02-24 09:02 of the 28-day period: 199 x 20222 / 40320 min
    fee = next(line for line in again.lines.all() if line.payment_term == "in_advance")
    assert fee.amount == (D("199") * 20222 / 40320).quantize(D("0.01"))
    assert again.dunning_ended_at is not None
    types = list(Event.objects.filter(type__startswith="subscription.").values_list("type", flat=True))
    assert "subscription.terminated" not in types and "subscription.updated" in types
    assert ledger_check() == []
