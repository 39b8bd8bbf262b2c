from drf_spectacular.extensions import OpenApiAuthenticationExtension


class MerchantKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "apps.merchants.authentication.MerchantKeyAuthentication"
    name = "merchantSecretKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A merchant secret key: sk_live_... (live) or sk_test_... (sandbox).",
        }
