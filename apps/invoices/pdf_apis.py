"""GET /v0/invoices/{id}/pdf: the invoice as a PDF (apps.invoices.pdf)."""

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema

from apps.core.api import ApiView
from apps.core.schema import api_errors
from apps.invoices.pdf import invoice_pdf_render
from apps.invoices.selectors import invoice_get


class InvoicePdfApi(ApiView):
    def perform_content_negotiation(self, request, force=False):
        # The answer is a PDF whatever Accept says, and an error is the JSON envelope (with
        # `Accept: application/pdf` too, rather than 406).
        return super().perform_content_negotiation(request, force=True)

    @api_errors(
        {
            503: "PDF_UNAVAILABLE: this server cannot load WeasyPrint's text layout library (pango); the message "
            "says what to install",
        }
    )
    @extend_schema(
        operation_id="invoices_pdf",
        parameters=[
            OpenApiParameter(
                "Content-Disposition",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                response=[200],
                description='inline; filename="<number>.pdf" (a draft: "draft-<id>.pdf")',
            )
        ],
        responses={
            (200, "application/pdf"): OpenApiResponse(
                response=OpenApiTypes.BINARY,
                description="The invoice as a PDF, shown inline (a draft is marked DRAFT).",
            )
        },
        tags=["invoices"],
    )
    def get(self, request, invoice_id):
        """The invoice rendered for print: its lines, totals, informational lines apart, and how to pay
        it while it is open; paid and void invoices are stamped so."""
        invoice = invoice_get(merchant=request.merchant, invoice_id=invoice_id)
        pdf = invoice_pdf_render(invoice)
        response = HttpResponse(pdf.content, content_type="application/pdf")
        response["Content-Disposition"] = f'inline; filename="{pdf.filename}"'
        response["Content-Length"] = str(len(pdf.content))
        return response
