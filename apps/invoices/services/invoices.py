"""Invoices: the period's draft and its finalize, numbering, void, uncollectible.

A period invoice is written when its period's end has passed (the subscriptions'
`on_period_ended` hook, in the transaction that moves the period to grace, with the period row
locked): a draft, open to late usage through the grace window. When the grace is over
(`on_period_closed`) its lines are computed again (late usage lands on it) and it is finalized:
numbered from the merchant's sequence, open with `dueAt`, its payment session created, and
collected from the wallet where the wallet covers it (apps.invoices.services.collection).
Numbers come from one row per merchant (and mode) locked at finalize: no gaps, no duplicates.
"""

from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.core.errors import Conflict, FieldError, Unprocessable
from apps.core.money import currency_decimals, round_to_minor_unit
from apps.invoices.models import Invoice, InvoiceLine, InvoiceSequence
from apps.invoices.services.events import invoice_publish
from apps.invoices.services.lines import FeePeriod, LineSpec, lines_total, period_lines, start_lines
from apps.ledger.lock_objects import lock_wallet_balances
from apps.ledger.models import LedgerTransaction
from apps.ledger.services import ledger_reverse, wallet_get_or_create
from apps.payments.models import PaymentSession
from apps.payments.registry import WalletCredit, wallet_credited
from apps.payments.services import payment_session_create, payment_sessions_expire
from apps.subscriptions.hooks import StartCharge
from apps.subscriptions.models import BillingPeriod, Subscription

NUMBER_PREFIX = "INV-"


def _write_lines(invoice: Invoice, specs: list[LineSpec]) -> None:
    InvoiceLine.objects.filter(invoice=invoice).delete()
    InvoiceLine.objects.bulk_create(
        [
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
    )
    invoice.subtotal = invoice.total = lines_total(specs)


def _fee_period(row: BillingPeriod) -> FeePeriod:
    return FeePeriod(row.plan, row.start, row.end, row.share)


def _next_period(period: BillingPeriod) -> FeePeriod | None:
    """The period row that follows `period` (created before `period` moves to grace; none when
    the subscription ended with it), whose in_advance fees `period`'s invoice bills."""
    row = (
        BillingPeriod.objects.select_related("plan")
        .filter(merchant_id=period.merchant_id, subscription_id=period.subscription_id, start=period.end)
        .first()
    )
    return None if row is None else _fee_period(row)


def _bills(subscription: Subscription) -> bool:
    """A subscription that never became active owes nothing for its periods (its fees at start
    come with part 2 of invoicing)."""
    return subscription.activated_at is not None


def _period_specs(period: BillingPeriod) -> list[LineSpec]:
    return period_lines(period.subscription, _fee_period(period), _next_period(period))


def _issue_draft(invoice: Invoice, specs: list[LineSpec]) -> Invoice:
    """Write the (unsaved) draft `invoice` with its lines and publish invoice.created; a period
    invoice becomes its period's (what usage events read as their invoiceId)."""
    invoice.subtotal = invoice.total = lines_total(specs)
    invoice.save()
    _write_lines(invoice, specs)
    if invoice.kind in Invoice.CLOSING_KINDS and invoice.period_id is not None:
        BillingPeriod.objects.filter(pk=invoice.period_id).update(invoice_id=invoice.id)
    invoice = Invoice.objects.select_related("merchant", "customer", "wallet", "subscription").get(pk=invoice.pk)
    invoice_publish(invoice, "invoice.created")
    return invoice


def _create_period_invoice(period: BillingPeriod, specs: list[LineSpec]) -> Invoice:
    subscription = period.subscription
    invoice = Invoice(
        merchant_id=period.merchant_id,
        customer_id=subscription.customer_id,
        subscription=subscription,
        period=period,
        wallet_id=subscription.wallet_id,
        kind=Invoice.Kind.CHANGE if period.end_reason == BillingPeriod.EndReason.CHANGE else Invoice.Kind.PERIOD,
        status=Invoice.Status.DRAFT,
        currency=period.plan.currency,
        period_start=period.start,
        period_end=period.end,
    )
    invoice = _issue_draft(invoice, specs)
    period.invoice_id = invoice.id
    return invoice


def on_period_ended(period: BillingPeriod) -> None:
    """The period's draft invoice (the subscriptions' hook; period locked, moving to grace).
    Nothing to invoice (no usage, no fee) writes nothing."""
    if not _bills(period.subscription):
        return
    specs = _period_specs(period)
    if specs:
        _create_period_invoice(period, specs)


def on_period_closed(period: BillingPeriod, fresh: bool) -> None:
    """The grace is over: the draft takes the late usage and is finalized, then collected."""
    if not _bills(period.subscription):
        return
    invoice = (
        Invoice.objects.select_for_update()
        .filter(period=period, kind__in=Invoice.CLOSING_KINDS)
        .exclude(status=Invoice.Status.VOID)
        .first()
    )
    if invoice is None:
        specs = [] if fresh else _period_specs(period)
        if not specs:
            return
        invoice = _create_period_invoice(period, specs)
    elif invoice.status != Invoice.Status.DRAFT:
        return
    elif not fresh:
        _write_lines(invoice, _period_specs(period))
    invoice_finalize(invoice)


def draft_recompute(invoice: Invoice) -> Invoice:
    """Compute the (locked) draft closing invoice of a period again from the period rows (a plan
    change or termination cut the period whose fees it bills in advance)."""
    period = BillingPeriod.objects.select_related(
        "subscription__plan", "subscription__merchant", "subscription__customer", "plan"
    ).get(pk=invoice.period_id)
    _write_lines(invoice, _period_specs(period))
    invoice.save(update_fields=["subtotal", "total", "updated_at"])
    return invoice


def _next_number(merchant_id) -> str:
    """The merchant's next invoice number, under the lock of its sequence row (held until the
    finalizing transaction ends: a rolled-back finalize leaves no gap)."""
    InvoiceSequence.objects.bulk_create([InvoiceSequence(merchant_id=merchant_id)], ignore_conflicts=True)
    sequence = InvoiceSequence.objects.select_for_update().get(merchant_id=merchant_id)
    sequence.last_number += 1
    sequence.save(update_fields=["last_number", "updated_at"])
    return f"{NUMBER_PREFIX}{sequence.last_number:06d}"


def invoice_finalize(invoice: Invoice) -> Invoice:
    """Number the (locked) draft and open it: due INVOICE_DUE_SECONDS from now, with a payment
    session, collected from the wallet at once when it covers the total (auto_collect). An
    invoice of 0 is paid as it is finalized."""
    from apps.invoices.services.collection import wallet_sweep

    now = timezone.now()
    invoice.number = _next_number(invoice.merchant_id)
    invoice.finalized_at = now
    invoice.due_at = invoice.due_at or now + timedelta(seconds=settings.INVOICE_DUE_SECONDS)
    invoice.status = Invoice.Status.OPEN
    if invoice.total == 0:
        invoice.status = Invoice.Status.PAID
        invoice.paid_at = now
    invoice.save()
    invoice_publish(invoice, "invoice.finalized")
    if invoice.status == Invoice.Status.PAID:
        invoice_publish(invoice, "invoice.paid")
        return invoice
    if invoice.kind != Invoice.Kind.START:  # (a start invoice is paid through the activation)
        invoice_payment_session(invoice)
    if invoice.auto_collect:
        wallet_sweep(invoice.wallet, invoices=[invoice])
        invoice.refresh_from_db()
    return invoice


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
            ledger_reverse(
                original=payment,
                reference=f"invoice_void:{payment.id}",
                description=f"void of invoice {invoice.number}",
            )
            returned += -sum(
                e.amount for e in payment.entries.all() if e.account_id == invoice.wallet.available_account_id
            )
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
