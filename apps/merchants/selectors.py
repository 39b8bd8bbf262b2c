import re

from django.conf import settings

from apps.core.process_cache import ProcessCache
from apps.core.secrets import PREFIX_RANDOM_LENGTH, secret_matches
from apps.merchants.models import ApiKey, Merchant

KEY_MODES = ("sk_live_", "sk_test_")
_KEY_SHAPE = re.compile(r"sk_(live|test)_[A-Za-z0-9]{8,128}")

# Keys are looked up on every request; each process remembers them briefly, so a
# revocation or a new rate limit reaches every process within API_KEY_CACHE_SECONDS.
_keys_by_prefix = ProcessCache(ttl_seconds=lambda: settings.API_KEY_CACHE_SECONDS)


def api_key_forget(*, prefix: str) -> None:
    _keys_by_prefix.discard(prefix)


def api_key_for_secret(*, secret: str) -> ApiKey | None:
    """The active or revoked key row for a presented secret, or None when no key matches."""
    mode = next((m for m in KEY_MODES if secret.startswith(m)), None)
    if mode is None or len(secret) < len(mode) + PREFIX_RANDOM_LENGTH:
        return None
    if not _KEY_SHAPE.fullmatch(secret):
        return None
    prefix = secret[: len(mode) + PREFIX_RANDOM_LENGTH]
    key = _keys_by_prefix.get(prefix)
    if key is None:
        key = ApiKey.objects.select_related("merchant").filter(prefix=prefix).first()
        if key is None:
            return None
        _keys_by_prefix.set(prefix, key)
    if not secret_matches(secret, key.secret_hash):
        return None
    return key


def merchant_twins(*, merchant: Merchant) -> tuple[Merchant, Merchant]:
    """(live, sandbox) for either row."""
    if merchant.livemode:
        return merchant, Merchant.objects.get(live_merchant=merchant)
    return Merchant.objects.get(pk=merchant.live_merchant_id), merchant
