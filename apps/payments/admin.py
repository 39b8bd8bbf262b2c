"""Payments admin: sessions (with their attempts and payments), payments (with their refunds and
disputes), adjustments. Money moves only through the services; a form or an action submitted
twice moves it once."""

import uuid

from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html

from apps.core.admin import ReadOnlyMixin, run_per_row
from apps.core.errors import Conflict
from apps.core.fields import Currency
from apps.customers.models import Customer
from apps.merchants.admin_base import TenantAdmin, TenantHistoryInline, admin_tenant
from apps.payments.models import Adjustment, Payment, PaymentAttempt, PaymentDispute, PaymentRefund, PaymentSession
from apps.payments.serializers import checkout_url, session_status
from apps.payments.services import adjustment_create, payment_session_pay_test


class PaymentAttemptInline(TenantHistoryInline):
    model = PaymentAttempt
    fields = ("created_at", "source", "status", "amount", "external_reference", "failure_reason", "finished_at")


class PaymentInline(TenantHistoryInline):
    model = Payment
    fk_name = "session"
    fields = ("created_at", "source", "external_reference", "amount", "applied_amount", "status")


@admin.register(PaymentSession)
class PaymentSessionAdmin(TenantAdmin):
    staff_permissions = ("view", "change")  # change: the sandbox's pay action
    list_display = (
        "created_at",
        "purpose",
        "amount",
        "amount_paid",
        "currency",
        "effective_status",
        "customer",
        "link",
    )
    list_filter = ("purpose", "status", "currency")
    search_fields = ("id", "customer__email")
    readonly_fields = (
        "id",
        "purpose",
        "mode",
        "status",
        "amount",
        "amount_paid",
        "currency",
        "customer",
        "wallet",
        "subscription",
        "invoice_id",
        "expires_at",
        "paid_at",
        "link",
    )
    fields = readonly_fields
    inlines = (PaymentAttemptInline, PaymentInline)
    actions = ("pay_in_sandbox",)

    def has_add_permission(self, request, *args):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="status")
    def effective_status(self, obj):
        return session_status(obj)

    @admin.display(description="checkout")
    def link(self, obj):
        return format_html('<a href="{}" target="_blank" rel="noopener">open</a>', checkout_url(obj))

    @admin.action(
        description="Pay the selected sessions with the sandbox's test payment", permissions=["service_action"]
    )
    def pay_in_sandbox(self, request, queryset):
        def pay(session):
            _, paid_now = payment_session_pay_test(merchant=session.merchant, session_id=session.id)
            if not paid_now:
                raise Conflict("already paid; nothing was charged again.", code="PAYMENT_SESSION_PAID")

        run_per_row(
            self,
            request,
            queryset.select_related("merchant"),
            pay,
            "Paid {count} session(s).",
            describe=lambda session: f"Payment session {session.id}",
        )


class PaymentRefundInline(TenantHistoryInline):
    """The processor's refunds of the payment, as they stand: refunded (the wallet debited), or
    failed / canceled afterwards (the debit undone)."""

    model = PaymentRefund
    fields = ("created_at", "external_reference", "amount", "status", "reversed_amount", "failed_at", "restored_amount")


class PaymentDisputeInline(TenantHistoryInline):
    """The payer's disputes of the payment (recorded; no money moves)."""

    model = PaymentDispute
    fields = ("created_at", "external_reference", "amount", "reason", "processor_status")


@admin.register(Payment)
class PaymentAdmin(ReadOnlyMixin, TenantAdmin):
    """Payments as credited, with their refunds (and whether each failed afterwards) and disputes."""

    staff_permissions = ("view",)
    list_display = (
        "created_at",
        "source",
        "amount",
        "applied_amount",
        "amount_refunded",
        "currency",
        "status",
        "customer",
    )
    inlines = (PaymentRefundInline, PaymentDisputeInline)
    list_filter = ("source", "status", "currency")
    search_fields = ("external_reference", "customer__email", "id")
    list_select_related = ("merchant", "customer")


class AdjustmentForm(forms.ModelForm):
    """Validates an adjustment; AdjustmentAdmin.save_model makes it through the service. Built per
    request by AdjustmentAdmin.get_form with `tenant` set. Each form shown carries its own token
    (the adjustment's idempotency key), so that submitting it twice adjusts the wallet once."""

    tenant = None
    customer = forms.ModelChoiceField(queryset=Customer.objects.none())
    currency = forms.ChoiceField(choices=Currency.choices)
    form_token = forms.CharField(widget=forms.HiddenInput, max_length=64)

    class Meta:
        model = Adjustment
        fields = ("customer", "currency", "amount", "reason")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        customers = Customer.objects.filter(archived_at__isnull=True).order_by("email")
        self.fields["customer"].queryset = customers.filter(merchant=self.tenant) if self.tenant else customers
        self.fields["form_token"].initial = uuid.uuid4().hex


@admin.register(Adjustment)
class AdjustmentAdmin(TenantAdmin):
    """Adding an adjustment credits or debits the wallet through `adjustment_create`, once the form
    is valid; the service's refusals (an insufficient balance, a reused form) are shown on the form
    with nothing written. Nothing is edited after."""

    staff_permissions = ("view", "add")
    list_display = ("created_at", "customer", "amount", "currency", "reason", "actor")
    list_filter = ("currency",)
    search_fields = ("customer__email", "reason")

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = type("AdjustmentForm", (AdjustmentForm,), {"tenant": admin_tenant(request)})
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["customer", "currency", "amount", "reason", "form_token"]
        return ["customer", "wallet", "amount", "currency", "reason", "actor", "ledger_transaction", "created_at"]

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj) if obj is not None else []

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        adjustment = adjustment_create(
            merchant=admin_tenant(request) or data["customer"].merchant,
            customer=data["customer"],
            amount=data["amount"],
            currency=data["currency"],
            reason=data["reason"],
            actor=f"admin {request.user.get_username()}",
            # the same form submitted again (in sequence or at once) returns this adjustment
            idempotency_key=f"admin:{data['form_token']}",
        )
        obj.__dict__.update({f.attname: getattr(adjustment, f.attname) for f in adjustment._meta.concrete_fields})
        obj._state.adding = False
        verb = "credited" if adjustment.amount > 0 else "debited"
        messages.info(request, f"Wallet {verb} {adjustment.amount} {adjustment.currency}.")
