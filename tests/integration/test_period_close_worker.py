"""Billing periods closed by REAL Celery workers on Redis (no eager mode), against the test
database: two closes at once make one invoice, and a worker killed with SIGKILL in the middle of
a close leaves nothing half-written and the close comes back and completes.

Each test builds a subscription whose first period ended days ago (it started 40 days ago, its
usage reported back then under time travel), with in_arrears usage and fees, and a wallet that
covers the invoice. Workers run `tests.integration.worker_settings` (the test settings, their
own queue as the default one, and a test-only listener on the period-ended hook that can hold a
close mid-transaction while a marker file exists: tests/integration/period_close_block.py).
Every wait polls the database or the worker's log, bounded; every process started here is
stopped by its pid in a `finally`.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import time_machine as travel
from django.conf import settings
from django.db import connection
from django.utils import timezone

from apps.catalog.models import PaymentTerm, Price
from apps.invoices.models import Invoice, InvoiceLine, InvoiceSequence
from apps.ledger.models import LedgerTransaction
from apps.ledger.selectors import ledger_check
from apps.subscriptions.models import BillingPeriod
from apps.subscriptions.tasks import advance_due_periods, advance_periods, advance_periods_many
from apps.webhooks.models import Event
from billing_platform.celery import app as celery_app
from tests.integration.test_celery_worker import REPO_ROOT, Worker, _forget_queue, database_url
from tests.usage.world import Billing

pytestmark = pytest.mark.django_db(transaction=True)

D = Decimal
DEADLINE = 60  # seconds, for each wait
POLL = 0.2

# The period's invoice: 123 calls in arrears at 0.02, the period's support fee (in arrears) and
# the next period's platform fee (in advance).
CALLS = (40, 2, 81)
EXPECTED_LINES = {
    ("calls", "123", "2.460000"),
    ("Support", "1", "2.000000"),
    ("Platform fee", "1", "5.000000"),
}
EXPECTED_TOTAL = D("9.46")
FUNDED = D("100")


def wait_until(condition, what: str, timeout: float = DEADLINE):
    """Poll `condition` every POLL seconds until it returns something truthy (returned), or fail."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(POLL)


def worker_env(queue: str, *, visibility_timeout: int, block_file: Path | None = None) -> dict:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.integration.worker_settings",
        "DATABASE_URL": database_url(settings.DATABASES["default"]),
        "DATABASE_CONN_MAX_AGE": "0",
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "CELERY_VISIBILITY_TIMEOUT": str(visibility_timeout),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("PERIOD_CLOSE_BLOCK_FILE", None)
    if block_file is not None:
        env["PERIOD_CLOSE_BLOCK_FILE"] = str(block_file)
    return env


class PoolWorker(Worker):
    """A `celery worker` with the prefork pool: `concurrency` child processes run the tasks
    (the production shape), the parent takes messages from Redis and acknowledges them."""

    def __init__(self, *, queue: str, env: dict, concurrency: int):
        self.queue = queue
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "billing_platform",
                "worker",
                "--pool",
                "prefork",
                "--concurrency",
                str(concurrency),
                "--loglevel",
                "INFO",
                "-Q",
                queue,
                "-n",
                f"{queue}-{uuid.uuid4().hex[:6]}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.children: set[int] = set()

    def note_children(self) -> set[int]:
        """Remember the pool's child processes (to stop them by pid, whatever happens)."""
        self.children |= children_of(self.process.pid)
        return self.children

    def succeeded(self, task_name: str) -> list[str]:
        return [line for line in self.output().splitlines() if f"Task {task_name}[" in line and " succeeded " in line]

    def errors(self) -> list[str]:
        return [line for line in self.output().splitlines() if " raised " in line or "Traceback" in line]

    def stop(self):
        self.note_children()
        super().stop()
        for pid in self.children:
            kill(pid)


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def kill(pid: int) -> None:
    if alive(pid):
        with contextlib.suppress(ProcessLookupError):  # it ended since
            os.kill(pid, signal.SIGKILL)


def send(task, *args, queue: str) -> str:
    """Enqueue `task(*args)` on Redis for the worker of `queue` (the test process runs tasks
    eagerly otherwise); its id."""
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = False
    try:
        return task.apply_async(args=args, queue=queue).id
    finally:
        celery_app.conf.task_always_eager = eager


def entered(block_file: Path) -> dict[int, dict]:
    """The closes that reached the block: pid -> what that transaction had written."""
    found = {}
    for marker in block_file.parent.glob(f"{block_file.name}.entered.*"):
        if marker.suffix == ".tmp":
            continue
        data = json.loads(marker.read_text())
        found[data["pid"]] = data
    return found


def backends_waiting_on_a_lock() -> int:
    """Connections to this test database (other than this one) waiting for a lock."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


def backends_in_a_transaction() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND xact_start IS NOT NULL"
        )
        return cursor.fetchone()[0]


@pytest.fixture
def ended(api):
    """A subscription whose first (monthly) period ended days ago and is still open: started 40
    days ago, 123 calls in arrears reported in its first days, its wallet funded with 100."""
    started = timezone.now() - timedelta(days=40)
    with travel.travel(started, tick=True):
        billing = Billing(api.merchant)
        calls = billing.metric(term=PaymentTerm.IN_ARREARS, properties={"unitPrice": "0.02"})
        calls.name = "calls"
        calls.save(update_fields=["name"])
        for term, amount, name in (
            (PaymentTerm.IN_ADVANCE, "5", "Platform fee"),
            (PaymentTerm.IN_ARREARS, "2", "Support"),
        ):
            fee = Price.objects.create(
                merchant=api.merchant, payment_term=term, currency="USDC", amount=D(amount), invoice_display_name=name
            )
            billing.plan.prices.add(fee)
        billing.fund(str(FUNDED))
    with travel.travel(started + timedelta(days=5), tick=True):
        for day, quantity in enumerate(CALLS, start=1):
            at = (started + timedelta(days=day)).isoformat().replace("+00:00", "Z")
            response = api.post("/v0/usage", billing.event(f"calls-{day}", calls, quantity, timestamp=at))
            assert response.status_code == 201, response.json()
    billing.period = BillingPeriod.objects.get(subscription=billing.subscription)
    assert billing.period.status == BillingPeriod.Status.OPEN
    assert billing.period.end < timezone.now() - timedelta(days=5)  # ended days ago, never closed
    return billing


def period_status(billing) -> str:
    return BillingPeriod.objects.values_list("status", flat=True).get(pk=billing.period.pk)


def closed_and_settled(billing):
    """The period is closed and its invoice no longer open (paid from the wallet)."""
    if period_status(billing) != BillingPeriod.Status.CLOSED:
        return False
    return not Invoice.objects.filter(period=billing.period, status__in=["draft", "open"]).exists()


def assert_nothing_written_for_the_period(billing, transactions_before: int):
    """The close left nothing behind: no invoice, line, number or event; the period still open
    (no next one); no money moved."""
    assert period_status(billing) == BillingPeriod.Status.OPEN
    assert BillingPeriod.objects.filter(subscription=billing.subscription).count() == 1
    assert not Invoice.objects.exists()
    assert not InvoiceLine.objects.exists()
    assert not InvoiceSequence.objects.filter(last_number__gt=0).exists()
    assert not Event.objects.filter(type__startswith="invoice.").exists()
    assert LedgerTransaction.objects.count() == transactions_before
    assert billing.available() == FUNDED


def assert_one_exact_invoice(billing):
    """The period closed once: one period invoice, right to the digit, numbered once, paid once
    from the wallet, each of its events once, the next period created once, the ledger balanced."""
    assert period_status(billing) == BillingPeriod.Status.CLOSED
    periods = list(BillingPeriod.objects.filter(subscription=billing.subscription).order_by("start"))
    assert [p.start for p in periods] == [billing.period.start, billing.period.end]
    assert periods[1].status == BillingPeriod.Status.OPEN

    invoice = Invoice.objects.get()  # exactly one, whatever kind
    assert (invoice.kind, invoice.period_id, invoice.number) == (Invoice.Kind.PERIOD, billing.period.id, "INV-000001")
    assert invoice.status == Invoice.Status.PAID
    assert invoice.total == invoice.subtotal == invoice.amount_paid == EXPECTED_TOTAL
    assert periods[0].invoice_id == invoice.id
    lines = {(line.description, f"{line.quantity.normalize():f}", f"{line.amount:.6f}") for line in invoice.lines.all()}
    assert lines == EXPECTED_LINES
    assert InvoiceLine.objects.count() == len(EXPECTED_LINES)
    assert InvoiceSequence.objects.get(merchant=billing.merchant).last_number == 1

    types = list(Event.objects.filter(type__startswith="invoice.").values_list("type", flat=True))
    assert sorted(types) == ["invoice.created", "invoice.finalized", "invoice.paid"]
    finalized = Event.objects.get(type="invoice.finalized")
    assert finalized.data["number"] == "INV-000001" and finalized.data["total"] == "9.460000"
    wallet_payments = [e for e in Event.objects.filter(type="payment.succeeded") if e.data["source"] == "wallet"]
    assert len(wallet_payments) == 1 and wallet_payments[0].data["invoiceId"] == str(invoice.id)

    assert billing.available() == FUNDED - EXPECTED_TOTAL
    assert billing.revenue() == D("8.987")  # 9.46 less 5%
    assert billing.commission() == D("0.473")
    assert ledger_check() == []


def test_two_closes_at_once_make_one_invoice(ended, tmp_path):
    """advance_periods for the subscription, twice at the same moment, in two worker processes:
    the first holds the close mid-transaction; the second skips the period the first holds
    (FOR UPDATE SKIP LOCKED: that worker moves it) and ends at once, having moved nothing; then
    the first finishes, and the period has one invoice."""
    queue = f"period-close-{uuid.uuid4().hex[:12]}"
    block = tmp_path / "block"
    block.touch()
    worker = None
    try:
        worker = PoolWorker(queue=queue, env=worker_env(queue, visibility_timeout=300, block_file=block), concurrency=2)
        worker.wait_until_ready()
        worker.note_children()
        first = send(advance_periods, str(ended.subscription.id), queue=queue)
        second = send(advance_periods, str(ended.subscription.id), queue=queue)

        holder = wait_until(lambda: entered(block), "a close inside its transaction")
        (marker,) = holder.values()
        # the close is mid-transaction, after the draft and its lines were written there
        assert marker["period"] == str(ended.period.id)
        assert (marker["status"], marker["lines"]) == ("draft", len(EXPECTED_LINES))
        # ...and the other task, in the other process, found the period held and moved nothing
        skipped = wait_until(
            lambda: [line for line in worker.succeeded("apps.subscriptions.tasks.advance_periods")],
            "the second close done while the first holds the period",
        )
        assert len(skipped) == 1 and skipped[0].endswith(": 0")
        assert backends_waiting_on_a_lock() == 0
        assert not Invoice.objects.exists()  # nothing is committed yet
        block.unlink()

        moves = {worker.wait_for_task(first, timeout=DEADLINE), worker.wait_for_task(second, timeout=DEADLINE)}
        assert moves == {"0", "2"}  # one close made both moves (grace and closed), the other none
        wait_until(lambda: closed_and_settled(ended), "the period closed and its invoice paid")
        assert len(entered(block)) == 1  # one close wrote a draft
        assert worker.errors() == []
        assert_one_exact_invoice(ended)
    finally:
        block.unlink(missing_ok=True)
        if worker is not None:
            worker.stop()
        _forget_queue(queue)


def test_the_beat_task_twice_at_once_makes_one_invoice(ended):
    """advance_due_periods twice at the same moment (as two beats would): each enqueues the
    due subscription (in a batch of one, advance_periods_many) on Redis unless the other did,
    the worker runs them in parallel, one invoice."""
    queue = f"period-close-{uuid.uuid4().hex[:12]}"
    worker = None
    try:
        worker = PoolWorker(queue=queue, env=worker_env(queue, visibility_timeout=300), concurrency=2)
        worker.wait_until_ready()
        worker.note_children()
        beats = [send(advance_due_periods, queue=queue) for _ in range(2)]
        enqueued = sum(int(worker.wait_for_task(task_id, timeout=DEADLINE)) for task_id in beats)
        assert 1 <= enqueued <= 2  # the second beat finds the subscription due unless the first closed it
        wait_until(
            lambda: len(worker.succeeded("apps.subscriptions.tasks.advance_periods_many")) == enqueued,
            "every advance_periods_many done",
        )
        wait_until(lambda: closed_and_settled(ended), "the period closed and its invoice paid")
        assert worker.errors() == []
        assert_one_exact_invoice(ended)

        # the beat again: nothing is due, nothing changes
        assert worker.wait_for_task(send(advance_due_periods, queue=queue), timeout=DEADLINE) == "0"
        assert_one_exact_invoice(ended)
    finally:
        if worker is not None:
            worker.stop()
        _forget_queue(queue)


def test_a_worker_killed_mid_close_leaves_no_invoice_and_the_close_comes_back(ended, tmp_path):
    """The close is held mid-transaction, its draft invoice written but not committed:

    1. its pool process is killed (SIGKILL): the worker sees it lost and puts the task back on
       the queue (acks late, reject on worker lost), and runs it again in a new process;
    2. there, held again, the whole worker is killed (SIGKILL, parent and child): the task stays
       taken by a worker that no longer exists;
    3. a new worker, without the hold, takes it back once the (short) visibility timeout passes,
       and closes the period: one invoice, right, numbered INV-000001.

    After each kill the database holds nothing of the close."""
    queue = f"period-close-killed-{uuid.uuid4().hex[:12]}"
    block = tmp_path / "block"
    block.touch()
    transactions_before = LedgerTransaction.objects.count()
    first = second = None
    try:
        # A long visibility timeout for this worker: what brings the task back after its child
        # dies is the rejection, not the broker.
        first = PoolWorker(queue=queue, env=worker_env(queue, visibility_timeout=300, block_file=block), concurrency=1)
        first.wait_until_ready()
        first.note_children()
        task_id = send(advance_periods, str(ended.subscription.id), queue=queue)

        (child, marker), *_ = wait_until(lambda: list(entered(block).items()), "the close inside its transaction")
        assert child in first.note_children()  # a pool process of this worker
        assert (marker["status"], marker["lines"]) == ("draft", len(EXPECTED_LINES))
        assert backends_in_a_transaction() == 1
        os.kill(child, signal.SIGKILL)

        # 1. the task comes back in a new pool process (and is held there again); the killed
        # transaction was rolled back, or the new one could not have locked the period
        again = wait_until(lambda: set(entered(block)) - {child}, "the task run again after its process was killed")
        wait_until(lambda: "WorkerLostError" in first.output(), "the worker reporting its lost process")
        assert not alive(child)
        (child_again,) = again
        assert child_again in first.note_children()
        assert_nothing_written_for_the_period(ended, transactions_before)

        # 2. the whole worker killed, the task held once more
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait(10)
        kill(child_again)
        wait_until(lambda: not alive(child_again), "the held pool process gone")
        wait_until(lambda: backends_in_a_transaction() == 0, "the killed close's transaction rolled back")
        assert_nothing_written_for_the_period(ended, transactions_before)

        # 3. a worker without the hold: no task is sent, the one taken by the dead worker returns
        block.unlink()
        second = PoolWorker(queue=queue, env=worker_env(queue, visibility_timeout=2), concurrency=1)
        second.wait_until_ready()
        second.note_children()
        second.wait_for_task(task_id, timeout=DEADLINE)
        wait_until(lambda: closed_and_settled(ended), "the period closed and its invoice paid")
        assert second.errors() == []
        assert_one_exact_invoice(ended)
    finally:
        block.unlink(missing_ok=True)
        for worker in (first, second):
            if worker is not None:
                worker.stop()
        _forget_queue(queue)


# --- batches: the beat's task moves many subscriptions' periods in one transaction ------------

BATCH_CALLS = (10, 25, 40, 55)  # calls of each subscription, at 0.02 in arrears


@pytest.fixture
def ended_batch(api):
    """Four subscriptions of one plan whose first (monthly) periods ended days ago and are still
    open: the `ended` plan (calls in arrears at 0.02, a support fee in arrears, a platform fee in
    advance), each customer with its own usage and its wallet funded with 100."""
    from apps.subscriptions.services import subscription_create
    from tests.factories import make_customer, pay_session

    started = timezone.now() - timedelta(days=40)
    with travel.travel(started, tick=True):
        billing = Billing(api.merchant, email="batch-0@example.com")
        subscriptions = [billing.subscription]
        for index in range(1, len(BATCH_CALLS)):
            customer = make_customer(api.merchant, email=f"batch-{index}@example.com")
            subscriptions.append(subscription_create(merchant=api.merchant, customer=customer, plan=billing.plan))
        # (the fees come after the subscriptions, which so start without a start invoice)
        calls = billing.metric(term=PaymentTerm.IN_ARREARS, properties={"unitPrice": "0.02"})
        for term, amount, name in (
            (PaymentTerm.IN_ADVANCE, "5", "Platform fee"),
            (PaymentTerm.IN_ARREARS, "2", "Support"),
        ):
            fee = Price.objects.create(
                merchant=api.merchant, payment_term=term, currency="USDC", amount=D(amount), invoice_display_name=name
            )
            billing.plan.prices.add(fee)
        from apps.payments.services import topup_session_create

        for subscription in subscriptions:
            pay_session(
                topup_session_create(
                    merchant=api.merchant, customer=subscription.customer, amount=FUNDED, currency="USDC"
                )
            )
    with travel.travel(started + timedelta(days=5), tick=True):
        at = (started + timedelta(days=1)).isoformat().replace("+00:00", "Z")
        for subscription, quantity in zip(subscriptions, BATCH_CALLS, strict=True):
            body = {
                "idempotencyKey": f"batch-{subscription.id}",
                "customerId": str(subscription.customer_id),
                "properties": [{"billableMetricId": str(calls.id), "quantity": quantity}],
                "timestamp": at,
            }
            response = api.post("/v0/usage", body)
            assert response.status_code == 201, response.json()
    assert BillingPeriod.objects.filter(status=BillingPeriod.Status.OPEN).count() == len(BATCH_CALLS)
    return billing, subscriptions


def batch_expected_total(calls: int) -> Decimal:
    return D(calls) * D("0.02") + D("2") + D("5")


def assert_batch_closed_once(billing, subscriptions):
    """Each period closed once: one exact invoice each, numbered INV-000001.. without a gap or a
    duplicate, each paid once from its wallet, each invoice event and payment once, each next
    period created once, the ledger balanced."""
    invoices = list(Invoice.objects.order_by("number"))
    assert len(invoices) == len(subscriptions)
    assert [invoice.number for invoice in invoices] == [f"INV-{n:06d}" for n in range(1, len(subscriptions) + 1)]
    assert InvoiceSequence.objects.get(merchant=billing.merchant).last_number == len(subscriptions)
    for subscription, calls in zip(subscriptions, BATCH_CALLS, strict=True):
        periods = list(BillingPeriod.objects.filter(subscription=subscription).order_by("start"))
        assert [p.status for p in periods] == [BillingPeriod.Status.CLOSED, BillingPeriod.Status.OPEN]
        invoice = Invoice.objects.get(subscription=subscription)
        assert (invoice.kind, invoice.period_id, periods[0].invoice_id) == (
            Invoice.Kind.PERIOD,
            periods[0].id,
            invoice.id,
        )
        assert invoice.status == Invoice.Status.PAID
        assert invoice.total == invoice.amount_paid == batch_expected_total(calls)
        amounts = sorted(f"{line.amount:.6f}" for line in invoice.lines.all())
        assert amounts == sorted([f"{D(calls) * D('0.02'):.6f}", "2.000000", "5.000000"])
        assert wallet_available(subscription) == FUNDED - batch_expected_total(calls)
        types = sorted(
            Event.objects.filter(type__startswith="invoice.", data__id=str(invoice.id)).values_list("type", flat=True)
        )
        assert types == ["invoice.created", "invoice.finalized", "invoice.paid"]
    payments = [e for e in Event.objects.filter(type="payment.succeeded") if e.data["source"] == "wallet"]
    assert sorted(e.data["invoiceId"] for e in payments) == sorted(str(i.id) for i in invoices)
    assert LedgerTransaction.objects.filter(kind=LedgerTransaction.Kind.INVOICE_PAYMENT).count() == len(subscriptions)
    assert ledger_check() == []


def wallet_available(subscription):
    from apps.ledger.selectors import wallet_balances

    return wallet_balances(wallet=subscription.wallet).available


def batch_settled(subscriptions) -> bool:
    """Each subscription's first period closed and every invoice paid."""
    closed = BillingPeriod.objects.filter(subscription__in=subscriptions, status=BillingPeriod.Status.CLOSED)
    paid = Invoice.objects.filter(status=Invoice.Status.PAID)
    return closed.count() == len(subscriptions) and paid.count() == len(subscriptions)


def test_two_overlapping_batches_at_once_close_each_period_once(ended_batch, tmp_path):
    """advance_periods_many for subscriptions [0, 1, 2] and [1, 2, 3] at the same moment, in two
    worker processes, both held mid-transaction at once: the second skips the periods the first
    holds and moves the one that only it names. Released, they number their invoices from one
    sequence: INV-000001 to INV-000004, each period invoiced once."""
    billing, subscriptions = ended_batch
    ids = [str(subscription.id) for subscription in subscriptions]
    queue = f"period-close-{uuid.uuid4().hex[:12]}"
    block = tmp_path / "block"
    block.touch()
    worker = None
    try:
        worker = PoolWorker(queue=queue, env=worker_env(queue, visibility_timeout=300, block_file=block), concurrency=2)
        worker.wait_until_ready()
        worker.note_children()
        first = send(advance_periods_many, ids[:3], queue=queue)
        holder = wait_until(lambda: entered(block), "the first batch inside its transaction")
        second = send(advance_periods_many, ids[1:], queue=queue)
        both = wait_until(lambda: len(entered(block)) == 2 and entered(block), "both batches inside a transaction")
        assert len(holder) == 1 and set(holder) < set(both)
        (other,) = set(both) - set(holder)
        # the second holds only the period that the first does not: the fourth subscription's
        period_of = dict(BillingPeriod.objects.values_list("subscription_id", "id"))
        assert both[other]["period"] == str(period_of[subscriptions[3].id])
        assert backends_waiting_on_a_lock() == 0
        assert not Invoice.objects.exists()  # nothing is committed yet
        block.unlink()

        moves = sorted(int(worker.wait_for_task(task_id, timeout=DEADLINE)) for task_id in (first, second))
        assert moves == [2, 6]  # both moves of each period: 3 by the first, 1 by the second
        wait_until(lambda: batch_settled(subscriptions), "every period closed and its invoice paid")
        assert worker.errors() == []
        assert_batch_closed_once(billing, subscriptions)
    finally:
        block.unlink(missing_ok=True)
        if worker is not None:
            worker.stop()
        _forget_queue(queue)


def test_a_worker_killed_mid_batch_leaves_nothing_and_the_batch_comes_back(ended_batch, tmp_path):
    """A batch of four held mid-transaction, drafts written but not committed, its pool process
    killed (SIGKILL): nothing of any of the four is left (no invoice, line, number, event or
    money; every period open); the task comes back in a new process and, released, closes all
    four once."""
    billing, subscriptions = ended_batch
    ids = [str(subscription.id) for subscription in subscriptions]
    queue = f"period-close-killed-{uuid.uuid4().hex[:12]}"
    block = tmp_path / "block"
    block.touch()
    transactions_before = LedgerTransaction.objects.count()
    worker = None
    try:
        worker = PoolWorker(queue=queue, env=worker_env(queue, visibility_timeout=300, block_file=block), concurrency=1)
        worker.wait_until_ready()
        worker.note_children()
        task_id = send(advance_periods_many, ids, queue=queue)

        (child, marker), *_ = wait_until(lambda: list(entered(block).items()), "the batch inside its transaction")
        assert child in worker.note_children()
        assert (marker["status"], marker["lines"]) == ("draft", len(EXPECTED_LINES))
        assert backends_in_a_transaction() == 1
        os.kill(child, signal.SIGKILL)

        again = wait_until(lambda: set(entered(block)) - {child}, "the batch run again after its process was killed")
        wait_until(lambda: "WorkerLostError" in worker.output(), "the worker reporting its lost process")
        assert again
        assert not Invoice.objects.exists() and not InvoiceLine.objects.exists()
        assert not InvoiceSequence.objects.filter(last_number__gt=0).exists()
        assert not Event.objects.filter(type__startswith="invoice.").exists()
        assert LedgerTransaction.objects.count() == transactions_before
        assert set(BillingPeriod.objects.values_list("status", flat=True)) == {BillingPeriod.Status.OPEN}
        assert BillingPeriod.objects.count() == len(subscriptions)
        block.unlink()

        # (the task's first run is logged as lost: read its successful run)
        done = wait_until(
            lambda: worker.succeeded("apps.subscriptions.tasks.advance_periods_many"), "the batch run again done"
        )
        assert len(done) == 1 and f"[{task_id}]" in done[0] and done[0].endswith(f": {2 * len(subscriptions)}")
        wait_until(lambda: batch_settled(subscriptions), "every period closed and its invoice paid")
        assert_batch_closed_once(billing, subscriptions)
    finally:
        block.unlink(missing_ok=True)
        if worker is not None:
            worker.stop()
        _forget_queue(queue)


def test_a_task_runs_after_its_kept_database_connection_was_dropped(ended):
    """The worker keeps its database connection from task to task (CELERY_DB_REUSE_MAX,
    DATABASE_CONN_MAX_AGE 60): when the server drops it between two tasks, the next task finds
    it broken before it starts, opens another and closes the period."""
    queue = f"period-close-{uuid.uuid4().hex[:12]}"
    worker = None
    try:
        env = {**worker_env(queue, visibility_timeout=300), "DATABASE_CONN_MAX_AGE": "60"}
        worker = PoolWorker(queue=queue, env=env, concurrency=1)
        worker.wait_until_ready()
        worker.note_children()
        # a first task opens the connection, which the worker process keeps
        assert worker.wait_for_task(send(advance_periods_many, [], queue=queue), timeout=DEADLINE) == "0"
        assert worker.wait_for_task(send(advance_due_periods, queue=queue), timeout=DEADLINE) == "1"
        wait_until(lambda: closed_and_settled(ended), "the period closed by the enqueued batch")
        kept = wait_until(worker_backends, "the worker's kept connection")
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [kept])
        wait_until(lambda: not set(kept) & set(worker_backends()), "the kept connection gone")

        task_id = send(advance_periods, str(ended.subscription.id), queue=queue)
        assert worker.wait_for_task(task_id, timeout=DEADLINE) == "0"  # ran (nothing left to move)
        assert worker.wait_for_task(send(advance_due_periods, queue=queue), timeout=DEADLINE) == "0"
        assert worker.errors() == []
        assert_one_exact_invoice(ended)
    finally:
        if worker is not None:
            worker.stop()
        _forget_queue(queue)


def worker_backends() -> list[int]:
    """Idle connections to this test database other than this one (the worker's, between tasks)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend'"
        )
        return [row[0] for row in cursor.fetchall()]
