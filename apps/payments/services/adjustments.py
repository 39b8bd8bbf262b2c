"""A merchant's adjustments: credits and debits of a customer's wallet from its own revenue."""

from decimal import Decimal

from django.db import transaction

from apps.core.errors import Conflict, FieldError, PaymentRequired, Unprocessable
from apps.core.money import ZERO, format_amount
from apps.ledger.lock_objects import lock_wallet_balances
from apps.ledger.models import LedgerTransaction
from apps.ledger.services import Posting, ledger_post, merchant_revenue_account, wallet_get_or_create
from apps.payments.models import Adjustment
from apps.payments.registry import WalletCredit, wallet_credited


def adjustment_create(
    *,
    merchant,
    customer,
    amount: Decimal,
    currency: str,
    reason: str,
    actor: str = "api",
    idempotency_key: str | None = None,
) -> Adjustment:
    """Credit (positive) or debit (negative) the customer's wallet from the merchant's revenue.

    A debit may not take the available balance below zero (402 INSUFFICIENT_BALANCE). The
    merchant's revenue account may go below zero: the merchant then owes the platform.
    `idempotency_key` (the admin's form token): the same key again returns the adjustment it
    made, and moves nothing.
    """
    if amount == ZERO:
        # (judged from the request alone: 400, as the contract puts a field out of range)
        raise FieldError(
            "amount",
            "an adjustment of 0 moves nothing; send a positive credit or a negative debit.",
            code="ZERO_ADJUSTMENT",
        )
    if customer.archived_at is not None:
        raise Unprocessable(
            f"Customer {customer.id} is archived; its wallet cannot be adjusted.", code="CUSTOMER_ARCHIVED"
        )
    wallet = wallet_get_or_create(merchant=merchant, customer=customer, currency=currency)
    with transaction.atomic():
        locked = lock_wallet_balances([wallet])
        if idempotency_key is not None:
            # (a second submission waits on the wallet's lock, then finds the first)
            done = Adjustment.objects.filter(merchant=merchant, idempotency_key=idempotency_key).first()
            if done is not None:
                if (done.customer_id, done.amount, done.currency) != (customer.id, amount, currency):
                    raise Conflict(
                        "This form was already submitted for another adjustment; open a new form.",
                        code="IDEMPOTENCY_KEY_REUSED",
                    )
                return done
        available = locked[(wallet.available_account_id, 0)]
        if available + amount < ZERO:
            raise PaymentRequired(
                f"The wallet has {format_amount(available, currency)} {currency} available; a debit of "
                f"{format_amount(-amount, currency)} would take it below zero.",
                code="INSUFFICIENT_BALANCE",
                details={"available": format_amount(available, currency), "currency": currency},
            )
        txn = ledger_post(
            merchant=merchant,
            kind=LedgerTransaction.Kind.ADJUSTMENT,
            currency=currency,
            postings=[
                Posting(merchant_revenue_account(merchant=merchant, currency=currency), -amount),
                Posting(wallet.available_account, amount),
            ],
            description=reason,
            metadata={"customerId": str(customer.id), "actor": actor},
        )
        adjustment = Adjustment.objects.create(
            merchant=merchant,
            customer=customer,
            wallet=wallet,
            amount=amount,
            currency=currency,
            reason=reason,
            actor=actor,
            ledger_transaction=txn,
            idempotency_key=idempotency_key,
        )
        if amount > ZERO:
            wallet_credited(WalletCredit(wallet=wallet, amount=amount, cause="adjustment"))
        return adjustment
