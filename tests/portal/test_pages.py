"""The portal's pages, rendered for the session's customer only."""

from decimal import Decimal

import pytest
from django.test import Client

from apps.apikeys.models import CustomerApiKey
from apps.catalog.demo import seed_catalog
from apps.entitlements.services import EntitlementRequest, entitlement_create
from apps.payments.models import PaymentSession
from apps.usage.models import Dispute, UsageEvent
from tests.factories import MerchantFactory, pay_session, sandbox_of
from tests.portal.world import PortalWorld


@pytest.fixture
def world(sandbox):
    return PortalWorld(sandbox)


@pytest.fixture
def client(world):
    return world.client()


def html(response) -> str:
    return response.content.decode()


def test_overview_shows_balance_held_funds_period_usage_open_invoices_and_holds(world, client):
    entitlement_create(
        merchant=world.merchant,
        customer=world.customer,
        requests=[EntitlementRequest(billable_metric_id=world.metric.pk, quantity=Decimal("4"), price=None)],
    )
    response = client.get("/portal/")
    assert response.status_code == 200
    page = html(response)
    # 10 funded, 3 events of 2 units at 0.25 = 1.50 charged, 4 units (1.00) held
    assert "7.500000 <span>USDC</span>" in page
    assert "1.000000 USDC held" in page
    assert world.metric.name in page and ">6<" in page and "1.500000 USDC" in page
    assert world.invoice.number in page and f"/portal/invoices/{world.invoice.id}/pay" in page
    assert 'data-testid="holds"' in page and "Sandbox" in page
    policy = {part.strip() for part in response["Content-Security-Policy"].split(";")}
    assert {"default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"} <= policy
    assert response["Cache-Control"] == "no-store"


def test_usage_page_shows_a_chart_a_table_per_metric_and_a_csv(world, client):
    page = html(client.get("/portal/usage"))
    assert world.metric.name in page
    assert "/portal/usage/chart.svg?" in page and "Download CSV" in page
    chart = client.get(f"/portal/usage/chart.svg?metric={world.metric.id}")
    assert chart.status_code == 200 and chart["Content-Type"] == "image/svg+xml"
    assert b"<svg" in chart.content
    csv = client.get("/portal/usage.csv")
    assert csv.status_code == 200 and csv["Content-Type"].startswith("text/csv")
    rows = csv.content.decode().splitlines()
    assert rows[0] == "date (UTC),metric,quantity,amount charged,currency"
    assert rows[1].endswith(f",{world.metric.name},6,1.500000,USDC")


def test_usage_page_takes_any_range_and_explains_a_bad_one(world, client):
    assert 'data-testid="no-usage"' in html(client.get("/portal/usage?from=2020-01-01&to=2020-01-31"))
    page = html(client.get("/portal/usage?from=2020-02-10&to=2020-01-01"))
    assert "before the start date" in page and world.metric.name in page
    assert "written YYYY-MM-DD" in html(client.get("/portal/usage?from=yesterday"))


def test_invoices_list_pdf_and_pay(world, client):
    page = html(client.get("/portal/invoices"))
    assert world.invoice.number in page and "100.000000 USDC" in page
    pdf = client.get(f"/portal/invoices/{world.invoice.id}/pdf")
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    pay = client.get(f"/portal/invoices/{world.invoice.id}/pay")
    assert pay.status_code == 302 and "/checkout/" in pay["Location"]


def test_another_customers_invoice_is_404_on_every_invoice_url(world, client):
    stranger = PortalWorld(world.merchant, email="bob@example.com")
    other_merchant = PortalWorld(sandbox_of(MerchantFactory()), email="cy@example.com")
    for invoice in (stranger.invoice, other_merchant.invoice):
        for suffix in ("pdf", "pay"):
            response = client.get(f"/portal/invoices/{invoice.id}/{suffix}")
            assert response.status_code == 404, suffix
    assert stranger.invoice.number not in html(client.get("/portal/invoices")) or (
        stranger.invoice.number == world.invoice.number
    )


def test_topup_goes_to_the_hosted_checkout_and_back_to_the_portal(world, client):
    response = client.post("/portal/top-up", {"amount": "25", "currency": "USDC"})
    assert response.status_code == 302
    session = PaymentSession.objects.get(purpose=PaymentSession.Purpose.TOP_UP, amount=Decimal("25"))
    assert response["Location"].endswith(f"/checkout/{session.id}")
    assert session.success_url.endswith("/portal/?topped_up=1") and session.customer_id == world.customer.id
    pay_session(session)
    page = html(client.get("/portal/?topped_up=1"))
    assert "33.500000 <span>USDC</span>" in page and "payment was received" in page


@pytest.mark.parametrize(
    ("amount", "message"),
    [("", "Enter an amount"), ("ten", "Enter an amount"), ("-1", "greater than 0"), ("1.0000001", "at most 6")],
)
def test_topup_refuses_a_bad_amount_with_a_message(client, amount, message):
    response = client.post("/portal/top-up", {"amount": amount, "currency": "USDC"})
    assert response.status_code == 400
    assert message in html(response)
    assert not PaymentSession.objects.filter(purpose=PaymentSession.Purpose.TOP_UP, amount__lt=0).exists()


def test_api_keys_create_reveals_once_then_revoke(world, client):
    seed_catalog(merchant=world.merchant)
    response = client.post("/portal/keys", {"name": "ci"})
    assert response.status_code == 201
    key = CustomerApiKey.objects.get(customer=world.customer)
    page = html(response)
    assert 'data-testid="secret"' in page and key.prefix in page
    later = html(client.get("/portal/keys"))
    assert key.prefix in later and 'data-testid="secret"' not in later
    assert "calls this month of" in later
    revoked = client.post(f"/portal/keys/{key.id}/revoke")
    assert revoked.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_api_keys_tier_change_goes_to_a_tier_change_checkout(world, client):
    seed_catalog(merchant=world.merchant)
    client.post("/portal/keys", {"name": "ci"})
    response = client.post("/portal/keys/upgrade", {"tier": "starter"})
    assert response.status_code == 302 and "/checkout/" in response["Location"]
    session = PaymentSession.objects.get(purpose=PaymentSession.Purpose.TIER_CHANGE)
    assert session.customer_id == world.customer.id and session.success_url.endswith("/portal/keys")


def test_another_customers_key_cannot_be_revoked(world, client):
    seed_catalog(merchant=world.merchant)
    stranger = PortalWorld(world.merchant, email="bob@example.com")
    stranger.client().post("/portal/keys", {"name": "theirs"})
    key = CustomerApiKey.objects.get(customer=stranger.customer)
    assert client.post(f"/portal/keys/{key.id}/revoke").status_code == 404
    key.refresh_from_db()
    assert key.revoked_at is None


def test_disputes_open_on_an_own_usage_event_and_show_status(world, client):
    event = UsageEvent.objects.filter(customer=world.customer).first()
    response = client.post("/portal/disputes", {"event": str(event.id), "message": "I did not make this call"})
    assert response.status_code == 302
    dispute = Dispute.objects.get()
    assert dispute.opened_by == Dispute.OpenedBy.CUSTOMER and dispute.usage_event_id == event.id
    page = html(client.get("/portal/disputes?opened=1"))
    assert "I did not make this call" in page and "Open" in page
    again = client.post("/portal/disputes", {"event": str(event.id), "message": "again"})
    assert again.status_code == 409 and "already has an open dispute" in html(again)


def test_disputes_refuse_another_customers_event_and_an_empty_message(world, client):
    stranger = PortalWorld(world.merchant, email="bob@example.com")
    theirs = UsageEvent.objects.filter(customer=stranger.customer).first()
    assert client.post("/portal/disputes", {"event": str(theirs.id), "message": "x"}).status_code == 400
    mine = UsageEvent.objects.filter(customer=world.customer).first()
    assert client.post("/portal/disputes", {"event": str(mine.id), "message": "  "}).status_code == 400
    assert not Dispute.objects.exists()


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/portal/top-up", {"amount": "5", "currency": "USDC"}),
        ("/portal/keys", {"name": "x"}),
        ("/portal/disputes", {"event": "x", "message": "x"}),
        ("/portal/sign-out", {}),
    ],
)
def test_every_form_needs_the_csrf_token(world, path, data):
    client = world.client(enforce_csrf_checks=True)
    response = client.post(path, data)
    assert response.status_code == 403
    page = client.get("/portal/top-up")
    token = page.cookies.get("csrftoken") or client.cookies["csrftoken"]
    assert token and 'name="csrfmiddlewaretoken"' in html(page)


def test_sign_out_ends_the_session(client):
    response = client.post("/portal/sign-out")
    assert response.status_code == 200 and "signed out" in html(response)
    assert client.get("/portal/").status_code == 403


def test_a_live_session_sees_nothing_of_the_sandbox(world, merchant):
    live = PortalWorld(merchant, email=world.customer.email)
    client = Client()
    client.get(live.link().split("://", 1)[1].split("/", 1)[1].join(["/", ""]))
    page = html(client.get("/portal/"))
    assert "Sandbox" not in page
    assert world.invoice.number not in page or world.invoice.number == live.invoice.number
    assert client.get(f"/portal/invoices/{world.invoice.id}/pdf").status_code == 404


def test_overview_estimates_the_next_invoice_from_in_arrears_usage(world):
    from apps.catalog.models import PaymentTerm

    later = world.billing.metric(properties={"unitPrice": "0.10"}, term=PaymentTerm.IN_ARREARS)
    response = world.api.post("/v0/usage", world.billing.event("arrears-1", later, quantity=30))
    assert response.status_code == 201, response.content
    page = html(world.client().get("/portal/"))
    estimate = page[page.index('data-testid="estimate"') :]
    assert later.name in estimate and "3.000000 USDC" in estimate
