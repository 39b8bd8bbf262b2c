"""/v0 authentication: `Authorization: Bearer <secret key>` sets `request.merchant`."""

from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission

from apps.core.errors import RateLimited, Unauthenticated
from apps.merchants.models import ApiKey
from apps.merchants.selectors import api_key_for_secret
from apps.merchants.services import api_key_touch
from apps.merchants.throttling import rate_limit_wait

MISSING_KEY_MESSAGE = "Missing API key: send `Authorization: Bearer <secret key>` with a key from the dashboard."


def authenticate_header(header: str) -> ApiKey:
    """The active key an Authorization header presents; Unauthenticated (401) otherwise."""
    if not header:
        raise Unauthenticated(MISSING_KEY_MESSAGE, code="MISSING_API_KEY")
    scheme, _, secret = header.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise Unauthenticated(
            "The Authorization header must be `Bearer <secret key>`, with a key that starts sk_live_ or sk_test_.",
            code="MALFORMED_AUTHORIZATION",
        )
    key = api_key_for_secret(secret=secret)
    if key is None:
        raise Unauthenticated(
            "This API key is not valid. Check that it was copied whole; keys are shown once, when created.",
            code="INVALID_API_KEY",
        )
    if key.revoked_at is not None:
        raise Unauthenticated(
            f"This API key was revoked at {key.revoked_at.isoformat()}; use an active key or create a new one.",
            code="API_KEY_REVOKED",
        )
    api_key_touch(key=key)
    return key


def merchant_for_request(request):
    """The authenticator of the plain hot path (apps.core.api.plain_json_post): the merchant
    of the request's secret key, within the key's rate limit (429 beyond it)."""
    key = authenticate_header(request.META.get("HTTP_AUTHORIZATION", ""))
    wait = rate_limit_wait(key)
    if wait is not None:
        raise RateLimited(
            f"Too many requests for this API key; retry in {wait} s.",
            details={"retryAfter": wait},
            headers={"Retry-After": str(wait)},
        )
    request.merchant = key.merchant
    request.api_key = key
    return key.merchant


class ApiKeyPrincipal:
    """The caller of the API: a merchant, through one of its keys."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, key):
        self.key = key
        self.merchant = key.merchant

    def __str__(self):
        return f"api key {self.key.prefix}"


class MerchantKeyAuthentication(BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        key = authenticate_header(header)
        request._request.merchant = key.merchant
        request._request.api_key = key
        return ApiKeyPrincipal(key), key

    def authenticate_header(self, request):
        return f'{self.keyword} realm="api"'


class IsMerchant(BasePermission):
    def has_permission(self, request, view):
        if getattr(request, "merchant", None) is None:
            raise Unauthenticated(MISSING_KEY_MESSAGE, code="MISSING_API_KEY")
        return True
