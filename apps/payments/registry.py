"""What the payments service lets the apps above it plug in (they register in their
AppConfig.ready(); payments never imports them):

- a handler per session purpose: what paying a session of that purpose does to its target
  (activation: the subscription's; top-up: payments' own; later invoice and tier change);
- listeners of "wallet credited": told of every credit to a wallet's available balance, in
  the transaction that made it (a later invoices app pays open invoices from it);
- listeners of "payment refunded": what a refunded payment paid on their targets is undone
  (an invoice payment reversed), before the wallet is debited the refund;
- listeners of "payment refund failed": a refund the processor failed or canceled afterwards
  is credited back to the wallet, and what it had reversed on their targets is paid again.

A hook runs inside the caller's transaction: what it writes commits or rolls back with the
money that caused it.
"""

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal


class PurposeHandler:
    """What paying a session of one purpose does to its target. The defaults suit a target
    that is the wallet itself (a top-up)."""

    def lock_target(self, session) -> None:
        """Lock the target's rows, before the session's row is locked (the order every
        writer of both keeps: target, then session)."""

    def payable(self, session) -> bool:
        """Whether the target still takes money (not paid, void or ended by other means)."""
        return True

    def apply(self, *, session, payment, amount: Decimal, covered: bool) -> None:
        """`amount` of an arrived payment goes to the target (already credited to the wallet,
        the session's amount_paid moved); `covered`: the session is now paid in full."""

    def payable_many(self, sessions) -> set:
        """The ids of those of `sessions` whose target still takes money (`payable`, set-wise)."""
        return {session.id for session in sessions if self.payable(session)}

    def apply_many(self, items) -> None:
        """`apply` for several payments that each cover their session in full: `items` of
        (session, payment, amount, target), set-wise where the handler can; `target` is the
        target's row when the caller holds it (locked), else None."""
        for session, payment, amount, _ in items:
            self.apply(session=session, payment=payment, amount=amount, covered=True)

    def off_session_failed(self, *, session, attempt) -> None:
        """An attempt made while the customer was not there (`attempt.off_session`) failed,
        whenever that became known, in the transaction that fails it, with the target and the
        attempt locked (an invoice enters dunning)."""

    def expired(self, session) -> None:
        """The session expired before it was paid in full (its link ran out, or its target
        ended), in the transaction that marks it, with the target and the session locked."""


_handlers: dict[str, PurposeHandler] = {}


def register_purpose(purpose: str, handler: PurposeHandler) -> None:
    existing = _handlers.get(purpose)
    if existing is not None and type(existing) is not type(handler):
        raise RuntimeError(f"purpose {purpose!r} already has the handler {existing!r}")
    _handlers[purpose] = handler


def purpose_handler(purpose: str) -> PurposeHandler:
    try:
        return _handlers[purpose]
    except KeyError:
        raise LookupError(
            f"no handler is registered for payment sessions of purpose {purpose!r}: the app that owns that purpose "
            "registers it in its AppConfig.ready()"
        ) from None


@dataclass(frozen=True)
class WalletCredit:
    """A credit to a wallet's available balance: what and why (`cause`: payment, adjustment,
    refund, hold_release), with the row that explains it where there is one."""

    wallet: object
    amount: Decimal
    cause: str
    payment: object = None


_wallet_credited: list[Callable[[WalletCredit], None]] = []


def on_wallet_credited(listener: Callable[[WalletCredit], None]) -> None:
    if listener not in _wallet_credited:
        _wallet_credited.append(listener)


def wallet_credited(credit: WalletCredit) -> None:
    """Announce a credit to every listener, inside the caller's transaction."""
    for listener in _wallet_credited:
        listener(credit)


@dataclass(frozen=True)
class RefundNotice:
    """A refund of `amount` of `payment` being recorded (`refund_id`: the PaymentRefund row to
    be). `payment.amount_refunded` is still what earlier refunds gave back."""

    payment: object
    amount: Decimal
    refund_id: object


@dataclass(frozen=True)
class RefundReversal:
    """What a listener undoes for a refund: `amount` put back on the payment's wallet by
    `specs` (ledger TransactionSpecs, an invoice payment reversed with its revenue and
    commission), posted by the payments service together with the refund's own transaction,
    so that every balance row the refund moves is locked in one statement, in one order."""

    amount: Decimal
    specs: tuple = ()


_payment_refunded: list[Callable[[RefundNotice], RefundReversal | None]] = []


def on_payment_refunded(listener: Callable[[RefundNotice], RefundReversal | None]) -> None:
    """`listener(notice)` undoes up to notice.amount of what the payment paid on a target of
    its app, after the money the payment left free on the wallet (an invoice payment reversed:
    its amount back on the wallet, revenue and commission in proportion, the invoice open
    again), and returns what it put back and the transactions that do it (or None)."""
    if listener not in _payment_refunded:
        _payment_refunded.append(listener)


def payment_refunded(notice: RefundNotice) -> RefundReversal:
    """Tell every listener, inside the caller's transaction (which posts what they return)."""
    total, specs = Decimal(0), []
    for listener in _payment_refunded:
        reversal = listener(
            RefundNotice(payment=notice.payment, amount=notice.amount - total, refund_id=notice.refund_id)
        )
        if reversal is not None:
            total += reversal.amount
            specs.extend(reversal.specs)
    return RefundReversal(amount=total, specs=tuple(specs))


@dataclass(frozen=True)
class RefundFailedNotice:
    """A recorded refund (`refund`, a PaymentRefund) of `payment` that its processor reports
    failed or canceled: the `reversed_amount` it had put back from the payment's target is
    being undone (`refund.reversed_amount`), with the refund's debit credited back."""

    payment: object
    refund: object


_payment_refund_failed: list[Callable[[RefundFailedNotice], RefundReversal | None]] = []


def on_payment_refund_failed(listener: Callable[[RefundFailedNotice], RefundReversal | None]) -> None:
    """`listener(notice)` pays again on a target of its app what the refund had reversed there
    (an invoice payment restored: revenue and commission as the reversal took them back, the
    invoice paid again when covered), from the wallet the refund's undoing credits, and
    returns what it took and the transactions that do it (or None: it stays on the wallet)."""
    if listener not in _payment_refund_failed:
        _payment_refund_failed.append(listener)


def payment_refund_failed(notice: RefundFailedNotice) -> RefundReversal:
    """Tell every listener, inside the caller's transaction (which posts what they return)."""
    total, specs = Decimal(0), []
    for listener in _payment_refund_failed:
        restored = listener(notice)
        if restored is not None:
            total += restored.amount
            specs.extend(restored.specs)
    return RefundReversal(amount=total, specs=tuple(specs))
