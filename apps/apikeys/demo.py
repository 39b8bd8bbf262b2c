"""Demo customer API key for `make run`: in the sandbox, a customer of the demo merchant with a
key on the free tier, printed with a curl that verifies it. A key's secret is shown once, so
each run issues a fresh key and revokes the one the previous run printed, as `make run` does
with the merchant's own keys (the quota is the subscription's: a new key does not reset it)."""

from django.db import transaction

from apps.apikeys.models import CustomerApiKey
from apps.apikeys.selectors import tier_subscription
from apps.apikeys.services import api_key_create, api_key_revoke
from apps.apikeys.tiers import FREE, free_tier, tier_of
from apps.core.errors import Unprocessable
from apps.customers.selectors import customer_find_active_by_email

DEMO_KEY_EMAIL = "dev@demo-apikey.example"
DEMO_ORGANIZATION = "Demo API customer (make run)"


def seed(*, live, sandbox) -> list[str]:
    try:
        free_tier(merchant=sandbox)
    except Unprocessable:
        return []  # (no demo catalog: nothing to put a key on)
    with transaction.atomic():
        customer = customer_find_active_by_email(merchant=sandbox, email=DEMO_KEY_EMAIL)
        subscription = tier_subscription(customer=customer) if customer is not None else None
        # a tier bought while trying the demo is kept: the new key goes on the tier it has
        tier_code = subscription.plan.code if subscription is not None else FREE
        created = api_key_create(
            merchant=sandbox,
            customer=customer,
            organization_name=DEMO_ORGANIZATION,
            contact_email=DEMO_KEY_EMAIL,
            tier_code=tier_code,
        )
        previous = CustomerApiKey.objects.filter(
            merchant=sandbox, customer=created.key.customer, organization_name=DEMO_ORGANIZATION, revoked_at=None
        ).exclude(pk=created.key.pk)
        for key in previous.select_related("subscription"):
            api_key_revoke(key=key)
    tier = tier_of(created.key.subscription.plan)
    limit = "unlimited" if tier.monthly_limit is None else f"{tier.monthly_limit:,}"
    body = f'{{"apiKey": "{created.secret}", "cost": 1}}'
    return [
        f"  Customer API key:          {created.secret}",
        f"    ({DEMO_KEY_EMAIL} in the sandbox, tier {tier.code}: {tier.rate_limit}/s, {limit} a month;"
        " a new key each run, the previous one revoked)",
        "  Verify it:  curl -X POST <BASE_URL>/v0/apiKeys/verify -H 'Authorization: Bearer <SANDBOX_KEY>'"
        f" -H 'Content-Type: application/json' -d '{body}'",
    ]
