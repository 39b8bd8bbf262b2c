"""Customer API keys and tier changes (the contract's "API keys for a merchant's customers, with
tiers")."""

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, Decimal

import redis
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.apikeys.models import CustomerApiKey, TierChange
from apps.apikeys.selectors import tier_subscription
from apps.apikeys.tiers import FREE, Tier, free_tier, is_tier, tier_get, tier_of
from apps.apikeys.verify import key_record_write, on_commit_subscription_changed
from apps.catalog.models import PaymentTerm
from apps.core.errors import Unprocessable
from apps.core.money import MONEY_CONTEXT, ZERO, currency_decimals
from apps.core.secrets import PREFIX_RANDOM_LENGTH, hash_secret, random_token
from apps.customers.services import customer_create
from apps.invoices.services.collection import wallet_minimum
from apps.ledger.selectors import wallet_balances
from apps.ledger.services import wallet_get_or_create
from apps.payments.models import PaymentSession
from apps.payments.services import payment_session_create
from apps.subscriptions.models import Subscription
from apps.subscriptions.periods import fee_share
from apps.subscriptions.services import subscription_change_plan, subscription_create

logger = logging.getLogger(__name__)

KEY_NOTE = "API key created. Use X-API-Key header to authenticate requests."


@dataclass
class CreatedKey:
    key: CustomerApiKey
    secret: str
    payment: PaymentSession | None


def _fee(tier: Tier) -> Decimal:
    """The tier's in_advance fees for a whole period."""
    return sum(
        (
            price.amount
            for price in tier.plan.prices.all()
            if price.billable_metric_id is None
            and price.amount is not None
            and price.payment_term == PaymentTerm.IN_ADVANCE
        ),
        ZERO,
    )


def _free_to_spend(wallet) -> Decimal:
    return wallet_balances(wallet=wallet).available - wallet_minimum(wallet)


def _new_secret(merchant) -> tuple[str, str]:
    mode = "live" if merchant.livemode else "test"
    secret = f"ak_{mode}_{random_token()}"
    return secret, secret[: len(f"ak_{mode}_") + PREFIX_RANDOM_LENGTH]


def _key_record_write_after_commit(key: CustomerApiKey) -> None:
    """The new key's record in Redis. With Redis out of reach the key stands all the same (its
    secret is in the answer, and only there): the first verify finds no record and loads it."""
    try:
        key_record_write(key, overwrite=True)
    except redis.RedisError:
        logger.warning("API key %s created; its record was not written to Redis (loaded at its first verify)", key.id)


def api_key_create(
    *, merchant, customer=None, organization_name: str = "", contact_email: str = "", tier_code: str | None = None
) -> CreatedKey:
    """A key for `customer` (or the customer with `contact_email`, created when new), on its tier
    subscription (created on `tier_code`, default free, when it has none): a paid tier whose fee
    the wallet covers is paid from it at once; otherwise the subscription starts on free and
    `payment` is the tier_change session that buys the tier (applied once paid). A customer that
    has a tier subscription already gets a key on it: a higher tier asked for is bought as above
    (from the wallet when it covers the prorated difference, else through `payment`); a key never
    moves a subscription down (a downgrade is the customer's checkout)."""
    tier = tier_get(merchant=merchant, code=tier_code or FREE)
    payment = None
    with transaction.atomic():
        # (in the transaction: a refusal below, such as NO_FREE_TIER, leaves no customer behind)
        if customer is None:
            customer, _ = customer_create(merchant=merchant, email=contact_email, name=organization_name)
        subscription = tier_subscription(customer=customer)
        if subscription is None:
            wallet = wallet_get_or_create(merchant=merchant, customer=customer, currency=tier.plan.currency)
            fee = _fee(tier)
            # the free tier is needed only where the key falls back to it (422 NO_FREE_TIER)
            start_on = tier if fee == 0 or _free_to_spend(wallet) >= fee else free_tier(merchant=merchant)
            subscription = subscription_create(
                merchant=merchant, customer=customer, plan=start_on.plan, name=organization_name or start_on.plan.name
            )
            if start_on is not tier:
                payment = tier_checkout(subscription=subscription, tier=tier).session
        elif tier_code and subscription.plan_id != tier.plan.pk:
            amount = tier_change_amount(subscription, tier, timezone.now())
            if amount > 0 and _free_to_spend(subscription.wallet) >= amount:
                subscription_change_plan(merchant=merchant, subscription=subscription, plan=tier.plan)
            elif amount > 0:
                payment = tier_checkout(subscription=subscription, tier=tier).session
        for _ in range(5):
            secret, prefix = _new_secret(merchant)
            try:
                with transaction.atomic():
                    key = CustomerApiKey.objects.create(
                        merchant=merchant,
                        customer=customer,
                        subscription=subscription,
                        organization_name=organization_name,
                        prefix=prefix,
                        secret_hash=hash_secret(secret),
                    )
                break
            except IntegrityError:
                continue  # a prefix drawn twice: draw again
        else:
            raise RuntimeError("could not draw a unique API key prefix")
        transaction.on_commit(lambda: _key_record_write_after_commit(key))
    key.subscription = Subscription.objects.select_related("plan").get(pk=subscription.pk)
    return CreatedKey(key, secret, payment)


def api_key_revoke(*, key: CustomerApiKey) -> CustomerApiKey:
    """Revoke the key: the very next verify answers REVOKED, whatever web process serves it."""
    with transaction.atomic():
        locked = CustomerApiKey.objects.select_for_update().get(pk=key.pk)
        if locked.revoked_at is None:
            locked.revoked_at = timezone.now()
            locked.save(update_fields=["revoked_at", "updated_at"])
        key_record_write(locked, overwrite=True)  # (before the answer: the next verify sees it)
    locked.subscription = key.subscription
    return locked


def api_key_touch(*, key_id, at: datetime) -> None:
    CustomerApiKey.objects.filter(pk=key_id).exclude(last_used_at__gte=at).update(last_used_at=at)


# --- tier changes ---------------------------------------------------------------------------------


@dataclass
class Checkout:
    session: PaymentSession | None
    tier: Tier


def _round_up_to_minor_unit(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(-currency_decimals(currency)), rounding=ROUND_CEILING)


def tier_change_amount(subscription: Subscription, tier: Tier, now: datetime) -> Decimal:
    """What moving to `tier` now costs: its fee for the rest of the period less the unused share
    of what the current tier's fee was (at least 0, rounded up to the minor unit)."""
    start, end = subscription.current_period
    rest = fee_share(now, end, start, end) if start <= now < end else 1
    current = tier_of(subscription.plan)
    difference = MONEY_CONTEXT.divide((_fee(tier) - _fee(current)) * rest.numerator, Decimal(rest.denominator))
    return max(_round_up_to_minor_unit(difference, tier.plan.currency), ZERO)


def tier_checkout(*, subscription: Subscription, tier: Tier, success_url: str = "", cancel_url: str = "") -> Checkout:
    """Move the tier subscription to `tier`: with nothing to pay (a downgrade, or a tier without
    a fee) at once; else a tier_change session for the prorated difference, expiring at the
    period's end, whose payment applies the change (`TierChangeHandler`)."""
    if not is_tier(subscription.plan):
        raise Unprocessable(f"Subscription {subscription.id} is not on a tier plan.", code="NOT_A_TIER")
    if tier.plan.currency != subscription.plan.currency:
        raise Unprocessable(
            f"Tier {tier.code} is in {tier.plan.currency}, the subscription in {subscription.plan.currency}.",
            code="CURRENCY_MISMATCH",
        )
    if tier.plan.pk == subscription.plan_id:
        raise Unprocessable(f"The subscription is already on tier {tier.code}.", code="ALREADY_ON_TIER")
    now = timezone.now()
    amount = tier_change_amount(subscription, tier, now)
    if amount == 0:
        subscription_change_plan(merchant=subscription.merchant, subscription=subscription, plan=tier.plan)
        return Checkout(None, tier)
    with transaction.atomic():
        session = payment_session_create(
            merchant=subscription.merchant,
            purpose=PaymentSession.Purpose.TIER_CHANGE,
            amount=amount,
            currency=tier.plan.currency,
            customer=subscription.customer,
            wallet=subscription.wallet,
            subscription=subscription,
            success_url=success_url,
            cancel_url=cancel_url,
        )
        # (its amount is for what is left of this period: the session ends with it)
        session.expires_at = subscription.current_period_end
        session.save(update_fields=["expires_at", "updated_at"])
        TierChange.objects.create(
            merchant=subscription.merchant, session=session, subscription=subscription, plan=tier.plan
        )
    return Checkout(session, tier)


def tier_change_apply(*, change: TierChange) -> None:
    """The tier_change session is paid: the subscription moves to its tier now (the invoicing's
    plan change: prorated, subscription.updated); the money paid stays on the wallet for the
    change invoice. A subscription already there, or ended, is left as it is."""
    subscription = Subscription.objects.select_related("merchant", "plan", "wallet", "customer").get(
        pk=change.subscription_id
    )
    change.applied_at = timezone.now()
    change.save(update_fields=["applied_at", "updated_at"])
    if subscription.plan_id == change.plan_id or subscription.status not in Subscription.CHARGEABLE:
        return
    subscription_change_plan(merchant=subscription.merchant, subscription=subscription, plan=change.plan)


def switch_to_free(subscription: Subscription) -> bool:
    """A tier subscription on a paid tier goes back to free (dunning's end, a termination):
    whether it did (its keys keep working, on free). Without a free tier it ends."""
    if not is_tier(subscription.plan) or subscription.plan.code.lower() == FREE:
        return False
    try:
        free = free_tier(merchant=subscription.merchant)
    except Unprocessable:
        return False  # no free tier to fall back to: it ends
    if free.plan.currency != subscription.plan.currency:
        return False
    subscription_change_plan(merchant=subscription.merchant, subscription=subscription, plan=free.plan)
    return True


def subscription_changed(subscription) -> None:
    """The subscriptions' "changed" hook: its keys read their tier again after the commit."""
    on_commit_subscription_changed(subscription.id)


def customer_wallet_hint(*, customer, address: str) -> None:
    """Keep the address the customer gave at checkout (an unproven hint the checkout pre-fills)."""
    type(customer).objects.filter(pk=customer.pk).update(wallet_address_hint=address, updated_at=timezone.now())
