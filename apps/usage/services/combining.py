"""Group commit of single usage reports that arrive at the same time in one process.

Under load, most of what a single report costs is per database transaction (round trips,
statements, the commit's flush), not per event. When a web process serves several
requests at once (gunicorn's gthread workers), one merchant's concurrent reports are
therefore charged together: the first request to arrive becomes the leader and charges
what is queued (its own report, and any that arrived while the previous round was being
written) in one database transaction through `record_many`, the path of a batch; the
others wait for their own outcome. When a round ends, the leader hands over to the first
request still waiting, so every request is answered as soon as its own round commits.

Nothing changes for the caller: each request gets its own event's answer (201 with its
body and its own ledger transaction, or its own 402/404/409/422), only after the commit
that stored it; one event's refusal does not affect the others of its round, and a round
that fails as a whole is charged again report by report. A request alone (sync workers,
light load) is charged at once by `record_one`, without any hand-over.
"""

import threading
import uuid
from collections.abc import Callable
from datetime import datetime

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection
from django.utils import timezone

from apps.core.errors import ApiError
from apps.merchants.models import Merchant
from apps.usage.inputs import UsageInput, parse_usage_event
from apps.usage.services.charging import MAX_BATCH_EVENTS, record_many, record_one


class _Report:
    __slots__ = ("event", "now", "lead", "done", "outcome", "failure", "wake")

    def __init__(self, event, now):
        self.event = event
        self.now = now
        self.lead = False  # it charges the next round (given under the combiner's lock)
        self.done = False
        self.outcome = None  # the response body, or the ApiError refusing the event
        self.failure = None  # an unexpected exception raised while charging it
        self.wake = threading.Event()  # set when done, or when given the lead


class Combiner:
    """The reports of one merchant in this process (each merchant has its own, so that a
    merchant whose wallets are locked elsewhere holds up nobody else).

    `on_wait`, when given, is called with each report's event once it is queued behind a
    round being charged (before it waits): what is waiting can be observed without timing.
    """

    def __init__(self, max_round: int = MAX_BATCH_EVENTS, *, on_wait: Callable[[UsageInput], None] | None = None):
        self.max_round = max_round
        self.on_wait = on_wait
        self._lock = threading.Lock()
        self._queue: list[_Report] = []
        self._busy = False  # a leader is charging; then the queue's reports wait

    def submit(self, merchant: Merchant, event: UsageInput, now: datetime) -> dict:
        """Charge `event` for `merchant` (alone or with concurrent reports); its response
        body, or raise the ApiError that refuses it."""
        report = _Report(event, now)
        with self._lock:
            self._queue.append(report)
            if not self._busy:
                self._busy = True
                report.lead = True
        if not report.lead:
            self._wait(report)  # until its round is done, or it is given the lead
        if not report.done:
            with self._lock:
                round_ = self._take_round()
            try:
                _charge_round(merchant, round_)
            finally:
                for charged in round_:
                    if not charged.done:  # (interrupted: the process is going down)
                        charged.failure = RuntimeError("the round charging this usage event was interrupted")
                        charged.done = True
                with self._lock:
                    self._hand_over()
                for charged in round_:
                    charged.wake.set()
        if report.failure is not None:
            raise report.failure
        if isinstance(report.outcome, ApiError):
            raise report.outcome
        return report.outcome

    def _take_round(self) -> list[_Report]:
        """The queued reports for one round, in order (the leader's own first); a second
        report of the same key waits for the next round, where the first is stored and it is
        answered as a replay (or a 409) exactly as if it had come alone."""
        round_, keys, rest = [], set(), []
        for report in self._queue:
            key = report.event.idempotency_key
            if key in keys or len(round_) >= self.max_round:
                rest.append(report)
            else:
                keys.add(key)
                round_.append(report)
        self._queue = rest
        return round_

    def _hand_over(self) -> None:
        """(Under the lock.) The lead to the first queued report, or the combiner is idle."""
        if self._queue:
            self._queue[0].lead = True
            self._queue[0].wake.set()
        else:
            self._busy = False

    def _wait(self, report: _Report) -> None:
        try:
            if self.on_wait is not None:
                self.on_wait(report.event)
            report.wake.wait()
        except BaseException:
            # Leaving while queued (an asynchronous exception): leave the queue, and pass on
            # the lead if it had been given, so that the reports behind do not wait forever.
            with self._lock:
                if report in self._queue:
                    self._queue.remove(report)
                    if report.lead:
                        self._hand_over()
            raise


def _charge_round(merchant, reports: list[_Report]) -> None:
    """Charge one round of one merchant's reports in one transaction (each keeping its own
    ledger transaction and answer). If the round as a whole fails (an error that is not one
    event's refusal), each report is charged again on its own, so that it gets exactly the
    answer it would have had alone."""
    if len(reports) == 1:
        _charge_alone(merchant, reports[0])
        return
    # the earliest arrival's clock: no report is judged later than it would have been alone
    now = min(report.now for report in reports)
    try:
        outcomes = _fresh_connection_retry(
            lambda: record_many(
                merchant,
                dict(enumerate(r.event for r in reports)),
                now,
                lock_first=True,
                shared_transaction=False,
            )
        )
    except Exception:  # noqa: BLE001 -- every report is charged again on its own below
        for report in reports:
            _charge_alone(merchant, report)
        return
    for index, report in enumerate(reports):
        report.outcome = outcomes[index]
        report.done = True


def _charge_alone(merchant, report: _Report) -> None:
    try:
        report.outcome = _fresh_connection_retry(lambda: record_one(merchant, report.event, report.now))
    except ApiError as error:
        report.outcome = error
    except Exception as exc:  # noqa: BLE001 -- raised again in the report's own request
        report.failure = exc
    report.done = True


def _fresh_connection_retry(charge):
    """`charge()`, once more on a new connection if the database connection was lost (the
    server closed it, as a restart does): safe, since every event is idempotent by its key
    (a charge whose commit was lost on the way is answered as a replay)."""
    try:
        return charge()
    except (OperationalError, InterfaceError):
        if connection.in_atomic_block:
            raise
        connection.close_if_unusable_or_obsolete()
        return charge()


_combiners: dict[uuid.UUID, Combiner] = {}
_combiners_lock = threading.Lock()


def _combiner_for(merchant) -> Combiner:
    combiner = _combiners.get(merchant.pk)
    if combiner is None:
        with _combiners_lock:
            combiner = _combiners.setdefault(merchant.pk, Combiner())
    return combiner


def usage_record_combined(*, merchant, raw) -> dict:
    """POST /v0/usage: parse the event here (a 400 never waits), then charge it, with the
    merchant's reports that arrive at the same time when USAGE_COMBINE_REPORTS is on."""
    now = timezone.now()
    event = parse_usage_event(raw, now=now)
    if not settings.USAGE_COMBINE_REPORTS:
        return record_one(merchant, event, now)
    return _combiner_for(merchant).submit(merchant, event, now)
