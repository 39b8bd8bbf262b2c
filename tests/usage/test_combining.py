"""Group commit of concurrent single reports: each request gets exactly its own event's
answer, whatever else was charged in its round, against PostgreSQL with real threads.

The tests decide by events, never by time: the first report's round is held at a gate until
every later report is known to be queued behind it (the combiner's `on_wait`), so the rounds
are the same at every run."""

import functools
import threading
from decimal import Decimal

import pytest
from django.db import connection, connections

from apps.core.errors import ApiError
from apps.ledger.selectors import ledger_check
from apps.usage.models import UsageEvent
from apps.usage.services import combining
from apps.usage.services.charging import record_many, record_one
from tests.factories import MerchantFactory
from tests.usage.world import Billing

pytestmark = pytest.mark.django_db(transaction=True)
D = Decimal
# Only a guard against a test hanging for good: no outcome below depends on it.
HANG_GUARD_SECONDS = 60


class Rounds:
    """The rounds the combiners charge: `sizes` (1 for a report charged alone), `started`
    (set when a lone report's round starts), `gate` (a lone report's round waits for it), and
    the keys of the reports queued behind a round (`queued`, `wait_queued(n)`)."""

    def __init__(self):
        self.sizes: list[int] = []
        self.started = threading.Event()
        self.gate = threading.Event()
        self.queued: list[str] = []
        self._changed = threading.Condition()

    def on_wait(self, event):
        self.note(lambda: self.queued.append(event.idempotency_key))

    def note(self, change) -> None:
        """Make `change` and wake whoever waits in `wait_until`."""
        with self._changed:
            change()
            self._changed.notify_all()

    def wait_until(self, predicate) -> None:
        with self._changed:
            assert self._changed.wait_for(predicate, HANG_GUARD_SECONDS), self.queued

    def wait_queued(self, count: int) -> None:
        self.wait_until(lambda: len(self.queued) >= count)


@pytest.fixture
def rounds(monkeypatch):
    observed = Rounds()

    def gated_one(merchant, event, now):
        observed.sizes.append(1)
        observed.started.set()
        observed.gate.wait()
        return record_one(merchant, event, now)

    def counted_many(merchant, parsed, now, **options):
        observed.sizes.append(len(parsed))
        return record_many(merchant, parsed, now, **options)

    monkeypatch.setattr(combining, "record_one", gated_one)
    monkeypatch.setattr(combining, "record_many", counted_many)
    monkeypatch.setattr(combining, "_combiners", {})
    monkeypatch.setattr(combining, "Combiner", functools.partial(combining.Combiner, on_wait=observed.on_wait))
    return observed


def _send(merchant_bodies, outcomes, index):
    merchant, body = merchant_bodies[index]
    try:
        outcomes[index] = combining.usage_record_combined(merchant=merchant, raw=body)
    except ApiError as error:
        outcomes[index] = error
    except Exception as exc:  # noqa: BLE001 -- the test looks at it
        outcomes[index] = exc
    finally:
        connection.close()


def _join(threads):
    for thread in threads:
        thread.join(HANG_GUARD_SECONDS)
    assert not any(thread.is_alive() for thread in threads)


def submit_all(rounds: Rounds, merchant_bodies):
    """Send each (merchant, body) of one merchant from its own thread: the first alone, the
    rest while its round is held, all of them queued behind it before it is let go. Returns
    each outcome: a body or an ApiError."""
    outcomes = [None] * len(merchant_bodies)
    threads = [threading.Thread(target=_send, args=(merchant_bodies, outcomes, i)) for i in range(len(merchant_bodies))]
    threads[0].start()
    assert rounds.started.wait(HANG_GUARD_SECONDS)
    for thread in threads[1:]:
        thread.start()
    rounds.wait_queued(len(threads) - 1)
    rounds.gate.set()
    _join(threads)
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
    outcomes = submit_all(rounds, [(merchant, body) for body in bodies])

    assert rounds.sizes == [1, 8]  # the first alone, the eight queued behind it in one round
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
    outcomes = submit_all(rounds, [(merchant, billing.event("lead", metric)), (merchant, same), (merchant, same)])
    # both were queued behind "lead"; the second waits for the round after the first's
    assert rounds.sizes == [1, 1, 1]
    assert outcomes[1]["id"] == outcomes[2]["id"]
    assert UsageEvent.objects.filter(merchant=merchant, idempotency_key="same").count() == 1
    assert billing.available() == D("1") - 2 * D("0.001")


def test_a_merchant_whose_wallet_is_locked_elsewhere_holds_up_no_other_merchant(rounds):
    one, two = MerchantFactory(), MerchantFactory()
    billing_one, billing_two = Billing(one), Billing(two)
    metric_one, metric_two = billing_one.metric(), billing_two.metric()
    billing_one.fund("1")
    billing_two.fund("1")
    rounds.gate.set()  # no round waits at the gate: merchant one's waits for its wallet
    other = connections.create_connection("default")  # a long batch of merchant one, elsewhere
    other.set_autocommit(False)
    with other.cursor() as cursor:
        cursor.execute(
            "SELECT amount FROM ledger_balance WHERE account_id = %s FOR UPDATE",
            [billing_one.wallet.available_account_id],
        )
    bodies = [(one, billing_one.event("held", metric_one)), (two, billing_two.event("free", metric_two))]
    outcomes = [None, None]
    answered = []

    def send_free():
        _send(bodies, outcomes, 1)
        rounds.note(lambda: answered.append(True))

    held = threading.Thread(target=_send, args=(bodies, outcomes, 0))
    free = threading.Thread(target=send_free)
    try:
        held.start()
        assert rounds.started.wait(HANG_GUARD_SECONDS)  # merchant one's round is being charged
        free.start()
        # merchant two's report is answered, or queued behind merchant one's round: whichever comes first
        rounds.wait_until(lambda: answered or rounds.queued)
        assert rounds.queued == []
        assert outcomes[1]["idempotencyKey"] == "free", outcomes[1]
        assert outcomes[0] is None and held.is_alive()  # merchant one's report still waits for its wallet
    finally:
        other.rollback()
        other.close()
    _join([held, free])
    assert outcomes[0]["idempotencyKey"] == "held"
    assert UsageEvent.objects.filter(merchant=one, idempotency_key="held").exists()


def test_a_round_that_fails_as_a_whole_is_charged_again_report_by_report(rounds, monkeypatch):
    merchant = MerchantFactory()
    billing = Billing(merchant)
    metric = billing.metric()
    billing.fund("1")
    failing = {"left": 1}

    def fail_once(merchant, parsed, now, **options):
        rounds.sizes.append(len(parsed))
        if failing["left"]:
            failing["left"] -= 1
            raise RuntimeError("boom")
        return record_many(merchant, parsed, now, **options)

    monkeypatch.setattr(combining, "record_many", fail_once)
    outcomes = submit_all(rounds, [(merchant, billing.event(f"e{i}", metric)) for i in range(4)])
    assert [o["idempotencyKey"] for o in outcomes] == [f"e{i}" for i in range(4)], outcomes
    assert rounds.sizes == [1, 3, 1, 1, 1]  # the lone first, the failed round, then one by one
    assert UsageEvent.objects.filter(merchant=merchant).count() == 4
    assert ledger_check() == []


def test_a_report_that_fails_on_its_own_gets_its_own_error_only(rounds, monkeypatch):
    merchant = MerchantFactory()
    billing = Billing(merchant)
    metric = billing.metric()
    billing.fund("1")
    gated_one = combining.record_one

    def broken_for_e2(merchant, parsed, now, **options):
        rounds.sizes.append(len(parsed))
        if any(e.idempotency_key == "e2" for e in parsed.values()):
            raise RuntimeError("round fails")
        return record_many(merchant, parsed, now, **options)

    def one_fails(merchant, event, now):
        if event.idempotency_key == "e2":
            raise RuntimeError("e2 fails")
        return gated_one(merchant, event, now)

    monkeypatch.setattr(combining, "record_many", broken_for_e2)
    monkeypatch.setattr(combining, "record_one", one_fails)
    outcomes = submit_all(rounds, [(merchant, billing.event(f"e{i}", metric)) for i in range(4)])
    assert rounds.sizes == [1, 3, 1, 1]  # e1 - e3 failed together; e2's own error is not counted
    assert isinstance(outcomes[2], RuntimeError) and str(outcomes[2]) == "e2 fails"
    assert [o["idempotencyKey"] for i, o in enumerate(outcomes) if i != 2] == ["e0", "e1", "e3"]


def test_a_lost_database_connection_is_replaced_and_the_round_charged(rounds, monkeypatch):
    merchant = MerchantFactory()
    billing = Billing(merchant)
    metric = billing.metric()
    billing.fund("1")
    lost = {"left": 1}

    def lose_connection_once(merchant, parsed, now, **options):
        rounds.sizes.append(len(parsed))
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
    outcomes = submit_all(rounds, [(merchant, billing.event(f"e{i}", metric)) for i in range(4)])
    assert [o["idempotencyKey"] for o in outcomes] == [f"e{i}" for i in range(4)], outcomes
    assert rounds.sizes == [1, 3, 3]  # the round of three, charged again on a new connection
    assert UsageEvent.objects.filter(merchant=merchant).count() == 4


class _Event:
    def __init__(self, key):
        self.idempotency_key = key


@pytest.mark.parametrize("leaves", ["while queued", "once given the lead"])
def test_a_waiting_request_that_leaves_passes_on_its_place(monkeypatch, leaves):
    """An asynchronous exception in a waiting request (the process going down) must not leave
    the reports behind it waiting forever, whether or not it had been given the lead."""
    rounds = Rounds()
    leave_now = threading.Event()
    given_lead = threading.Event()

    class Wake(threading.Event):
        """The wake-up of the report that leaves: it leaves when told to, and says when the
        lead is handed to it."""

        def set(self):
            given_lead.set()
            super().set()

        def wait(self, timeout=None):
            leave_now.wait()
            raise KeyboardInterrupt

    class Report(combining._Report):
        def __init__(self, event, now):
            super().__init__(event, now)
            if event.idempotency_key == "leaves":
                self.wake = Wake()

    def held_round(merchant, reports):
        rounds.note(lambda: rounds.sizes.append(len(reports)))
        rounds.started.set()
        rounds.gate.wait()
        for report in reports:
            report.outcome = {"idempotencyKey": report.event.idempotency_key}
            report.done = True

    monkeypatch.setattr(combining, "_Report", Report)
    monkeypatch.setattr(combining, "_charge_round", held_round)
    combiner = combining.Combiner(on_wait=rounds.on_wait)
    merchant = MerchantFactory.build()
    answers = {}

    def send(key):
        try:
            answers[key] = combiner.submit(merchant, _Event(key), None)
        except KeyboardInterrupt:
            answers[key] = "left"

    threads = {key: threading.Thread(target=send, args=(key,), daemon=True) for key in ("lead", "leaves", "after")}
    threads["lead"].start()
    assert rounds.started.wait(HANG_GUARD_SECONDS)
    threads["leaves"].start()
    rounds.wait_queued(1)
    threads["after"].start()
    rounds.wait_queued(2)
    assert rounds.queued == ["leaves", "after"]
    if leaves == "once given the lead":
        rounds.gate.set()  # the lead's round ends and hands the lead to "leaves", first in the queue
        assert given_lead.wait(HANG_GUARD_SECONDS)
    leave_now.set()
    threads["leaves"].join(HANG_GUARD_SECONDS)
    rounds.gate.set()
    _join(threads.values())
    assert answers == {"lead": {"idempotencyKey": "lead"}, "leaves": "left", "after": {"idempotencyKey": "after"}}
    assert rounds.sizes == [1, 1]  # "after" was charged in a round of its own, "leaves" in none
    later = combiner.submit(merchant, _Event("later"), None)  # the combiner is idle again
    assert later == {"idempotencyKey": "later"}


def test_a_bad_body_is_refused_at_once_without_waiting_for_a_round(rounds):
    merchant = MerchantFactory()
    with pytest.raises(ApiError) as refused:
        combining.usage_record_combined(merchant=merchant, raw={"properties": []})
    assert refused.value.status_code == 400
    assert rounds.sizes == []
