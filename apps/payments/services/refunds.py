"""Money a processor gave back (a refund) or that a payer disputed, reported once per the
processor's own id, through the one payments service.

A refund undoes what its payment did. It takes first what the payment left free on the wallet
(a top-up, a prefund, an excess); for the rest, what the payment paid on its session's target
is reversed (the "payment refunded" listeners: an invoice payment reversed, revenue and
commission in the proportion it booked them, the invoice open again). Then the wallet is
debited the whole refund through the source's clearing account (the money leaves to the
card), in the same posting. The wallet's available balance may go below zero: the customer
then owes it, and usage below the minimum balance is refused. Stripe's amount_refunded is
cumulative; each refund id is recorded once, so a duplicate or a later event that lists the
same refunds changes nothing. A dispute is recorded and published; no money moves.

A refund the processor reports failed or canceled afterwards (Stripe debits nothing then, or
gives the money back to the merchant's balance) is undone once (`payment_refund_fail`): one
more transaction credits the wallet what the refund took, through the same clearing account,
and what the refund had reversed on the session's target is paid again from it (the "payment
refund failed" listeners: the invoice payment restored with the revenue and commission the
reversal took back, the invoice paid again when that covers it). The payment's
amount_refunded goes down and a fully refunded payment is succeeded (or disputed) again. No
event is published for it: the contract has no "refund failed" event, and payment.refunded
would announce money given back. A failure heard before the refund itself is recorded as a
failed refund that moved nothing, so a late report of the refund changes nothing.
"""

import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from apps.core.errors import Conflict, NotFound
from apps.core.money import ZERO, format_amount, round_amount
from apps.ledger.lock_objects import lock_balances, lock_wallet_balances
from apps.ledger.models import LedgerTransaction
from apps.ledger.services import Posting, TransactionSpec, clearing_account, ledger_post_many
from apps.payments.models import Payment, PaymentDispute, PaymentRefund
from apps.payments.registry import (
    RefundFailedNotice,
    RefundNotice,
    WalletCredit,
    payment_refund_failed,
    payment_refunded,
    wallet_credited,
)
from apps.payments.serializers import PaymentSerializer
from apps.payments.services.receive import _lock_session
from apps.webhooks.outbox import publish


@dataclass(frozen=True)
class Refunded:
    refund: PaymentRefund
    payment: Payment
    # False: this refund had been recorded before, and nothing moved now.
    created: bool


def _locked_payment(source: str, reference: str, *, livemode: bool) -> Payment:
    """The payment of `source` and `reference`, locked after its session's target and its
    session (the order every writer of them keeps)."""
    found = Payment.objects.filter(source=source, external_reference=reference, merchant__livemode=livemode).first()
    if found is None:
        raise NotFound(f"No {source} payment {reference!r} was credited.", code="PAYMENT_NOT_FOUND")
    if found.session_id is not None:
        _lock_session(found.session_id)
    return (
        Payment.objects.select_for_update(of=("self",))
        .select_related("merchant", "wallet__available_account", "session")
        .get(pk=found.pk)
    )


def _publish(payment: Payment, type_: str) -> None:
    publish(merchant=payment.merchant, type=type_, data=PaymentSerializer(payment).data, updated_at=payment.updated_at)


@dataclass(frozen=True)
class RefundUndone:
    refund: PaymentRefund
    # False: the refund's failure had been recorded before (or it was never a refund's debit
    # to undo), and nothing moved now.
    undone: bool


REFUND_FAILED_STATUSES = (PaymentRefund.Status.FAILED, PaymentRefund.Status.CANCELED)


def payment_refund_fail(
    *,
    source: str,
    payment_reference: str,
    refund_reference: str,
    status: str,
    amount: Decimal,
    clearing: str,
    livemode: bool,
) -> RefundUndone:
    """The processor's refund `refund_reference` of the payment failed or was canceled
    (`status`): its debit undone once (see the module). `amount` is the processor's figure,
    used only for a refund not recorded yet (recorded failed, moving nothing)."""
    if status not in REFUND_FAILED_STATUSES:
        raise ValueError(f"a refund's failure status is failed or canceled, got {status!r}")
    with transaction.atomic():
        payment = _locked_payment(source, payment_reference, livemode=livemode)
        # (the payment's lock serializes every writer of its refunds: no lock of the row itself)
        refund = PaymentRefund.objects.filter(source=source, external_reference=refund_reference).first()
        now = timezone.now()
        if refund is None:
            if amount <= ZERO or round_amount(amount) != amount:
                raise ValueError(f"a refund's amount must be positive with at most 12 places, got {amount}")
            refund = PaymentRefund.objects.create(
                merchant=payment.merchant,
                payment=payment,
                source=source,
                external_reference=refund_reference,
                amount=amount,
                currency=payment.currency,
                status=status,
                failed_at=now,
            )
            return RefundUndone(refund, undone=False)
        if refund.payment_id != payment.id:
            raise Conflict(
                f"Refund {refund_reference!r} was recorded for another payment.", code="REFUND_OF_ANOTHER_PAYMENT"
            )
        if refund.status != PaymentRefund.Status.REFUNDED:
            return RefundUndone(refund, undone=False)
        merchant = payment.merchant
        # the order of payment_refund: the wallet, its clearing shard, then the target's rows
        lock_wallet_balances([payment.wallet])
        clearing_row = clearing_account(source=clearing, currency=payment.currency, livemode=merchant.livemode)
        clearing_shard = secrets.randbelow(clearing_row.shard_count)
        lock_balances([(clearing_row.id, clearing_shard)])
        undo_spec = TransactionSpec(
            merchant=merchant,
            kind=LedgerTransaction.Kind.REVERSAL,
            currency=payment.currency,
            postings=[
                Posting(clearing_row, -refund.amount, shard=clearing_shard),
                Posting(payment.wallet.available_account, refund.amount),
            ],
            reference=f"refund_failed:{refund.id}",
            description=f"refund {refund_reference} of {payment.source} payment {payment.external_reference} {status}"[
                :500
            ],
            reverses=refund.ledger_transaction,
            metadata={"paymentId": str(payment.id), "refund": refund_reference, "status": status},
        )
        # what the refund had reversed on the target paid again from the money credited back
        restored = payment_refund_failed(RefundFailedNotice(payment=payment, refund=refund))
        undo_txn, *_ = ledger_post_many([undo_spec, *restored.specs], wallets_locked=True)
        refund.status = status
        refund.failed_at = now
        refund.restored_amount = restored.amount
        refund.undo_transaction = undo_txn
        refund.save(update_fields=["status", "failed_at", "restored_amount", "undo_transaction", "updated_at"])
        payment.amount_refunded -= refund.amount
        if payment.status == Payment.Status.REFUNDED:
            payment.status = Payment.Status.DISPUTED if payment.disputed_at else Payment.Status.SUCCEEDED
        payment.save(update_fields=["amount_refunded", "status", "updated_at"])
        if restored.amount < refund.amount:
            # what stays free on the wallet is a credit like any other (it may pay open invoices)
            wallet_credited(
                WalletCredit(wallet=payment.wallet, amount=refund.amount - restored.amount, cause="refund_failed")
            )
    return RefundUndone(refund, undone=True)


def payment_refund(
    *, source: str, payment_reference: str, refund_reference: str, amount: Decimal, clearing: str, livemode: bool
) -> Refunded:
    """Record the processor's refund `refund_reference` of `amount` of the payment, once (see
    the module); publishes payment.refunded."""
    if amount <= ZERO or round_amount(amount) != amount:
        raise ValueError(f"a refund's amount must be positive with at most 12 places, got {amount}")
    with transaction.atomic():
        payment = _locked_payment(source, payment_reference, livemode=livemode)
        existing = PaymentRefund.objects.filter(source=source, external_reference=refund_reference).first()
        if existing is not None:
            if existing.payment_id != payment.id:
                raise Conflict(
                    f"Refund {refund_reference!r} was recorded for another payment.", code="REFUND_OF_ANOTHER_PAYMENT"
                )
            return Refunded(existing, payment, created=False)
        left = payment.amount - payment.amount_refunded
        if amount > left:
            raise Conflict(
                f"Refund {refund_reference!r} of {format_amount(amount, payment.currency)} {payment.currency} exceeds "
                f"what is left of payment {payment.id} ({format_amount(left, payment.currency)}).",
                code="REFUND_EXCEEDS_PAYMENT",
            )
        refund_id = uuid.uuid4()
        merchant = payment.merchant
        # the rows in the order a payment's credit takes them (the wallet, its clearing shard,
        # then revenue and commission), so that the two cannot deadlock
        lock_wallet_balances([payment.wallet])
        clearing_row = clearing_account(source=clearing, currency=payment.currency, livemode=merchant.livemode)
        clearing_shard = secrets.randbelow(clearing_row.shard_count)
        lock_balances([(clearing_row.id, clearing_shard)])
        # what the payment paid on its target undone first (posted below, with the refund)
        reversal = payment_refunded(RefundNotice(payment=payment, amount=amount, refund_id=refund_id))
        refund_spec = TransactionSpec(
            merchant=merchant,
            kind=LedgerTransaction.Kind.REVERSAL,
            currency=payment.currency,
            postings=[
                Posting(payment.wallet.available_account, -amount),
                Posting(clearing_row, amount, shard=clearing_shard),
            ],
            reference=f"refund:{refund_id}",
            description=f"refund {refund_reference} of {payment.source} payment {payment.external_reference}"[:500],
            metadata={"paymentId": str(payment.id), "refund": refund_reference},
        )
        # one posting, so that the wallet's follow-ups (low balance, auto-recharge) see only the
        # net change
        *_, txn = ledger_post_many([*reversal.specs, refund_spec], wallets_locked=True)
        refund = PaymentRefund.objects.create(
            id=refund_id,
            merchant=merchant,
            payment=payment,
            source=source,
            external_reference=refund_reference,
            amount=amount,
            currency=payment.currency,
            reversed_amount=reversal.amount,
            ledger_transaction=txn,
        )
        payment.amount_refunded += amount
        if payment.amount_refunded == payment.amount:
            payment.status = Payment.Status.REFUNDED
        payment.save(update_fields=["amount_refunded", "status", "updated_at"])
        _publish(payment, "payment.refunded")
    return Refunded(refund, payment, created=True)


def payment_dispute(
    *,
    source: str,
    payment_reference: str,
    dispute_reference: str,
    amount: Decimal,
    reason: str,
    processor_status: str,
    livemode: bool,
    status_rank: Callable[[str], int] | None = None,
) -> tuple[PaymentDispute, bool]:
    """Record the payer's dispute of the payment, once per the processor's dispute id, and
    publish payment.disputed; no money moves (chargebacks are not handled automatically).

    A dispute recorded before takes the processor's later status (under review, won, lost)
    when `status_rank` ranks it after the recorded one: so a report that arrives late, out of
    order, never takes a dispute back to an earlier status. Returns (the dispute, whether it
    was recorded now)."""
    with transaction.atomic():
        payment = _locked_payment(source, payment_reference, livemode=livemode)
        existing = PaymentDispute.objects.filter(source=source, external_reference=dispute_reference).first()
        if existing is not None:
            if existing.payment_id != payment.id:
                raise Conflict(
                    f"Dispute {dispute_reference!r} was recorded for another payment.",
                    code="DISPUTE_OF_ANOTHER_PAYMENT",
                )
            status = processor_status[:64]
            if status_rank is not None and status_rank(status) > status_rank(existing.processor_status):
                existing.processor_status = status
                existing.save(update_fields=["processor_status", "updated_at"])
            return existing, False
        dispute = PaymentDispute.objects.create(
            merchant=payment.merchant,
            payment=payment,
            source=source,
            external_reference=dispute_reference,
            amount=amount,
            currency=payment.currency,
            reason=reason[:100],
            processor_status=processor_status[:64],
        )
        payment.disputed_at = payment.disputed_at or timezone.now()
        if payment.status == Payment.Status.SUCCEEDED:
            payment.status = Payment.Status.DISPUTED
        payment.save(update_fields=["disputed_at", "status", "updated_at"])
        _publish(payment, "payment.disputed")
    return dispute, True
