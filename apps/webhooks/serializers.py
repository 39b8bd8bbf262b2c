"""Public shapes of webhook endpoints and their delivery log."""

from rest_framework import serializers

from apps.core.formats import iso


class WebhookEndpointSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    object = serializers.SerializerMethodField()
    livemode = serializers.BooleanField()
    url = serializers.CharField()
    events = serializers.ListField(child=serializers.CharField())
    description = serializers.CharField()
    enabled = serializers.BooleanField()
    disabledAt = serializers.DateTimeField(source="disabled_at", allow_null=True)
    disabledReason = serializers.CharField(source="disabled_reason", allow_blank=True)
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")

    def get_object(self, obj) -> str:
        return "webhook_endpoint"


class WebhookEndpointCreatedSerializer(WebhookEndpointSerializer):
    secret = serializers.CharField(help_text="The signing secret (whsec_...), shown only in this answer.")


class DeliverySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    object = serializers.SerializerMethodField()
    livemode = serializers.BooleanField()
    eventId = serializers.UUIDField(source="event_id")
    eventType = serializers.CharField(source="event.type")
    attempt = serializers.IntegerField(source="attempts", help_text="Attempts made so far.")
    status = serializers.CharField()
    responseStatus = serializers.IntegerField(source="last_response_status", allow_null=True)
    latencyMs = serializers.IntegerField(source="last_latency_ms", allow_null=True)
    attemptedAt = serializers.SerializerMethodField()
    nextAttemptAt = serializers.SerializerMethodField()

    def get_object(self, obj) -> str:
        return "webhook_delivery"

    def get_attemptedAt(self, obj) -> str | None:
        return iso(obj.last_attempt_at)

    def get_nextAttemptAt(self, obj) -> str | None:
        return iso(obj.next_attempt_at) if obj.status == "pending" else None
