"""The public shape of an invoice (API, webhooks, portal)."""

from django.conf import settings
from rest_framework import serializers

from apps.core.formats import iso, quantity_str
from apps.core.money import format_amount
from apps.invoices.models import Invoice, InvoiceLine
from apps.payments.chains import usdc_block
from apps.payments.models import PaymentSession
from apps.payments.serializers import checkout_url


def _line(line: InvoiceLine, currency: str) -> dict:
    return {
        "id": str(line.id),
        "description": line.description,
        "priceId": str(line.price_id) if line.price_id else None,
        "billableMetricId": str(line.billable_metric_id) if line.billable_metric_id else None,
        "paymentTerm": line.payment_term or None,
        "quantity": None if line.quantity is None else quantity_str(line.quantity),
        "unitPrice": None if line.unit_price is None else format_amount(line.unit_price),
        "amount": format_amount(line.amount, currency),
        "informational": line.informational,
        "periodStart": iso(line.period_start),
        "periodEnd": iso(line.period_end),
    }


def payment_url(invoice: Invoice) -> str | None:
    if invoice.status not in (Invoice.Status.OPEN, Invoice.Status.UNCOLLECTIBLE):
        return None
    session = invoice.payment_session
    if session is None and invoice.kind == Invoice.Kind.START:
        # while its subscription waits, a start invoice is paid through the activation
        session = PaymentSession.objects.filter(
            invoice_id=invoice.id,
            purpose=PaymentSession.Purpose.ACTIVATION,
            status=PaymentSession.Status.PENDING,
        ).first()
    return None if session is None else checkout_url(session)


def invoice_usdc(invoice: Invoice) -> dict | None:
    """An open USDC invoice's `usdc` block: its amount due in base units (rounded up), the
    chain's recipient and the invoice's reference hash."""
    if invoice.status not in (Invoice.Status.OPEN, Invoice.Status.UNCOLLECTIBLE):
        return None
    return usdc_block(
        livemode=invoice.merchant.livemode,
        target_id=invoice.id,
        amount_due=invoice.amount_due,
        currency=invoice.currency,
    )


def invoice_lines_data(invoice: Invoice, lines=None) -> list[dict]:
    """The invoice's lines in their public shape (`lines`: its InvoiceLine rows, when the
    caller has them; else they are read)."""
    lines = sorted(invoice.lines.all() if lines is None else lines, key=lambda line: line.position)
    return [_line(line, invoice.currency) for line in lines]


def invoice_data(invoice: Invoice, *, lines_data: list[dict] | None = None) -> dict:
    """The invoice's public shape; `lines_data`: its lines already shaped (invoice_lines_data),
    for a caller that publishes several events of one invoice."""
    currency = invoice.currency
    return {
        "id": str(invoice.id),
        "object": "invoice",
        "livemode": invoice.merchant.livemode,
        "number": invoice.number,
        "kind": invoice.kind,
        "status": invoice.status,
        "customerId": str(invoice.customer_id),
        "subscriptionId": str(invoice.subscription_id) if invoice.subscription_id else None,
        "description": invoice.description,
        "periodStart": iso(invoice.period_start),
        "periodEnd": iso(invoice.period_end),
        "lines": invoice_lines_data(invoice) if lines_data is None else lines_data,
        "subtotal": format_amount(invoice.subtotal, currency),
        "total": format_amount(invoice.total, currency),
        "amountPaid": format_amount(invoice.amount_paid, currency),
        "amountDue": format_amount(
            invoice.amount_due if invoice.status in (Invoice.Status.OPEN, Invoice.Status.UNCOLLECTIBLE) else 0,
            currency,
        ),
        "currency": currency,
        "autoCollect": invoice.auto_collect,
        "dueAt": iso(invoice.due_at),
        "finalizedAt": iso(invoice.finalized_at),
        "paidAt": iso(invoice.paid_at),
        "voidedAt": iso(invoice.voided_at),
        "paymentUrl": payment_url(invoice),
        "pdfUrl": f"{settings.PUBLIC_BASE_URL}/v0/invoices/{invoice.id}/pdf",
        "usdc": invoice_usdc(invoice),
        "createdAt": iso(invoice.created_at),
        "updatedAt": iso(invoice.updated_at),
    }


class InvoiceLineSchema(serializers.Serializer):
    id = serializers.UUIDField()
    description = serializers.CharField()
    priceId = serializers.UUIDField(allow_null=True)
    billableMetricId = serializers.UUIDField(allow_null=True)
    paymentTerm = serializers.CharField(
        allow_null=True, help_text="The price's payment term (instant, in_arrears, in_advance); null for one-off lines."
    )
    quantity = serializers.CharField(allow_null=True)
    unitPrice = serializers.CharField(allow_null=True)
    amount = serializers.CharField(help_text="Rounded half-even to the currency's minor unit (informational: exact).")
    informational = serializers.BooleanField(
        help_text="Instant usage already charged from the wallet: shown, outside the totals."
    )
    periodStart = serializers.DateTimeField(allow_null=True)
    periodEnd = serializers.DateTimeField(allow_null=True)

    class Meta:
        ref_name = "InvoiceLine"


class InvoiceSchema(serializers.Serializer):
    """Schema of `invoice_data` (for the OpenAPI document)."""

    id = serializers.UUIDField()
    object = serializers.CharField()
    livemode = serializers.BooleanField()
    number = serializers.CharField(allow_null=True, help_text="Assigned at finalize.")
    kind = serializers.ChoiceField(choices=Invoice.Kind.choices)
    status = serializers.ChoiceField(choices=Invoice.Status.choices)
    customerId = serializers.UUIDField()
    subscriptionId = serializers.UUIDField(allow_null=True)
    description = serializers.CharField()
    periodStart = serializers.DateTimeField(allow_null=True)
    periodEnd = serializers.DateTimeField(allow_null=True)
    lines = InvoiceLineSchema(many=True)
    subtotal = serializers.CharField()
    total = serializers.CharField()
    amountPaid = serializers.CharField()
    amountDue = serializers.CharField()
    currency = serializers.CharField()
    autoCollect = serializers.BooleanField()
    dueAt = serializers.DateTimeField(allow_null=True)
    finalizedAt = serializers.DateTimeField(allow_null=True)
    paidAt = serializers.DateTimeField(allow_null=True)
    voidedAt = serializers.DateTimeField(allow_null=True)
    paymentUrl = serializers.URLField(allow_null=True)
    pdfUrl = serializers.URLField()
    usdc = serializers.DictField(allow_null=True, help_text="What to send in USDC (with USDC settlements).")
    createdAt = serializers.DateTimeField()
    updatedAt = serializers.DateTimeField()

    class Meta:
        ref_name = "Invoice"
