from rest_framework import serializers

from apps.apikeys.models import CustomerApiKey
from apps.apikeys.tiers import is_tier


def _features(key: CustomerApiKey) -> dict:
    plan = key.subscription.plan
    return plan.features if is_tier(plan) else {}


class ApiKeySerializer(serializers.Serializer):
    """A key as listed (never its secret)."""

    id = serializers.UUIDField()
    object = serializers.SerializerMethodField()
    livemode = serializers.BooleanField()
    prefix = serializers.CharField()
    customerId = serializers.UUIDField(source="customer_id")
    subscriptionId = serializers.UUIDField(source="subscription_id")
    organizationName = serializers.CharField(source="organization_name")
    tier = serializers.SerializerMethodField()
    rateLimit = serializers.SerializerMethodField()
    monthlyQueryLimit = serializers.SerializerMethodField()
    lastUsedAt = serializers.DateTimeField(source="last_used_at", allow_null=True)
    revokedAt = serializers.DateTimeField(source="revoked_at", allow_null=True)
    createdAt = serializers.DateTimeField(source="created_at")

    def get_object(self, obj) -> str:
        return "apiKey"

    def get_tier(self, obj) -> str:
        return obj.subscription.plan.code

    def get_rateLimit(self, obj) -> int | None:
        return _features(obj).get("rateLimit")

    def get_monthlyQueryLimit(self, obj) -> int | None:
        return _features(obj).get("monthlyQueryLimit")


class KeyPaymentSerializer(serializers.Serializer):
    status = serializers.CharField()
    amount = serializers.CharField()
    checkoutUrl = serializers.URLField()
    paymentSessionId = serializers.UUIDField()


class CreatedApiKeySerializer(ApiKeySerializer):
    apiKey = serializers.CharField(help_text="The secret: shown once, here.")
    note = serializers.CharField()
    payment = KeyPaymentSerializer(required=False, help_text="Present when the bought tier waits for its payment.")


class VerifySerializer(serializers.Serializer):
    valid = serializers.BooleanField()
    code = serializers.ChoiceField(choices=["VALID", "RATE_LIMITED", "QUOTA_EXCEEDED", "REVOKED", "NOT_FOUND"])
    customerId = serializers.UUIDField(allow_null=True)
    subscriptionId = serializers.UUIDField(allow_null=True)
    tier = serializers.CharField(allow_null=True)
    rateLimit = serializers.IntegerField(allow_null=True)
    monthlyQueryLimit = serializers.IntegerField(allow_null=True)
    remaining = serializers.IntegerField(allow_null=True)
    resetAt = serializers.DateTimeField(allow_null=True)


class BillingUsageSerializer(serializers.Serializer):
    queriesThisMonth = serializers.IntegerField()
    monthlyLimit = serializers.IntegerField(allow_null=True)
    remaining = serializers.IntegerField(allow_null=True)


class CheckoutSerializer(serializers.Serializer):
    sessionId = serializers.UUIDField(allow_null=True)
    url = serializers.URLField(allow_null=True)
    tier = serializers.CharField()
