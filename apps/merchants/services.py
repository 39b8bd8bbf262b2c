from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.core.errors import Conflict
from apps.core.secrets import PREFIX_RANDOM_LENGTH, hash_secret, random_token
from apps.merchants.models import ApiKey, Merchant, User
from apps.merchants.permissions import merchant_staff_group
from apps.merchants.selectors import api_key_forget

LAST_USED_RESOLUTION = timedelta(seconds=60)


def merchant_create(
    *,
    name: str,
    contact_email: str,
    commission_rate: Decimal | None = None,
    payout_wallet_address: str = "",
) -> Merchant:
    """Create a live merchant together with its sandbox twin."""
    rate = settings.DEFAULT_COMMISSION_RATE if commission_rate is None else commission_rate
    with transaction.atomic():
        merchant = Merchant.objects.create(
            name=name,
            contact_email=contact_email,
            commission_rate=rate,
            payout_wallet_address=payout_wallet_address,
            livemode=True,
        )
        Merchant.objects.create(
            name=name,
            contact_email=contact_email,
            commission_rate=rate,
            payout_wallet_address=payout_wallet_address,
            livemode=False,
            live_merchant=merchant,
        )
    return merchant


def merchant_update(*, merchant: Merchant, **fields) -> Merchant:
    """Update shared settings on a merchant and keep its twin in step."""
    allowed = {"name", "contact_email", "commission_rate", "payout_wallet_address"}
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"cannot update {sorted(unknown)}")
    live = merchant if merchant.livemode else merchant.live_merchant
    with transaction.atomic():
        Merchant.objects.filter(pk=live.pk).update(**fields, updated_at=timezone.now())
        Merchant.objects.filter(live_merchant=live).update(**fields, updated_at=timezone.now())
    merchant.refresh_from_db()
    return merchant


def merchant_staff_create(*, merchant: Merchant, username: str, email: str, password: str) -> User:
    """A login to the admin for the merchant's staff, with the staff's permissions (the group)."""
    live = merchant if merchant.livemode else merchant.live_merchant
    with transaction.atomic():
        user = User.objects.create_user(username=username, email=email, password=password, is_staff=True, merchant=live)
        merchant_staff_grant(user=user)
    return user


def merchant_staff_grant(*, user: User) -> None:
    """Give a merchant's staff user the merchant staff's permissions (apps.merchants.permissions)."""
    if user.merchant_id is None:
        raise ValueError("only a merchant's staff user joins the merchant staff group")
    user.groups.add(merchant_staff_group())


def api_key_create(*, merchant: Merchant, name: str = "", rate_limit: int | None = None) -> tuple[ApiKey, str]:
    """Issue a key for this merchant row (live -> sk_live_, sandbox -> sk_test_).

    Returns the row and the secret, which is not stored and cannot be shown again.
    """
    mode = "live" if merchant.livemode else "test"
    for _ in range(5):
        secret = f"sk_{mode}_{random_token()}"
        prefix = secret[: len(f"sk_{mode}_") + PREFIX_RANDOM_LENGTH]
        try:
            with transaction.atomic():
                key = ApiKey.objects.create(
                    merchant=merchant, name=name, prefix=prefix, secret_hash=hash_secret(secret), rate_limit=rate_limit
                )
        except IntegrityError:
            continue  # prefix collision: draw again
        return key, secret
    raise RuntimeError("could not draw a unique API key prefix")


def api_key_revoke(*, key: ApiKey) -> ApiKey:
    if key.revoked_at is None:
        ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        key.refresh_from_db()
    api_key_forget(prefix=key.prefix)
    return key


def api_key_roll(*, key: ApiKey) -> tuple[ApiKey, str]:
    """Replace a key by a new one (new secret; same merchant, name and rate limit) and revoke it
    at once. Returns the new row and its secret, which is not stored."""
    with transaction.atomic():
        current = ApiKey.objects.select_for_update().get(pk=key.pk)
        if current.revoked_at is not None:
            raise Conflict("This key is revoked; create a new key instead.", code="API_KEY_REVOKED")
        new_key, secret = api_key_create(merchant=current.merchant, name=current.name, rate_limit=current.rate_limit)
        api_key_revoke(key=current)
    return new_key, secret


def api_key_touch(*, key: ApiKey) -> None:
    """Record use, at most once a minute per key, so that each request does not write."""
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
