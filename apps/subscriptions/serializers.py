"""Public shapes of subscriptions (API, webhooks, portal)."""

from django.db.models.manager import BaseManager
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.core.money import format_amount
from apps.ledger.selectors import wallets_balances
from apps.payments.models import PaymentSession
from apps.payments.selectors import latest_sessions
from apps.payments.serializers import PaymentSessionShortSerializer, payment_session_short
from apps.subscriptions.models import Subscription


def subscription_payment(subscription: Subscription) -> dict | None:
    """The latest activation session, from `activation_sessions` (newest first) where the
    selector prefetched them, else read."""
    prefetched = getattr(subscription, "activation_sessions", None)
    if prefetched is not None:
        session = prefetched[0] if prefetched else None
    else:
        session = latest_sessions(purpose=PaymentSession.Purpose.ACTIVATION).filter(subscription=subscription).first()
    return None if session is None else payment_session_short(session)


class RedirectUrlsSerializer(serializers.Serializer):
    onSuccess = serializers.URLField(allow_null=True)
    onFailure = serializers.URLField(allow_null=True)


class SubscriptionListSerializer(serializers.ListSerializer):
    """Many subscriptions: their wallets' balances are read for all of them at once."""

    def to_representation(self, data):
        subscriptions = list(data.all() if isinstance(data, BaseManager) else data)
        self.balances_by_wallet = wallets_balances(wallets={s.wallet_id: s.wallet for s in subscriptions}.values())
        return super().to_representation(subscriptions)


class SubscriptionSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    object = serializers.SerializerMethodField()
    livemode = serializers.BooleanField()
    merchantId = serializers.SerializerMethodField()
    customerId = serializers.UUIDField(source="customer_id")
    planId = serializers.UUIDField(source="plan_id")
    scheduledPlanId = serializers.UUIDField(
        source="scheduled_plan_id",
        allow_null=True,
        help_text="The plan it moves to when the current period ends (a change with effective period_end).",
    )
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=Subscription.Status.choices)
    currency = serializers.SerializerMethodField()
    walletId = serializers.UUIDField(source="wallet_id")
    balance = serializers.SerializerMethodField()
    prefundAmount = serializers.SerializerMethodField()
    minimumAccountBalance = serializers.SerializerMethodField()
    startedAt = serializers.DateTimeField(source="started_at")
    currentPeriodStart = serializers.DateTimeField(source="current_period_start")
    currentPeriodEnd = serializers.DateTimeField(source="current_period_end")
    activatedAt = serializers.DateTimeField(source="activated_at", allow_null=True, help_text="Null until paid.")
    terminatedAt = serializers.DateTimeField(source="terminated_at", allow_null=True)
    terminationReason = serializers.CharField(source="termination_reason")
    redirectUrls = serializers.SerializerMethodField()
    payment = serializers.SerializerMethodField()
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")

    class Meta:
        list_serializer_class = SubscriptionListSerializer

    def get_object(self, obj) -> str:
        return "subscription"

    def get_merchantId(self, obj) -> str:
        return str(obj.merchant.public_id)

    def get_currency(self, obj) -> str:
        return obj.wallet.currency

    def get_balance(self, obj) -> str:
        page = getattr(self.parent, "balances_by_wallet", None)
        balances = page if page is not None else wallets_balances(wallets=[obj.wallet])
        return format_amount(balances[obj.wallet_id].available, obj.wallet.currency)

    def get_prefundAmount(self, obj) -> str | None:
        return format_amount(obj.prefund_amount, obj.wallet.currency)

    def get_minimumAccountBalance(self, obj) -> str:
        return format_amount(obj.minimum_account_balance, obj.wallet.currency)

    @extend_schema_field(RedirectUrlsSerializer)
    def get_redirectUrls(self, obj) -> dict:
        return {"onSuccess": obj.success_url or None, "onFailure": obj.failure_url or None}

    @extend_schema_field(PaymentSessionShortSerializer(allow_null=True))
    def get_payment(self, obj):
        return subscription_payment(obj)
