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
    monkeypatch.setattr(combining, "_combiners", {})
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
    # each keeps its own ledger transaction, as alone
    charged = [o for o in outcomes if isinstance(o, dict)]
    assert len({o["billing"]["billingEventId"] for o in charged}) == len(charged) == 7
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


def test_a_merchant_whose_wallet_is_locked_elsewhere_holds_up_no_other_merchant(rounds):
    from django.db import connections

    one, two = MerchantFactory(), MerchantFactory()
    billing_one, billing_two = Billing(one), Billing(two)
    metric_one, metric_two = billing_one.metric(), billing_two.metric()
    billing_one.fund("1")
    billing_two.fund("1")
    other = connections.create_connection("default")  # a long batch of merchant one, elsewhere
    other.set_autocommit(False)
    with other.cursor() as cursor:
        cursor.execute(
            "SELECT amount FROM ledger_balance WHERE account_id = %s FOR UPDATE",
            [billing_one.wallet.available_account_id],
        )
    held = threading.Thread(
        target=lambda: submit_all([(one, billing_one.event("held", metric_one))]), name="held", daemon=True
    )
    held.start()
    time.sleep(0.2)
    started = time.monotonic()
    (answer,) = submit_all([(two, billing_two.event("free", metric_two))])
    assert answer["idempotencyKey"] == "free"
    assert time.monotonic() - started < 1.5  # (a lone report sleeps 0.3 s in this fixture)
    assert held.is_alive()  # merchant one's report still waits for its wallet
    other.rollback()
    other.close()
    held.join(10)
    assert UsageEvent.objects.filter(merchant=one, idempotency_key="held").exists()


def test_a_round_that_fails_as_a_whole_is_charged_again_report_by_report(rounds, monkeypatch):
    merchant = MerchantFactory()
    billing = Billing(merchant)
    metric = billing.metric()
    billing.fund("1")
    failing = {"left": 1}

    def fail_once(merchant, parsed, now, **options):
        rounds.append(len(parsed))
        if failing["left"]:
            failing["left"] -= 1
            raise RuntimeError("boom")
        return record_many(merchant, parsed, now, **options)

    monkeypatch.setattr(combining, "record_many", fail_once)
    outcomes = submit_all([(merchant, billing.event(f"e{i}", metric)) for i in range(4)])
    assert [o["idempotencyKey"] for o in outcomes] == [f"e{i}" for i in range(4)], outcomes
    assert rounds[:2] == [1, 3] and rounds[2:] == [1, 1, 1], rounds  # the failed round, then one by one
    assert UsageEvent.objects.filter(merchant=merchant).count() == 4
    assert ledger_check() == []


def test_a_report_that_fails_on_its_own_gets_its_own_error_only(rounds, monkeypatch):
    merchant = MerchantFactory()
    billing = Billing(merchant)
    metric = billing.metric()
    billing.fund("1")
    real_one = combining.record_one

    def broken_for_e2(merchant, parsed, now, **options):
        if any(e.idempotency_key == "e2" for e in parsed.values()):
            raise RuntimeError("round fails")
        return record_many(merchant, parsed, now, **options)

    def one_fails(merchant, event, now):
        if event.idempotency_key == "e2":
            raise RuntimeError("e2 fails")
        return real_one(merchant, event, now)

    monkeypatch.setattr(combining, "record_many", broken_for_e2)
    monkeypatch.setattr(combining, "record_one", one_fails)
    outcomes = submit_all([(merchant, billing.event(f"e{i}", metric)) for i in range(4)])
    assert isinstance(outcomes[2], RuntimeError) and str(outcomes[2]) == "e2 fails"
    assert [o["idempotencyKey"] for i, o in enumerate(outcomes) if i != 2] == ["e0", "e1", "e3"]


def test_a_lost_database_connection_is_replaced_and_the_round_charged(rounds, monkeypatch):
    from django.db import connections

    merchant = MerchantFactory()
    billing = Billing(merchant)
    metric = billing.metric()
    billing.fund("1")
    lost = {"left": 1}

    def lose_connection_once(merchant, parsed, now, **options):
        if lost["left"]:
            lost["left"] -= 1
            connection.ensure_connection()
            pid = connection.connection.info.backend_pid
            killer = connections.create_connection("default")
            with killer.cursor() as cursor:  # as a server restart would
                cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
            killer.close()
        return record_many(merchant, parsed, now, **options)

    monkeypatch.setattr(combining, "record_many", lose_connection_once)
    outcomes = submit_all([(merchant, billing.event(f"e{i}", metric)) for i in range(4)])
    assert [o["idempotencyKey"] for o in outcomes] == [f"e{i}" for i in range(4)], outcomes
    assert UsageEvent.objects.filter(merchant=merchant).count() == 4


def test_a_waiting_request_that_leaves_passes_on_its_place(monkeypatch):
    """An asynchronous exception in a waiting request (the process going down) must not leave
    the reports behind it waiting forever."""
    created = []

    class Wake(threading.Event):
        def wait(self, timeout=None):
            if created.index(self) == 1:  # the second report leaves while waiting
                time.sleep(0.2)
                raise KeyboardInterrupt
            return super().wait(timeout)

    class Report(combining._Report):
        def __init__(self, event, now):
            super().__init__(event, now)
            self.wake = Wake()
            created.append(self.wake)

    def slow_round(merchant, reports):
        time.sleep(0.4)
        for report in reports:
            report.outcome = {"idempotencyKey": report.event.idempotency_key}
            report.done = True

    monkeypatch.setattr(combining, "_Report", Report)
    monkeypatch.setattr(combining, "_charge_round", slow_round)
    combiner = combining.Combiner()
    merchant = MerchantFactory.build()

    class Event:
        def __init__(self, key):
            self.idempotency_key = key

    answers = {}

    def send(key):
        try:
            answers[key] = combiner.submit(merchant, Event(key), None)
        except KeyboardInterrupt:
            answers[key] = "left"

    threads = [threading.Thread(target=send, args=(key,), daemon=True) for key in ("lead", "leaves", "after")]
    for thread in threads:
        thread.start()
        time.sleep(0.05)
    for thread in threads:
        thread.join(5)
    assert answers == {"lead": {"idempotencyKey": "lead"}, "leaves": "left", "after": {"idempotencyKey": "after"}}
    later = combiner.submit(merchant, Event("later"), None)
    assert later == {"idempotencyKey": "later"}


def test_a_bad_body_is_refused_at_once_without_waiting_for_a_round(rounds):
    merchant = MerchantFactory()
    with pytest.raises(ApiError) as refused:
        combining.usage_record_combined(merchant=merchant, raw={"properties": []})
    assert refused.value.status_code == 400
    assert rounds == []
