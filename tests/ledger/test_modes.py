"""Sandbox and live money never meet: every ledger account belongs to one mode, and
ledger_check holds in each mode on its own."""

import uuid
from decimal import Decimal

import pytest
from django.db import connection

from apps.ledger.models import Account, Balance, LedgerTransaction
from apps.ledger.selectors import account_balance, ledger_check
from apps.ledger.services import (
    LedgerError,
    Posting,
    clearing_account,
    ledger_post,
    platform_commission_account,
    wallet_get_or_create,
)
from tests.factories import make_customer
from tests.migrations import migrate_over_history
from tests.usage.world import Billing

D = Decimal


def live_balances() -> dict:
    return {
        (row["account_id"], row["shard"]): row["amount"]
        for row in Balance.objects.filter(account__livemode=True).values("account_id", "shard", "amount")
    }


def test_sandbox_charges_top_ups_and_adjustments_leave_every_live_account_unchanged(api, test_api):
    live = Billing(api.merchant)
    live_calls = live.metric(properties={"unitPrice": "0.1"})
    live.fund("10")
    assert api.post("/v0/usage", live.event("live-1", live_calls, quantity=3)).status_code == 201
    before = live_balances()
    assert any(amount != 0 for amount in before.values())

    sandbox = Billing(test_api.merchant)
    calls = sandbox.metric(properties={"unitPrice": "0.1"})
    customer = str(sandbox.customer.id)
    session = test_api.post(f"/v0/customers/{customer}/topups", {"amount": "20", "currency": "USDC"}).json()
    assert test_api.post(f"/v0/testHelpers/paymentSessions/{session['id']}/pay").status_code == 200
    assert (
        test_api.post(
            f"/v0/customers/{customer}/adjustments", {"amount": "-2", "currency": "USDC", "reason": "fix"}
        ).status_code
        == 201
    )
    single = test_api.post("/v0/usage", sandbox.event("s-1", calls, quantity=5)).json()
    batch = test_api.post("/v0/usage/batch", {"events": [sandbox.event(f"b-{i}", calls, quantity=2) for i in range(3)]})
    assert batch.status_code == 201
    hold = test_api.post(
        "/v0/entitlements",
        {"customerId": customer, "entitlementData": [{"billableMetricId": str(calls.id), "quantity": 4}]},
    ).json()
    assert (
        test_api.post("/v0/usage", sandbox.event("h-1", calls, quantity=1, entitlementId=hold["id"])).status_code == 201
    )
    assert test_api.patch(f"/v0/usage/{single['id']}", {"refund": True, "reason": "oops"}).status_code == 200

    assert live_balances() == before
    # the sandbox's own commission account took its share: 5% of 0.6 (batch) + 0.1 (hold); the
    # single event's 0.5 was refunded
    assert sandbox.commission() == D("0.035")
    assert ledger_check() == []


def test_a_posting_across_modes_is_refused(test_api):
    sandbox = test_api.merchant
    wallet = wallet_get_or_create(merchant=sandbox, customer=make_customer(sandbox), currency="USDC")
    with pytest.raises(LedgerError, match="sandbox and live never meet"):
        ledger_post(
            merchant=sandbox,
            kind=LedgerTransaction.Kind.PAYMENT,
            currency="USDC",
            postings=[
                Posting(clearing_account(source="test", currency="USDC", livemode=True), D("-1")),
                Posting(wallet.available_account, D("1")),
            ],
        )
    assert not LedgerTransaction.objects.exists()


def test_platform_accounts_exist_once_per_mode(db):
    live = platform_commission_account(currency="USDC", livemode=True)
    sandbox = platform_commission_account(currency="USDC", livemode=False)
    assert live.pk != sandbox.pk
    assert (live.livemode, sandbox.livemode) == (True, False)
    assert platform_commission_account(currency="USDC", livemode=False).pk == sandbox.pk
    assert clearing_account(source="test", currency="USDC", livemode=False).livemode is False


def test_ledger_check_reports_a_transaction_that_reaches_the_other_mode(test_api):
    """Written past the services (which refuse it): the check still finds it, by mode."""
    sandbox = test_api.merchant
    wallet = wallet_get_or_create(merchant=sandbox, customer=make_customer(sandbox), currency="USDC")
    live_clearing = clearing_account(source="test", currency="USDC", livemode=True)
    txn = uuid.uuid4()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ledger_ledgertransaction (id, created_at, updated_at, merchant_id, kind, currency, "
            "description, metadata) VALUES (%s, now(), now(), %s, 'payment', 'USDC', '', '{}')",
            [txn, sandbox.id],
        )
        cursor.execute(
            "INSERT INTO ledger_entry (id, created_at, updated_at, merchant_id, transaction_id, account_id, shard, "
            "amount) VALUES (gen_random_uuid(), now(), now(), %s, %s, %s, 0, -1), "
            "(gen_random_uuid(), now(), now(), %s, %s, %s, 0, 1)",
            [sandbox.id, txn, live_clearing.id, sandbox.id, txn, wallet.available_account_id],
        )
        cursor.execute(
            "UPDATE ledger_balance SET amount = amount + CASE WHEN account_id = %s THEN -1 ELSE 1 END "
            "WHERE shard = 0 AND account_id IN (%s, %s)",
            [live_clearing.id, live_clearing.id, wallet.available_account_id],
        )
    problems = ledger_check()
    assert f"[sandbox] transaction {txn}: 1 entries on accounts of the other mode" in problems
    assert "[live] the mode's accounts sum to -1.000000000000, not zero" in problems
    assert "[sandbox] the mode's accounts sum to 1.000000000000, not zero" in problems


# ------------------------------------------------------------------ the migration that split the ledger

BEFORE_SPLIT = [("ledger", "0005_lean_hot_rows")]


@pytest.mark.django_db(transaction=True)
def test_the_split_migration_reclassifies_sandbox_amounts_with_balanced_transactions():
    history = migrate_over_history(BEFORE_SPLIT, _post_history_before_the_split)

    commission, clearing = (Account.objects.get(pk=pk) for pk in (history["commission"], history["clearing"]))
    assert commission.livemode and clearing.livemode
    twin_commission = Account.objects.get(kind="platform_commission", currency="USDC", livemode=False)
    twin_clearing = Account.objects.get(kind="clearing", source="test", currency="USDC", livemode=False)
    # the live accounts keep the live merchant's amounts only; the twins take the sandbox's
    assert account_balance(account=commission) == D("0.05")
    assert account_balance(account=twin_commission) == D("0.15")
    assert account_balance(account=clearing) == D("-10")
    assert account_balance(account=twin_clearing) == D("-30")
    assert Account.objects.get(pk=history["sandbox_wallet"]).livemode is False
    assert Account.objects.get(pk=history["sandbox_revenue"]).livemode is False

    moves = LedgerTransaction.objects.filter(kind=LedgerTransaction.Kind.RECLASSIFICATION)
    assert {m.merchant_id for m in moves} == {history["sandbox"]}
    for move in moves:
        assert sum(e.amount for e in move.entries.all()) == 0
    # no entry was edited: the history's entries are all there, as written
    assert {
        (e.account_id, e.amount) for e in LedgerTransaction.objects.get(pk=history["sandbox_usage"]).entries.all()
    } == history["sandbox_usage_entries"]
    assert ledger_check() == []


def _post_history_before_the_split(old) -> dict:
    """A live merchant and its sandbox, both charging through the one (shared) commission
    account and paying through one clearing account, as the ledger was before the split."""
    Merchant = old.get_model("merchants", "Merchant")
    Customer = old.get_model("customers", "Customer")
    OldAccount = old.get_model("ledger", "Account")
    OldBalance = old.get_model("ledger", "Balance")
    Txn = old.get_model("ledger", "LedgerTransaction")
    Entry = old.get_model("ledger", "Entry")

    live = Merchant.objects.create(name="M", contact_email="m@example.com", commission_rate=D("0.05"))
    sandbox = Merchant.objects.create(
        name="M", contact_email="m@example.com", commission_rate=D("0.05"), livemode=False, live_merchant=live
    )

    def account(merchant, kind, customer=None, source=""):
        shards = 1 if kind.startswith("wallet") else 16
        row = OldAccount.objects.create(
            merchant=merchant, customer=customer, kind=kind, currency="USDC", source=source, shard_count=shards
        )
        OldBalance.objects.bulk_create([OldBalance(account=row, shard=s) for s in range(shards)])
        return row

    commission = account(None, "platform_commission")
    clearing = account(None, "clearing", source="test")
    accounts = {}
    for merchant in (live, sandbox):
        customer = Customer.objects.create(merchant=merchant, email="c@example.com")
        accounts[merchant.pk] = (
            account(merchant, "wallet_available", customer=customer),
            account(merchant, "merchant_revenue"),
        )

    def post(merchant, kind, legs):
        txn = Txn.objects.create(merchant=merchant, kind=kind, currency="USDC")
        Entry.objects.bulk_create(
            [Entry(merchant=merchant, transaction=txn, account=a, shard=shard, amount=D(x)) for a, shard, x in legs]
        )
        for a, shard, x in legs:
            balance = OldBalance.objects.get(account=a, shard=shard)
            balance.amount += D(x)
            balance.save()
        return txn

    live_wallet, live_revenue = accounts[live.pk]
    sandbox_wallet, sandbox_revenue = accounts[sandbox.pk]
    post(live, "payment", [(clearing, 0, "-10"), (live_wallet, 0, "10")])
    post(live, "usage", [(live_wallet, 0, "-1"), (live_revenue, 3, "0.95"), (commission, 3, "0.05")])
    post(sandbox, "payment", [(clearing, 1, "-30"), (sandbox_wallet, 0, "30")])
    usage = post(sandbox, "usage", [(sandbox_wallet, 0, "-2"), (sandbox_revenue, 5, "1.90"), (commission, 5, "0.10")])
    post(sandbox, "usage", [(sandbox_wallet, 0, "-1"), (sandbox_revenue, 2, "0.95"), (commission, 7, "0.05")])
    return {
        "sandbox": sandbox.pk,
        "commission": commission.pk,
        "clearing": clearing.pk,
        "sandbox_wallet": sandbox_wallet.pk,
        "sandbox_revenue": sandbox_revenue.pk,
        "sandbox_usage": usage.pk,
        "sandbox_usage_entries": {(e.account_id, e.amount) for e in usage.entries.all()},
    }
