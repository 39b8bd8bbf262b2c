"""The settlement check as workers run it: twice at once (threads, each with its own database
connection) it credits once; a real Celery worker killed with SIGKILL in the middle of it (while
it reads the chain) loses nothing: the task comes back (late acks) and the next worker confirms."""

import json
import os
import signal
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from django.conf import settings
from django.test import override_settings

from apps.invoices.models import Invoice
from apps.ledger.selectors import ledger_check
from apps.payments.models import Payment
from apps.settlements.models import Settlement
from apps.settlements.services import settlement_check
from apps.settlements.tasks import check_settlement
from apps.webhooks.models import Event
from billing_platform.celery import app as celery_app
from tests.concurrency import run_at_once
from tests.factories import MerchantFactory, issue_key, sandbox_of
from tests.integration.test_celery_worker import Worker, _forget_queue, database_url, poll
from tests.settlements.world import chain_settings, claim, mine, new_payer, prove, send_token, usdc_invoice

pytestmark = pytest.mark.django_db(transaction=True)

USDC = 10**6


def paid_claim(chain, rpc_url=None):
    """A sandbox invoice of 10 USDC, its customer's address proven, 10 USDC sent and claimed
    (mined to the threshold): the settlement's id."""
    from tests.conftest import Api

    sandbox = sandbox_of(MerchantFactory())
    api = Api(issue_key(sandbox), sandbox)
    invoice = usdc_invoice(sandbox, "10")
    data = api.get(f"/v0/invoices/{invoice.id}").json()
    payer = new_payer(chain)
    prove(api, data["customerId"], payer)
    tx_hash = send_token(chain, payer, to=chain.recipient, value=10 * USDC)
    response = claim(api, data, tx_hash, payer.address)
    assert response.status_code == 201, response.content
    mine(chain, 2)
    return response.json()["id"], data["id"]


def test_the_check_run_twice_at_once_credits_once(anvil_chain):
    with chain_settings(anvil_chain, required=3):
        settlement_id, invoice_id = paid_claim(anvil_chain)
        results = run_at_once(2, lambda _: settlement_check(settlement_id=settlement_id).status)
        assert results == ["confirmed", "confirmed"], results
    assert Payment.objects.filter(source="usdc").count() == 1
    assert Event.objects.filter(type="settlement.confirmed").count() == 1
    assert Invoice.objects.get(pk=invoice_id).status == "paid"
    assert ledger_check() == []


class HoldingProxy:
    """An RPC proxy in front of anvil that holds every request while `hold` is set, so that a
    worker can be killed while it reads the chain."""

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.hold = threading.Event()
        self.released = threading.Event()
        self.seen = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if proxy.hold.is_set():
                    proxy.seen.set()
                    proxy.released.wait(60)
                answer = httpx.post(proxy.upstream, content=body, headers={"Content-Type": "application/json"})
                self.send_response(answer.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


def test_a_worker_killed_while_it_checks_a_settlement_loses_nothing(anvil_chain):
    proxy = HoldingProxy(anvil_chain.rpc_url)
    chain_config = {**anvil_chain.chain_config(required_confirmations=3), "rpcUrl": proxy.url}
    queue = f"settlements-killed-{uuid.uuid4().hex[:12]}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.integration.worker_settings",
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "DATABASE_URL": database_url(settings.DATABASES["default"]),
        "DATABASE_CONN_MAX_AGE": "0",
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "CELERY_VISIBILITY_TIMEOUT": "2",
        "USDC_TEST_CHAINS": json.dumps([chain_config]),
        "PYTHONUNBUFFERED": "1",
    }
    first = second = None
    try:
        with override_settings(USDC_TEST_CHAINS=json.dumps([chain_config])):
            settlement_id, invoice_id = paid_claim(anvil_chain)
        # (the check that the post queued ran eagerly here, one block in: still pending)
        assert Settlement.objects.get(pk=settlement_id).status == "pending"
        assert not Payment.objects.filter(source="usdc").exists()
        proxy.hold.set()
        first = Worker(queue=queue, env=env)
        first.wait_until_ready()
        eager = celery_app.conf.task_always_eager
        celery_app.conf.task_always_eager = False
        try:
            check_settlement.apply_async(args=[str(settlement_id)], queue=queue)
        finally:
            celery_app.conf.task_always_eager = eager
        assert proxy.seen.wait(60), "the worker never read the chain"
        os.kill(first.process.pid, signal.SIGKILL)  # inside the task, reading the receipt
        first.process.wait(10)
        assert Settlement.objects.get(pk=settlement_id).status == "pending"
        proxy.hold.clear()
        proxy.released.set()

        second = Worker(queue=queue, env=env)
        second.wait_until_ready()
        # no new task is sent: the killed one comes back by itself
        poll(lambda: Settlement.objects.get(pk=settlement_id).status == "confirmed", timeout=60, what="confirmed")
    finally:
        proxy.close()
        for worker in (first, second):
            if worker is not None:
                worker.stop()
        _forget_queue(queue)
    assert Payment.objects.filter(source="usdc").count() == 1
    assert Invoice.objects.get(pk=invoice_id).status == "paid"
    assert ledger_check() == []
