"""The invoices and billing periods in the admin: merchant staff see and act on their merchant's
rows only (in the mode they picked); void, mark uncollectible and collect go through the services
and report each invoice; nothing is added or deleted."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from apps.invoices.models import Invoice
from apps.invoices.services.invoices import invoice_create_one_off
from apps.ledger.selectors import ledger_check
from apps.merchants.models import User
from apps.merchants.services import merchant_staff_create
from apps.subscriptions.models import BillingPeriod
from apps.subscriptions.tasks import advance_due_periods
from tests.factories import MerchantFactory, make_customer, sandbox_of
from tests.usage.world import Billing

pytestmark = pytest.mark.django_db

D = Decimal
CHANGELIST = "admin:invoices_invoice_changelist"


def staff_client(merchant, username="sam") -> Client:
    user = merchant_staff_create(
        merchant=merchant, username=username, email=f"{username}@m.example", password="pw-123456789"
    )
    client = Client()
    client.force_login(user)
    return client


def one_off(merchant, *, email="ada@example.com", amount="12.5", auto_collect=False, customer=None):
    return invoice_create_one_off(
        merchant=merchant,
        customer=customer or make_customer(merchant, email=email),
        currency="USDC",
        lines=[("Consulting", D(amount))],
        auto_collect=auto_collect,
    )


def listed(client, **params) -> list[Invoice]:
    response = client.get(reverse(CHANGELIST), params)
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def act(client, action: str, *invoices) -> list[tuple[str, str]]:
    response = client.post(
        reverse(CHANGELIST),
        {"action": action, "index": 0, "_selected_action": [str(invoice.pk) for invoice in invoices]},
        follow=True,
    )
    assert response.status_code == 200
    return [(message.level_tag, message.message) for message in get_messages(response.wsgi_request)]


@pytest.fixture
def alpha():
    return MerchantFactory(name="Alpha")


@pytest.fixture
def beta():
    return MerchantFactory(name="Beta")


def test_staff_see_only_their_merchants_invoices_in_the_mode_they_picked(alpha, beta):
    mine = one_off(alpha, email="mine@example.com")
    theirs = one_off(beta, email="theirs@example.com")
    my_sandbox = one_off(sandbox_of(alpha), email="test@example.com")
    client = staff_client(alpha)
    assert listed(client) == [mine]
    assert listed(client, q="theirs@example.com") == [] and listed(client, q=theirs.number) == [mine]
    assert client.get(reverse("admin:invoices_invoice_change", args=[theirs.pk])).status_code in (302, 404)
    assert client.get(reverse("admin:invoices_invoice_pdf", args=[theirs.pk])).status_code == 404
    client.post(reverse("admin-switch-mode"), {"mode": "sandbox", "next": "/admin/"})
    assert listed(client) == [my_sandbox]
    # the operator sees every merchant's, in both modes
    operator = Client()
    operator.force_login(User.objects.create_superuser(username="op", email="op@p.example", password="pw-1234567"))
    assert {invoice.pk for invoice in listed(operator)} == {mine.pk, theirs.pk, my_sandbox.pk}


def test_the_list_filters_and_searches(alpha):
    client = staff_client(alpha)
    open_invoice = one_off(alpha, email="open@example.com")
    billing = Billing(alpha, email="rich@example.com")
    billing.fund("50")
    paid = one_off(alpha, customer=billing.customer, auto_collect=True)
    assert paid.status == Invoice.Status.PAID
    assert listed(client, status="paid") == [paid]
    assert listed(client, status="open") == [open_invoice]
    assert listed(client, q="open@example.com") == [open_invoice]
    assert listed(client, q=paid.number) == [paid]
    assert set(listed(client, kind="one_off", currency="USDC")) == {open_invoice, paid}
    page = client.get(reverse(CHANGELIST)).content.decode()
    for shown in (open_invoice.number, "12.500000 USDC", "open@example.com", "0.000000 USDC"):
        assert shown in page


def test_staff_void_their_own_invoice_through_the_action_and_not_another_merchants(alpha, beta):
    mine = one_off(alpha)
    theirs = one_off(beta)
    client = staff_client(alpha)
    assert act(client, "void_invoices", mine, theirs) == [("success", f"Invoice {mine.number}: voided.")]
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.status == Invoice.Status.VOID and mine.voided_at is not None
    assert theirs.status == Invoice.Status.OPEN  # (not in the staff user's queryset: untouched)
    # the service's refusal, shown for that invoice
    (message,) = act(client, "void_invoices", mine)
    assert message == ("error", f"Invoice {mine.number}: Invoice {mine.id} is already void.")


def test_each_invoice_is_reported_on_its_own(alpha):
    open_invoice = one_off(alpha, email="a@example.com")
    uncollectible = one_off(alpha, email="b@example.com")
    client = staff_client(alpha)
    assert act(client, "mark_uncollectible", uncollectible) == [
        ("success", f"Invoice {uncollectible.number}: marked uncollectible (it can still be paid or voided).")
    ]
    messages = act(client, "mark_uncollectible", open_invoice, uncollectible)
    assert messages == [
        ("success", f"Invoice {open_invoice.number}: marked uncollectible (it can still be paid or voided).")
    ] + [
        (
            "error",
            f"Invoice {uncollectible.number}: Invoice {uncollectible.id} is uncollectible; "
            "only an open invoice can be marked uncollectible.",
        )
    ]
    assert set(Invoice.objects.values_list("status", flat=True)) == {Invoice.Status.UNCOLLECTIBLE}


def test_collect_from_the_wallet_pays_what_the_wallet_covers_and_reports_the_rest(alpha):
    billing = Billing(alpha, email="payer@example.com", minimum="5")
    billing.fund("20")
    small = one_off(alpha, customer=billing.customer, amount="12.5")
    large = one_off(alpha, customer=billing.customer, amount="3")  # 20 - 12.5 - 5 kept < 3
    client = staff_client(alpha)
    messages = act(client, "collect_now", small, large)
    assert messages[0] == ("success", f"Invoice {small.number}: 12.500000 USDC paid from the wallet.")
    level, text = messages[1]
    assert level == "error" and text.startswith(f"Invoice {large.number}: The wallet has 7.500000 USDC available")
    assert "must keep 5.000000" in text
    small.refresh_from_db()
    large.refresh_from_db()
    assert (small.status, small.amount_paid) == (Invoice.Status.PAID, D("12.5"))
    assert (large.status, large.amount_paid) == (Invoice.Status.OPEN, D("0"))
    assert billing.available() == D("7.5")
    assert act(client, "collect_now", small) == [
        (
            "error",
            f"Invoice {small.number}: Invoice {small.id} is paid; only an open or uncollectible invoice can be paid.",
        )
    ]
    assert ledger_check() == []


def test_the_detail_is_read_only_with_its_lines_and_pdf_and_nothing_is_added_or_deleted(alpha):
    invoice = one_off(alpha)
    client = staff_client(alpha)
    page = client.get(reverse("admin:invoices_invoice_change", args=[invoice.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Consulting" in html and 'name="_save"' not in html
    pdf_url = reverse("admin:invoices_invoice_pdf", args=[invoice.pk])
    assert pdf_url in html and f"/checkout/{invoice.payment_session_id}" in html
    pdf = client.get(pdf_url)
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"
    assert pdf["Content-Disposition"] == f'inline; filename="{invoice.number}.pdf"'
    delete = reverse("admin:invoices_invoice_delete", args=[invoice.pk])
    operator = Client()
    operator.force_login(User.objects.create_superuser(username="op", email="op@p.example", password="pw-1234567"))
    for who in (client, operator):
        assert who.get(reverse("admin:invoices_invoice_add")).status_code == 403
        assert who.post(delete, {"post": "yes"}).status_code == 403
    assert Invoice.objects.filter(pk=invoice.pk).exists()
    actions = client.get(reverse(CHANGELIST)).context["action_form"].fields["action"].choices
    assert {name for name, _ in actions if name} == {"void_invoices", "mark_uncollectible", "collect_now"}
    # a read-only page cannot change the invoice
    client.post(reverse("admin:invoices_invoice_change", args=[invoice.pk]), {"status": "paid", "total": "0"})
    invoice.refresh_from_db()
    assert (invoice.status, invoice.total) == (Invoice.Status.OPEN, D("12.5"))


def test_the_admin_pdf_without_pango_is_a_503_saying_what_to_install(alpha, monkeypatch):
    from apps.invoices import pdf

    def pango_missing():
        raise OSError("cannot load library 'libpango-1.0-0'")

    monkeypatch.setattr(pdf, "_import_weasyprint", pango_missing)
    invoice = one_off(alpha)
    response = staff_client(alpha).get(reverse("admin:invoices_invoice_pdf", args=[invoice.pk]))
    assert response.status_code == 503 and "apt-get install libpango-1.0-0" in response.content.decode()


def test_a_viewer_without_the_change_permission_cannot_run_the_actions(alpha):
    from django.contrib.auth.models import Permission

    invoice = one_off(alpha)
    user = User.objects.create_user(username="viewer", password="pw-123456789", is_staff=True, merchant=alpha)
    user.user_permissions.add(Permission.objects.get(codename="view_invoice"))
    client = Client()
    client.force_login(user)
    assert client.get(reverse(CHANGELIST)).context["action_form"] is None
    act(client, "void_invoices", invoice)
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.OPEN


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_billing_periods_are_listed_read_only_linked_to_their_subscription_and_invoice(alpha, beta, time_machine):
    time_machine.move_to(at("2026-01-01T00:00"), tick=False)
    billing = Billing(alpha)
    fee = billing.plan.prices.create(merchant=alpha, payment_term="in_arrears", currency="USDC", amount=D("2"))
    assert fee.amount == D("2")
    Billing(beta, email="other@example.com")
    time_machine.move_to(at("2026-02-01T00:01:01"), tick=False)
    advance_due_periods()  # January: grace, with its draft invoice; February: open
    january = BillingPeriod.objects.get(merchant=alpha, start=at("2026-01-01T00:00"))
    assert january.status == BillingPeriod.Status.GRACE and january.invoice_id is not None

    client = staff_client(alpha)
    url = reverse("admin:subscriptions_billingperiod_changelist")
    rows = client.get(url).context["cl"].result_list
    assert {period.merchant_id for period in rows} == {alpha.pk} and len(rows) == 2
    assert list(client.get(url, {"status": "grace"}).context["cl"].result_list) == [january]
    page = client.get(reverse("admin:subscriptions_billingperiod_change", args=[january.pk]))
    html = page.content.decode()
    assert page.status_code == 200 and 'name="_save"' not in html
    assert reverse("admin:subscriptions_subscription_change", args=[billing.subscription.pk]) in html
    assert reverse("admin:invoices_invoice_change", args=[january.invoice_id]) in html
    beta_period = BillingPeriod.objects.filter(merchant=beta).first()
    assert client.get(reverse("admin:subscriptions_billingperiod_change", args=[beta_period.pk])).status_code in (
        302,
        404,
    )
    assert client.get(reverse("admin:subscriptions_billingperiod_add")).status_code == 403
