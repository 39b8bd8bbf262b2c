"""The public shape of a saved card (the contract's payment method), for the API and the portal."""

from rest_framework import serializers


class SavedCardSerializer(serializers.Serializer):
    id = serializers.CharField(
        source="stripe_payment_method_id", help_text="The card's Stripe PaymentMethod id (pm_...)."
    )
    object = serializers.SerializerMethodField()
    livemode = serializers.BooleanField()
    brand = serializers.CharField(help_text="visa, mastercard, amex, ...")
    last4 = serializers.CharField()
    expMonth = serializers.IntegerField(source="exp_month", allow_null=True)
    expYear = serializers.IntegerField(source="exp_year", allow_null=True)
    default = serializers.BooleanField(
        source="is_default", help_text="The card charged off-session: open invoices, auto-recharge."
    )
    createdAt = serializers.DateTimeField(source="created_at")

    def get_object(self, obj) -> str:
        return "paymentMethod"
