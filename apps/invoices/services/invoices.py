"""Invoices: the period's draft and its finalize, numbering, void, uncollectible.

A period invoice is written when its period's end has passed (the subscriptions'
`on_periods_ended` hook, in the transaction that moves the periods to grace, with the period
rows locked): a draft, open to late usage through the grace window. When the grace is over
(`on_periods_closed`) its lines are computed again (late usage lands on it; not when both moves
are made in one transaction) and it is finalized: numbered from the merchant's sequence, open
with `dueAt`, its payment session created, and collected from the wallet where the wallet
covers it (apps.invoices.services.collection). Numbers come from one row per merchant (and
mode) locked at finalize: no gaps, no duplicates.

The beat's close hands over the periods of a few hundred subscriptions at once, and everything
here works set-wise: one usage query for all their lines, the pure pricing engine in Python,
one insert each for invoices, lines, sessions, attempts, payments, events and ledger
transactions (one per invoice payment), one update of each merchant's sequence. A plan change,
a termination, a one-off or a start invoice is the same path with one invoice.
"""

from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.core.bulk import Statement, array_param, run_statements, update_objects, update_rows
from apps.core.errors import Conflict, FieldError, Unprocessable
from apps.core.jobs import enqueue_after_commit
from apps.core.money import currency_decimals, round_to_minor_unit
from apps.invoices.models import Invoice, InvoiceLine, InvoiceSequence
from apps.invoices.services.events import invoice_publish, invoices_publish
from apps.invoices.services.lines import FeePeriod, LineSpec, PeriodToInvoice, lines_total, periods_lines, start_lines
from apps.invoices.services.refunds import invoice_payment_left, invoice_payment_reverse
from apps.ledger.lock_objects import lock_wallet_balances
from apps.ledger.models import LedgerTransaction, Wallet
from apps.ledger.services import ledger_reverse, wallet_get_or_create
from apps.payments.models import PaymentSession
from apps.payments.registry import WalletCredit, wallet_credited
from apps.payments.services import payment_session_create, payment_sessions_create, payment_sessions_expire
from apps.subscriptions.hooks import StartCharge
from apps.subscriptions.models import BillingPeriod, Subscription

NUMBER_PREFIX = "INV-"


def _line_rows(invoice: Invoice, specs: list[LineSpec]) -> list[InvoiceLine]:
    return [
        InvoiceLine(
            merchant_id=invoice.merchant_id,
            invoice=invoice,
            position=position,
            description=spec.description[:500],
            price=spec.price,
            billable_metric_id=spec.billable_metric_id,
            payment_term=spec.payment_term,
            quantity=spec.quantity,
            unit_price=spec.unit_price,
            amount=spec.amount,
            informational=spec.informational,
            period_start=spec.period_start,
            period_end=spec.period_end,
        )
        for position, spec in enumerate(specs)
    ]


def _write_lines(pairs: list[tuple[Invoice, list[LineSpec]]]) -> None:
    """Write each invoice's lines anew (the draft takes its period's late usage), set-wise;
    its subtotal and total follow (saved by the caller)."""
    InvoiceLine.objects.filter(invoice__in=[invoice for invoice, _ in pairs]).delete()
    rows = []
    for invoice, specs in pairs:
        invoice.written_lines = _line_rows(invoice, specs)
        invoice.lines_data = None
        invoice.subtotal = invoice.total = lines_total(specs)
        rows.extend(invoice.written_lines)
    InvoiceLine.objects.bulk_create(rows)


def _fee_period(row: BillingPeriod) -> FeePeriod:
    return FeePeriod(row.plan, row.start, row.end, row.share)


def _next_periods(periods: list[BillingPeriod]) -> dict:
    """{period id: the period row that follows it} (created before a period moves to grace;
    none when the subscription ended with it), whose in_advance fees its invoice bills: one
    query for all."""
    if not periods:
        return {}
    wanted = {(p.subscription_id, p.end): p.id for p in periods}
    rows = BillingPeriod.objects.select_related("plan").filter(
        subscription_id__in={p.subscription_id for p in periods}, start__in={p.end for p in periods}
    )
    return {
        wanted[(row.subscription_id, row.start)]: _fee_period(row)
        for row in rows
        if (row.subscription_id, row.start) in wanted
    }


def _bills(subscription: Subscription) -> bool:
    """A subscription that never became active owes nothing for its periods (its fees at start
    come with part 2 of invoicing)."""
    return subscription.activated_at is not None


def _periods_specs(periods: list[BillingPeriod]) -> list[list[LineSpec]]:
    following = _next_periods(periods)
    return periods_lines([PeriodToInvoice(p.subscription, _fee_period(p), following.get(p.id)) for p in periods])


def _period_specs(period: BillingPeriod) -> list[LineSpec]:
    return _periods_specs([period])[0]


def _issue_drafts(drafts: list[tuple[Invoice, list[LineSpec]]]) -> list[Invoice]:
    """Write the (unsaved) drafts with their lines, set-wise, and publish invoice.created for
    each; a period invoice becomes its period's (what usage events read as their invoiceId)."""
    if not drafts:
        return []
    invoices = [invoice for invoice, _ in drafts]
    for invoice, specs in drafts:
        invoice.subtotal = invoice.total = lines_total(specs)
    Invoice.objects.bulk_create(invoices)
    rows = []
    for invoice, specs in drafts:
        invoice.written_lines = _line_rows(invoice, specs)
        rows.extend(invoice.written_lines)
    InvoiceLine.objects.bulk_create(rows)
    periods = [
        invoice for invoice in invoices if invoice.kind in Invoice.CLOSING_KINDS and invoice.period_id is not None
    ]
    if periods:
        run_statements(
            [update_rows(BillingPeriod, ["invoice_id"], [(invoice.period_id, invoice.id) for invoice in periods])]
        )
    invoices_publish(invoices, "invoice.created")
    return invoices


def _issue_draft(invoice: Invoice, specs: list[LineSpec]) -> Invoice:
    return _issue_drafts([(invoice, specs)])[0]


def _period_invoice(period: BillingPeriod) -> Invoice:
    """The (unsaved) draft of the period's invoice."""
    subscription = period.subscription
    return Invoice(
        merchant=subscription.merchant,
        customer=subscription.customer,
        subscription=subscription,
        period=period,
        wallet_id=subscription.wallet_id,
        kind=Invoice.Kind.CHANGE if period.end_reason == BillingPeriod.EndReason.CHANGE else Invoice.Kind.PERIOD,
        status=Invoice.Status.DRAFT,
        currency=period.plan.currency,
        period_start=period.start,
        period_end=period.end,
    )


def on_periods_ended(periods: list[BillingPeriod]) -> None:
    """The periods' draft invoices, set-wise (the subscriptions' hook; periods locked, moving to
    grace): their lines from one usage query, the drafts and lines in one insert each.
    Nothing to invoice (no usage, no fee) writes nothing."""
    billable = [period for period in periods if _bills(period.subscription)]
    drafts = [
        (_period_invoice(period), specs)
        for period, specs in zip(billable, _periods_specs(billable), strict=True)
        if specs
    ]
    for invoice in _issue_drafts(drafts):
        invoice.period.invoice_id = invoice.id
        # for the close in the same transaction (no grace window): nothing changed since
        invoice.period.written_draft = invoice


def on_period_ended(period: BillingPeriod) -> None:
    """One period's draft invoice (on_periods_ended with one period)."""
    on_periods_ended([period])


def on_periods_closed(periods: list[BillingPeriod], fresh) -> None:
    """The grace is over: each draft takes its period's late usage (unless `fresh`: written in
    this transaction) and is finalized, then collected; set-wise."""
    billable = [period for period in periods if _bills(period.subscription)]
    if not billable:
        return
    drafts: dict = {}
    unknown = []
    for period in billable:
        written = getattr(period, "written_draft", None)
        if period.id in fresh and written is not None:
            drafts[period.id] = written
        else:
            unknown.append(period)
    if unknown:
        for invoice in (
            Invoice.objects.select_for_update(of=("self",))
            .select_related("merchant", "customer", "wallet", "subscription", "payment_session")
            .filter(period__in=unknown, kind__in=Invoice.CLOSING_KINDS)
            .exclude(status=Invoice.Status.VOID)
            .order_by("created_at", "pk")
        ):
            drafts.setdefault(invoice.period_id, invoice)
    stale = [period for period in billable if period.id not in fresh]
    specs = dict(zip([period.id for period in stale], _periods_specs(stale), strict=True))
    rewrite, new, finalize = [], [], []
    for period in billable:
        invoice = drafts.get(period.id)
        if invoice is None:
            if specs.get(period.id):
                new.append((_period_invoice(period), specs[period.id]))
                finalize.append(new[-1][0])
        elif invoice.status == Invoice.Status.DRAFT:
            if period.id not in fresh:
                rewrite.append((invoice, specs[period.id]))
            finalize.append(invoice)
    if rewrite:
        _write_lines(rewrite)
    for invoice in _issue_drafts(new):
        invoice.period.invoice_id = invoice.id
    invoices_finalize(finalize)


def on_period_closed(period: BillingPeriod, fresh: bool) -> None:
    """One period's close (on_periods_closed with one period)."""
    on_periods_closed([period], {period.id} if fresh else set())


def draft_recompute(invoice: Invoice) -> Invoice:
    """Compute the (locked) draft closing invoice of a period again from the period rows (a plan
    change or termination cut the period whose fees it bills in advance)."""
    period = BillingPeriod.objects.select_related(
        "subscription__plan", "subscription__merchant", "subscription__customer", "plan"
    ).get(pk=invoice.period_id)
    _write_lines([(invoice, _period_specs(period))])
    invoice.save(update_fields=["subtotal", "total", "updated_at"])
    return invoice


def _next_numbers(invoices: list[Invoice]) -> list[str]:
    """The next invoice numbers of each invoice's merchant, in the order of `invoices`: each
    merchant's sequence row moved once by as many (merchants in order), and locked until the
    finalizing transaction ends: a rolled-back finalize leaves no gap."""
    counts: dict = {}
    for invoice in invoices:
        counts[invoice.merchant_id] = counts.get(invoice.merchant_id, 0) + 1
    merchants = sorted(counts, key=str)
    now = timezone.now()
    table = InvoiceSequence._meta.db_table
    statements = [
        Statement(
            f"INSERT INTO {table} (id, created_at, updated_at, merchant_id, last_number) "  # noqa: S608 (names from models)
            "SELECT gen_random_uuid(), %s, %s, m, 0 FROM unnest(%s::uuid[]) AS m ON CONFLICT DO NOTHING",
            [now, now, array_param(merchants)],
        ),
        *(
            Statement(
                f"UPDATE {table} SET last_number = last_number + %s, updated_at = %s "  # noqa: S608 (names from models)
                "WHERE merchant_id = %s RETURNING last_number",
                [counts[merchant_id], now, merchant_id],
            )
            for merchant_id in merchants
        ),
    ]
    results = run_statements(statements)
    following = {
        merchant_id: rows[0][0] - counts[merchant_id] for merchant_id, rows in zip(merchants, results[1:], strict=True)
    }
    numbers = []
    for invoice in invoices:
        following[invoice.merchant_id] += 1
        numbers.append(f"{NUMBER_PREFIX}{following[invoice.merchant_id]:06d}")
    return numbers


def invoice_finalize(invoice: Invoice) -> Invoice:
    """Number the (locked) draft and open it: due INVOICE_DUE_SECONDS from now, with a payment
    session, collected from the wallet at once when it covers the total (auto_collect). An
    invoice of 0 is paid as it is finalized. (invoices_finalize with one invoice.)"""
    return invoices_finalize([invoice])[0]


def invoices_finalize(invoices: list[Invoice]) -> list[Invoice]:
    """Number the (locked) drafts and open them, set-wise, in the order given (their numbers
    follow it): each due INVOICE_DUE_SECONDS from now (unless it has a due date), with a payment
    session (not a start invoice: the activation's), collected from its wallet at once when it
    covers it (auto_collect); an invoice of 0 is paid as it is finalized.

    Locks, in the order every finalize takes them: the invoices (the caller's), the merchant's
    sequence row (after the sessions are written: the finalizes of one merchant queue on it only
    for the writes that carry the numbers and the commit), then the wallets collected from (one
    statement, in order, by the payments service), as late as can be: single usage events of
    those customers wait for them until the commit."""
    from apps.invoices.services.collection import invoices_collect

    if not invoices:
        return invoices
    now = timezone.now()
    due_after = timedelta(seconds=settings.INVOICE_DUE_SECONDS)
    _load_wallets(invoices)
    asking = [invoice for invoice in invoices if invoice.total > 0 and invoice.kind != Invoice.Kind.START]
    sessions = payment_sessions_create(
        sessions=[
            {
                "merchant": invoice.merchant,
                "purpose": PaymentSession.Purpose.INVOICE,
                "amount": invoice.amount_due,
                "currency": invoice.currency,
                "customer": invoice.customer,
                "wallet": invoice.wallet,
                "subscription": invoice.subscription,
                "invoice_id": invoice.id,
            }
            for invoice in asking
        ]
    )
    for invoice, session in zip(asking, sessions, strict=True):
        invoice.payment_session = session
    for invoice, number in zip(invoices, _next_numbers(invoices), strict=True):
        invoice.number = number
        invoice.finalized_at = invoice.updated_at = now
        invoice.due_at = invoice.due_at or now + due_after
        invoice.status = Invoice.Status.OPEN
        if invoice.total == 0:
            invoice.status = Invoice.Status.PAID
            invoice.paid_at = now
    update_objects(
        invoices,
        [
            "number",
            "finalized_at",
            "due_at",
            "status",
            "paid_at",
            "subtotal",
            "total",
            "payment_session_id",
            "updated_at",
        ],
    )
    invoices_publish(invoices, "invoice.finalized")
    invoices_publish([invoice for invoice in invoices if invoice.status == Invoice.Status.PAID], "invoice.paid")
    collecting = [invoice for invoice in asking if invoice.auto_collect]
    paid = {invoice.id for invoice in invoices_collect(collecting)}
    _charge_cards_after_commit([invoice for invoice in collecting if invoice.id not in paid])
    return invoices


def _charge_cards_after_commit(unpaid: list[Invoice]) -> None:
    """Invoices the wallet did not cover, whose customer has a default card: charged
    off-session by a task after the commit (never a call to Stripe in this transaction)."""
    from apps.invoices.services.collection import customers_with_default_card
    from apps.invoices.tasks import collect_invoice_by_card

    with_card = customers_with_default_card(unpaid)
    for invoice in unpaid:
        if invoice.customer_id in with_card and invoice.currency == "USD":
            invoice_id = str(invoice.id)
            # (a broker out of reach: dunning tries the card once the invoice is due)
            enqueue_after_commit(collect_invoice_by_card, invoice_id, caught_up_by="dun_invoices")


def _load_wallets(invoices: list[Invoice]) -> None:
    """Each invoice's wallet row with its available account (what a payment posts to), read
    once for all that lack them."""

    def loaded(invoice):
        return Invoice.wallet.is_cached(invoice) and Wallet.available_account.is_cached(invoice.wallet)

    missing = {invoice.wallet_id for invoice in invoices if not loaded(invoice)}
    if missing:
        wallets = Wallet.objects.select_related("available_account").in_bulk(list(missing))
        for invoice in invoices:
            if not loaded(invoice):
                invoice.wallet = wallets[invoice.wallet_id]


def invoice_payment_session(invoice: Invoice) -> PaymentSession:
    """The live payment session (purpose invoice) behind the open invoice's `paymentUrl`, for
    what is still due: the current one, or a new one when it expired or asks for another
    amount. Run with the invoice locked."""
    session = invoice.payment_session
    now = timezone.now()
    due = invoice.amount_due
    if (
        session is not None
        and session.status == PaymentSession.Status.PENDING
        and session.expires_at > now
        and session.amount - session.amount_paid == due
    ):
        return session
    if session is not None:
        payment_sessions_expire(sessions=PaymentSession.objects.filter(pk=session.pk))
    session = payment_session_create(
        merchant=invoice.merchant,
        purpose=PaymentSession.Purpose.INVOICE,
        amount=due,
        currency=invoice.currency,
        customer=invoice.customer,
        wallet=invoice.wallet,
        subscription=invoice.subscription,
        invoice_id=invoice.id,
    )
    invoice.payment_session = session
    Invoice.objects.filter(pk=invoice.pk).update(payment_session=session)
    return session


def invoice_lock(*, merchant, invoice_id) -> Invoice:
    from apps.invoices.selectors import invoice_get

    invoice_get(merchant=merchant, invoice_id=invoice_id)  # 404 in the envelope
    return (
        Invoice.objects.select_for_update(of=("self",))
        .select_related("merchant", "customer", "wallet", "payment_session")
        .get(pk=invoice_id, merchant=merchant)
    )


def invoice_void(*, merchant, invoice_id) -> Invoice:
    """Void an open, paid or uncollectible invoice: what was paid on it goes back to the wallet
    (each invoice payment reversed: revenue and commission in the proportions they took), its
    payment session can no longer be paid. A draft is finalized by its period's close first."""
    with transaction.atomic():
        invoice = invoice_lock(merchant=merchant, invoice_id=invoice_id)
        if invoice.status == Invoice.Status.VOID:
            raise Conflict(f"Invoice {invoice.id} is already void.", code="INVOICE_VOID")
        if invoice.status == Invoice.Status.DRAFT:
            raise Conflict(
                f"Invoice {invoice.id} is a draft still open to late usage; it can be voided once it is final "
                f"(its period's grace window ends {_grace_end(invoice)}).",
                code="INVOICE_DRAFT",
            )
        payments = LedgerTransaction.objects.filter(
            merchant=invoice.merchant,
            kind=LedgerTransaction.Kind.INVOICE_PAYMENT,
            reference__startswith=f"invoice_payment:{invoice.id}:",
        ).order_by("created_at", "id")
        returned = 0
        for payment in payments:
            paid = -sum(e.amount for e in payment.entries.all() if e.account_id == invoice.wallet.available_account_id)
            left, _ = invoice_payment_left(invoice, payment)
            if left == paid:
                ledger_reverse(
                    original=payment,
                    reference=f"invoice_void:{payment.id}",
                    description=f"void of invoice {invoice.number}",
                )
            else:
                # refunded in part already: what is left of it, in the same proportions
                invoice_payment_reverse(
                    invoice,
                    payment,
                    left,
                    reference=f"invoice_void:{payment.id}",
                    description=f"void of invoice {invoice.number}",
                )
            returned += left
        now = timezone.now()
        invoice.status = Invoice.Status.VOID
        invoice.voided_at = now
        invoice.save(update_fields=["status", "voided_at", "updated_at"])
        payment_sessions_expire(
            sessions=PaymentSession.objects.filter(invoice_id=invoice.id, purpose=PaymentSession.Purpose.INVOICE)
        )
        invoice_publish(invoice, "invoice.voided")
        if returned > 0:
            wallet_credited(WalletCredit(wallet=invoice.wallet, amount=returned, cause="invoice_void"))
    return invoice


def _grace_end(invoice: Invoice) -> str:
    if invoice.period_end is None:
        return "when it is finalized"
    end = invoice.period_end + timedelta(
        seconds=settings.USAGE_GRACE_PERIOD_SECONDS + settings.PERIOD_CLOSE_SETTLE_SECONDS
    )
    return end.isoformat()


def invoice_mark_uncollectible(*, merchant, invoice_id) -> Invoice:
    """An open invoice the merchant gives up on: no money moves; it can still be paid or voided."""
    with transaction.atomic():
        invoice = invoice_lock(merchant=merchant, invoice_id=invoice_id)
        if invoice.status != Invoice.Status.OPEN:
            raise Conflict(
                f"Invoice {invoice.id} is {invoice.status}; only an open invoice can be marked uncollectible.",
                code="INVOICE_NOT_OPEN",
            )
        invoice.status = Invoice.Status.UNCOLLECTIBLE
        invoice.marked_uncollectible_at = timezone.now()
        invoice.save(update_fields=["status", "marked_uncollectible_at", "updated_at"])
    return invoice


def invoice_create_one_off(
    *,
    merchant,
    customer,
    subscription=None,
    currency: str,
    lines: list[tuple[str, Decimal]],
    due_at=None,
    auto_collect: bool = True,
) -> Invoice:
    """An invoice the merchant computed itself (kind one_off): its lines as given (each amount
    at most the currency's minor unit: refused otherwise, never rounded silently), numbered and
    open at once, collected from the wallet when `auto_collect` and the wallet covers it."""
    places = currency_decimals(currency)
    for index, (_, amount) in enumerate(lines):
        if amount < 0:
            raise FieldError(f"lines[{index}].amount", "must be 0 or more", code="INVALID_AMOUNT")
        if round_to_minor_unit(amount, currency) != amount:
            raise FieldError(
                f"lines[{index}].amount",
                f"must have at most {places} digits after the decimal point in {currency}",
                code="INVALID_AMOUNT",
            )
    if customer.archived_at is not None:
        raise Unprocessable(f"Customer {customer.id} is archived; it cannot be invoiced.", code="CUSTOMER_ARCHIVED")
    if due_at is not None and due_at <= timezone.now():
        raise FieldError("dueAt", "must lie in the future", code="INVALID_DUE_AT")
    with transaction.atomic():
        wallet = wallet_get_or_create(merchant=merchant, customer=customer, currency=currency)
        invoice = Invoice(
            merchant=merchant,
            customer=customer,
            subscription=subscription,
            wallet=wallet,
            kind=Invoice.Kind.ONE_OFF,
            status=Invoice.Status.DRAFT,
            currency=currency,
            due_at=due_at,
            auto_collect=auto_collect,
        )
        invoice = _issue_draft(
            invoice, [LineSpec(description=description, amount=amount) for description, amount in lines]
        )
        invoice_finalize(invoice)
    return invoice


def invoice_session_for_link(*, session: PaymentSession) -> PaymentSession | None:
    """The live session of the invoice behind an opened payment link (`session`, maybe expired
    or replaced since): the invoice's current one, or a new one for what is still due; None
    when the invoice no longer takes payment. So `paymentUrl` works as long as the invoice is
    open."""
    if session.purpose != PaymentSession.Purpose.INVOICE or session.invoice_id is None:
        return None
    with transaction.atomic():
        invoice = (
            Invoice.objects.select_for_update(of=("self",))
            .select_related("merchant", "customer", "wallet", "payment_session", "subscription")
            .filter(pk=session.invoice_id, merchant_id=session.merchant_id)
            .first()
        )
        if invoice is None or invoice.status not in (Invoice.Status.OPEN, Invoice.Status.UNCOLLECTIBLE):
            return None
        return invoice_payment_session(invoice)


# --- a subscription's start -------------------------------------------------------------------


def on_subscription_created(subscription: Subscription) -> StartCharge | None:
    """The subscriptions' "created" hook: the plan's in_advance fees for the first period are
    invoiced at once (kind start, one per subscription), numbered; paid from the wallet when it
    already covers them, else asked with the activation session (returned as a StartCharge), whose
    money pays this invoice first. While the subscription waits, the invoice is not collected
    from the wallet by sweeps (the activation pays it) and its link is the activation's."""
    plan = subscription.plan
    period = BillingPeriod.objects.get(subscription=subscription, start=subscription.started_at)
    specs = start_lines(plan, period.start, period.end)
    if not specs:
        return None
    invoice = Invoice(
        merchant_id=subscription.merchant_id,
        customer_id=subscription.customer_id,
        subscription=subscription,
        period=period,
        wallet_id=subscription.wallet_id,
        kind=Invoice.Kind.START,
        status=Invoice.Status.DRAFT,
        currency=plan.currency,
        period_start=period.start,
        period_end=period.end,
        auto_collect=False,
    )
    invoice = _issue_draft(invoice, specs)
    invoice_finalize(invoice)
    if invoice.status == Invoice.Status.OPEN:
        _pay_start_from_wallet(invoice)
    if invoice.status != Invoice.Status.OPEN:
        return None
    return StartCharge(amount=invoice.amount_due, invoice_id=invoice.id)


def _pay_start_from_wallet(invoice: Invoice) -> None:
    """Pay the start invoice from what the wallet already holds, when it covers it whole."""
    from apps.invoices.services.collection import collect_from_wallet, wallet_minimum

    minimum = wallet_minimum(invoice.wallet)
    available = lock_wallet_balances([invoice.wallet])[(invoice.wallet.available_account_id, 0)]
    if available - minimum < invoice.amount_due:
        return
    collect_from_wallet(invoice, minimum)
    invoice.refresh_from_db()


def on_activation_paid(session: PaymentSession, amount: Decimal) -> Decimal:
    """The subscriptions' hook: money for an activation pays its start invoice first."""
    from apps.invoices.purposes import invoice_apply_payment

    if session.invoice_id is None:
        return Decimal(0)
    invoice = (
        Invoice.objects.select_for_update(of=("self",))
        .select_related("merchant", "wallet")
        .filter(pk=session.invoice_id, merchant_id=session.merchant_id)
        .first()
    )
    if invoice is None:
        return Decimal(0)
    payment = session.payments.order_by("-created_at").first()
    return invoice_apply_payment(invoice, amount, payment)


def on_activation_expired(session: PaymentSession) -> None:
    """The subscriptions' hook: an activation that expired unpaid voids its start invoice (what
    was paid on it goes back to the wallet)."""
    if session.invoice_id is None:
        return
    invoice = Invoice.objects.filter(pk=session.invoice_id, merchant_id=session.merchant_id).first()
    if invoice is None or invoice.status in (Invoice.Status.VOID, Invoice.Status.DRAFT):
        return
    invoice_void(merchant=invoice.merchant, invoice_id=invoice.id)


def invoice_reissue(original: Invoice, specs: list[LineSpec]) -> Invoice:
    """A voided invoice issued again with `specs` (a plan change or termination: its in-advance
    fees for the share used): same customer, subscription, period and kind, numbered anew, due
    when the original was (now, if that has passed), with the original's dunning state (one
    whose dunning ended stays open without further dunning until paid or marked uncollectible),
    collected from the wallet like the original when it covers it."""
    now = timezone.now()
    invoice = Invoice(
        merchant_id=original.merchant_id,
        customer_id=original.customer_id,
        subscription_id=original.subscription_id,
        period_id=original.period_id,
        wallet_id=original.wallet_id,
        kind=original.kind,
        status=Invoice.Status.DRAFT,
        currency=original.currency,
        description=f"Issued again for invoice {original.number}",
        period_start=original.period_start,
        period_end=original.period_end,
        auto_collect=original.auto_collect,
        due_at=max(original.due_at, now) if original.due_at else now,
        payment_failed_at=original.payment_failed_at,
        dunning_ended_at=original.dunning_ended_at,
        collection_retries=original.collection_retries,
        next_collection_at=original.next_collection_at,
    )
    return invoice_finalize(_issue_draft(invoice, specs))
