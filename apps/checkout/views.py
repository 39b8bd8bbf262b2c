"""The hosted checkout page, /checkout/{paymentSessionId}: what is due and how to pay it."""

from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from apps.cards.stripe_client import stripe_settings
from apps.checkout.methods import card_csp, payment_methods, stripe_js_url
from apps.checkout.usdc import usdc_context
from apps.core.errors import ApiError
from apps.core.money import format_amount
from apps.invoices.models import Invoice
from apps.invoices.services.invoices import invoice_session_for_link
from apps.payments.models import PaymentAttempt, PaymentSession, PaymentSource
from apps.payments.serializers import session_status
from apps.payments.services import amount_due, payment_session_pay_test

PURPOSE_TITLES = {
    PaymentSession.Purpose.ACTIVATION: "Activate your subscription",
    PaymentSession.Purpose.TOP_UP: "Top up your balance",
    PaymentSession.Purpose.INVOICE: "Pay your invoice",
    PaymentSession.Purpose.SETUP: "Save a payment method",
    PaymentSession.Purpose.TIER_CHANGE: "Change your plan",
}


def _session_or_404(session_id) -> PaymentSession:
    session = (
        PaymentSession.objects.select_related("merchant", "customer", "subscription__plan")
        .filter(pk=session_id)
        .first()
    )
    if session is None:
        raise Http404("No such payment session.")
    return session


def _invoice_summary(session: PaymentSession) -> dict | None:
    """What an invoice's payment link pays: its number, period and lines."""
    if session.purpose != PaymentSession.Purpose.INVOICE or session.invoice_id is None:
        return None
    invoice = Invoice.objects.filter(pk=session.invoice_id, merchant_id=session.merchant_id).first()
    if invoice is None:
        return None
    currency = invoice.currency
    return {
        "number": invoice.number,
        "period_start": invoice.period_start,
        "period_end": invoice.period_end,
        "lines": [
            {"description": line.description, "amount": format_amount(line.amount, currency)}
            for line in invoice.lines.filter(informational=False).order_by("position")
        ],
        "total": format_amount(invoice.total, currency),
        "due_at": invoice.due_at,
    }


@require_GET
def checkout_page(request, session_id):
    session = _session_or_404(session_id)
    status = session_status(session)
    if session.purpose == PaymentSession.Purpose.INVOICE and status != PaymentSession.Status.PAID:
        # an invoice's link works as long as the invoice is open: an expired or replaced
        # session leads to the invoice's live one
        live = invoice_session_for_link(session=session)
        if live is not None and live.id != session.id:
            return redirect(f"/checkout/{live.id}")
    methods = payment_methods(session) if status == PaymentSession.Status.PENDING else []
    livemode = session.merchant.livemode
    card = None
    if any(method.name == "card" and method.available for method in methods):
        card = {
            "js_url": stripe_js_url(livemode=livemode),
            "publishable_key": stripe_settings(livemode=livemode).publishable_key,
            "setup_only": session.mode == PaymentSession.Mode.SETUP,
            # a card payment still in flight (the page reloaded while it ran, or its answer was
            # lost): the page says so and asks the server for its outcome, instead of a form
            # that would only be refused (409 PAYMENT_IN_FLIGHT)
            "in_flight": PaymentAttempt.objects.filter(
                session_id=session.id, source=PaymentSource.CARD, status=PaymentAttempt.Status.IN_FLIGHT
            )
            .order_by("-created_at")
            .first(),
        }
    usdc = None
    if any(method.name == "usdc" and method.available for method in methods):
        usdc = usdc_context(session)
    context = {
        "usdc": usdc,
        "session": session,
        "status": status,
        "title": PURPOSE_TITLES[session.purpose],
        "amount": format_amount(session.amount, session.currency),
        "amount_paid": format_amount(session.amount_paid, session.currency) if session.amount_paid else None,
        "amount_due": format_amount(amount_due(session), session.currency),
        "merchant_name": session.merchant.name,
        "methods": methods,
        "card": card,
        "error": request.GET.get("error", ""),
        "invoice": _invoice_summary(session),
    }
    response = render(request, "checkout/session.html", context, status=200)
    if card is not None:
        # Stripe.js's origin, the API it calls and Stripe's frames, on this page alone
        response._csp_update = card_csp(livemode=livemode)
    return response


@require_POST
def checkout_test_payment(request, session_id):
    """The sandbox's test payment, from the checkout page's button."""
    session = _session_or_404(session_id)
    if session.merchant.livemode:
        raise Http404("Test payments exist only in the sandbox.")
    try:
        payment_session_pay_test(merchant=session.merchant, session_id=session.id)
    except ApiError as exc:
        return redirect(f"/checkout/{session.id}?error={exc.code}")
    if session.success_url:
        return redirect(session.success_url)
    return redirect(f"/checkout/{session.id}")
