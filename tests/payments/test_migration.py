"""Payment sessions and adjustments moved to the payments app with their rows; sessions paid
before the move got the payment and attempt that paid them."""

from decimal import Decimal

import pytest
from django.db.models import F
from django.utils import timezone

from apps.ledger.selectors import ledger_check
from apps.payments.models import Adjustment, Payment, PaymentAttempt, PaymentSession
from tests.migrations import migrate_over_history

D = Decimal
BEFORE_THE_MOVE = [("subscriptions", "0002_remove_stored_periods"), ("ledger", "0007_reclassify_sandbox_amounts")]


@pytest.mark.django_db(transaction=True)
def test_the_move_keeps_sessions_and_adjustments_and_records_what_paid_them():
    ids = migrate_over_history(BEFORE_THE_MOVE, _history)

    paid = PaymentSession.objects.get(pk=ids["paid"])
    assert (paid.status, paid.amount_paid) == ("paid", D("7"))
    payment = Payment.objects.get(session=paid)
    assert (payment.source, payment.external_reference, payment.amount, payment.applied_amount) == (
        "test",
        f"test:{paid.id}",
        D("7"),
        D("7"),
    )
    assert payment.ledger_transaction_id == ids["txn"]
    attempt = PaymentAttempt.objects.get(session=paid)
    assert (attempt.status, attempt.source) == ("succeeded", "test")
    assert payment.attempt_id == attempt.id
    pending = PaymentSession.objects.get(pk=ids["pending"])
    assert (pending.status, pending.amount_paid) == ("pending", D("0"))
    assert not pending.payments.exists()
    adjustment = Adjustment.objects.get(pk=ids["adjustment"])
    assert (adjustment.amount, adjustment.reason, adjustment.idempotency_key) == (D("2"), "goodwill", None)
    assert ledger_check() == []


@pytest.mark.django_db(transaction=True)
def test_the_move_runs_backwards_and_gives_sessions_back_what_paid_them():
    ids = migrate_over_history(BEFORE_THE_MOVE, _history)

    def read_back(old):
        session = old.get_model("subscriptions", "PaymentSession").objects.get(pk=ids["paid"])
        assert (session.paid_source, session.ledger_transaction_id) == ("test", ids["txn"])
        assert old.get_model("ledger", "Adjustment").objects.filter(pk=ids["adjustment"]).exists()

    migrate_over_history(BEFORE_THE_MOVE, read_back)  # back again, then forward once more
    assert PaymentSession.objects.get(pk=ids["paid"]).amount_paid == D("7")


def _history(old) -> dict:
    Merchant = old.get_model("merchants", "Merchant")
    Customer = old.get_model("customers", "Customer")
    Account = old.get_model("ledger", "Account")
    Balance = old.get_model("ledger", "Balance")
    Wallet = old.get_model("ledger", "Wallet")
    Txn = old.get_model("ledger", "LedgerTransaction")
    Entry = old.get_model("ledger", "Entry")
    Session = old.get_model("subscriptions", "PaymentSession")
    OldAdjustment = old.get_model("ledger", "Adjustment")

    live = Merchant.objects.create(name="M", contact_email="m@example.com", commission_rate=D("0.05"))
    sandbox = Merchant.objects.create(
        name="M", contact_email="m@example.com", commission_rate=D("0.05"), livemode=False, live_merchant=live
    )
    customer = Customer.objects.create(merchant=sandbox, email="c@example.com")

    def account(kind, **fields):
        shards = 1 if kind.startswith("wallet") else 16
        row = Account.objects.create(kind=kind, currency="USDC", livemode=False, shard_count=shards, **fields)
        Balance.objects.bulk_create([Balance(account=row, shard=s) for s in range(shards)])
        return row

    available = account("wallet_available", merchant=sandbox, customer=customer)
    held = account("wallet_held", merchant=sandbox, customer=customer)
    revenue = account("merchant_revenue", merchant=sandbox)
    clearing = account("clearing", source="test")
    wallet = Wallet.objects.create(
        merchant=sandbox, customer=customer, currency="USDC", available_account=available, held_account=held
    )

    def post(kind, legs, reference=None):
        txn = Txn.objects.create(merchant=sandbox, kind=kind, currency="USDC", reference=reference)
        Entry.objects.bulk_create(
            [Entry(merchant=sandbox, transaction=txn, account=a, shard=0, amount=D(x)) for a, x in legs]
        )
        for a, x in legs:
            Balance.objects.filter(account=a, shard=0).update(amount=F("amount") + D(x))
        return txn

    now = timezone.now()
    session_fields = {"merchant": sandbox, "customer": customer, "wallet": wallet, "currency": "USDC"}
    paid = Session.objects.create(purpose="top_up", amount=D("7"), expires_at=now, **session_fields)
    txn = post("payment", [(clearing, "-7"), (available, "7")], reference=f"payment_session:{paid.id}")
    Session.objects.filter(pk=paid.pk).update(status="paid", paid_at=now, paid_source="test", ledger_transaction=txn)
    pending = Session.objects.create(purpose="top_up", amount=D("3"), expires_at=now, **session_fields)
    adjustment_txn = post("adjustment", [(revenue, "-2"), (available, "2")])
    adjustment = OldAdjustment.objects.create(
        merchant=sandbox,
        customer=customer,
        wallet=wallet,
        amount=D("2"),
        currency="USDC",
        reason="goodwill",
        ledger_transaction=adjustment_txn,
    )
    return {"paid": paid.pk, "pending": pending.pk, "adjustment": adjustment.pk, "txn": txn.pk}
