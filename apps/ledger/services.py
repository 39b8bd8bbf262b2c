"""Ledger writes: accounts, wallets, balanced transactions, reversals."""

import secrets
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import DataError, IntegrityError, connection, transaction
from django.utils import timezone

from apps.core.bulk import Statement, array_param, insert_rows, run_statements
from apps.core.errors import Unprocessable
from apps.core.money import ZERO, round_amount
from apps.core.process_cache import ProcessCache
from apps.ledger.hooks import posting_follow_ups
from apps.ledger.lock_objects import lock_statement
from apps.ledger.models import Account, Balance, Entry, LedgerTransaction, Wallet

# Shared accounts (revenue, commission, clearing) are touched by every charge; their
# balance is spread over this many rows so that concurrent charges do not queue on one.
SHARED_ACCOUNT_SHARDS = 16


class LedgerError(Exception):
    """A programming error: an unbalanced or malformed posting. Never a user's fault."""


@dataclass(frozen=True)
class Posting:
    account: Account
    amount: Decimal
    shard: int | None = None


# Accounts never change once created; shared ones (revenue, commission, clearing) are
# remembered per process, since every charge needs them.
_shared_accounts = ProcessCache(ttl_seconds=None)


def _account_get_or_create(*, merchant, kind, currency, livemode: bool, customer=None, source="") -> Account:
    shared = kind not in Account.WALLET_KINDS
    cache_key = (getattr(merchant, "pk", None), kind, currency, source, livemode)
    if shared:
        cached = _shared_accounts.get(cache_key)
        if cached is not None:
            return cached
    account = _account_fetch_or_create(
        merchant=merchant, kind=kind, currency=currency, customer=customer, source=source, livemode=livemode
    )
    if shared:
        # Only once committed: an account created in a transaction that rolls back must not
        # outlive it in the cache (on_commit runs at once outside a transaction).
        transaction.on_commit(lambda: _shared_accounts.set(cache_key, account))
    return account


def _account_fetch_or_create(*, merchant, kind, currency, customer, source, livemode) -> Account:
    shards = 1 if kind in Account.WALLET_KINDS else SHARED_ACCOUNT_SHARDS
    lookup = {
        "merchant": merchant,
        "kind": kind,
        "currency": currency,
        "customer": customer,
        "source": source,
        "livemode": livemode,
    }
    account = Account.objects.filter(**lookup).first()
    if account is not None:
        return account
    try:
        with transaction.atomic():
            account = Account.objects.create(**lookup, shard_count=shards)
            Balance.objects.bulk_create([Balance(account=account, shard=s) for s in range(shards)])
            return account
    except IntegrityError:
        return Account.objects.get(**lookup)


def platform_commission_account(*, currency: str, livemode: bool) -> Account:
    """The platform's commission in one mode (sandbox commission is never live money)."""
    return _account_get_or_create(
        merchant=None, kind=Account.Kind.PLATFORM_COMMISSION, currency=currency, livemode=livemode
    )


def clearing_account(*, source: str, currency: str, livemode: bool) -> Account:
    """The platform's account for money arriving from one funding source (stripe, chain:<name>,
    test) in one mode."""
    return _account_get_or_create(
        merchant=None, kind=Account.Kind.CLEARING, currency=currency, source=source, livemode=livemode
    )


def merchant_revenue_account(*, merchant, currency: str) -> Account:
    return _account_get_or_create(
        merchant=merchant, kind=Account.Kind.MERCHANT_REVENUE, currency=currency, livemode=merchant.livemode
    )


def wallet_get_or_create(*, merchant, customer, currency: str) -> Wallet:
    """The customer's wallet in `currency`, created when first needed."""
    wallet = Wallet.objects.filter(merchant=merchant, customer=customer, currency=currency).first()
    if wallet is not None:
        return wallet
    try:
        with transaction.atomic():
            available = _account_get_or_create(
                merchant=merchant,
                kind=Account.Kind.WALLET_AVAILABLE,
                currency=currency,
                customer=customer,
                livemode=merchant.livemode,
            )
            held = _account_get_or_create(
                merchant=merchant,
                kind=Account.Kind.WALLET_HELD,
                currency=currency,
                customer=customer,
                livemode=merchant.livemode,
            )
            return Wallet.objects.create(
                merchant=merchant, customer=customer, currency=currency, available_account=available, held_account=held
            )
    except IntegrityError:
        return Wallet.objects.get(merchant=merchant, customer=customer, currency=currency)


def _shard_for(posting: Posting) -> int:
    if posting.shard is not None:
        if not 0 <= posting.shard < posting.account.shard_count:
            raise LedgerError(f"shard {posting.shard} out of range for {posting.account}")
        return posting.shard
    if posting.account.shard_count == 1:
        return 0
    return secrets.randbelow(posting.account.shard_count)


@dataclass
class TransactionSpec:
    """One transaction to post: see `ledger_post`."""

    merchant: object
    kind: str
    currency: str
    postings: Sequence[Posting]
    reference: str | None = None
    description: str = ""
    reverses: LedgerTransaction | None = None
    metadata: dict | None = None
    # Known before the write, so that rows written beside it can point at it.
    id: uuid.UUID = field(default_factory=uuid.uuid4)


def _check(spec: TransactionSpec) -> None:
    if len(spec.postings) < 2:
        raise LedgerError("a transaction needs at least two postings")
    total = ZERO
    livemode = spec.merchant.livemode
    for posting in spec.postings:
        if posting.account.currency != spec.currency:
            raise LedgerError(f"{posting.account} is not in {spec.currency}")
        if posting.account.livemode != livemode:
            raise LedgerError(f"{posting.account} is not in the mode of {spec.merchant} (sandbox and live never meet)")
        if round_amount(posting.amount) != posting.amount:
            raise LedgerError(f"amount {posting.amount} has more than 12 fractional digits")
        total += posting.amount
    if total != ZERO:
        raise LedgerError(f"postings sum to {total}, not zero")


TRANSACTION_COLUMNS = (
    "id",
    "created_at",
    "updated_at",
    "merchant_id",
    "kind",
    "currency",
    "description",
    "reference",
    "reverses_id",
    "metadata",
)
# (an entry's id is made by the server: the posting never reads it)
ENTRY_COLUMNS = ("created_at", "updated_at", "merchant_id", "transaction_id", "account_id", "shard", "amount")
BALANCE_UPDATE_SQL = (
    f"WITH moved AS (UPDATE {Balance._meta.db_table} AS b SET amount = b.amount + v.delta "  # noqa: S608 (no user input)
    "FROM unnest(%s::uuid[], %s::int[], %s::numeric[]) AS v(account_id, shard, delta) "
    "WHERE b.account_id = v.account_id AND b.shard = v.shard RETURNING 1) SELECT count(*) FROM moved"
)


def ledger_post_many(
    specs: Sequence[TransactionSpec], *, wallets_locked: bool = False, then: Sequence[Statement] = ()
) -> list[LedgerTransaction]:
    """Write several balanced transactions and move the balances they explain, in one round
    trip: lock the balance rows (wallets first, then shared rows, each in order), insert the
    transactions and their entries, update the balances. See `ledger_post`.

    `wallets_locked`: the caller already holds the wallet rows (lock_wallet_balances).
    `then`: the caller's statements, sent in the same round trip after the ledger's (a usage
    charge writes its events there); their errors abort the whole transaction too.
    The follow-ups registered by the apps above (apps.ledger.hooks) for the wallet accounts
    whose balance moved go in the same round trip, after the balance update.
    """
    for spec in specs:
        _check(spec)
    now = timezone.now()
    txns, entries, wallet_keys, shared_keys = [], [], [], []
    wallet_accounts: set[uuid.UUID] = set()
    deltas: dict[tuple, Decimal] = defaultdict(lambda: ZERO)
    for spec in specs:
        txn = LedgerTransaction(
            id=spec.id,
            merchant=spec.merchant,
            kind=spec.kind,
            currency=spec.currency,
            reference=spec.reference,
            description=spec.description[:500],
            reverses=spec.reverses,
            metadata=spec.metadata or {},
            created_at=now,
            updated_at=now,
        )
        txns.append(txn)
        for posting in spec.postings:
            key = (posting.account.id, _shard_for(posting))
            entries.append((now, now, spec.merchant.id, txn.id, key[0], key[1], posting.amount))
            deltas[key] += posting.amount
            if posting.account.kind in Account.WALLET_KINDS:
                wallet_keys.append(key)
                wallet_accounts.add(key[0])
            else:
                shared_keys.append(key)
    moved = [(account_id, shard, delta) for (account_id, shard), delta in deltas.items() if delta != ZERO]
    follow_ups = posting_follow_ups(sorted(a for a, _, _ in moved if a in wallet_accounts), now)
    statements = [
        None if wallets_locked else lock_statement(wallet_keys),
        lock_statement(shared_keys),
        insert_rows(
            LedgerTransaction, TRANSACTION_COLUMNS, [[getattr(t, c) for c in TRANSACTION_COLUMNS] for t in txns]
        ),
        insert_rows(Entry, ENTRY_COLUMNS, entries, generated={"id": "gen_random_uuid()"}),
    ]
    if moved:
        statements.append(
            Statement(
                BALANCE_UPDATE_SQL,
                [
                    array_param(r[0] for r in moved),
                    array_param((r[1] for r in moved), "integer"),
                    array_param((r[2] for r in moved), "numeric"),
                ],
            )
        )
    statements = [s for s in statements if s is not None]
    # Inside a caller's transaction no savepoint is needed: any error aborts the whole of it.
    with transaction.atomic(savepoint=False):
        try:
            results = run_statements([*statements, *(f.statement for f in follow_ups), *then])
        except DataError as exc:
            if "numeric field overflow" not in str(exc):
                raise
            raise Unprocessable(
                "This would take a balance beyond what the ledger holds (26 digits before the decimal point).",
                code="AMOUNT_TOO_LARGE",
            ) from None
        if moved:
            # inside the transaction: a missing balance row undoes the whole posting
            (updated,) = results[len(statements) - 1][0]
            if updated != len(moved):
                raise LedgerError(f"expected {len(moved)} balance rows, updated {updated}")
        for index, follow_up in enumerate(follow_ups, start=len(statements)):
            follow_up.after(results[index])
    for txn in txns:
        txn._state.adding = False
        txn._state.db = connection.alias
    return txns


def ledger_post(
    *,
    merchant,
    kind: str,
    currency: str,
    postings: Sequence[Posting],
    reference: str | None = None,
    description: str = "",
    reverses: LedgerTransaction | None = None,
    metadata: dict | None = None,
) -> LedgerTransaction:
    """Write one balanced transaction and move the balances it explains.

    Callers that check a wallet's limit lock its balance rows first
    (`lock_objects.lock_wallet_balances`) and call this in the same atomic block.
    A duplicate `reference` raises IntegrityError: the event was already posted.
    """
    spec = TransactionSpec(merchant, kind, currency, postings, reference, description, reverses, metadata)
    return ledger_post_many([spec])[0]


def ledger_reverse(
    *, original: LedgerTransaction, description: str = "", reference: str | None = None, kind: str | None = None
) -> LedgerTransaction:
    """Post the exact opposite of `original`, once (a second reversal raises IntegrityError)."""
    postings = [
        Posting(account=e.account, amount=-e.amount, shard=e.shard)
        for e in original.entries.select_related("account").order_by("id")
    ]
    return ledger_post(
        merchant=original.merchant,
        kind=kind or LedgerTransaction.Kind.REVERSAL,
        currency=original.currency,
        postings=postings,
        reference=reference,
        description=description or f"reversal of {original.id}",
        reverses=original,
    )
