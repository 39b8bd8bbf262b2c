"""GET /v0/invoices/{id}/pdf: the invoice rendered by WeasyPrint, read back with pypdf; tenant
scoped like the other invoice views; 503 PDF_UNAVAILABLE (never a 500) where pango cannot load."""

import io
import sys
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pypdf import PdfReader

from apps.catalog.models import PaymentTerm
from apps.invoices import pdf as invoice_pdf
from apps.invoices.models import Invoice
from apps.invoices.services.invoices import invoice_create_one_off, invoice_void
from apps.subscriptions.tasks import advance_due_periods
from tests.conftest import Api
from tests.factories import MerchantFactory, issue_key, make_customer, sandbox_of
from tests.usage.world import Billing

pytestmark = pytest.mark.django_db

D = Decimal


def one_off(merchant, *, email="ada@example.com", name="Ada Lovelace", lines=None, auto_collect=False):
    customer = make_customer(merchant, email=email, name=name)
    return invoice_create_one_off(
        merchant=merchant,
        customer=customer,
        currency="USDC",
        lines=lines or [("Consulting", D("12.5"))],
        auto_collect=auto_collect,
    )


def pdf_text(response) -> str:
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(response.content))
    return "\n".join(page.extract_text() for page in reader.pages)


def test_an_open_invoice_pdf_shows_its_number_lines_totals_and_how_to_pay(api):
    invoice = one_off(api.merchant, lines=[("Consulting", D("12.5")), ("Setup", D("3"))])
    response = api.get(f"/v0/invoices/{invoice.id}/pdf")
    text = pdf_text(response)
    assert response["Content-Disposition"] == f'inline; filename="{invoice.number}.pdf"'
    assert invoice.number == "INV-000001" and invoice.number in text
    assert "Consulting" in text and "12.500000" in text and "Setup" in text
    assert "Total 15.500000 USDC" in text and "Amount due 15.500000 USDC" in text
    assert "Amount paid 0.000000 USDC" in text
    assert api.merchant.name in text and "Ada Lovelace" in text and "ada@example.com" in text
    assert "One-off" in text
    # how to pay: the invoice's paymentUrl, as a link in the document
    payment_url = api.get(f"/v0/invoices/{invoice.id}").json()["paymentUrl"]
    assert payment_url and payment_url in text
    links = [
        annotation.get_object()["/A"]["/URI"]
        for page in PdfReader(io.BytesIO(response.content)).pages
        for annotation in page.get("/Annots", [])
    ]
    assert payment_url in links
    assert "PAID" not in text and "VOID" not in text and "DRAFT" not in text


def test_a_description_is_text_not_markup(api):
    invoice = one_off(api.merchant, lines=[('<a href="https://evil.example">Click</a> & co', D("1"))])
    text = pdf_text(api.get(f"/v0/invoices/{invoice.id}/pdf"))
    assert '<a href="https://evil.example">Click</a> & co' in text


def test_paid_and_void_invoices_are_stamped_and_say_nothing_of_paying(api):
    customer = make_customer(api.merchant, email="payer@example.com")
    billing_wallet_funded = Billing(api.merchant, email="funded@example.com")
    billing_wallet_funded.fund("50")
    paid = invoice_create_one_off(
        merchant=api.merchant,
        customer=billing_wallet_funded.customer,
        currency="USDC",
        lines=[("Consulting", D("12.5"))],
    )
    assert paid.status == Invoice.Status.PAID
    text = pdf_text(api.get(f"/v0/invoices/{paid.id}/pdf"))
    assert "PAID" in text and "Amount paid 12.500000 USDC" in text and "Amount due 0.000000 USDC" in text
    assert "How to pay" not in text and "/checkout/" not in text

    voided = invoice_create_one_off(
        merchant=api.merchant, customer=customer, currency="USDC", lines=[("Audit", D("7"))], auto_collect=False
    )
    invoice_void(merchant=api.merchant, invoice_id=voided.id)
    text = pdf_text(api.get(f"/v0/invoices/{voided.id}/pdf"))
    assert "VOID" in text and "Audit" in text and voided.number in text
    assert "How to pay" not in text and "/checkout/" not in text


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_a_draft_says_draft_and_shows_usage_already_charged_apart_from_the_total(api, time_machine):
    time_machine.move_to(at("2026-01-01T00:00"), tick=False)
    billing = Billing(api.merchant)
    instant = billing.metric(properties={"unitPrice": "0.01"})
    arrears = billing.metric(term=PaymentTerm.IN_ARREARS, properties={"unitPrice": "0.5"})
    billing.fund("100")
    time_machine.move_to(at("2026-01-10T12:00"), tick=False)
    for key, metric, quantity in (("i-1", instant, 30), ("a-1", arrears, 4)):
        event = billing.event(key, metric, quantity, timestamp="2026-01-10T12:00:00Z")
        assert api.post("/v0/usage", event).status_code == 201
    time_machine.move_to(at("2026-02-01T00:01:01"), tick=False)
    advance_due_periods()  # the period's draft, open to late usage
    draft = Invoice.objects.get(merchant=api.merchant)
    assert draft.status == Invoice.Status.DRAFT and draft.number is None

    response = api.get(f"/v0/invoices/{draft.id}/pdf")
    text = pdf_text(response)
    assert response["Content-Disposition"] == f'inline; filename="draft-{draft.id}.pdf"'
    assert "DRAFT" in text and "INV-" not in text
    assert "Period 2026-01-01 00:00 UTC to 2026-02-01 00:00 UTC" in " ".join(text.split())
    # the in-arrears usage is billed; the instant usage is shown apart, outside the total
    billed, _, informational = text.partition("Usage already charged")
    assert arrears.name in billed and "Total 2.000000 USDC" in billed
    assert "Amount due once final 2.000000 USDC" in billed  # (the API's amountDue of a draft is 0)
    assert f"{instant.name} (charged as used)" in informational and "0.300000" in informational
    assert instant.name not in billed


def test_another_merchants_or_modes_invoice_is_a_404_in_the_envelope(api):
    other = MerchantFactory()
    theirs = one_off(other)
    sandbox_invoice = one_off(sandbox_of(api.merchant))
    for invoice in (theirs, sandbox_invoice):
        response = api.get(f"/v0/invoices/{invoice.id}/pdf")
        assert response.status_code == 404
        assert response["Content-Type"].startswith("application/json")
        assert response.json()["code"] == "INVOICE_NOT_FOUND"
        assert invoice.number not in response.content.decode()
    # the other merchant's own key reads it
    assert Api(issue_key(other), other).get(f"/v0/invoices/{theirs.id}/pdf").status_code == 200


def test_accept_pdf_gets_the_pdf_and_errors_stay_json(api):
    invoice = one_off(api.merchant)
    assert invoice.number in pdf_text(api.get(f"/v0/invoices/{invoice.id}/pdf", HTTP_ACCEPT="application/pdf"))
    missing = api.get(f"/v0/invoices/{MerchantFactory().pk}/pdf", HTTP_ACCEPT="application/pdf")
    assert missing.status_code == 404 and missing.json()["code"] == "INVOICE_NOT_FOUND"


def assert_unavailable(response):
    assert response.status_code == 503, response.content[:500]
    body = response.json()
    assert body["code"] == "PDF_UNAVAILABLE" and body["error"] == "service_unavailable"
    assert "pango" in body["message"] and "apt-get install libpango-1.0-0" in body["message"]
    return body


def test_without_pango_the_pdf_is_503_saying_what_to_install(api, monkeypatch):
    invoice = one_off(api.merchant)

    def pango_missing():
        # what cffi raises, through weasyprint's import, where pango's library is not installed
        raise OSError("cannot load library 'libpango-1.0-0': libpango-1.0-0: cannot open shared object file")

    monkeypatch.setattr(invoice_pdf, "_import_weasyprint", pango_missing)
    body = assert_unavailable(api.get(f"/v0/invoices/{invoice.id}/pdf"))
    assert body["details"]["missing"] == "pango" and "libpango-1.0-0" in body["details"]["reason"]
    # another merchant's id is still a 404, not a 503 that admits it exists
    other = one_off(MerchantFactory())
    assert api.get(f"/v0/invoices/{other.id}/pdf").status_code == 404


def test_without_the_weasyprint_package_the_pdf_is_503(api, monkeypatch):
    invoice = one_off(api.merchant)
    monkeypatch.setitem(sys.modules, "weasyprint", None)  # import weasyprint: ImportError
    body = assert_unavailable(api.get(f"/v0/invoices/{invoice.id}/pdf"))
    assert "weasyprint package" in body["message"] and body["details"]["missing"] == "weasyprint"


def test_pango_failing_while_rendering_is_503(api, monkeypatch):
    invoice = one_off(api.merchant)
    weasyprint = invoice_pdf.load_weasyprint()

    def write_pdf(self, *args, **kwargs):
        raise OSError("cannot load library 'libpangoft2-1.0-0'")

    monkeypatch.setattr(weasyprint.HTML, "write_pdf", write_pdf)
    assert assert_unavailable(api.get(f"/v0/invoices/{invoice.id}/pdf"))["details"]["missing"] == "pango"
