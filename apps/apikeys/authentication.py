"""`X-API-Key: <customer key>`: the customer's own calls (GET /v0/billing/usage, POST
/v0/billing/checkout) authenticate with a key the merchant issued it."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication

from apps.apikeys.selectors import X_API_KEY_MISSING, customer_key_for_request
from apps.core.errors import Unauthenticated


class CustomerKeyPrincipal:
    is_authenticated = True
    is_anonymous = False

    def __init__(self, key):
        self.key = key
        self.merchant = key.merchant

    def __str__(self):
        return f"customer api key {self.key.prefix}"


class CustomerKeyAuthentication(BaseAuthentication):
    def authenticate(self, request):
        key = customer_key_for_request(request._request)
        request._request.merchant = key.merchant
        request._request.customer_api_key = key
        return CustomerKeyPrincipal(key), key

    def authenticate_header(self, request):
        return 'X-API-Key realm="api"'


def require_customer_key(request):
    key = getattr(request, "customer_api_key", None)
    if key is None:
        raise Unauthenticated(X_API_KEY_MISSING, code="MISSING_API_KEY")
    return key


class CustomerKeyScheme(OpenApiAuthenticationExtension):
    target_class = "apps.apikeys.authentication.CustomerKeyAuthentication"
    name = "customerApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "A key the merchant issued to its customer (POST /v0/billing/apiKeys): ak_live_... or ak_test_...",
        }
