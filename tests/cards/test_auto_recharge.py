"""Auto-recharge against localstripe (started by the test run on 127.0.0.1): a USD wallet with
autoRecharge {enabled, threshold 10, amount 50} and a saved default card is topped up once when
a posting takes its available balance below 10, and again only after it has been back at or
above 10; the Celery task runs eagerly after the posting's commit (these tests commit for real).
A charge that cannot be made or fails is recorded as a failed card attempt (payment.failed with
its failureReason) and never retried until the next crossing."""

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.cards.models import StripeCustomer
from apps.cards.services.auto_recharge import CLAIM_GRACE
from apps.cards.services.saved_cards import saved_card_set_default
from apps.cards.stripe_client import CARD_CURRENCY, stripe_client
from apps.cards.tasks import auto_recharge, resume_auto_recharges
from apps.customers.billing import AUTO_RECHARGE_CURRENCY, CurrencyBillingSettings
from apps.customers.models import BillingSettings
from apps.customers.services import customer_update
from apps.ledger.hooks import posting_follow_ups
from apps.ledger.selectors import ledger_check
from apps.payments.models import Payment, PaymentAttempt, PaymentSession, PaymentSource
from apps.payments.services import topup_session_create
from apps.usage.services import usage_record
from apps.webhooks.models import Event
from tests.cards.test_card_path import FAILS_WHEN_CHARGED, GOOD
from tests.concurrency import run_at_once
from tests.invoices.test_card_collection import save_card
from tests.usage.world import Billing

pytestmark = pytest.mark.django_db(transaction=True)

D = Decimal
RECHARGE = CurrencyBillingSettings(
    auto_recharge_enabled=True, auto_recharge_threshold=D("10"), auto_recharge_amount=D("50")
)


def world(sandbox, *, fund="20", card=GOOD, settings=RECHARGE, currency="USD"):
    # a credit line (minimum -200) lets usage take the wallet far enough below the threshold
    # that one recharge of 50 leaves it below still
    billing = Billing(sandbox, currency=currency, minimum="-200")
    metric = billing.metric(properties={"unitPrice": "1"})
    billing.fund(fund)
    if card:
        save_card(billing.customer, card)
    if settings is not None:
        customer_update(merchant=sandbox, customer=billing.customer, billing_settings={currency: settings})
    return billing, metric


def use(billing, metric, key, quantity):
    return usage_record(merchant=billing.merchant, raw=billing.event(key, metric, quantity))


def card_payments(billing) -> list[Payment]:
    return list(Payment.objects.filter(source=PaymentSource.CARD, session__customer=billing.customer).order_by("id"))


def card_attempts(billing) -> list[PaymentAttempt]:
    return list(
        PaymentAttempt.objects.filter(source=PaymentSource.CARD, session__customer=billing.customer).order_by(
            "created_at"
        )
    )


def stripe_intents(billing) -> list:
    """The PaymentIntents localstripe holds for the customer (its store is the test run's)."""
    stripe_customer = StripeCustomer.objects.filter(customer=billing.customer).values_list("stripe_id", flat=True)
    if not stripe_customer:
        return []
    listed = stripe_client(livemode=False).v1.payment_intents.list(params={"limit": 100})
    return [intent for intent in listed.auto_paging_iter() if intent.customer == stripe_customer[0]]


def settings_row(billing) -> BillingSettings:
    return BillingSettings.objects.get(customer=billing.customer, currency=billing.currency)


def failed_events(billing) -> list[dict]:
    return [
        event.data
        for event in Event.objects.filter(type="payment.failed").order_by("created_at")
        if event.data["customerId"] == str(billing.customer.id)
    ]


def test_the_card_is_charged_once_per_crossing_and_again_after_the_balance_recovered(sandbox, stripe_sandbox):
    billing, metric = world(sandbox)
    use(billing, metric, "a", 5)  # 20 -> 15: above
    assert card_attempts(billing) == [] and stripe_intents(billing) == []

    response = use(billing, metric, "b", 70)  # 15 -> -55: below 10, charged 50 -> -5
    assert response["settlement"]["balanceAfter"] == "-55.00"
    (payment,) = card_payments(billing)
    assert (payment.amount, payment.applied_amount) == (D("50"), D("50"))
    assert payment.session.purpose == PaymentSession.Purpose.TOP_UP and payment.session.status == "paid"
    (intent,) = stripe_intents(billing)
    assert (intent.id, intent.status, intent.amount, intent.currency) == (
        payment.external_reference,
        "succeeded",
        5000,
        "usd",
    )
    assert billing.available() == D("-5")
    row = settings_row(billing)
    assert row.auto_recharge_triggered and row.auto_recharge_session_id == payment.session_id

    # still below the threshold: nothing more, however many postings
    use(billing, metric, "c", 3)
    use(billing, metric, "d", 1)
    assert len(card_payments(billing)) == 1 and len(stripe_intents(billing)) == 1
    assert billing.available() == D("-9")

    # a top-up takes it back to 10 or more (at the threshold is not below it), then usage
    # takes it below again: charged again
    billing.fund("19")
    row = settings_row(billing)
    assert (row.auto_recharge_triggered, row.auto_recharge_session_id) == (False, None)
    use(billing, metric, "e", 1)  # 10 -> 9
    assert len(card_payments(billing)) == 2 and len(stripe_intents(billing)) == 2
    assert billing.available() == D("59")
    # back above at once (the recharge itself): the next fall below charges once more
    use(billing, metric, "f", 50)  # 59 -> 9
    assert [p.amount for p in card_payments(billing)] == [D("50")] * 3
    assert billing.available() == D("59")
    assert all(a.status == "succeeded" for a in card_attempts(billing))
    assert failed_events(billing) == []
    assert ledger_check() == []


def test_two_postings_crossing_at_once_charge_once(sandbox, stripe_sandbox):
    billing, metric = world(sandbox, fund="12")
    results = run_at_once(2, lambda index: use(billing, metric, f"at-once-{index}", 3))  # 12 -> 6
    assert all(isinstance(result, dict) for result in results), results
    (payment,) = card_payments(billing)
    assert payment.amount == D("50")
    assert len(stripe_intents(billing)) == 1 and len(card_attempts(billing)) == 1
    assert billing.available() == D("56")
    # the task delivered again (a redelivery, a second worker): nothing more
    assert auto_recharge.delay(str(settings_row(billing).id)).get() == "nothing to charge"
    assert len(stripe_intents(billing)) == 1
    assert ledger_check() == []


def test_without_a_saved_card_nothing_is_charged_and_payment_failed_says_why(sandbox, stripe_sandbox):
    billing, metric = world(sandbox, card=None)
    use(billing, metric, "a", 15)  # 20 -> 5
    assert card_payments(billing) == [] and stripe_intents(billing) == []
    (attempt,) = card_attempts(billing)
    assert attempt.status == "failed" and attempt.external_reference == ""
    assert attempt.failure_reason == "Auto-recharge could not charge the card: The customer has no saved card."
    (failed,) = failed_events(billing)
    assert (failed["source"], failed["status"], failed["amount"], failed["failureReason"]) == (
        "card",
        "failed",
        "50.00",
        attempt.failure_reason,
    )
    assert failed["paymentSessionId"] == str(settings_row(billing).auto_recharge_session_id)
    # further usage below the threshold, and the task again: nothing more
    use(billing, metric, "b", 1)
    assert auto_recharge.delay(str(settings_row(billing).id)).get() == "nothing to charge"
    assert len(card_attempts(billing)) == 1 and len(failed_events(billing)) == 1
    assert billing.available() == D("4")
    assert ledger_check() == []


def test_a_card_that_fails_when_charged_is_tried_once_per_crossing_and_never_loops(sandbox, stripe_sandbox):
    billing, metric = world(sandbox, card=FAILS_WHEN_CHARGED)  # saved: its SetupIntent succeeds
    use(billing, metric, "a", 11)  # 20 -> 9
    (attempt,) = card_attempts(billing)
    assert (attempt.status, attempt.failure_reason) == ("failed", "Your card was declined.")
    (intent,) = stripe_intents(billing)
    assert intent.status == "requires_payment_method"
    assert card_payments(billing) == [] and billing.available() == D("9")
    assert len(failed_events(billing)) == 1

    for index in range(3):
        use(billing, metric, f"more-{index}", 1)
    assert auto_recharge.delay(str(settings_row(billing).id)).get() == "nothing to charge"
    assert len(card_attempts(billing)) == 1 and len(stripe_intents(billing)) == 1
    assert len(failed_events(billing)) == 1

    # the next crossing tries again (and fails again, once)
    billing.fund("10")  # 6 -> 16
    use(billing, metric, "again", 7)  # 16 -> 9
    assert [a.status for a in card_attempts(billing)] == ["failed", "failed"]
    assert len(stripe_intents(billing)) == 2 and len(failed_events(billing)) == 2
    assert ledger_check() == []


def test_disabled_auto_recharge_and_a_usdc_wallet_charge_nothing(sandbox, stripe_sandbox):
    disabled = CurrencyBillingSettings(
        auto_recharge_enabled=False, auto_recharge_threshold=D("10"), auto_recharge_amount=D("50")
    )
    billing, metric = world(sandbox, settings=disabled)
    use(billing, metric, "a", 15)
    assert card_attempts(billing) == [] and not settings_row(billing).auto_recharge_triggered

    # a USDC wallet never (the API refuses to enable it; a row written past the rules is ignored too)
    usdc = Billing(sandbox, currency="USDC", email="usdc@example.com", minimum="-100")
    usdc_metric = usdc.metric(properties={"unitPrice": "1"})
    usdc.fund("20")
    save_card(usdc.customer, GOOD)
    BillingSettings.objects.create(
        merchant=sandbox,
        customer=usdc.customer,
        currency="USDC",
        auto_recharge_enabled=True,
        auto_recharge_threshold=D("10"),
        auto_recharge_amount=D("50"),
    )
    use(usdc, usdc_metric, "u", 15)
    assert card_attempts(usdc) == [] and stripe_intents(usdc) == []
    assert not settings_row(usdc).auto_recharge_triggered
    assert ledger_check() == []


def test_changing_the_settings_while_below_lets_the_next_posting_below_charge(sandbox, stripe_sandbox):
    billing, metric = world(sandbox, card=FAILS_WHEN_CHARGED)
    use(billing, metric, "a", 11)  # 20 -> 9: tried once, failed
    assert len(card_attempts(billing)) == 1
    # the merchant sets a new threshold (after the customer fixed the card, say): a new crossing
    good = save_card(billing.customer, GOOD)
    saved_card_set_default(customer=billing.customer, card_id=good.id)
    customer_update(
        merchant=sandbox,
        customer=billing.customer,
        billing_settings={
            "USD": CurrencyBillingSettings(
                auto_recharge_enabled=True, auto_recharge_threshold=D("8"), auto_recharge_amount=D("25")
            )
        },
    )
    use(billing, metric, "b", 1)  # 9 -> 8: at the new threshold is not below it
    assert len(card_attempts(billing)) == 1
    use(billing, metric, "c", 1)  # 8 -> 7: below 8
    assert [p.amount for p in card_payments(billing)] == [D("25")]
    assert billing.available() == D("32")
    assert ledger_check() == []


def test_a_posting_carries_no_statement_of_its_own_for_auto_recharge():
    """The crossing is found by the low-balance follow-up's statement (one per posting), from
    the same probe of the settings row: auto-recharge adds no statement to the hot path."""
    from apps.customers.low_balance import low_balance_follow_up

    (follow_up,) = posting_follow_ups([uuid.uuid4()], timezone.now())
    assert follow_up.statement.sql == low_balance_follow_up([], timezone.now()).statement.sql
    assert "auto_recharge_triggered" in follow_up.statement.sql


def test_auto_recharge_is_in_the_cards_currency():
    assert AUTO_RECHARGE_CURRENCY == CARD_CURRENCY


@pytest.mark.parametrize(
    ("settings", "field", "message"),
    [
        (
            {"USD": {"autoRecharge": {"enabled": True, "threshold": "10", "amount": "-50"}}},
            "billingSettings.USD.autoRecharge.amount",
            "must be at least 0",
        ),
        (
            {"USD": {"autoRecharge": {"enabled": True, "threshold": "10"}}},
            "billingSettings.USD.autoRecharge.amount",
            "must be greater than 0 when autoRecharge is enabled",
        ),
        (
            {"USD": {"autoRecharge": {"enabled": True, "amount": "50"}}},
            "billingSettings.USD.autoRecharge.threshold",
            "is required when autoRecharge is enabled",
        ),
        (
            {"USDC": {"autoRecharge": {"enabled": True, "threshold": "10", "amount": "50"}}},
            "billingSettings.USDC.autoRecharge.enabled",
            "cards pay in USD",
        ),
    ],
)
def test_bad_auto_recharge_settings_are_a_400_naming_the_problem(test_api, settings, field, message):
    response = test_api.post("/v0/customers", {"consumer": {"email": "x@example.com"}, "billingSettings": settings})
    assert response.status_code == 400, response.json()
    body = response.json()
    assert body["error"] == "validation_error"
    errors = {error["field"]: error["message"] for error in body["errors"]}
    assert field in errors and message in errors[field], errors
    assert not BillingSettings.objects.exists()


def test_beat_resumes_a_crossing_whose_message_was_lost_or_whose_worker_stopped_before_charging(
    sandbox, stripe_sandbox
):
    billing, metric = world(sandbox, fund="5", settings=None)
    customer_update(merchant=sandbox, customer=billing.customer, billing_settings={"USD": RECHARGE})
    # the state a posting's flip leaves when its message never reached a worker (broker down)
    BillingSettings.objects.filter(customer=billing.customer).update(auto_recharge_triggered=True)
    assert resume_auto_recharges.delay().get() == 1
    (payment,) = card_payments(billing)
    assert (payment.amount, billing.available()) == (D("50"), D("55"))
    assert resume_auto_recharges.delay().get() == 0  # charged: nothing left behind

    # claimed (its session recorded) by a worker that stopped before charging: resumed only
    # once the claim is older than CLAIM_GRACE, and charged once
    use(billing, metric, "a", 46)  # 55 -> 9: charged at once (eager) -> 59
    use(billing, metric, "b", 50)  # 59 -> 9: charged again -> 59
    assert len(card_payments(billing)) == 3
    use(billing, metric, "c", 55)  # 59 -> 4: charged -> 54
    assert len(card_payments(billing)) == 4
    use(billing, metric, "d", 50)  # 54 -> 4: charged -> 54
    stalled = topup_session_create(merchant=sandbox, customer=billing.customer, amount=D("50"), currency="USD")
    BillingSettings.objects.filter(customer=billing.customer).update(
        auto_recharge_triggered=True, auto_recharge_session_id=stalled.id
    )
    assert resume_auto_recharges.delay().get() == 0  # claimed just now: its worker may still charge it
    PaymentSession.objects.filter(pk=stalled.pk).update(created_at=timezone.now() - CLAIM_GRACE - timedelta(seconds=1))
    assert resume_auto_recharges.delay().get() == 1
    stalled.refresh_from_db()
    assert stalled.status == "paid" and billing.available() == D("104")
    assert auto_recharge.delay(str(settings_row(billing).id)).get() == "nothing to charge"
    assert len(card_payments(billing)) == 6 and len(stripe_intents(billing)) == 6
    assert ledger_check() == []
