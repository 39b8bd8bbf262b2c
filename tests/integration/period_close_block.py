"""A test-only app that the period-close worker tests load into their Celery worker (through
tests.integration.worker_settings), never into the test process: a listener on
`apps.subscriptions.hooks.on_period_ended`, registered after the invoices app's own, so that it
runs inside the transaction that moves a period to grace, once the period's draft invoice and
its lines have been written there.

While the file named by PERIOD_CLOSE_BLOCK_FILE exists, the listener first writes
`<file>.entered.<pid>` (JSON: this process's pid, the period, and the draft invoice and line
count that its transaction sees) and then waits, the period row locked and nothing committed,
until the file is removed. A test can so hold a close mid-transaction: to show that a second
close waits for it, or to kill the worker there. Without the variable, or the file, it does
nothing.
"""

import json
import os
import time

from django.apps import AppConfig

# A test that forgets to remove the file must not leave a worker waiting for ever: past this,
# the listener raises, and the close rolls back.
BLOCK_LIMIT_SECONDS = 120


def hold_period_close(period) -> None:
    path = os.environ.get("PERIOD_CLOSE_BLOCK_FILE")
    if not path or not os.path.exists(path):
        return
    from apps.invoices.models import Invoice, InvoiceLine

    draft = Invoice.objects.filter(period_id=period.id, kind=Invoice.Kind.PERIOD).values("id", "status").first()
    marker = {
        "pid": os.getpid(),
        "period": str(period.id),
        "invoice": str(draft["id"]) if draft else None,
        "status": draft["status"] if draft else None,
        "lines": InvoiceLine.objects.filter(invoice_id=draft["id"]).count() if draft else 0,
    }
    entered = f"{path}.entered.{os.getpid()}"
    with open(f"{entered}.tmp", "w") as handle:
        json.dump(marker, handle)
    os.replace(f"{entered}.tmp", entered)  # whole, or not at all, for the reader
    deadline = time.monotonic() + BLOCK_LIMIT_SECONDS
    while os.path.exists(path):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} still exists after {BLOCK_LIMIT_SECONDS}s")
        time.sleep(0.05)


class PeriodCloseBlockConfig(AppConfig):
    name = "tests.integration.period_close_block"
    label = "period_close_block"

    def ready(self):
        from apps.subscriptions import hooks

        hooks.on_period_ended(hold_period_close)
