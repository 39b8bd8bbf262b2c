"""Public shapes of payment sessions, payments and adjustments (API, webhooks, checkout, portal)."""

from django.conf import settings
from django.utils import timezone
from rest_framework import serializers

from apps.core.formats import iso
from apps.core.money import format_amount
from apps.payments.chains import usdc_block
from apps.payments.models import Payment, PaymentSession, PaymentSource


def checkout_url(session: PaymentSession) -> str:
    return f"{settings.PUBLIC_BASE_URL}/checkout/{session.id}"


def session_status(session: PaymentSession) -> str:
    """A pending session past its expiry is expired, before the beat task marks it."""
    if session.status == PaymentSession.Status.PENDING and session.expires_at <= timezone.now():
        return PaymentSession.Status.EXPIRED
    return session.status


def session_usdc(session: PaymentSession) -> dict | None:
    """The `usdc` block of a pending USDC session that takes a payment (else None)."""
    if session.mode != PaymentSession.Mode.PAYMENT or session_status(session) != PaymentSession.Status.PENDING:
        return None
    return usdc_block(
        livemode=session.merchant.livemode,
        target_id=session.id,
        amount_due=session.amount - session.amount_paid,
        currency=session.currency,
    )


class PaymentSessionSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    object = serializers.SerializerMethodField()
    livemode = serializers.BooleanField()
    purpose = serializers.ChoiceField(choices=PaymentSession.Purpose.choices)
    amount = serializers.SerializerMethodField()
    amountPaid = serializers.SerializerMethodField(help_text="What arrived money paid of `amount` so far.")
    currency = serializers.CharField()
    status = serializers.SerializerMethodField()
    checkoutUrl = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()
    mode = serializers.ChoiceField(choices=PaymentSession.Mode.choices)
    expiresAt = serializers.DateTimeField(source="expires_at")
    paidAt = serializers.DateTimeField(source="paid_at", allow_null=True)
    customerId = serializers.UUIDField(source="customer_id")
    walletId = serializers.UUIDField(source="wallet_id")
    subscriptionId = serializers.UUIDField(source="subscription_id", allow_null=True)
    invoiceId = serializers.UUIDField(source="invoice_id", allow_null=True)
    usdc = serializers.SerializerMethodField(
        help_text="A pending USDC session: what to send on chain (base units), where, and the reference to quote."
    )
    createdAt = serializers.DateTimeField(source="created_at")

    def get_object(self, obj) -> str:
        return "paymentSession"

    def get_usdc(self, obj) -> dict | None:
        return session_usdc(obj)

    def get_amount(self, obj) -> str:
        return format_amount(obj.amount, obj.currency)

    def get_amountPaid(self, obj) -> str:
        return format_amount(obj.amount_paid, obj.currency)

    def get_status(self, obj) -> str:
        return session_status(obj)

    def get_checkoutUrl(self, obj) -> str:
        return checkout_url(obj)

    def get_url(self, obj) -> str:
        return checkout_url(obj)


class PaymentSessionShortSerializer(serializers.Serializer):
    """The short view of a session that a subscription waits on (or was activated by)."""

    status = serializers.CharField()
    amount = serializers.CharField()
    checkoutUrl = serializers.CharField()
    paymentSessionId = serializers.UUIDField()
    invoiceId = serializers.UUIDField(allow_null=True)


def payment_session_short(session: PaymentSession) -> dict:
    return {
        "status": session_status(session),
        "amount": format_amount(session.amount, session.currency),
        "checkoutUrl": checkout_url(session),
        "paymentSessionId": str(session.id),
        "invoiceId": str(session.invoice_id) if session.invoice_id else None,
    }


class AdjustmentSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    object = serializers.SerializerMethodField()
    livemode = serializers.BooleanField()
    customerId = serializers.UUIDField(source="customer_id")
    walletId = serializers.UUIDField(source="wallet_id")
    amount = serializers.SerializerMethodField()
    currency = serializers.CharField()
    reason = serializers.CharField()
    ledgerTransactionId = serializers.UUIDField(source="ledger_transaction_id")
    createdAt = serializers.DateTimeField(source="created_at")

    def get_object(self, obj) -> str:
        return "adjustment"

    def get_amount(self, obj) -> str:
        return format_amount(obj.amount, obj.currency)


class PaymentSerializer(serializers.Serializer):
    """Money that arrived (the contract's payment, the `data` of payment.* events)."""

    id = serializers.UUIDField()
    object = serializers.SerializerMethodField()
    livemode = serializers.BooleanField()
    amount = serializers.SerializerMethodField(help_text="What arrived, credited to the wallet in full.")
    currency = serializers.CharField()
    source = serializers.ChoiceField(choices=PaymentSource.choices)
    externalReference = serializers.CharField(
        source="external_reference",
        help_text="The processor's reference: a PaymentIntent id, <chain>:<tx hash>:<log index>, test:<session id>.",
    )
    paymentSessionId = serializers.UUIDField(source="session_id", allow_null=True)
    invoiceId = serializers.SerializerMethodField()
    customerId = serializers.UUIDField(source="customer_id")
    status = serializers.ChoiceField(choices=Payment.Status.choices)
    amountRefunded = serializers.SerializerMethodField(help_text="What the processor gave back so far (refunds).")
    createdAt = serializers.DateTimeField(source="created_at")

    def get_object(self, obj) -> str:
        return "payment"

    def get_amount(self, obj) -> str:
        return format_amount(obj.amount, obj.currency)

    def get_amountRefunded(self, obj) -> str:
        return format_amount(obj.amount_refunded, obj.currency)

    def get_invoiceId(self, obj) -> str | None:
        invoice_id = obj.session.invoice_id if obj.session_id else None
        return str(invoice_id) if invoice_id else None


def failed_attempt_data(attempt) -> dict:
    """A failed attempt as the contract's payment (the `data` of payment.failed): no money
    arrived, so its id is the attempt's; `amount` is what was asked for."""
    session = attempt.session
    return {
        "id": str(attempt.id),
        "object": "payment",
        "livemode": attempt.merchant.livemode,
        "amount": format_amount(attempt.amount, attempt.currency),
        "currency": attempt.currency,
        "source": attempt.source,
        "externalReference": attempt.external_reference or None,
        "paymentSessionId": str(attempt.session_id),
        "invoiceId": str(attempt.invoice_id) if attempt.invoice_id else None,
        "customerId": str(session.customer_id),
        "status": "failed",
        "failureReason": attempt.failure_reason,
        "amountRefunded": format_amount(0, attempt.currency),
        "createdAt": iso(attempt.created_at),
    }
