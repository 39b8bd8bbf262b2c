from rest_framework import serializers

from apps.merchants.models import Merchant


class MerchantSerializer(serializers.Serializer):
    id = serializers.SerializerMethodField()
    object = serializers.SerializerMethodField()
    livemode = serializers.BooleanField()
    name = serializers.CharField()
    contactEmail = serializers.EmailField(source="contact_email")
    commissionRate = serializers.SerializerMethodField()
    payoutWalletAddress = serializers.CharField(source="payout_wallet_address")
    createdAt = serializers.DateTimeField(source="created_at")

    def get_id(self, obj: Merchant) -> str:
        return str(obj.public_id)

    def get_object(self, obj) -> str:
        return "merchant"

    def get_commissionRate(self, obj: Merchant) -> str:
        return format(obj.commission_rate.normalize(), "f")
