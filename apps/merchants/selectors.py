from apps.core.secrets import PREFIX_RANDOM_LENGTH, secret_matches
from apps.merchants.models import ApiKey, Merchant

KEY_MODES = ("sk_live_", "sk_test_")


def api_key_for_secret(*, secret: str) -> ApiKey | None:
    """The active or revoked key row for a presented secret, or None when no key matches."""
    mode = next((m for m in KEY_MODES if secret.startswith(m)), None)
    if mode is None or len(secret) < len(mode) + PREFIX_RANDOM_LENGTH:
        return None
    prefix = secret[: len(mode) + PREFIX_RANDOM_LENGTH]
    key = ApiKey.objects.select_related("merchant").filter(prefix=prefix).first()
    if key is None or not secret_matches(secret, key.secret_hash):
        return None
    return key


def merchant_twins(*, merchant: Merchant) -> tuple[Merchant, Merchant]:
    """(live, sandbox) for either row."""
    if merchant.livemode:
        return merchant, Merchant.objects.get(live_merchant=merchant)
    return Merchant.objects.get(pk=merchant.live_merchant_id), merchant
