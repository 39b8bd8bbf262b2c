"""Card tasks run by a REAL Celery worker on Redis, against localstripe: a usage posting that
takes a USD wallet below its auto-recharge threshold enqueues the charge after its commit (eager
mode off in the test process, the worker's own queue as the default one), and the worker charges
the saved card once; the settlement reaches the ledger through the payments service."""

import uuid
from decimal import Decimal

import pytest
from django.conf import settings

from apps.customers.billing import CurrencyBillingSettings
from apps.customers.models import BillingSettings
from apps.customers.services import customer_update
from apps.ledger.selectors import ledger_check
from apps.payments.models import Payment, PaymentAttempt, PaymentSource
from apps.usage.services import usage_record
from billing_platform.celery import app as celery_app
from tests.cards.test_card_path import GOOD
from tests.integration.test_celery_worker import Worker, _forget_queue, poll
from tests.integration.test_period_close_worker import worker_env
from tests.invoices.test_card_collection import save_card
from tests.usage.world import Billing

pytestmark = pytest.mark.django_db(transaction=True)

D = Decimal


@pytest.fixture
def card_worker(django_db_setup, stripe_sandbox):
    """A worker on a queue of its own, with the sandbox's Stripe (localstripe); while it runs,
    the test process enqueues instead of running tasks eagerly, on that queue."""
    queue = f"cards-{uuid.uuid4().hex[:12]}"
    env = {**worker_env(queue, visibility_timeout=300), **stripe_sandbox}
    worker = Worker(queue=queue, env=env)
    eager, default_queue = celery_app.conf.task_always_eager, celery_app.conf.task_default_queue
    try:
        worker.wait_until_ready()
        celery_app.conf.task_always_eager = False
        celery_app.conf.task_default_queue = queue
        yield worker
    finally:
        celery_app.conf.task_always_eager, celery_app.conf.task_default_queue = eager, default_queue
        worker.stop()
        _forget_queue(queue)


def test_a_worker_charges_the_auto_recharge_a_posting_enqueued_once(card_worker, sandbox):
    assert settings.CELERY_BROKER_URL
    billing = Billing(sandbox, currency="USD")
    metric = billing.metric(properties={"unitPrice": "1"})
    billing.fund("20")
    save_card(billing.customer, GOOD)
    customer_update(
        merchant=sandbox,
        customer=billing.customer,
        billing_settings={
            "USD": CurrencyBillingSettings(
                auto_recharge_enabled=True, auto_recharge_threshold=D("10"), auto_recharge_amount=D("50")
            )
        },
    )
    usage_record(merchant=sandbox, raw=billing.event("a", metric, 15))  # 20 -> 5: the task goes to the worker
    usage_record(merchant=sandbox, raw=billing.event("b", metric, 1))  # still below: nothing enqueued

    poll(lambda: Payment.objects.filter(source=PaymentSource.CARD).exists(), what="the worker's card payment")
    card_worker._wait_for(
        lambda lines: (
            True if any("cards.tasks.auto_recharge" in line and "succeeded" in line for line in lines) else None
        ),
        30,
        "auto_recharge succeeded",
    )
    payment = Payment.objects.get(source=PaymentSource.CARD)
    assert (payment.amount, payment.session.purpose) == (D("50"), "top_up")
    assert PaymentAttempt.objects.filter(source=PaymentSource.CARD).count() == 1
    assert billing.available() == D("54")
    settings_row = BillingSettings.objects.get(customer=billing.customer)
    assert not settings_row.auto_recharge_triggered  # back above 10 with the recharge
    assert "succeeded" in card_worker.output()
    assert ledger_check() == []
