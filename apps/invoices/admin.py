"""Invoices admin: read-only invoices with their lines and their PDF; void, mark uncollectible and
collect (the wallet, else the default card) through the same services as the API
(apps.invoices.services), each selected invoice reported on its own. Invoices are written by the
services only: nothing is added, edited or deleted here."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from apps.core.admin import ReadOnlyMixin
from apps.core.errors import ApiError, Conflict
from apps.core.money import format_amount
from apps.invoices.models import Invoice, InvoiceLine
from apps.invoices.pdf import PdfUnavailable, invoice_pdf_render
from apps.invoices.selectors import invoice_get
from apps.invoices.services.collection import invoice_pay_now
from apps.invoices.services.invoices import invoice_mark_uncollectible, invoice_void
from apps.merchants.admin_base import TenantAdmin, TenantTabularInline
from apps.payments.models import Payment, PaymentSource
from apps.payments.serializers import checkout_url

PAYABLE = (Invoice.Status.OPEN, Invoice.Status.UNCOLLECTIBLE)


def invoice_name(invoice: Invoice) -> str:
    return f"Invoice {invoice.number}" if invoice.number else f"Draft invoice {invoice.id}"


def amount_due(invoice: Invoice):
    """What is owed, as the API says it (`amountDue`): nothing on a draft, paid or void invoice."""
    return invoice.amount_due if invoice.status in PAYABLE else 0


def collect_now(invoice: Invoice) -> str:
    """Pay the invoice now, whole, as POST /v0/invoices/{id}/pay does: from its wallet, else
    charged off-session to the customer's default card (outside any transaction: the admin's
    actions run in none)."""
    due = f"{format_amount(invoice.amount_due, invoice.currency)} {invoice.currency}"
    started = timezone.now()
    paid = invoice_pay_now(merchant=invoice.merchant, invoice_id=invoice.id)
    made = {
        payment.source: payment
        for payment in Payment.objects.filter(
            session_id=paid.payment_session_id,
            source__in=(PaymentSource.CARD, PaymentSource.WALLET),
            created_at__gte=started,
        )
    }
    if PaymentSource.CARD in made:
        return f"{due} charged to the default card (Stripe payment {made[PaymentSource.CARD].external_reference})."
    if PaymentSource.WALLET in made:
        return f"{due} paid from the wallet."
    # (paid, or voided, by something else at the same moment)
    raise Conflict(f"Nothing was collected: the invoice is {paid.status} now.", code="INVOICE_NOT_OPEN")


class InvoiceLineInline(ReadOnlyMixin, TenantTabularInline):
    model = InvoiceLine
    staff_permissions = ("view",)
    fields = (
        "position",
        "description",
        "quantity",
        "unit_price",
        "amount",
        "informational",
        "payment_term",
        "period_start",
        "period_end",
    )
    readonly_fields = fields
    ordering = ("position",)
    extra = 0


@admin.register(Invoice)
class InvoiceAdmin(ReadOnlyMixin, TenantAdmin):
    """Invoices are written by the period close and the API; the admin shows them, their PDF,
    and voids, marks uncollectible or collects them."""

    staff_permissions = ("view", "change")  # change: the void, uncollectible and collect actions

    list_display = (
        "number_or_draft",
        "customer",
        "kind",
        "status",
        "total_shown",
        "amount_due_shown",
        "due_at",
        "created_at",
    )
    list_filter = ("status", "kind", "currency")
    list_select_related = ("customer", "merchant")
    search_fields = ("number", "customer__email")
    ordering = ("-created_at", "-id")
    readonly_fields = (
        "id",
        "number",
        "kind",
        "status",
        "customer",
        "subscription",
        "period",
        "wallet",
        "currency",
        "description",
        "period_start",
        "period_end",
        "subtotal",
        "total",
        "amount_paid",
        "amount_due_shown",
        "auto_collect",
        "due_at",
        "finalized_at",
        "paid_at",
        "voided_at",
        "marked_uncollectible_at",
        "payment_link",
        "pdf",
        "created_at",
        "updated_at",
    )
    fields = readonly_fields
    inlines = [InvoiceLineInline]
    actions = ("void_invoices", "mark_uncollectible", "collect_now")

    def get_urls(self):
        pdf = path(
            "<uuid:object_id>/pdf/",
            self.admin_site.admin_view(self.pdf_view),
            name=f"{self.opts.app_label}_{self.opts.model_name}_pdf",
        )
        return [pdf, *super().get_urls()]

    def pdf_view(self, request, object_id):
        """The invoice's PDF (the one GET /v0/invoices/{id}/pdf answers), for whoever may view it."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        invoice = self.get_queryset(request).filter(pk=object_id).first()  # the admin user's merchant only
        if invoice is None:
            raise Http404("No such invoice.")
        try:
            pdf = invoice_pdf_render(invoice_get(merchant=invoice.merchant, invoice_id=invoice.id))
        except PdfUnavailable as exc:
            return HttpResponse(exc.message, status=503, content_type="text/plain; charset=utf-8")
        response = HttpResponse(pdf.content, content_type="application/pdf")
        response["Content-Disposition"] = f'inline; filename="{pdf.filename}"'
        return response

    @admin.display(description="number", ordering="number")
    def number_or_draft(self, obj):
        return obj.number or "draft"

    @admin.display(description="total", ordering="total")
    def total_shown(self, obj):
        return f"{format_amount(obj.total, obj.currency)} {obj.currency}"

    @admin.display(description="amount due")
    def amount_due_shown(self, obj):
        return f"{format_amount(amount_due(obj), obj.currency)} {obj.currency}"

    @admin.display(description="payment link")
    def payment_link(self, obj):
        session = obj.payment_session
        if obj.status not in PAYABLE or session is None:
            return "-"
        return format_html('<a href="{}" target="_blank" rel="noopener">open the checkout</a>', checkout_url(session))

    @admin.display(description="PDF")
    def pdf(self, obj):
        url = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_pdf", args=[obj.pk])
        return format_html('<a href="{}" target="_blank" rel="noopener">{}.pdf</a>', url, obj.number or "draft")

    def _per_invoice(self, request, queryset, action) -> None:
        """Run `action` (a service call that returns what it did, in words) on each selected
        invoice and report each: what it did, or the service's refusal (ApiError.message)."""
        for invoice in queryset.select_related("merchant", "wallet").order_by("created_at", "id"):
            try:
                done = action(invoice)
            except ApiError as exc:
                self.message_user(request, f"{invoice_name(invoice)}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"{invoice_name(invoice)}: {done}", messages.SUCCESS)

    @admin.action(
        description="Void the selected invoices (what was paid goes back to the wallet)", permissions=["service_action"]
    )
    def void_invoices(self, request, queryset):
        def void(invoice):
            invoice_void(merchant=invoice.merchant, invoice_id=invoice.id)
            return "voided."

        self._per_invoice(request, queryset, void)

    @admin.action(description="Mark the selected invoices uncollectible", permissions=["service_action"])
    def mark_uncollectible(self, request, queryset):
        def give_up(invoice):
            invoice_mark_uncollectible(merchant=invoice.merchant, invoice_id=invoice.id)
            return "marked uncollectible (it can still be paid or voided)."

        self._per_invoice(request, queryset, give_up)

    @admin.action(
        description="Collect the selected invoices now (the wallet, else the default card)",
        permissions=["service_action"],
    )
    def collect_now(self, request, queryset):
        self._per_invoice(request, queryset, collect_now)
