"""An invoice as a PDF: the HTML template templates/invoices/invoice_pdf.html, rendered by
WeasyPrint.

WeasyPrint lays text out with pango (a C library it loads through cffi when it is imported).
Where pango, or WeasyPrint itself, cannot be loaded, the PDF is unavailable (503
PDF_UNAVAILABLE, saying what to install); the rest of the platform does not need it, so it is
imported here on first use, never when the app loads.
"""

import importlib
import logging
from dataclasses import dataclass
from datetime import UTC

from django.template.loader import render_to_string
from django.utils import timezone

from apps.core.errors import ServiceUnavailable
from apps.core.money import format_amount
from apps.invoices.models import Invoice
from apps.invoices.serializers import invoice_data
from apps.payments.chains import from_base_units

logger = logging.getLogger(__name__)

TEMPLATE = "invoices/invoice_pdf.html"
PANGO_PACKAGES = "libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core"
INSTALL_HINT = (
    f"Install pango and a font on the server (Debian/Ubuntu: apt-get install {PANGO_PACKAGES}; "
    "macOS: brew install pango; the Dockerfile's image has them) and the weasyprint package "
    "(pip install -r requirements.txt), then restart the web process."
)


KIND_LABELS = {
    Invoice.Kind.PERIOD: "Billing period",
    Invoice.Kind.START: "Subscription start",
    Invoice.Kind.CHANGE: "Plan change",
    Invoice.Kind.ONE_OFF: "One-off",
}


class PdfUnavailable(ServiceUnavailable):
    code = "PDF_UNAVAILABLE"


def _import_weasyprint():
    return importlib.import_module("weasyprint")


def _unavailable(exc: BaseException) -> PdfUnavailable:
    if isinstance(exc, ImportError) and (exc.name or "").split(".")[0] == "weasyprint":
        missing, what = "weasyprint", "the weasyprint package (and pango, the text layout library it loads)"
    else:
        missing, what = "pango", "pango, the text layout library that WeasyPrint loads"
    logger.warning("invoice PDF unavailable: %s: %s", type(exc).__name__, exc)
    return PdfUnavailable(
        f"Invoice PDFs cannot be rendered on this server: {what} cannot be loaded. {INSTALL_HINT}",
        details={"missing": missing, "reason": f"{type(exc).__name__}: {str(exc)[:300]}"},
    )


def load_weasyprint():
    """The weasyprint module, or PdfUnavailable naming what is missing (an ImportError: the
    package is absent; an OSError: cffi could not open pango's shared library)."""
    try:
        return _import_weasyprint()
    except (ImportError, OSError) as exc:
        raise _unavailable(exc) from exc


@dataclass(frozen=True)
class InvoicePdf:
    content: bytes
    filename: str


def invoice_pdf_filename(invoice: Invoice) -> str:
    return f"{invoice.number or f'draft-{invoice.id}'}.pdf"


def _date(value):
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%d")


def _moment(value):
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def invoice_pdf_context(invoice: Invoice) -> dict:
    """What the template shows: the invoice in its API shape (amounts formatted as the API
    formats them, `paymentUrl` only while it can be paid) with the names and dates a reader needs."""
    data = invoice_data(invoice)
    lines = data["lines"]
    customer = invoice.customer
    is_draft = invoice.status == Invoice.Status.DRAFT
    # (the API's amountDue of a draft is 0: nothing is owed before it is final; the document
    # says what will be)
    amount_due = format_amount(invoice.amount_due, invoice.currency) if is_draft else data["amountDue"]
    return {
        "invoice": data,
        "title": invoice.number or "DRAFT",
        "is_draft": is_draft,
        "amount_due": amount_due,
        "stamp": {Invoice.Status.PAID: "PAID", Invoice.Status.VOID: "VOID"}.get(invoice.status),
        "kind": KIND_LABELS.get(invoice.kind, invoice.kind),
        "status": Invoice.Status(invoice.status).label,
        "merchant": invoice.merchant,
        "customer": customer,
        # [start, end): the end is the first moment after the period
        "period_start": _moment(invoice.period_start),
        "period_end": _moment(invoice.period_end),
        "issued": _date(invoice.finalized_at),
        "due": _date(invoice.due_at),
        "paid": _date(invoice.paid_at),
        "voided": _date(invoice.voided_at),
        "billed_lines": [line for line in lines if not line["informational"]],
        "informational_lines": [line for line in lines if line["informational"]],
        "generated": _moment(timezone.now()),
        # the usdc block's base units as USDC (exact: 6 places)
        "usdc_amount": format_amount(from_base_units(int(data["usdc"]["amount"])), invoice.currency)
        if data["usdc"]
        else None,
    }


def invoice_pdf_html(invoice: Invoice) -> str:
    return render_to_string(TEMPLATE, invoice_pdf_context(invoice))


def invoice_pdf_render(invoice: Invoice) -> InvoicePdf:
    """The invoice (loaded with its merchant, customer, lines and payment session) as a PDF.
    Nothing is fetched while rendering: the template carries its own CSS and no image."""
    weasyprint = load_weasyprint()
    html = invoice_pdf_html(invoice)
    try:
        # no protocol is allowed: a URL in the document (none is meant to be) is never fetched
        fetcher = weasyprint.urls.URLFetcher(allowed_protocols=())
        content = weasyprint.HTML(string=html, url_fetcher=fetcher).write_pdf()
    except OSError as exc:  # pango or a font failing while text is laid out
        raise _unavailable(exc) from exc
    return InvoicePdf(content=content, filename=invoice_pdf_filename(invoice))
