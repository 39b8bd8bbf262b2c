"""The one payment service: money that arrived for a session, credited and applied once.

Every source (the sandbox's test payment today; card payments and USDC settlements next)
reports what arrived through `payment_receive`, which in one transaction:

1. locks the session's target (through its purpose's handler), then the session;
2. records the Payment, unique per (source, external reference) whatever merchant or session
   reports it: the same money reported again is credited once (the report returns the first
   payment), and money already credited for another session is refused;
3. credits exactly what arrived to the customer's wallet through the source's clearing
   account of the merchant's mode (one balanced ledger transaction);
4. applies it to the session's target at once, before anything else can spend it: up to what
   is still due (an underpayment leaves the session pending with amount_paid; an excess stays
   free on the wallet); a session already paid or expired, or a target that no longer takes
   money, leaves it all on the wallet;
5. completes the attempt it answers (or records one), publishes payment.succeeded (the
   payment in its API shape) and announces the credit (registry.wallet_credited).

It is the one place that publishes payment.succeeded and payment.failed (an attempt that
failed: `payment_attempt_fail`); payment.refunded and payment.disputed come from
`apps.payments.services.refunds`.
"""

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from apps.core.bulk import insert_rows, run_statements, update_rows
from apps.core.errors import Conflict, NotFound, PaymentRequired
from apps.core.formats import iso
from apps.core.models import violated_constraint
from apps.core.money import ZERO, format_amount, round_amount
from apps.ledger.lock_objects import lock_wallet_balances
from apps.ledger.models import LedgerTransaction
from apps.ledger.services import Posting, TransactionSpec, clearing_account, ledger_post_many, wallet_get_or_create
from apps.payments.models import Payment, PaymentAttempt, PaymentSession, PaymentSource
from apps.payments.registry import PurposeHandler, WalletCredit, purpose_handler, wallet_credited
from apps.payments.serializers import PaymentSerializer, failed_attempt_data
from apps.webhooks.outbox import publish, publish_many

ONE_IN_FLIGHT = ("payment_attempt_one_in_flight_per_session", "payment_attempt_one_in_flight_per_invoice")
# The clearing account (a ledger "source") money of each kind arrives through.
TEST_CLEARING = "test"


@dataclass(frozen=True)
class Arrival:
    """Money that arrived, as its processor reports it."""

    source: str  # PaymentSource
    amount: Decimal
    currency: str
    # Unique per source: a PaymentIntent id, "<chain>:<tx hash>:<log index>", "test:<session id>".
    external_reference: str
    # The clearing account it arrives through: stripe, chain:<name>, test.
    clearing: str


@dataclass(frozen=True)
class Received:
    payment: Payment
    session: PaymentSession
    # False: this money had been reported before, and nothing moved now.
    created: bool


def _lock_session(session_id, merchant=None) -> tuple[PaymentSession, PurposeHandler]:
    """Lock the session's target, then the session (the order every writer of both keeps)."""
    queryset = PaymentSession.objects.all() if merchant is None else PaymentSession.objects.filter(merchant=merchant)
    unlocked = queryset.filter(pk=session_id).first()
    if unlocked is None:
        raise NotFound(f"No payment session {session_id}.", code="PAYMENT_SESSION_NOT_FOUND")
    handler = purpose_handler(unlocked.purpose)
    handler.lock_target(unlocked)
    session = (
        queryset.select_for_update(no_key=True, of=("self",))
        .select_related("merchant", "wallet", "customer")
        .get(pk=session_id)
    )
    return session, handler


def _takes_money(session: PaymentSession, handler: PurposeHandler, now) -> bool:
    return (
        session.status == PaymentSession.Status.PENDING
        and session.expires_at > now
        and session.mode == PaymentSession.Mode.PAYMENT
        and handler.payable(session)
    )


def _check_collectable(session: PaymentSession, handler: PurposeHandler, now) -> None:
    """Refuse to start collecting a session that takes no money (409, naming why)."""
    if session.mode == PaymentSession.Mode.SETUP:
        raise Conflict(
            f"Payment session {session.id} sets up a payment method; it takes no payment.",
            code="PAYMENT_SESSION_IS_SETUP",
        )
    if session.status == PaymentSession.Status.PAID:
        raise Conflict(f"Payment session {session.id} is already paid.", code="PAYMENT_SESSION_PAID")
    if session.status == PaymentSession.Status.EXPIRED or session.expires_at <= now:
        raise Conflict(
            f"Payment session {session.id} expired at {session.expires_at.isoformat()}; create a new one.",
            code="PAYMENT_SESSION_EXPIRED",
        )
    if not handler.payable(session):
        raise Conflict(
            f"What payment session {session.id} pays for ({session.purpose}) no longer takes payment.",
            code="PAYMENT_TARGET_CLOSED",
        )


def amount_due(session: PaymentSession) -> Decimal:
    return session.amount - session.amount_paid


def _attempt_start_locked(session: PaymentSession, source: str, off_session: bool = False) -> PaymentAttempt:
    try:
        with transaction.atomic():
            return PaymentAttempt.objects.create(
                merchant=session.merchant,
                session=session,
                invoice_id=session.invoice_id,
                source=source,
                amount=amount_due(session),
                currency=session.currency,
                off_session=off_session,
            )
    except IntegrityError as exc:
        if violated_constraint(exc) not in ONE_IN_FLIGHT:
            raise
    in_flight = PaymentAttempt.objects.filter(session=session, status=PaymentAttempt.Status.IN_FLIGHT).first()
    if in_flight is None and session.invoice_id is not None:
        in_flight = PaymentAttempt.objects.filter(
            invoice_id=session.invoice_id, merchant=session.merchant, status=PaymentAttempt.Status.IN_FLIGHT
        ).first()
        target = f"Invoice {session.invoice_id}"
    else:
        target = f"Payment session {session.id}"
    raise Conflict(
        f"{target} has a {in_flight.source if in_flight else 'payment'} attempt in flight"
        f"{f' ({in_flight.id})' if in_flight else ''}; wait until it succeeds or fails before paying another way.",
        code="PAYMENT_IN_FLIGHT",
    )


def payment_attempt_start(*, session_id, source: str, merchant=None, off_session: bool = False) -> PaymentAttempt:
    """Start collecting what the session still asks for through `source`: one attempt in
    flight per session across all sources (409 PAYMENT_IN_FLIGHT for a second).
    `off_session`: the customer is not there (see PaymentAttempt.off_session)."""
    with transaction.atomic():
        session, handler = _lock_session(session_id, merchant)
        _check_collectable(session, handler, timezone.now())
        return _attempt_start_locked(session, source, off_session)


def payment_attempt_fail(*, attempt_id, reason: str) -> PaymentAttempt:
    """The attempt failed (a declined card, a reverted transfer): the session can be tried
    again. payment.failed is published once, when the attempt in flight turns failed; an
    off-session attempt's failure is told to the session's purpose handler in the same
    transaction (its target locked first, in the order every writer keeps: target, session,
    attempt)."""
    with transaction.atomic():
        unlocked = PaymentAttempt.objects.select_related("session").get(pk=attempt_id)
        handler = None
        if unlocked.off_session and unlocked.status == PaymentAttempt.Status.IN_FLIGHT:
            handler = purpose_handler(unlocked.session.purpose)
            handler.lock_target(unlocked.session)
        attempt = (
            PaymentAttempt.objects.select_for_update(of=("self",))
            .select_related("merchant", "session")
            .get(pk=attempt_id)
        )
        if attempt.status == PaymentAttempt.Status.IN_FLIGHT:
            attempt.status = PaymentAttempt.Status.FAILED
            attempt.failure_reason = reason[:500]
            attempt.finished_at = timezone.now()
            attempt.save(update_fields=["status", "failure_reason", "finished_at", "updated_at"])
            publish(
                merchant=attempt.merchant,
                type="payment.failed",
                data=failed_attempt_data(attempt),
                updated_at=attempt.updated_at,
            )
            if handler is not None:
                handler.off_session_failed(session=attempt.session, attempt=attempt)
        return attempt


def _check_arrival(arrival: Arrival) -> None:
    """Arrivals come from the platform's own processors: a malformed one is a bug."""
    if arrival.amount <= ZERO or round_amount(arrival.amount) != arrival.amount:
        raise ValueError(f"an arrival's amount must be positive with at most 12 places, got {arrival.amount}")
    if arrival.source not in PaymentSource.values or not arrival.external_reference or not arrival.clearing:
        raise ValueError(f"an arrival needs a known source, an external reference and a clearing account: {arrival}")


def payment_receive(*, session_id, arrival: Arrival, attempt_id=None, merchant=None) -> Received:
    """Credit what arrived for the session and apply it to its target, once (see the module)."""
    _check_arrival(arrival)
    with transaction.atomic():
        session, handler = _lock_session(session_id, merchant)
        existing = Payment.objects.filter(source=arrival.source, external_reference=arrival.external_reference).first()
        if existing is not None:
            return _reported_again(existing, session)
        now = timezone.now()
        merchant = session.merchant
        same_currency = arrival.currency == session.currency
        wallet = (
            session.wallet
            if same_currency
            else wallet_get_or_create(merchant=merchant, customer=session.customer, currency=arrival.currency)
        )
        lock_wallet_balances([wallet])
        applied = ZERO
        if same_currency and _takes_money(session, handler, now):
            applied = min(arrival.amount, amount_due(session))
        attempt = _attempt_for(session, arrival, attempt_id, now)
        txn_id = uuid.uuid4()
        payment = _record(session, wallet, arrival, applied, attempt, txn_id)
        ledger_post_many(
            [
                TransactionSpec(
                    merchant=merchant,
                    kind=LedgerTransaction.Kind.PAYMENT,
                    currency=arrival.currency,
                    postings=[
                        Posting(
                            clearing_account(
                                source=arrival.clearing, currency=arrival.currency, livemode=merchant.livemode
                            ),
                            -arrival.amount,
                        ),
                        Posting(wallet.available_account, arrival.amount),
                    ],
                    reference=f"payment:{payment.id}",
                    description=f"{session.purpose} paid via {arrival.source}",
                    metadata={"paymentId": str(payment.id), "paymentSessionId": str(session.id)},
                    id=txn_id,
                )
            ],
            wallets_locked=True,
        )
        # before what the money does (an activation): the receiver hears of the payment first
        publish(
            merchant=merchant,
            type="payment.succeeded",
            data=PaymentSerializer(payment).data,
            updated_at=payment.updated_at,
        )
        if applied > ZERO:
            session.amount_paid += applied
            covered = session.amount_paid >= session.amount
            if covered:
                session.status = PaymentSession.Status.PAID
                session.paid_at = now
            session.save(update_fields=["amount_paid", "status", "paid_at", "updated_at"])
            handler.apply(session=session, payment=payment, amount=applied, covered=covered)
        wallet_credited(WalletCredit(wallet=wallet, amount=arrival.amount, cause="payment", payment=payment))
    return Received(payment=payment, session=session, created=True)


def payment_from_wallet(*, session_id, minimum: Decimal = ZERO, merchant=None) -> Received:
    """Pay what the session still asks for from the customer's wallet itself (source wallet):
    nothing is credited; the session's target takes the amount through its handler (an
    invoice: one invoice-payment transaction from the wallet). Only whole: when the available
    balance less `minimum` (the highest minimum balance of the subscriptions sharing the
    wallet, which the caller knows) covers what is due, else 402 INSUFFICIENT_BALANCE; one
    attempt in flight per session and invoice as for any source (409 PAYMENT_IN_FLIGHT).
    Publishes payment.succeeded like any payment."""
    with transaction.atomic():
        session, handler = _lock_session(session_id, merchant)
        now = timezone.now()
        _check_collectable(session, handler, now)
        due = amount_due(session)
        if due <= ZERO:
            raise Conflict(
                f"Payment session {session.id} asks for {format_amount(due, session.currency)}: nothing to pay.",
                code="NOTHING_DUE",
            )
        wallet = session.wallet
        available = lock_wallet_balances([wallet])[(wallet.available_account_id, 0)]
        if available - minimum < due:
            raise PaymentRequired(
                f"The wallet has {format_amount(available, session.currency)} {session.currency} available"
                f"{f' and must keep {format_amount(minimum, session.currency)}' if minimum else ''}; "
                f"{format_amount(due, session.currency)} is due. Top up the wallet or pay by another way.",
                code="INSUFFICIENT_BALANCE",
                details={
                    "available": format_amount(available, session.currency),
                    "minimum": format_amount(minimum, session.currency),
                    "due": format_amount(due, session.currency),
                    "currency": session.currency,
                },
            )
        in_flight = _attempts_in_flight([session])
        if in_flight:
            raise _in_flight_conflict(session, next(iter(in_flight.values())))
        (payment,) = _pay_from_wallet([(session, handler, due, None)], now)
    return Received(payment=payment, session=session, created=True)


def payments_from_wallet(
    *, sessions: Sequence[PaymentSession], minimums: Mapping | None = None, targets: Sequence | None = None
) -> list:
    """`payment_from_wallet` for several sessions at once (the period close collecting the
    invoices it finalized), set-wise. The sessions were created in the caller's transaction, or
    the caller holds them locked after their targets (`_lock_session`'s order). Each is paid
    whole, in the order given, when it still takes money (pending, unexpired, its target
    payable), has no attempt in flight, and its wallet covers it: the available balance less
    `minimums[wallet_id]`, less what the sessions before it took from the same wallet; the
    others are left as they are. The wallets are locked in one statement, in order; the
    attempts, payments, payment.succeeded events and session updates are written set-wise, and
    each purpose's handler applies its payments together (`PurposeHandler.apply_many`).
    `targets`: the targets' rows that the caller holds (in the order of `sessions`), handed to
    the handlers so that they need not read them again. Returns, in the order of `sessions`,
    the Received of each paid, None for the others.

    What the locks the caller holds settle (attempts in flight, payable targets) is read before
    the wallets are locked: single usage events of those customers wait for the wallets until
    the commit, so as little as can be happens after."""
    minimums = minimums or {}
    results: list = [None] * len(sessions)
    if not sessions:
        return results
    now = timezone.now()
    busy = _attempts_in_flight(sessions)
    by_purpose: dict = {}
    for session in sessions:
        by_purpose.setdefault(session.purpose, []).append(session)
    payable = set()
    for purpose, listed in by_purpose.items():
        payable |= purpose_handler(purpose).payable_many(listed)
    wallets: dict = {}
    for session in sessions:
        wallets.setdefault(session.wallet_id, session.wallet)
    balances = lock_wallet_balances(list(wallets.values()))
    available = {wallet_id: balances[(wallet.available_account_id, 0)] for wallet_id, wallet in wallets.items()}
    chosen, indexes = [], []
    for index, session in enumerate(sessions):
        due = amount_due(session)
        if (
            due <= ZERO
            or session.id not in payable
            or session.status != PaymentSession.Status.PENDING
            or session.expires_at <= now
            or session.mode != PaymentSession.Mode.PAYMENT
            or session.id in busy
            or (session.invoice_id is not None and session.invoice_id in busy)
            or available[session.wallet_id] - minimums.get(session.wallet_id, ZERO) < due
        ):
            continue
        available[session.wallet_id] -= due
        chosen.append((session, purpose_handler(session.purpose), due, targets[index] if targets else None))
        indexes.append(index)
    for index, payment in zip(indexes, _pay_from_wallet(chosen, now), strict=True):
        results[index] = Received(payment=payment, session=sessions[index], created=True)
    return results


def _attempts_in_flight(sessions) -> dict:
    """The attempts in flight for these sessions or their invoices, by session id and invoice id."""
    session_ids = [session.id for session in sessions]
    invoice_ids = [session.invoice_id for session in sessions if session.invoice_id is not None]
    condition = Q(session_id__in=session_ids)
    if invoice_ids:
        condition |= Q(invoice_id__in=invoice_ids)
    found = {}
    for attempt in PaymentAttempt.objects.filter(condition, status=PaymentAttempt.Status.IN_FLIGHT):
        found[attempt.session_id] = attempt
        if attempt.invoice_id is not None:
            found[attempt.invoice_id] = attempt
    return found


def _in_flight_conflict(session: PaymentSession, in_flight: PaymentAttempt) -> Conflict:
    target = f"Payment session {session.id}" if in_flight.session_id == session.id else f"Invoice {session.invoice_id}"
    return Conflict(
        f"{target} has a {in_flight.source} attempt in flight ({in_flight.id}); "
        "wait until it succeeds or fails before paying another way.",
        code="PAYMENT_IN_FLIGHT",
    )


ATTEMPT_COLUMNS = (
    "id",
    "created_at",
    "updated_at",
    "merchant_id",
    "session_id",
    "invoice_id",
    "source",
    "status",
    "amount",
    "currency",
    "external_reference",
    "failure_reason",
    "finished_at",
)
PAYMENT_COLUMNS = (
    "id",
    "created_at",
    "updated_at",
    "merchant_id",
    "source",
    "external_reference",
    "status",
    "amount",
    "currency",
    "applied_amount",
    "amount_refunded",
    "customer_id",
    "wallet_id",
    "session_id",
    "attempt_id",
    "ledger_transaction_id",
)
SESSION_PAID_COLUMNS = ("amount_paid", "status", "paid_at", "updated_at")


def _pay_from_wallet(chosen: list[tuple], now) -> list[Payment]:
    """Pay each (session, handler, due, target or None) whole from its wallet, set-wise: a
    succeeded attempt and a payment (source wallet) each and the sessions paid, in one round
    trip; payment.succeeded for each; then each handler applies its payments."""
    if not chosen:
        return []
    attempts, payments = [], []
    for session, _, due, _ in chosen:
        attempt_id = uuid.uuid4()
        reference = f"wallet:{attempt_id}"
        attempts.append(
            (
                attempt_id,
                now,
                now,
                session.merchant_id,
                session.id,
                session.invoice_id,
                PaymentSource.WALLET,
                PaymentAttempt.Status.SUCCEEDED,
                due,
                session.currency,
                reference,
                "",
                now,
            )
        )
        payment = Payment(
            id=uuid.uuid4(),
            created_at=now,
            updated_at=now,
            merchant=session.merchant,
            source=PaymentSource.WALLET,
            external_reference=reference,
            status=Payment.Status.SUCCEEDED,
            amount=due,
            currency=session.currency,
            applied_amount=due,
            customer_id=session.customer_id,
            wallet=session.wallet,
            session=session,
            attempt_id=attempt_id,
        )
        payment._state.adding = False
        payments.append(payment)
        session.amount_paid += due
        session.status = PaymentSession.Status.PAID
        session.paid_at = session.updated_at = now
    run_statements(
        [
            insert_rows(PaymentAttempt, ATTEMPT_COLUMNS, attempts),
            insert_rows(Payment, PAYMENT_COLUMNS, [[getattr(p, c) for c in PAYMENT_COLUMNS] for p in payments]),
            update_rows(
                PaymentSession,
                SESSION_PAID_COLUMNS,
                [[session.id, *(getattr(session, c) for c in SESSION_PAID_COLUMNS)] for session, *_ in chosen],
            ),
        ]
    )
    shapes = PaymentSerializer(payments, many=True).data
    publish_many(
        [
            (payment.merchant, "payment.succeeded", {**shape, "updatedAt": iso(payment.updated_at)})
            for payment, shape in zip(payments, shapes, strict=True)
        ]
    )
    by_handler: dict = {}
    for (session, handler, due, target), payment in zip(chosen, payments, strict=True):
        by_handler.setdefault(id(handler), (handler, []))[1].append((session, payment, due, target))
    for handler, items in by_handler.values():
        handler.apply_many(items)
    return payments


def _reported_again(payment: Payment, session: PaymentSession) -> Received:
    if payment.session_id != session.id:
        raise Conflict(
            f"The {payment.source} payment {payment.external_reference!r} was already credited for payment session "
            f"{payment.session_id}; the same money cannot pay twice.",
            code="PAYMENT_ALREADY_RECEIVED",
        )
    return Received(payment=payment, session=session, created=False)


def _attempt_for(session: PaymentSession, arrival: Arrival, attempt_id, now) -> PaymentAttempt:
    """The attempt this money answers, now succeeded; money that arrived without one (a
    transfer sent on the customer's own) gets an attempt row recording it."""
    if attempt_id is None:
        return PaymentAttempt.objects.create(
            merchant=session.merchant,
            session=session,
            invoice_id=session.invoice_id,
            source=arrival.source,
            status=PaymentAttempt.Status.SUCCEEDED,
            amount=arrival.amount,
            currency=arrival.currency,
            external_reference=arrival.external_reference,
            finished_at=now,
        )
    attempt = PaymentAttempt.objects.select_for_update().get(pk=attempt_id, session=session)
    attempt.status = PaymentAttempt.Status.SUCCEEDED
    attempt.external_reference = attempt.external_reference or arrival.external_reference
    attempt.finished_at = now
    attempt.save(update_fields=["status", "external_reference", "finished_at", "updated_at"])
    return attempt


def _record(session, wallet, arrival: Arrival, applied: Decimal, attempt, txn_id) -> Payment:
    """The Payment row; its (source, external reference) is unique across every merchant."""
    try:
        with transaction.atomic():
            # (its ledger transaction is written next, in this transaction: the key is deferred)
            return Payment.objects.create(
                merchant=session.merchant,
                source=arrival.source,
                external_reference=arrival.external_reference,
                amount=arrival.amount,
                currency=arrival.currency,
                applied_amount=applied,
                customer=session.customer,
                wallet=wallet,
                session=session,
                attempt=attempt,
                ledger_transaction_id=txn_id,
            )
    except IntegrityError as exc:
        if violated_constraint(exc) != "payment_unique_external_reference":
            raise
    # credited meanwhile by a concurrent report for another session (the same session's
    # reports wait on its lock and find it before)
    return _reported_again(
        Payment.objects.get(source=arrival.source, external_reference=arrival.external_reference), session
    )


def payment_session_pay_test(*, merchant, session_id) -> tuple[PaymentSession, bool]:
    """The sandbox's test payment: as if the customer paid what the session still asks for.
    Its external reference is test:<session id>, so paying a session twice credits once.
    Returns (session, paid_now)."""
    if merchant.livemode:
        raise NotFound("Test payments exist only in the sandbox: use an sk_test_ key.", code="NOT_FOUND")
    with transaction.atomic():
        session, handler = _lock_session(session_id, merchant)
        reference = f"test:{session.id}"
        if session.status == PaymentSession.Status.PAID or (
            Payment.objects.filter(source=PaymentSource.TEST, external_reference=reference).exists()
        ):
            return session, False
        _check_collectable(session, handler, timezone.now())
        due = amount_due(session)
        if due <= ZERO:
            raise Conflict(
                f"Payment session {session.id} asks for {format_amount(due, session.currency)}: nothing to pay.",
                code="NOTHING_DUE",
            )
        attempt = _attempt_start_locked(session, PaymentSource.TEST)
        received = payment_receive(
            session_id=session.id,
            arrival=Arrival(PaymentSource.TEST, due, session.currency, reference, TEST_CLEARING),
            attempt_id=attempt.id,
            merchant=merchant,
        )
    return received.session, True
