"""What a plan change or a termination settles for the time it cuts off (design.md: "a plan
change or termination returns the unused share of what was paid for an in-advance fee (rounded
half-even to the minor unit); an unpaid fee invoice is voided and issued again for the share
used").

A period's in-advance fees were invoiced before it began: on its subscription's start invoice,
on the previous period's invoice, or on the change invoice that began it; each such line spans
the period as it was invoiced, [its start, its end). When the period is cut at `at`
(`on_period_cut`, the subscriptions' hook, before the period's own invoice is written), each
line of those fees on an invoice that is:

- a draft (the previous period's, still in its grace window): computed again now from the period
  rows (as it is again at its finalize), the cut period's fees prorated to the share used;
- open (finalized, unpaid or partly paid): the invoice is voided (what was paid on it goes back
  to the wallet) and issued again with that fee for the share used, [start, at), each other line
  as it was, numbered anew and collected like the original;
- paid: the unused share, [at, end), goes back to the wallet in one ledger transaction that
  takes revenue and commission back in the proportions the invoice's payments gave them;
- void or uncollectible: nothing (nothing is owed, or nothing is being collected).

Each share is exact to the microsecond and rounded once, half-even, to the currency's minor
unit. A return's ledger reference is unique per fee line and cut, so it is posted once.
"""

from datetime import datetime
from decimal import Decimal

from django.db.models import Sum

from apps.catalog.models import PaymentTerm
from apps.core.money import MONEY_CONTEXT, ZERO, round_amount
from apps.invoices.models import Invoice, InvoiceLine
from apps.invoices.services.invoices import draft_recompute, invoice_reissue, invoice_void
from apps.invoices.services.lines import LineSpec, prorate
from apps.ledger.models import Entry, LedgerTransaction
from apps.ledger.services import Posting, ledger_post, merchant_revenue_account, platform_commission_account
from apps.payments.registry import WalletCredit, wallet_credited
from apps.subscriptions.models import BillingPeriod
from apps.subscriptions.periods import fee_share


def _served(line: InvoiceLine, at: datetime):
    """The share of the line's span served before `at` (a Fraction)."""
    at = min(max(at, line.period_start), line.period_end)
    return fee_share(line.period_start, at, line.period_start, line.period_end)


def invoice_reissue_served(invoice: Invoice, at: datetime, *, lines: set | None = None) -> Invoice:
    """Void the (locked) open `invoice` and issue it again with its in-advance fee lines (or only
    those in `lines`, by id) for the share of their span served before `at`; every other line as
    it was. What was paid on the original goes back to the wallet and the new one is collected
    from it like the original. Returns the new invoice."""
    specs = []
    for line in invoice.lines.select_related("price").order_by("position"):
        amount, end = line.amount, line.period_end
        cut = line.payment_term == PaymentTerm.IN_ADVANCE and line.period_start and line.period_end
        if cut and (lines is None or line.id in lines):
            share = _served(line, at)
            if share != 1:
                amount = prorate(line.amount, share, invoice.currency)
                end = max(min(at, line.period_end), line.period_start)
        specs.append(
            LineSpec(
                description=line.description
                if end == line.period_end
                else f"{line.description} (served until {end:%Y-%m-%d %H:%M:%S} UTC)",
                amount=amount,
                price=line.price,
                payment_term=line.payment_term,
                quantity=line.quantity,
                unit_price=line.unit_price,
                informational=line.informational,
                period_start=line.period_start,
                period_end=end,
            )
        )
    invoice_void(merchant=invoice.merchant, invoice_id=invoice.id)
    return invoice_reissue(invoice, specs)


def _payment_split(invoice: Invoice) -> tuple[Decimal, Decimal]:
    """(paid, commission of it): what the invoice's payments moved from the wallet, and what of
    that went to the platform's commission."""
    entries = Entry.objects.filter(
        transaction__merchant_id=invoice.merchant_id,
        transaction__kind=LedgerTransaction.Kind.INVOICE_PAYMENT,
        transaction__reference__startswith=f"invoice_payment:{invoice.id}:",
    )
    commission_account = platform_commission_account(currency=invoice.currency, livemode=invoice.merchant.livemode)
    paid = -(entries.filter(account_id=invoice.wallet.available_account_id).aggregate(s=Sum("amount"))["s"] or ZERO)
    commission = entries.filter(account_id=commission_account.id).aggregate(s=Sum("amount"))["s"] or ZERO
    return paid, commission


def _return_unused(invoice: Invoice, line: InvoiceLine, period: BillingPeriod, at: datetime) -> Decimal:
    """Return to the wallet the unused share of the paid fee `line` (see the module)."""
    unused = 1 - _served(line, at)
    amount = prorate(line.amount, unused, invoice.currency)
    if amount <= 0:
        return ZERO
    paid, commission = _payment_split(invoice)
    commission_back = round_amount(MONEY_CONTEXT.divide(amount * commission, paid)) if paid > 0 else ZERO
    merchant = invoice.merchant
    postings = [
        Posting(invoice.wallet.available_account, amount),
        Posting(merchant_revenue_account(merchant=merchant, currency=invoice.currency), -(amount - commission_back)),
    ]
    if commission_back:
        postings.append(
            Posting(
                platform_commission_account(currency=invoice.currency, livemode=merchant.livemode), -commission_back
            )
        )
    ledger_post(
        merchant=merchant,
        kind=LedgerTransaction.Kind.REVERSAL,
        currency=invoice.currency,
        postings=postings,
        reference=f"fee_return:{line.id}:{period.id}",
        description=(
            f"unused share of {line.description} (invoice {invoice.number}) from {at:%Y-%m-%d %H:%M:%S} UTC, "
            f"{period.get_end_reason_display()}"
        )[:500],
        metadata={"invoiceId": str(invoice.id), "invoiceLineId": str(line.id), "periodId": str(period.id)},
    )
    wallet_credited(WalletCredit(wallet=invoice.wallet, amount=amount, cause="fee_return"))
    return amount


def on_period_cut(period: BillingPeriod, at: datetime) -> None:
    """The subscriptions' hook: `period` was cut at `at` (see the module). A subscription that
    never became active was served nothing: its start invoice is voided with its activation."""
    if period.subscription.activated_at is None:
        return
    lines = list(
        InvoiceLine.objects.filter(
            merchant_id=period.merchant_id,
            invoice__subscription_id=period.subscription_id,
            payment_term=PaymentTerm.IN_ADVANCE,
            informational=False,
            period_start=period.start,
            period_end__gt=at,
        )
        .exclude(invoice__status__in=(Invoice.Status.VOID, Invoice.Status.UNCOLLECTIBLE))
        .order_by("invoice_id", "position")
    )
    by_invoice: dict = {}
    for line in lines:
        by_invoice.setdefault(line.invoice_id, []).append(line)
    for invoice_id, fee_lines in by_invoice.items():
        invoice = (
            Invoice.objects.select_for_update(of=("self",))
            .select_related("merchant", "customer", "wallet", "payment_session", "subscription")
            .get(pk=invoice_id)
        )
        if invoice.status == Invoice.Status.DRAFT and invoice.kind in Invoice.CLOSING_KINDS:
            draft_recompute(invoice)
        elif invoice.status == Invoice.Status.OPEN:
            invoice_reissue_served(invoice, at, lines={line.id for line in fee_lines})
        elif invoice.status == Invoice.Status.PAID:
            for line in fee_lines:
                _return_unused(invoice, line, period, at)
