"""Group commit of concurrent single reports: each request gets exactly its own event's
answer, whatever else was charged in its round, against PostgreSQL with real threads."""

import threading
import time
from decimal import Decimal

import pytest
from django.db import connection

from apps.core.errors import ApiError
from apps.ledger.selectors import ledger_check
from apps.usage.models import UsageEvent
from apps.usage.services import combining
from apps.usage.services.charging import record_many, record_one
from tests.factories import MerchantFactory
from tests.usage.world import Billing

pytestmark = pytest.mark.django_db(transaction=True)
D = Decimal


@pytest.fixture
def rounds(monkeypatch):
    """Rounds as charged: a lone report waits 0.3 s inside its round, so that the reports
    sent meanwhile queue up and are charged together in the next one."""
    sizes = []

    def slow_one(merchant, event, now):
        sizes.append(1)
        time.sleep(0.3)
        return record_one(merchant, event, now)

    def counted_many(merchant, parsed, now, **options):
        sizes.append(len(parsed))
        return record_many(merchant, parsed, now, **options)

    monkeypatch.setattr(combining, "record_one", slow_one)
    monkeypatch.setattr(combining, "record_many", counted_many)
    monkeypatch.setattr(combining, "_combiner", combining.Combiner())
    return sizes


def submit_all(merchant_bodies):
    """Send each (merchant, body) from its own thread: the first alone, the rest 0.1 s later
    (while the first round is being charged). Returns each outcome: a body or an ApiError."""
    outcomes = [None] * len(merchant_bodies)

    def send(index):
        merchant, body = merchant_bodies[index]
        try:
            outcomes[index] = combining.usage_record_combined(merchant=merchant, raw=body)
        except ApiError as error:
            outcomes[index] = error
        except Exception as exc:  # noqa: BLE001 -- the test looks at it
            outcomes[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(merchant_bodies))]
    threads[0].start()
    time.sleep(0.1)
    for thread in threads[1:]:
        thread.start()
    for thread in threads:
        thread.join(30)
    return outcomes


def test_reports_sent_together_are_charged_together_each_with_its_own_answer(rounds):
    merchant = MerchantFactory()
    rich = Billing(merchant, email="rich@example.com")
    metric = rich.metric(properties={"unitPrice": "0.25"})
    poor = Billing(merchant, email="poor@example.com")
    poor.plan.prices.set(rich.plan.prices.all())
    rich.fund("10")
    poor.fund("0.5")  # two reports of 0.25

    bodies = [rich.event("first", metric)]
    bodies += [poor.event(f"poor-{i}", metric) for i in range(3)]
    bodies += [rich.event(f"rich-{i}", metric) for i in range(4)]
    bodies += [{**rich.event("stranger", metric), "customerId": "00000000-0000-4000-8000-000000000000"}]
    outcomes = submit_all([(merchant, body) for body in bodies])

    assert rounds[0] == 1 and max(rounds[1:]) > 1, rounds  # the later ones were combined
    first, poor_outcomes, rich_outcomes, stranger = outcomes[0], outcomes[1:4], outcomes[4:8], outcomes[8]
    assert first["idempotencyKey"] == "first"
    assert [o["idempotencyKey"] for o in rich_outcomes] == [f"rich-{i}" for i in range(4)]
    assert sum(isinstance(o, dict) for o in poor_outcomes) == 2
    (refused,) = [o for o in poor_outcomes if isinstance(o, ApiError)]
    assert (refused.status_code, refused.code) == (402, "INSUFFICIENT_BALANCE")
    assert (stranger.status_code, stranger.code) == (404, "CUSTOMER_NOT_FOUND")
    assert str(stranger).startswith("customerId: no customer")  # the single report's own wording
    assert poor.available() == D("0")
    assert rich.available() == D("10") - 5 * D("0.25")
    assert UsageEvent.objects.filter(merchant=merchant).count() == 7
    assert ledger_check() == []


def test_a_key_sent_twice_in_one_round_is_a_replay_of_the_first(rounds):
    merchant = MerchantFactory()
    billing = Billing(merchant)
    metric = billing.metric()
    billing.fund("1")
    same = billing.event("same", metric)
    outcomes = submit_all([(merchant, billing.event("lead", metric)), (merchant, same), (merchant, same)])
    assert outcomes[1]["id"] == outcomes[2]["id"]
    assert UsageEvent.objects.filter(merchant=merchant, idempotency_key="same").count() == 1
    assert billing.available() == D("1") - 2 * D("0.001")


def test_each_merchant_of_a_round_is_charged_in_its_own_transaction(rounds):
    one, two = MerchantFactory(), MerchantFactory()
    billing_one, billing_two = Billing(one), Billing(two)
    metric_one, metric_two = billing_one.metric(), billing_two.metric()
    billing_one.fund("1")
    billing_two.fund("1")
    outcomes = submit_all(
        [
            (one, billing_one.event("lead", metric_one)),
            (one, billing_one.event("a", metric_one)),
            (two, billing_two.event("a", metric_two)),
            # another merchant's customer is unknown to this one
            (two, billing_one.event("b", metric_one)),
        ]
    )
    assert outcomes[1]["customerId"] == str(billing_one.customer.id)
    assert outcomes[2]["customerId"] == str(billing_two.customer.id)
    assert outcomes[3].status_code == 404
    assert UsageEvent.objects.filter(merchant=one).count() == 2
    assert UsageEvent.objects.filter(merchant=two).count() == 1


def test_an_unexpected_failure_reaches_its_own_round_only(rounds, monkeypatch):
    merchant = MerchantFactory()
    billing = Billing(merchant)
    metric = billing.metric()
    billing.fund("1")
    failing = {"left": 1}

    def fail_once(merchant, parsed, now, **options):
        if failing["left"]:
            failing["left"] -= 1
            raise RuntimeError("boom")
        return record_many(merchant, parsed, now, **options)

    monkeypatch.setattr(combining, "record_many", fail_once)
    outcomes = submit_all([(merchant, billing.event(f"e{i}", metric)) for i in range(4)])
    assert isinstance(outcomes[0], dict)
    assert all(isinstance(o, RuntimeError) for o in outcomes[1:]), outcomes
    # nothing of the failed round was written, and the combiner goes on
    assert UsageEvent.objects.filter(merchant=merchant).count() == 1
    later = submit_all([(merchant, billing.event(f"later{i}", metric)) for i in range(3)])
    assert all(isinstance(o, dict) for o in later), later


def test_a_bad_body_is_refused_at_once_without_waiting_for_a_round(rounds):
    merchant = MerchantFactory()
    with pytest.raises(ApiError) as refused:
        combining.usage_record_combined(merchant=merchant, raw={"properties": []})
    assert refused.value.status_code == 400
    assert rounds == []
