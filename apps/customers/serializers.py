"""The public shape of a customer, shared by the API, outbound webhooks and the portal."""

from django.db.models.manager import BaseManager
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.core.metadata import MetadataField
from apps.core.money import format_amount
from apps.customers.billing import SUPPORTED_CURRENCIES
from apps.customers.models import BillingSettings, Customer
from apps.customers.selectors import customer_wallets, customers_billing_settings, customers_wallets
from apps.ledger.serializers import WalletSerializer


class AddressSerializer(serializers.Serializer):
    """Keys that are not set are null."""

    line1 = serializers.CharField(allow_null=True)
    line2 = serializers.CharField(allow_null=True)
    city = serializers.CharField(allow_null=True)
    state = serializers.CharField(allow_null=True)
    country = serializers.CharField(allow_null=True, help_text="ISO 3166-1 alpha-2.")
    zipCode = serializers.CharField(allow_null=True)


class ConsumerSerializer(serializers.Serializer):
    name = serializers.SerializerMethodField()
    email = serializers.EmailField()
    phone = serializers.SerializerMethodField()
    address = serializers.SerializerMethodField()

    def get_name(self, obj: Customer) -> str | None:
        return obj.name or None

    def get_phone(self, obj: Customer) -> str | None:
        return obj.phone or None

    @extend_schema_field(AddressSerializer)
    def get_address(self, obj: Customer) -> dict:
        return AddressSerializer(obj.address or {}).data


class AutoRechargeSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()
    threshold = serializers.CharField(allow_null=True)
    amount = serializers.CharField(allow_null=True)


class CurrencyBillingSettingsSerializer(serializers.Serializer):
    lowBalanceThreshold = serializers.CharField(allow_null=True)
    autoRecharge = AutoRechargeSerializer()


# The answer's `billingSettings`: every supported currency, its settings or null.
BillingSettingsSerializer = type(
    "BillingSettingsSerializer",
    (serializers.Serializer,),
    {
        "__module__": __name__,
        "__doc__": "A map keyed by wallet currency: each supported currency's settings, or null where none are set.",
        **{currency: CurrencyBillingSettingsSerializer(allow_null=True) for currency in SUPPORTED_CURRENCIES},
    },
)


def billing_settings_data(rows: dict[str, BillingSettings]) -> dict:
    """`billingSettings` from a customer's rows by currency: every supported currency, null
    where it has none."""

    def amount(value, currency):
        return None if value is None else format_amount(value, currency)

    return {
        currency: None
        if (row := rows.get(currency)) is None
        else {
            "lowBalanceThreshold": amount(row.low_balance_threshold, currency),
            "autoRecharge": {
                "enabled": row.auto_recharge_enabled,
                "threshold": amount(row.auto_recharge_threshold, currency),
                "amount": amount(row.auto_recharge_amount, currency),
            },
        }
        for currency in SUPPORTED_CURRENCIES
    }


class CustomerListSerializer(serializers.ListSerializer):
    """Many customers: their wallets and billing settings are read for all of them at once (see
    customers_wallets)."""

    def to_representation(self, data):
        customers = list(data.all() if isinstance(data, BaseManager) else data)
        self.wallets_by_customer = customers_wallets(customers=customers)
        self.billing_settings_by_customer = customers_billing_settings(customers=customers)
        return super().to_representation(customers)


class CustomerSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    customerId = serializers.UUIDField(source="id", help_text="The same value as id.")
    object = serializers.SerializerMethodField()
    livemode = serializers.BooleanField()
    merchantId = serializers.SerializerMethodField()
    consumer = ConsumerSerializer(source="*")
    externalId = serializers.SerializerMethodField()
    metadata = MetadataField()
    wallets = serializers.SerializerMethodField()
    billingSettings = serializers.SerializerMethodField(
        help_text=(
            "Keyed by wallet currency: the low-balance threshold (wallet.low_balance when the available balance "
            "falls below it) and auto-recharge, per currency; null for a currency without settings."
        )
    )
    archivedAt = serializers.DateTimeField(source="archived_at", allow_null=True)
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")

    class Meta:
        list_serializer_class = CustomerListSerializer

    def get_object(self, obj: Customer) -> str:
        return "customer"

    def get_merchantId(self, obj: Customer) -> str:
        return str(obj.merchant.public_id)

    def get_externalId(self, obj: Customer) -> str | None:
        return obj.external_id or None

    @extend_schema_field(WalletSerializer(many=True))
    def get_wallets(self, obj: Customer) -> list:
        page = getattr(self.parent, "wallets_by_customer", None)
        return page[obj.id] if page is not None else customer_wallets(obj)

    @extend_schema_field(BillingSettingsSerializer)
    def get_billingSettings(self, obj: Customer) -> dict:
        page = getattr(self.parent, "billing_settings_by_customer", None)
        rows = page[obj.id] if page is not None else customers_billing_settings(customers=[obj])[obj.id]
        return billing_settings_data(rows)
