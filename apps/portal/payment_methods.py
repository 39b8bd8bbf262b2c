"""The portal's payment-methods page, /portal/payment-methods: the customer's saved cards, a card
added through the hosted checkout's setup session (the one Stripe.js form, on the checkout page,
which leads back here), the default changed, a card removed after a confirmation.

Cards are read and written only through the cards app's services with the session's customer
(so its merchant row, so its mode): a card of anyone else is a 404. Removing a card marks it
removed in one transaction and detaches it in Stripe after the commit (payment_method_remove)."""

from contextlib import suppress
from datetime import UTC, datetime

from django.conf import settings
from django.http import Http404
from django.shortcuts import redirect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.cards.services.payment_methods import payment_method_remove, setup_session_create
from apps.cards.services.saved_cards import (
    saved_card_get,
    saved_card_list,
    saved_card_set_default,
    saved_card_was_removed,
)
from apps.cards.stripe_client import CARD_CURRENCY, card_unavailable_reason
from apps.core.errors import ApiError, NotFound
from apps.customers.selectors import customer_wallets
from apps.payments.serializers import checkout_url
from apps.portal.session import portal_page
from apps.portal.views import _page

BRANDS = {
    "visa": "Visa",
    "mastercard": "Mastercard",
    "amex": "American Express",
    "discover": "Discover",
    "diners": "Diners Club",
    "jcb": "JCB",
    "unionpay": "UnionPay",
    "cartes_bancaires": "Cartes Bancaires",
}

NOTICES = {
    "added": "Your card was saved.",
    "default": "Your default card was changed.",
    "removed": "The card was removed.",
}


def _brand(brand: str) -> str:
    return BRANDS.get(brand, brand.replace("_", " ").title() if brand else "Card")


def _card_row(card, today) -> dict:
    expired = card.exp_year is not None and card.exp_month is not None and (card.exp_year, card.exp_month) < today
    return {
        "id": card.id,
        "brand": _brand(card.brand),
        "last4": card.last4,
        "expiry": f"{card.exp_month:02d}/{card.exp_year}" if card.exp_month and card.exp_year else "",
        "expired": expired,
        "default": card.is_default,
    }


def _why_no_new_card(portal) -> tuple[str, int] | None:
    """Why this customer cannot add a card now (the message, and the status a POST gets), or None."""
    reason = card_unavailable_reason(livemode=portal.merchant.livemode)
    if reason is not None:
        return f"Card payments are not available: {reason}", 503
    currencies = sorted({wallet["currency"] for wallet in customer_wallets(portal.customer)})
    if CARD_CURRENCY not in currencies:
        billed = " and ".join(currencies) or portal.subscription.plan.currency
        return (
            f"Cards pay amounts in {CARD_CURRENCY} only, and your account with {portal.merchant.name} is billed in "
            f"{billed}: there is nothing a card could pay here. Pay in {billed} from the Top up or Invoices page.",
            409,
        )
    return None


def _page_context(request, *, error: str = "") -> dict:
    portal = request.portal
    now = datetime.now(UTC)
    blocked = _why_no_new_card(portal)
    return {
        "cards": [_card_row(card, (now.year, now.month)) for card in saved_card_list(customer=portal.customer)],
        "unavailable": blocked[0] if blocked else "",
        "notice": NOTICES.get(request.GET.get("done", ""), ""),
        "error": error,
        "currency": CARD_CURRENCY,
    }


def _render(request, *, error: str = "", status: int = 200):
    return _page(request, "portal/payment_methods.html", "payment_methods", _page_context(request, error=error), status)


def _own_card(portal, card_id):
    """The session customer's card; a card of anyone else (or none) is the portal's 404 page."""
    try:
        return saved_card_get(customer=portal.customer, card_id=card_id)
    except NotFound:
        raise Http404("No such card.") from None


@portal_page
@require_GET
def payment_methods(request):
    return _render(request)


@portal_page
@require_POST
def payment_method_add(request):
    """A setup session for the customer, and on to the hosted checkout's card form; the
    checkout returns here once the card is saved (or when the customer cancels)."""
    portal = request.portal
    blocked = _why_no_new_card(portal)
    if blocked is not None:
        return _render(request, error=blocked[0], status=blocked[1])
    base = settings.PUBLIC_BASE_URL
    try:
        session = setup_session_create(
            merchant=portal.merchant,
            customer=portal.customer,
            success_url=f"{base}/portal/payment-methods?done=added",
            cancel_url=f"{base}/portal/payment-methods",
        )
    except ApiError as exc:
        return _render(request, error=exc.message, status=exc.status_code)
    return redirect(checkout_url(session))


@portal_page
@require_POST
def payment_method_make_default(request, card_id):
    portal = request.portal
    card = _own_card(portal, card_id)
    try:
        saved_card_set_default(customer=portal.customer, card_id=card.id)
    except NotFound:
        raise Http404("No such card.") from None  # (removed meanwhile, from another tab)
    return redirect("/portal/payment-methods?done=default")


@portal_page
@require_http_methods(["GET", "POST"])
def payment_method_remove_view(request, card_id):
    """GET asks to confirm (a page of its own: it works without JavaScript); POST removes."""
    portal = request.portal
    if request.method == "POST" and saved_card_was_removed(customer=portal.customer, card_id=card_id):
        # (the same form sent twice: the card is already gone, as asked)
        return redirect("/portal/payment-methods?done=removed")
    card = _own_card(portal, card_id)
    if request.method == "GET":
        now = datetime.now(UTC)
        others = saved_card_list(customer=portal.customer).exclude(pk=card.pk)
        context = {
            "card": _card_row(card, (now.year, now.month)),
            "next_default": _card_row(others.first(), (now.year, now.month)) if card.is_default and others else None,
        }
        return _page(request, "portal/payment_method_remove.html", "payment_methods", context)
    with suppress(NotFound):  # (removed meanwhile, from another tab: gone, as asked)
        payment_method_remove(customer=portal.customer, card_id=card.id)
    return redirect("/portal/payment-methods?done=removed")
