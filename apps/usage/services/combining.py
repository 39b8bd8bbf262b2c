"""Group commit of single usage reports that arrive at the same time in one process.

Under load, most of what a single report costs is per database transaction (round trips,
statements, the commit's flush), not per event. When a web process serves several
requests at once (gunicorn's gthread workers), concurrent reports are therefore charged
together: the first request to arrive becomes the leader and charges what is queued (its
own report, and any that arrived while the previous round was being written) in one
transaction through `record_many`, the path of a batch; the others wait for their own
outcome. When a round ends, the leader hands over to the first request still waiting, so
every request is answered as soon as its own round commits.

Nothing changes for the caller: each request still gets its own event's answer (201 with
its body, or its own 402/404/409/422), only after the commit that stored it; a refusal of
one event does not affect the others of its round. A request alone (sync workers, light
load) is charged at once by `record_one`, without any hand-over.
"""

import threading
from collections import defaultdict

from django.conf import settings
from django.utils import timezone

from apps.core.errors import ApiError
from apps.usage.inputs import parse_usage_event
from apps.usage.services.charging import MAX_BATCH_EVENTS, record_many, record_one


class _Report:
    __slots__ = ("merchant", "event", "done", "outcome", "failure", "wake")

    def __init__(self, merchant, event):
        self.merchant = merchant
        self.event = event
        self.done = False
        self.outcome = None  # the response body, or the ApiError refusing the event
        self.failure = None  # an unexpected exception of its round
        self.wake = threading.Event()  # set when done, or when handed the lead


class Combiner:
    def __init__(self, max_round: int = MAX_BATCH_EVENTS):
        self.max_round = max_round
        self._lock = threading.Lock()
        self._queue: list[_Report] = []
        self._busy = False

    def _take_round(self) -> list[_Report]:
        """The queued reports for one round, in order; a second report of the same key waits
        for the next round, where the first is stored and it is answered as a replay (or a
        409) exactly as if it had come alone."""
        round_, keys, rest = [], set(), []
        for report in self._queue:
            key = (report.merchant.pk, report.event.idempotency_key)
            if key in keys or len(round_) >= self.max_round:
                rest.append(report)
            else:
                keys.add(key)
                round_.append(report)
        self._queue = rest
        return round_

    def submit(self, merchant, event) -> dict:
        """Charge `event` for `merchant` (alone or with concurrent reports); its response
        body, or raise the ApiError that refuses it."""
        report = _Report(merchant, event)
        with self._lock:
            self._queue.append(report)
            leading = not self._busy
            if leading:
                self._busy = True
                round_ = self._take_round()
        if not leading:
            # each waiting request is woken once: when its round is done, or to lead the next
            report.wake.wait()
            if not report.done:
                with self._lock:
                    round_ = self._take_round()
        if not report.done:
            try:
                _charge_round(round_)
            finally:
                with self._lock:
                    if self._queue:
                        self._queue[0].wake.set()  # not done: it leads the next round
                    else:
                        self._busy = False
                for charged in round_:
                    charged.wake.set()
        if report.failure is not None:
            raise report.failure
        if isinstance(report.outcome, ApiError):
            raise report.outcome
        return report.outcome


def _charge_round(reports: list[_Report]) -> None:
    """Charge one round, merchant by merchant (each its own transaction); every report of
    the round is done at the end, with its outcome, or with the unexpected exception of its
    merchant's transaction (raised again in its own request, which logs it as a 500)."""
    now = timezone.now()
    by_merchant: dict = defaultdict(list)
    for report in reports:
        by_merchant[report.merchant.pk].append(report)
    try:
        for group in by_merchant.values():
            merchant = group[0].merchant
            try:
                if len(group) == 1:
                    try:
                        group[0].outcome = record_one(merchant, group[0].event, now)
                    except ApiError as error:
                        group[0].outcome = error
                else:
                    outcomes = record_many(merchant, dict(enumerate(r.event for r in group)), now, lock_first=True)
                    for index, report in enumerate(group):
                        report.outcome = outcomes[index]
            except Exception as exc:  # noqa: BLE001 -- handed to each request of the group
                for report in group:
                    report.failure = exc
            for report in group:
                report.done = True
    finally:
        for report in reports:
            if not report.done:  # (a BaseException: the process is going down)
                report.failure = RuntimeError("the round charging this event was interrupted")
                report.done = True


_combiner = Combiner()


def usage_record_combined(*, merchant, raw) -> dict:
    """POST /v0/usage: parse the event here (a 400 never waits), then charge it, with the
    reports that arrive at the same time when USAGE_COMBINE_REPORTS is on."""
    now = timezone.now()
    event = parse_usage_event(raw, now=now)
    if not settings.USAGE_COMBINE_REPORTS:
        return record_one(merchant, event, now)
    return _combiner.submit(merchant, event)
