"""The portal session: a signed cookie naming the customer (and so the mode: a merchant row is
live or sandbox) that a link was opened for. HTTP-only, SameSite=Lax, Secure over HTTPS; renewed
on every page, it lapses after PORTAL_SESSION_IDLE_SECONDS without one."""

import uuid
from dataclasses import dataclass
from functools import wraps

from django.conf import settings
from django.core import signing
from django.http import Http404
from django.shortcuts import render

from apps.customers.models import Customer
from apps.subscriptions.models import Subscription

COOKIE = "portal_session"
SALT = "apps.portal.session"
PATH = "/portal/"
PORTAL_NAV = [
    ("overview", "Overview", "/portal/"),
    ("usage", "Usage", "/portal/usage"),
    ("invoices", "Invoices", "/portal/invoices"),
    ("topup", "Top up", "/portal/top-up"),
    ("payment_methods", "Payment methods", "/portal/payment-methods"),
    ("keys", "API keys", "/portal/keys"),
    ("disputes", "Disputes", "/portal/disputes"),
]


@dataclass
class Portal:
    merchant: object
    customer: Customer
    subscription: Subscription
    link_id: uuid.UUID


def _value(merchant_id, customer_id, subscription_id, link_id) -> str:
    return signing.dumps(
        {"m": str(merchant_id), "c": str(customer_id), "s": str(subscription_id), "l": str(link_id)},
        salt=SALT,
        compress=True,
    )


def set_portal_cookie(request, response, *, merchant_id, customer_id, subscription_id, link_id) -> None:
    response.set_cookie(
        COOKIE,
        _value(merchant_id, customer_id, subscription_id, link_id),
        max_age=settings.PORTAL_SESSION_IDLE_SECONDS,
        path=PATH,
        secure=request.is_secure(),
        httponly=True,
        samesite="Lax",
    )


def clear_portal_cookie(response) -> None:
    response.delete_cookie(COOKIE, path=PATH, samesite="Lax")


def portal_from_request(request) -> Portal | None:
    raw = request.COOKIES.get(COOKIE)
    if not raw:
        return None
    try:
        data = signing.loads(raw, salt=SALT, max_age=settings.PORTAL_SESSION_IDLE_SECONDS)
        merchant_id, customer_id = uuid.UUID(data["m"]), uuid.UUID(data["c"])
        subscription_id, link_id = uuid.UUID(data["s"]), uuid.UUID(data["l"])
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        return None
    subscription = (
        Subscription.objects.select_related("merchant", "customer", "plan", "wallet")
        .filter(pk=subscription_id, merchant_id=merchant_id, customer_id=customer_id)
        .first()
    )
    if subscription is None:
        return None
    return Portal(subscription.merchant, subscription.customer, subscription, link_id)


def refusal(request, *, title: str, message: str, status: int):
    response = render(request, "portal/refused.html", {"title": title, "message": message}, status=status)
    response["Cache-Control"] = "no-store"
    return response


def portal_page(view):
    """A portal page: refused (403) without a live session; the session renewed after it."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        portal = portal_from_request(request)
        if portal is None:
            response = refusal(
                request,
                title="Your portal session has ended",
                message=f"Portal sessions end after {settings.PORTAL_SESSION_IDLE_SECONDS // 60} minutes without activity. "
                "Ask for a new portal link "
                "where you manage your account.",
                status=403,
            )
            clear_portal_cookie(response)
            return response
        request.portal = portal
        try:
            response = view(request, *args, **kwargs)
        except Http404:
            # (a page, not the API's JSON 404; the same answer whether the row exists elsewhere or not)
            response = render(
                request,
                "portal/message.html",
                {
                    "title": "Not found",
                    "message": "There is nothing here for your account.",
                    "merchant_name": portal.merchant.name,
                    "livemode": portal.merchant.livemode,
                    "portal": portal,
                    "nav": PORTAL_NAV,
                    "customer_name": portal.customer.name or portal.customer.email,
                },
                status=404,
            )
        response["Cache-Control"] = "no-store"
        set_portal_cookie(
            request,
            response,
            merchant_id=portal.merchant.id,
            customer_id=portal.customer.id,
            subscription_id=portal.subscription.id,
            link_id=portal.link_id,
        )
        return response

    return wrapped
