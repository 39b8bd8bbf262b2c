"""A change of a customer's billing settings racing a ledger posting of the same wallet, for
real (two threads, two connections, the database's own row locks). The posting flips the
settings' low_balance_alerted and auto_recharge_triggered in its follow-up statement, under
the wallet's balance locks; the settings change resets those flags when a threshold changes.
The settings change takes the wallet's balance locks first, then the settings rows (the
posting's order), so the two are serialized: the posting that waits for a settings change
reads the new thresholds, and a settings change that waits for a posting reads its flags."""

import threading
from decimal import Decimal

import pytest
from django.db import connection, transaction

from apps.cards.services.auto_recharge import auto_recharges_left_behind
from apps.customers.billing import CurrencyBillingSettings
from apps.customers.models import BillingSettings
from apps.customers.services import customer_update
from apps.ledger.selectors import ledger_check
from apps.payments.models import PaymentSession
from apps.usage.services import usage_record
from apps.webhooks.models import Event
from tests.core.test_idempotency_crash import backend_waiting_on_a_lock
from tests.usage.world import Billing

pytestmark = pytest.mark.django_db(transaction=True)

D = Decimal


def settings_at(threshold: str) -> CurrencyBillingSettings:
    return CurrencyBillingSettings(
        low_balance_threshold=D(threshold),
        auto_recharge_enabled=True,
        auto_recharge_threshold=D(threshold),
        auto_recharge_amount=D("50"),
    )


class Held(threading.Thread):
    """`action()` run in its own transaction, on its own connection, kept open after it ran
    until `commit()` (as a request whose transaction has more to do)."""

    def __init__(self, action):
        super().__init__(daemon=True)
        self.action = action
        self.ran = threading.Event()
        self.release = threading.Event()
        self.error = None
        self.start()

    def run(self):
        try:
            with transaction.atomic():
                self.action()
                self.ran.set()
                assert self.release.wait(timeout=30), "never released"
        except Exception as error:  # noqa: BLE001 -- asserted on by the test
            self.error = error
        finally:
            self.ran.set()
            connection.close()

    def commit(self):
        self.release.set()
        self.join(timeout=30)
        assert not self.is_alive()
        assert self.error is None, self.error


class Free(threading.Thread):
    """`action()` run on its own connection, to completion."""

    def __init__(self, action):
        super().__init__(daemon=True)
        self.action = action
        self.error = None
        self.start()

    def run(self):
        try:
            self.action()
        except Exception as error:  # noqa: BLE001 -- asserted on by the test
            self.error = error
        finally:
            connection.close()

    def finish(self):
        self.join(timeout=30)
        assert not self.is_alive(), "it did not finish"
        assert self.error is None, self.error


@pytest.fixture
def above(sandbox):
    """A USD wallet at 12.00, above its low-balance and auto-recharge thresholds (10)."""
    billing = Billing(sandbox, currency="USD", minimum="-200")
    metric = billing.metric(properties={"unitPrice": "1"})
    billing.fund("20")
    customer_update(merchant=sandbox, customer=billing.customer, billing_settings={"USD": settings_at("10")})
    usage_record(merchant=sandbox, raw=billing.event("spend", metric, 8))
    row = BillingSettings.objects.get(customer=billing.customer)
    assert (billing.available(), row.low_balance_alerted, row.auto_recharge_triggered) == (D("12"), False, False)
    return billing, metric, row


def recharges(billing):
    """Auto-recharge's sessions (the funding top-up is paid; a recharge without a card is not)."""
    return PaymentSession.objects.filter(customer=billing.customer, purpose="top_up").exclude(status="paid")


def test_a_posting_during_a_threshold_change_reads_the_new_thresholds(above):
    billing, metric, row = above

    # thresholds lowered to 3, the change's transaction still open...
    change = Held(
        lambda: customer_update(
            merchant=billing.merchant, customer=billing.customer, billing_settings={"USD": settings_at("3")}
        )
    )
    assert change.ran.wait(timeout=30)
    assert change.error is None, change.error
    # ...while usage takes the wallet from 12.00 to 8.00: it waits for the change
    posting = Free(lambda: usage_record(merchant=billing.merchant, raw=billing.event("during", metric, 4)))
    backend_waiting_on_a_lock()
    change.commit()
    posting.finish()

    # 8.00 is above the new thresholds (3): nothing is alerted, nothing recharged. (Had the
    # posting read the old thresholds, 10, it would have set both flags on the changed row,
    # published wallet.low_balance and charged the card 50 for a crossing that never happened.)
    row.refresh_from_db()
    assert billing.available() == D("8")
    assert (row.low_balance_threshold, row.auto_recharge_threshold) == (D("3"), D("3"))
    assert (row.low_balance_alerted, row.auto_recharge_triggered, row.auto_recharge_session_id) == (False, False, None)
    assert not Event.objects.filter(type="wallet.low_balance").exists()
    assert not recharges(billing).exists()
    assert auto_recharges_left_behind() == []
    # the next crossing of the new threshold is heard, once
    usage_record(merchant=billing.merchant, raw=billing.event("below", metric, 6))
    row.refresh_from_db()
    assert (row.low_balance_alerted, row.auto_recharge_triggered) == (True, True)
    published = Event.objects.filter(type="wallet.low_balance")
    assert [(e.data["balance"], e.data["lowBalanceThreshold"]) for e in published] == [("2.00", "3.00")]
    assert recharges(billing).count() == 1  # (no saved card: recorded failed, as for any crossing)
    assert ledger_check() == []


def test_a_threshold_change_during_a_posting_waits_for_it_and_reads_its_flags(sandbox):
    billing = Billing(sandbox, currency="USD", minimum="-200")
    metric = billing.metric(properties={"unitPrice": "1"})
    billing.fund("20")
    customer_update(merchant=sandbox, customer=billing.customer, billing_settings={"USD": settings_at("10")})

    # usage takes the wallet below 10 (the posting flips both flags), its transaction open...
    posting = Held(lambda: usage_record(merchant=sandbox, raw=billing.event("cross", metric, 15)))
    assert posting.ran.wait(timeout=30)
    assert posting.error is None, posting.error
    # ...while auto-recharge is switched off and the low-balance threshold moved: it waits
    off = CurrencyBillingSettings(low_balance_threshold=D("4"), auto_recharge_enabled=False)
    change = Free(lambda: customer_update(merchant=sandbox, customer=billing.customer, billing_settings={"USD": off}))
    backend_waiting_on_a_lock()
    posting.commit()
    change.finish()

    row = BillingSettings.objects.get(customer=billing.customer)
    assert (row.auto_recharge_enabled, row.low_balance_threshold) == (False, D("4"))
    # the settings change ran after the posting and reset what it had set
    assert (row.low_balance_alerted, row.auto_recharge_triggered, row.auto_recharge_session_id) == (False, False, None)
    assert auto_recharges_left_behind() == []
    assert Event.objects.filter(type="wallet.low_balance").count() == 1  # the posting's crossing of 10
    assert billing.available() == D("5")
    assert ledger_check() == []
