"""The hosted customer portal's pages, /portal/...: what the customer of a portal session used,
what it cost, what it owes and how to pay; its API keys and disputes. Every read goes through
the domain apps' selectors with the session's merchant (and so mode) and customer: a row of
anyone else is a 404."""

import csv
import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.conf import settings
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.apikeys.selectors import api_key_list, tier_subscription
from apps.apikeys.services import api_key_create, api_key_revoke, tier_checkout
from apps.apikeys.tiers import is_tier, tier_get, tier_plans
from apps.apikeys.usage import queries_this_month
from apps.core.errors import ApiError
from apps.core.money import CURRENCY_DECIMALS, ZERO, format_amount, parse_amount
from apps.customers.selectors import customer_wallets
from apps.entitlements.models import Entitlement
from apps.entitlements.selectors import entitlements
from apps.entitlements.serializers import entitlement_data
from apps.invoices.models import Invoice
from apps.invoices.pdf import PdfUnavailable, invoice_pdf_render
from apps.invoices.selectors import invoice_estimate, invoice_get, invoice_list
from apps.invoices.serializers import payment_url
from apps.payments.serializers import checkout_url
from apps.payments.services import topup_session_create
from apps.portal.services import LinkRefused, portal_link_open
from apps.portal.session import PORTAL_NAV, clear_portal_cookie, portal_page, refusal, set_portal_cookie
from apps.usage.models import Dispute
from apps.usage.selectors import dispute_list, usage_daily, usage_event_list
from apps.usage.services.refunds import dispute_open

MAX_USAGE_DAYS = 366
DEFAULT_USAGE_DAYS = 30


def _page(request, template: str, current: str, context: dict, status: int = 200):
    portal = request.portal
    base = {
        "portal": portal,
        "merchant_name": portal.merchant.name,
        "livemode": portal.merchant.livemode,
        "nav": PORTAL_NAV,
        "current": current,
        "customer_name": portal.customer.name or portal.customer.email,
    }
    return render(request, template, {**base, **context}, status=status)


# --- the link --------------------------------------------------------------------------------

REFUSALS = {
    "unknown": (404, "This portal link does not exist", "Check that the whole link was copied, or ask for a new one."),
    "used": (
        410,
        "This portal link was already used",
        "A portal link opens once. Ask for a new one where you manage your account.",
    ),
    "expired": (410, "This portal link has expired", "Ask for a new portal link where you manage your account."),
}


# Chat apps and mail scanners fetch a pasted link to draw its preview; that fetch must not use up a
# single-use link before its customer clicks it. They name themselves in their User-Agent.
LINK_PREVIEW_AGENTS = (
    "slackbot",
    "facebookexternalhit",
    "facebot",
    "twitterbot",
    "discordbot",
    "whatsapp",
    "telegrambot",
    "linkedinbot",
    "skypeuripreview",
    "microsoftpreview",
    "teamsbot",
    "googlebot",
    "bingbot",
    "applebot",
    "embedly",
    "iframely",
    "redditbot",
    "pinterestbot",
    "mattermost",
    "vkshare",
)


def _is_link_preview(request) -> bool:
    agent = request.headers.get("User-Agent", "").lower()
    return any(name in agent for name in LINK_PREVIEW_AGENTS)


@require_GET
def portal_open(request, token):
    if _is_link_preview(request):
        response = refusal(
            request,
            title="Billing portal",
            message="Open this link in your browser to see your usage, balance and invoices. It opens once.",
            status=200,
        )
        response["X-Robots-Tag"] = "noindex, nofollow"
        response["Cache-Control"] = "no-store"
        return response
    try:
        link = portal_link_open(token=token)
    except LinkRefused as refused:
        status, title, message = REFUSALS[refused.reason]
        return refusal(request, title=title, message=message, status=status)
    response = redirect("/portal/")  # (the token leaves the address bar and any Referer)
    response["Cache-Control"] = "no-store"
    set_portal_cookie(
        request,
        response,
        merchant_id=link.merchant_id,
        customer_id=link.customer_id,
        subscription_id=link.subscription_id,
        link_id=link.id,
    )
    return response


@require_POST
def portal_sign_out(request):
    response = refusal(request, title="You are signed out", message="Open a new portal link to come back.", status=200)
    clear_portal_cookie(response)
    return response


# --- overview --------------------------------------------------------------------------------


def _money(amount, currency):
    return {"amount": format_amount(amount, currency), "currency": currency}


def _usage_totals(rows):
    """Rows of usage_daily summed per metric: [{"name", "quantity", "amount", "currency"}]."""
    totals: dict = {}
    for row in rows:
        entry = totals.setdefault(
            row["metric_id"],
            {"name": row["metric_name"], "quantity": ZERO, "amount": ZERO, "currency": row["currency"]},
        )
        entry["quantity"] += row["quantity"]
        entry["amount"] += row["amount"]
    return [
        {**entry, "quantity": _quantity(entry["quantity"]), "amount": format_amount(entry["amount"], entry["currency"])}
        for entry in totals.values()
    ]


def _quantity(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text


def _invoice_row(invoice: Invoice) -> dict:
    currency = invoice.currency
    return {
        "id": invoice.id,
        "number": invoice.number or "Draft",
        "kind": invoice.get_kind_display(),
        "status": invoice.status,
        "period_start": invoice.period_start,
        "period_end": invoice.period_end,
        "issued_at": invoice.finalized_at or invoice.created_at,
        "due_at": invoice.due_at,
        "total": format_amount(invoice.total, currency),
        "amount_due": format_amount(invoice.amount_due, currency),
        "currency": currency,
        "pay_url": payment_url(invoice),
    }


def _customer_invoices(portal, status=None):
    return invoice_list(merchant=portal.merchant, customer_id=portal.customer.id, status=status)


def _with_owed(wallet: dict) -> dict:
    """A wallet as the API shows it (amounts formatted per currency), with `owed`: what the
    customer owes when its available balance is below zero (a refund of money already spent)."""
    balance = wallet["balance"]
    return {**wallet, "owed": balance[1:] if balance.startswith("-") else None}


@portal_page
@require_GET
def overview(request):
    portal = request.portal
    subscription = portal.subscription
    start, end = subscription.current_period
    usage = _usage_totals(usage_daily(merchant=portal.merchant, customer_id=portal.customer.id, start=start, end=end))
    holds = [
        {
            **entitlement_data(entitlement),
            "expires_at": entitlement.expires_at,
            "metrics": ", ".join(item.billable_metric.name for item in entitlement.items.all()),
        }
        for entitlement in entitlements(merchant=portal.merchant)
        .filter(customer=portal.customer, status=Entitlement.Status.ACTIVE)
        .prefetch_related("items__billable_metric")
        .order_by("expires_at", "id")
    ]
    estimate_lines = invoice_estimate(subscription=subscription) if subscription.status != "terminated" else []
    currency = subscription.plan.currency
    estimate = {
        "lines": [
            {"description": line.description, "amount": format_amount(line.amount, currency)}
            for line in estimate_lines
            if not line.informational
        ],
        "total": format_amount(sum((line.amount for line in estimate_lines if not line.informational), ZERO), currency),
        "currency": currency,
        "period_end": end,
    }
    context = {
        "wallets": [_with_owed(wallet) for wallet in customer_wallets(portal.customer)],
        "period_start": start,
        "period_end": end,
        "usage": usage,
        "open_invoices": [
            _invoice_row(i) for i in _customer_invoices(portal).filter(status__in=["open", "uncollectible"])
        ],
        "holds": holds,
        "estimate": estimate,
        "topped_up": request.GET.get("topped_up") == "1",
    }
    return _page(request, "portal/overview.html", "overview", context)


# --- usage -----------------------------------------------------------------------------------


class UsageQuery:
    """The period a usage page shows: ?from=YYYY-MM-DD&to=YYYY-MM-DD (UTC days, both inclusive),
    by default the current billing period so far, or the last 30 days when that is shorter; an
    unreadable or reversed range falls back to it, with a message."""

    def __init__(self, request):
        portal = request.portal
        period_start, period_end = portal.subscription.current_period
        self.error = ""
        default_to = min(period_end - timedelta(microseconds=1), datetime.now(UTC)).date()
        default_from = min(period_start.date(), default_to - timedelta(days=DEFAULT_USAGE_DAYS - 1))
        try:
            first = date.fromisoformat(request.GET["from"]) if request.GET.get("from") else default_from
            last = date.fromisoformat(request.GET["to"]) if request.GET.get("to") else default_to
        except ValueError:
            self.error = "Dates are written YYYY-MM-DD; showing the default range."
            first, last = default_from, default_to
        if last < first:
            self.error = "The end date is before the start date; showing the default range."
            first, last = default_from, default_to
        if (last - first).days >= MAX_USAGE_DAYS:
            self.error = f"A range covers at most {MAX_USAGE_DAYS} days; showing the last {MAX_USAGE_DAYS}."
            first = last - timedelta(days=MAX_USAGE_DAYS - 1)
        self.first, self.last = first, last
        self.start = datetime.combine(first, time.min, tzinfo=UTC)
        self.end = datetime.combine(last + timedelta(days=1), time.min, tzinfo=UTC)
        self.metric = None
        raw = request.GET.get("metric", "")
        if raw:
            try:
                self.metric = uuid.UUID(raw)
            except ValueError:
                self.error = "Unknown metric; showing every metric."

    def days(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]

    def querystring(self) -> str:
        return f"from={self.first.isoformat()}&to={self.last.isoformat()}"


def _usage_series(request, query: UsageQuery) -> list[dict]:
    """One series per metric: its name, currency and, for every day of the range, quantity and amount."""
    portal = request.portal
    rows = usage_daily(
        merchant=portal.merchant,
        customer_id=portal.customer.id,
        start=query.start,
        end=query.end,
        metric_id=query.metric,
    )
    series: dict = {}
    for row in rows:
        entry = series.setdefault(
            row["metric_id"],
            {"id": row["metric_id"], "name": row["metric_name"], "currency": row["currency"], "by_day": {}},
        )
        entry["by_day"][row["day"]] = (row["quantity"], row["amount"])
    result = []
    for entry in series.values():
        days = []
        total_quantity, total_amount = ZERO, ZERO
        for day in query.days():
            quantity, amount = entry["by_day"].get(day, (ZERO, ZERO))
            total_quantity += quantity
            total_amount += amount
            days.append({"day": day, "quantity": quantity, "amount": amount})
        result.append(
            {
                "id": entry["id"],
                "name": entry["name"],
                "currency": entry["currency"],
                "days": days,
                "total_quantity": total_quantity,
                "total_amount": total_amount,
            }
        )
    return result


@portal_page
@require_GET
def usage(request):
    query = UsageQuery(request)
    series = _usage_series(request, query)
    for entry in series:
        currency = entry["currency"]
        entry["rows"] = [
            {"day": d["day"], "quantity": _quantity(d["quantity"]), "amount": format_amount(d["amount"], currency)}
            for d in entry["days"]
            if d["quantity"] or d["amount"]
        ]
        entry["total_quantity_text"] = _quantity(entry["total_quantity"])
        entry["total_amount_text"] = format_amount(entry["total_amount"], currency)
        entry["chart_url"] = f"/portal/usage/chart.svg?{query.querystring()}&metric={entry['id']}"
    context = {"query": query, "series": series, "csv_url": f"/portal/usage.csv?{query.querystring()}"}
    return _page(request, "portal/usage.html", "usage", context)


@portal_page
@require_GET
def usage_csv(request):
    query = UsageQuery(request)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="usage-{query.first}-{query.last}.csv"'
    writer = csv.writer(response)
    writer.writerow(["date (UTC)", "metric", "quantity", "amount charged", "currency"])
    for entry in _usage_series(request, query):
        for day in entry["days"]:
            if day["quantity"] or day["amount"]:
                writer.writerow(
                    [
                        day["day"].isoformat(),
                        entry["name"],
                        _quantity(day["quantity"]),
                        format_amount(day["amount"], entry["currency"]),
                        entry["currency"],
                    ]
                )
    return response


@portal_page
@require_GET
def usage_chart(request):
    """One metric's daily quantity as an SVG bar chart (pygal), drawn on the server: an image
    needs no script, and its styles are the image's own, outside the page's CSP."""
    import pygal
    from pygal.style import Style

    query = UsageQuery(request)
    if query.metric is None:
        raise Http404("Name a metric.")
    series = _usage_series(request, query)
    style = Style(
        background="#ffffff",
        plot_background="#ffffff",
        foreground="#1d2330",
        foreground_strong="#1d2330",
        foreground_subtle="#6b7280",
        colors=("#1d4ed8",),
        font_family="system-ui, sans-serif",
        label_font_size=16,
        major_label_font_size=16,
    )
    chart = pygal.Bar(
        style=style,
        width=640,
        height=300,
        show_legend=False,
        js=[],
        disable_xml_declaration=False,
        x_label_rotation=0,
        show_minor_x_labels=False,
        truncate_label=-1,
        margin=10,
    )
    days = query.days()
    chart.x_labels = [day.strftime("%d %b") for day in days]
    # five dated labels at most: the image is scaled down to half on a phone, and 8 ran together
    chart.x_labels_major = chart.x_labels[:: max(1, -(-len(days) // 5))]
    values = [float(day["quantity"]) for day in series[0]["days"]] if series else [0.0] * len(days)
    chart.add("units", values)
    response = HttpResponse(chart.render(), content_type="image/svg+xml")
    return response


# --- invoices --------------------------------------------------------------------------------


@portal_page
@require_GET
def invoices(request):
    rows = [_invoice_row(i) for i in _customer_invoices(request.portal).exclude(status=Invoice.Status.DRAFT)]
    return _page(request, "portal/invoices.html", "invoices", {"invoices": rows})


def _own_invoice(request, invoice_id) -> Invoice:
    portal = request.portal
    try:
        invoice = invoice_get(merchant=portal.merchant, invoice_id=invoice_id)
    except ApiError:
        raise Http404("No such invoice.") from None
    if invoice.customer_id != portal.customer.id or invoice.status == Invoice.Status.DRAFT:
        raise Http404("No such invoice.")
    return invoice


@portal_page
@require_GET
def invoice_pdf(request, invoice_id):
    invoice = _own_invoice(request, invoice_id)
    try:
        pdf = invoice_pdf_render(invoice)
    except PdfUnavailable as exc:
        return _page(
            request, "portal/message.html", "invoices", {"title": "PDF not available", "message": exc.message}, 503
        )
    response = HttpResponse(pdf.content, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{pdf.filename}"'
    return response


@portal_page
@require_GET
def invoice_pay(request, invoice_id):
    """Pay an open invoice: its payment link on the hosted checkout."""
    invoice = _own_invoice(request, invoice_id)
    url = payment_url(invoice)
    if url is None:
        return _page(
            request,
            "portal/message.html",
            "invoices",
            {"title": "Nothing to pay", "message": f"Invoice {invoice.number} is {invoice.status}; it cannot be paid."},
            409,
        )
    return redirect(url)


# --- top-up ----------------------------------------------------------------------------------


@portal_page
@require_http_methods(["GET", "POST"])
def topup(request):
    portal = request.portal
    wallets = customer_wallets(portal.customer)
    currencies = sorted({w["currency"] for w in wallets} | {portal.subscription.plan.currency})
    error = ""
    amount_text = request.POST.get("amount", "").strip()
    currency = request.POST.get("currency", portal.subscription.plan.currency)
    if request.method == "POST":
        try:
            if currency not in currencies:
                raise ValueError("Choose one of the listed currencies.")
            try:
                amount = parse_amount(amount_text)
            except ValueError:
                raise ValueError("Enter an amount such as 10.50.") from None
            if amount <= 0:
                raise ValueError("The amount must be greater than 0.")
            if -amount.as_tuple().exponent > CURRENCY_DECIMALS[currency]:
                raise ValueError(f"{currency} amounts have at most {CURRENCY_DECIMALS[currency]} decimal places.")
            if amount > Decimal("1000000"):
                raise ValueError("A top-up is at most 1,000,000.")
        except ValueError as exc:
            error = str(exc)
        else:
            base = settings.PUBLIC_BASE_URL
            session = topup_session_create(
                merchant=portal.merchant,
                customer=portal.customer,
                amount=amount,
                currency=currency,
                success_url=f"{base}/portal/?topped_up=1",
                cancel_url=f"{base}/portal/top-up",
            )
            return redirect(checkout_url(session))
    context = {
        "currencies": currencies,
        "currency": currency,
        "amount": amount_text,
        "error": error,
        "wallets": wallets,
    }
    return _page(request, "portal/topup.html", "topup", context, 400 if error else 200)


# --- API keys ----------------------------------------------------------------------------------


def _count(value) -> str | None:
    """A whole count for people: 10000 -> "10,000"; None stays None (unlimited)."""
    return None if value is None else f"{int(value):,}"


def _keys_context(request, *, revealed=None, error=""):
    portal = request.portal
    subscription = tier_subscription(customer=portal.customer)
    keys = list(api_key_list(merchant=portal.merchant, customer_id=portal.customer.id))
    usage = None
    tiers = []
    if subscription is not None:
        current = next((k for k in keys if k.subscription_id == subscription.id), None)
        if current is not None:
            used, limit = queries_this_month(current)
            usage = {
                "used": _count(used),
                "limit": _count(limit),
                "percent": min(100, round(used * 100 / limit)) if limit else None,
            }
        for plan in tier_plans(merchant=portal.merchant):
            # (read from the features as written: tier_of also checks the plan's query price;
            # a plan whose rateLimit is null, the demo's pay-as-you-go, is no tier to move to)
            if plan.features.get("rateLimit") is None or plan.currency != subscription.plan.currency:
                continue
            tiers.append(
                {
                    "code": plan.code,
                    "name": plan.name,
                    "rate_limit": _count(plan.features.get("rateLimit")),
                    "monthly_limit": _count(plan.features.get("monthlyQueryLimit")),
                    "current": plan.pk == subscription.plan_id,
                }
            )
    return {
        "tier_subscription": subscription,
        "tier": subscription.plan if subscription is not None else None,
        "keys": keys,
        "usage": usage,
        "tiers": tiers,
        "revealed": revealed,
        "error": error,
        "offers_keys": subscription is not None or any(True for _ in tier_plans(merchant=portal.merchant)),
    }


@portal_page
@require_http_methods(["GET", "POST"])
def keys(request):
    portal = request.portal
    if request.method == "GET":
        return _page(request, "portal/keys.html", "keys", _keys_context(request))
    name = request.POST.get("name", "").strip()[:200]
    try:
        created = api_key_create(merchant=portal.merchant, customer=portal.customer, organization_name=name)
    except ApiError as exc:
        return _page(request, "portal/keys.html", "keys", _keys_context(request, error=exc.message), exc.status_code)
    return _page(request, "portal/keys.html", "keys", _keys_context(request, revealed=created), 201)


@portal_page
@require_POST
def key_revoke(request, key_id):
    portal = request.portal
    key = api_key_list(merchant=portal.merchant, customer_id=portal.customer.id).filter(pk=key_id).first()
    if key is None:
        raise Http404("No such API key.")
    api_key_revoke(key=key)
    return redirect("/portal/keys")


@portal_page
@require_POST
def keys_upgrade(request):
    portal = request.portal
    subscription = tier_subscription(customer=portal.customer)
    if subscription is None or not is_tier(subscription.plan):
        return _page(request, "portal/keys.html", "keys", _keys_context(request, error="Create an API key first."), 409)
    base = settings.PUBLIC_BASE_URL
    try:
        tier = tier_get(merchant=portal.merchant, code=request.POST.get("tier", ""))
        checkout = tier_checkout(
            subscription=subscription,
            tier=tier,
            success_url=f"{base}/portal/keys",
            cancel_url=f"{base}/portal/keys",
        )
    except ApiError as exc:
        return _page(request, "portal/keys.html", "keys", _keys_context(request, error=exc.message), exc.status_code)
    if checkout.session is None:
        return redirect("/portal/keys")
    return redirect(checkout_url(checkout.session))


# --- disputes ----------------------------------------------------------------------------------

RECENT_EVENTS = 50


@portal_page
@require_http_methods(["GET", "POST"])
def disputes(request):
    portal = request.portal
    error, status = "", 200
    if request.method == "POST":
        message = request.POST.get("message", "").strip()
        event = None
        try:
            event_id = uuid.UUID(request.POST.get("event", ""))
            event = (
                usage_event_list(merchant=portal.merchant, customer_id=portal.customer.id).filter(pk=event_id).first()
            )
        except ValueError:
            pass
        if event is None:
            error, status = "Choose one of your usage events.", 400
        elif not message:
            error, status = "Say what is wrong with this charge.", 400
        elif len(message) > 2000:
            error, status = "The message is at most 2,000 characters.", 400
        else:
            try:
                dispute_open(
                    merchant=portal.merchant, event=event, message=message, opened_by=Dispute.OpenedBy.CUSTOMER
                )
            except ApiError as exc:
                error, status = exc.message, exc.status_code
            else:
                return redirect("/portal/disputes?opened=1")
    events = [
        {
            "id": event.id,
            "timestamp": event.timestamp,
            "amount": format_amount(event.amount, event.currency),
            "currency": event.currency,
            "metrics": ", ".join(line.billable_metric.name for line in event.lines.all()),
        }
        for event in usage_event_list(merchant=portal.merchant, customer_id=portal.customer.id)
        .filter(refunded_at__isnull=True)
        .prefetch_related("lines__billable_metric")[:RECENT_EVENTS]
    ]
    rows = [
        {
            "id": dispute.id,
            "opened_at": dispute.created_at,
            "status": dispute.get_status_display(),
            "message": dispute.message,
            "decline_reason": dispute.decline_reason,
            "event_timestamp": dispute.usage_event.timestamp,
            "amount": format_amount(dispute.usage_event.amount, dispute.usage_event.currency),
            "currency": dispute.usage_event.currency,
        }
        for dispute in dispute_list(merchant=portal.merchant, customer_id=portal.customer.id).select_related(
            "usage_event"
        )
    ]
    context = {
        "events": events,
        "disputes": rows,
        "error": error,
        "message": request.POST.get("message", ""),
        "chosen": request.POST.get("event", ""),
        "opened": request.GET.get("opened") == "1",
    }
    return _page(request, "portal/disputes.html", "disputes", context, status)
