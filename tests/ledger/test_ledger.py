"""The double-entry ledger: balanced, append-only, balances provable from entries."""

from decimal import Decimal

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

from apps.customers.models import Customer
from apps.ledger.models import Account, Balance, Entry, LedgerTransaction
from apps.ledger.selectors import account_balance, ledger_check, wallet_balances
from apps.ledger.services import (
    SHARED_ACCOUNT_SHARDS,
    LedgerError,
    Posting,
    clearing_account,
    ledger_post,
    ledger_reverse,
    merchant_revenue_account,
    platform_commission_account,
    wallet_get_or_create,
)
from tests.concurrency import run_at_once
from tests.factories import MerchantFactory

D = Decimal


@pytest.fixture
def wallet(merchant):
    customer = Customer.objects.create(merchant=merchant, email="c@example.com")
    return wallet_get_or_create(merchant=merchant, customer=customer, currency="USDC")


def fund(merchant, wallet, amount, reference=None):
    return ledger_post(
        merchant=merchant,
        kind=LedgerTransaction.Kind.PAYMENT,
        currency=wallet.currency,
        postings=[
            Posting(clearing_account(source="test", currency=wallet.currency, livemode=True), -amount),
            Posting(wallet.available_account, amount),
        ],
        reference=reference,
    )


def charge(merchant, wallet, price, commission):
    return ledger_post(
        merchant=merchant,
        kind=LedgerTransaction.Kind.USAGE,
        currency=wallet.currency,
        postings=[
            Posting(wallet.available_account, -price),
            Posting(merchant_revenue_account(merchant=merchant, currency=wallet.currency), price - commission),
            Posting(platform_commission_account(currency=wallet.currency, livemode=True), commission),
        ],
    )


def test_a_balanced_transaction_moves_every_balance(merchant, wallet):
    fund(merchant, wallet, D("10"))
    charge(merchant, wallet, D("0.000001500000"), D("0.000000105000"))
    assert wallet_balances(wallet=wallet).available == D("9.999998500000")
    assert account_balance(account=merchant_revenue_account(merchant=merchant, currency="USDC")) == D("0.000001395")
    assert account_balance(account=platform_commission_account(currency="USDC", livemode=True)) == D("0.000000105")
    assert account_balance(account=clearing_account(source="test", currency="USDC", livemode=True)) == D("-10")
    assert ledger_check() == []


def test_every_transaction_sums_to_zero(merchant, wallet):
    fund(merchant, wallet, D("3"))
    charge(merchant, wallet, D("1"), D("0.05"))
    for txn in LedgerTransaction.objects.all():
        assert sum(e.amount for e in txn.entries.all()) == 0


def test_an_unbalanced_posting_is_refused_and_writes_nothing(merchant, wallet):
    with pytest.raises(LedgerError, match="sum to"):
        ledger_post(
            merchant=merchant,
            kind="adjustment",
            currency="USDC",
            postings=[
                Posting(wallet.available_account, D("1")),
                Posting(clearing_account(source="test", currency="USDC", livemode=True), D("-0.99")),
            ],
        )
    assert not LedgerTransaction.objects.exists()


def test_more_than_12_places_or_another_currency_is_refused(merchant, wallet):
    clearing = clearing_account(source="test", currency="USDC", livemode=True)
    with pytest.raises(LedgerError, match="12 fractional"):
        ledger_post(
            merchant=merchant,
            kind="payment",
            currency="USDC",
            postings=[
                Posting(clearing, D("-0.0000000000001")),
                Posting(wallet.available_account, D("0.0000000000001")),
            ],
        )
    with pytest.raises(LedgerError, match="not in USD"):
        ledger_post(
            merchant=merchant,
            kind="payment",
            currency="USD",
            postings=[Posting(clearing, D("-1")), Posting(wallet.available_account, D("1"))],
        )


def test_the_database_refuses_an_unbalanced_insert(merchant, wallet):
    txn = fund(merchant, wallet, D("1"))
    with pytest.raises(DatabaseError, match="does not balance"), transaction.atomic():
        Entry.objects.create(merchant=merchant, transaction=txn, account=wallet.available_account, amount=D("1"))


def test_entries_and_transactions_are_append_only(merchant, wallet):
    txn = fund(merchant, wallet, D("1"))
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        Entry.objects.filter(transaction=txn).update(amount=D("2"))
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM ledger_entry WHERE transaction_id = %s", [txn.pk])


def test_ledger_check_finds_a_tampered_balance_row(merchant, wallet):
    fund(merchant, wallet, D("5"))
    assert ledger_check() == []
    Balance.objects.filter(account=wallet.available_account).update(amount=D("6"))
    problems = ledger_check()
    assert len(problems) == 1
    assert str(wallet.available_account_id) in problems[0]
    assert "difference 1" in problems[0]


def test_ledger_check_command_fails_on_a_difference(merchant, wallet):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    fund(merchant, wallet, D("5"))
    call_command("ledger_check")
    Balance.objects.filter(account=wallet.available_account).update(amount=D("4"))
    with pytest.raises(CommandError, match="1 problem"):
        call_command("ledger_check")


def test_reversal_restores_every_balance_and_happens_once(merchant, wallet):
    fund(merchant, wallet, D("2"))
    txn = charge(merchant, wallet, D("1"), D("0.05"))
    reversal = ledger_reverse(original=txn, description="refund")
    assert reversal.reverses == txn
    assert wallet_balances(wallet=wallet).available == D("2")
    assert account_balance(account=merchant_revenue_account(merchant=merchant, currency="USDC")) == 0
    assert account_balance(account=platform_commission_account(currency="USDC", livemode=True)) == 0
    with pytest.raises(IntegrityError), transaction.atomic():
        ledger_reverse(original=txn)
    assert ledger_check() == []


def test_a_reference_posts_once(merchant, wallet):
    fund(merchant, wallet, D("1"), reference="payment_session:abc")
    with pytest.raises(IntegrityError), transaction.atomic():
        fund(merchant, wallet, D("1"), reference="payment_session:abc")
    assert wallet_balances(wallet=wallet).available == D("1")


def test_shared_accounts_are_sharded_and_wallets_are_not(merchant, wallet):
    revenue = merchant_revenue_account(merchant=merchant, currency="USDC")
    assert Balance.objects.filter(account=revenue).count() == SHARED_ACCOUNT_SHARDS
    assert Balance.objects.filter(account=wallet.available_account).count() == 1


def test_platform_accounts_have_no_merchant_and_tenant_accounts_do(merchant, wallet):
    assert platform_commission_account(currency="USDC", livemode=True).merchant_id is None
    assert clearing_account(source="stripe", currency="USD", livemode=True).merchant_id is None
    assert merchant_revenue_account(merchant=merchant, currency="USDC").merchant_id == merchant.id
    assert wallet.available_account.merchant_id == merchant.id


def test_wallet_is_one_per_customer_and_currency(merchant, wallet):
    again = wallet_get_or_create(merchant=merchant, customer=wallet.customer, currency="USDC")
    assert again.pk == wallet.pk
    usd = wallet_get_or_create(merchant=merchant, customer=wallet.customer, currency="USD")
    assert usd.pk != wallet.pk
    assert Account.objects.filter(customer=wallet.customer).count() == 4


@pytest.mark.django_db(transaction=True)
def test_concurrent_charges_across_merchants_do_not_deadlock_and_add_up():
    merchants = [MerchantFactory() for _ in range(2)]
    wallets = []
    for m in merchants:
        for i in range(3):
            customer = Customer.objects.create(merchant=m, email=f"c{i}@example.com")
            w = wallet_get_or_create(merchant=m, customer=customer, currency="USDC")
            fund(m, w, D("100"))
            wallets.append((m, w))

    def worker(index):
        m, w = wallets[index % len(wallets)]
        for _ in range(10):
            charge(m, w, D("0.1"), D("0.005"))

    # any failure (a deadlock above all) fails the test
    errors = [result for result in run_at_once(12, worker) if result is not None]
    assert errors == []
    assert account_balance(account=platform_commission_account(currency="USDC", livemode=True)) == D("0.005") * 120
    total_wallets = sum(wallet_balances(wallet=w).available for _, w in wallets)
    assert total_wallets == D("600") - D("0.1") * 120
    assert ledger_check() == []


@pytest.mark.django_db(transaction=True)
def test_an_account_created_in_a_rolled_back_transaction_is_not_remembered():
    from apps.core.process_cache import clear_process_caches

    clear_process_caches()
    merchant = MerchantFactory()
    with pytest.raises(RuntimeError), transaction.atomic():
        merchant_revenue_account(merchant=merchant, currency="USDC")
        raise RuntimeError("the charge failed")
    account = merchant_revenue_account(merchant=merchant, currency="USDC")
    assert Account.objects.filter(pk=account.pk).exists()
    assert merchant_revenue_account(merchant=merchant, currency="USDC").pk == account.pk


def test_ledger_check_reports_entries_of_an_account_that_does_not_exist(merchant, wallet):
    """Entries keep no database key to their account (hot-path inserts); the check covers it."""
    import uuid

    fund(merchant, wallet, D("5"))
    txn = LedgerTransaction.objects.create(merchant=merchant, kind=LedgerTransaction.Kind.ADJUSTMENT, currency="USDC")
    ghost = uuid.uuid4()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ledger_entry (id, created_at, updated_at, merchant_id, transaction_id, account_id, shard, amount) "
            "VALUES (gen_random_uuid(), now(), now(), %s, %s, %s, 0, 1), "
            "(gen_random_uuid(), now(), now(), %s, %s, %s, 0, -1)",
            [merchant.id, txn.id, ghost, merchant.id, txn.id, wallet.available_account_id],
        )
    problems = ledger_check()
    assert any(str(ghost) in p and "no such account shard" in p for p in problems), problems


def test_ledger_check_reports_entries_of_a_transaction_that_does_not_exist(merchant, wallet):
    """Entries keep no database key to their transaction either (written with it in one round trip)."""
    import uuid

    fund(merchant, wallet, D("5"))
    assert ledger_check() == []
    ghost = uuid.uuid4()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ledger_entry (id, created_at, updated_at, merchant_id, transaction_id, account_id, shard, amount) "
            "VALUES (gen_random_uuid(), now(), now(), %s, %s, %s, 0, 1), "
            "(gen_random_uuid(), now(), now(), %s, %s, %s, 0, -1)",
            [merchant.id, ghost, wallet.available_account_id, merchant.id, ghost, wallet.available_account_id],
        )
    problems = ledger_check()
    assert problems == [f"[live] transaction {ghost}: 2 entries, but no such transaction"]
