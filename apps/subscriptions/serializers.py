"""Public shapes of subscriptions and payment sessions (API, webhooks, portal)."""

from django.conf import settings
from django.db.models.manager import BaseManager
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.core.money import format_amount
from apps.ledger.selectors import wallets_balances
from apps.subscriptions.models import PaymentSession, Subscription


def checkout_url(session: PaymentSession) -> str:
    return f"{settings.PUBLIC_BASE_URL}/checkout/{session.id}"


def session_status(session: PaymentSession) -> str:
    """A pending session past its expiry is expired, before the beat task marks it."""
    if session.status == PaymentSession.Status.PENDING and session.expires_at <= timezone.now():
        return PaymentSession.Status.EXPIRED
    return session.status


class PaymentSessionSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    object = serializers.SerializerMethodField()
    livemode = serializers.BooleanField()
    purpose = serializers.ChoiceField(choices=PaymentSession.Purpose.choices)
    amount = serializers.SerializerMethodField()
    currency = serializers.CharField()
    status = serializers.SerializerMethodField()
    checkoutUrl = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()
    mode = serializers.ChoiceField(choices=PaymentSession.Mode.choices)
    expiresAt = serializers.DateTimeField(source="expires_at")
    paidAt = serializers.DateTimeField(source="paid_at")
    customerId = serializers.UUIDField(source="customer_id")
    walletId = serializers.UUIDField(source="wallet_id")
    subscriptionId = serializers.UUIDField(source="subscription_id", allow_null=True)
    invoiceId = serializers.UUIDField(source="invoice_id", allow_null=True)
    createdAt = serializers.DateTimeField(source="created_at")

    def get_object(self, obj) -> str:
        return "paymentSession"

    def get_amount(self, obj) -> str:
        return format_amount(obj.amount, obj.currency)

    def get_status(self, obj) -> str:
        return session_status(obj)

    def get_checkoutUrl(self, obj) -> str:
        return checkout_url(obj)

    def get_url(self, obj) -> str:
        return checkout_url(obj)


class SubscriptionPaymentSerializer(serializers.Serializer):
    """The short view of the session a subscription waits on (or was activated by)."""

    status = serializers.CharField()
    amount = serializers.CharField()
    checkoutUrl = serializers.CharField()
    paymentSessionId = serializers.UUIDField()
    invoiceId = serializers.UUIDField(allow_null=True)


def subscription_payment(subscription: Subscription) -> dict | None:
    """The latest activation session, from `activation_sessions` (newest first) where the
    selector prefetched them, else read."""
    prefetched = getattr(subscription, "activation_sessions", None)
    if prefetched is not None:
        session = prefetched[0] if prefetched else None
    else:
        session = (
            PaymentSession.objects.filter(subscription=subscription, purpose=PaymentSession.Purpose.ACTIVATION)
            .order_by("-created_at")
            .first()
        )
    if session is None:
        return None
    return {
        "status": session_status(session),
        "amount": format_amount(session.amount, session.currency),
        "checkoutUrl": checkout_url(session),
        "paymentSessionId": str(session.id),
        "invoiceId": str(session.invoice_id) if session.invoice_id else None,
    }


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
    activatedAt = serializers.DateTimeField(source="activated_at")
    terminatedAt = serializers.DateTimeField(source="terminated_at")
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

    def get_redirectUrls(self, obj) -> dict:
        return {"onSuccess": obj.success_url or None, "onFailure": obj.failure_url or None}

    @extend_schema_field(SubscriptionPaymentSerializer(allow_null=True))
    def get_payment(self, obj):
        return subscription_payment(obj)
