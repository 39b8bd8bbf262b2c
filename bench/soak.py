"""Soak: mixed traffic for a long while against gunicorn + a Celery worker + beat + localstripe, the
resident memory of every process sampled each minute, then the ledger check and the counts.

    .venv/bin/python bench/soak.py                 # 30 minutes (make soak)
    .venv/bin/python bench/soak.py --minutes 3     # a short run, to validate
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/11 \\
        .venv/bin/python bench/soak.py --json

A dedicated database (`billing_soak`, or BENCH_DATABASE) is dropped and created on the server of
DATABASE_URL, migrated and seeded through the services, in the sandbox of one merchant: a daily
USD plan with an instant price (calls, 0.001) and an in_arrears price (tokens, 0.0001), customers
funded and subscribed with `startedAt` a day back less a few minutes spread over the run (so that
their periods close, are invoiced and collected during it), the demo tiers and API keys on
enterprise, customers with a card saved at localstripe, and a webhook endpoint (every event) on a
receiver in this process. Then, from this process, on 127.0.0.1 until `--minutes` have passed:

- usage: single events (a tenth replayed with the same key) and batches of 50 (calls and tokens);
- API-key verify (its counts drained to usage events by beat);
- entitlements: a hold, a usage event against it, its release;
- sandbox top-ups paid with the test helper; top-ups paid by card (a PaymentIntent at localstripe,
  its own webhooks delivered to /webhooks/stripe); USDC top-ups paid by real transfers of the test
  USDC on an anvil chain started here (the sandbox chain of make run), claimed with
  POST /v0/settlements and confirmed by beat's re-check (2 confirmations);
- the period close, invoices and their collection, webhook deliveries: by the worker and beat.

Each minute the resident size (VmRSS) of every process of gunicorn (master and workers), the
worker (and its children), beat, localstripe, anvil and this process is sampled. At the end: usage
events acknowledged against stored, VALID verify answers against counted usage, card payments
against their credits, settlements posted against confirmed and USDC transferred against credited, webhook events against deliveries (and duplicates by webhook-id), and
`ledger_check()` / `usage_check()`. Exit status 1 when a count differs or a check reports a
problem. Memory is reported, not asserted: the target is growth below 10% from minute 5 to the end.
"""

import argparse
import contextlib
import http.client
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import types
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

import ingest  # noqa: E402 (bench/ is on the path when run as a script)
from invoicing import descendants, start_celery, stop_process, wait_for_log  # noqa: E402

from billing_platform.devservers import free_port  # noqa: E402

ingest.BENCH_DATABASE = os.environ.get("BENCH_DATABASE", "billing_soak")
HOST = "127.0.0.1"
CALL_PRICE = Decimal("0.001")
TOKEN_PRICE = Decimal("0.0001")
FUNDING = Decimal("1000")
REQUEST_TIMEOUT = 30.0
GOOD_CARD = "4242424242424242"


def log(message: str) -> None:
    print(f"[soak {datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="how long the traffic runs (default 30)")
    parser.add_argument("--customers", type=int, default=40, help="subscribed, funded customers (default 40)")
    parser.add_argument("--card-customers", type=int, default=4, help="customers with a saved card (default 4)")
    parser.add_argument("--api-keys", type=int, default=8, help="API keys verified (default 8)")
    parser.add_argument(
        "--usdc-customers", type=int, default=2, help="customers paying USDC top-ups on the sandbox chain (default 2)"
    )
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4, help="WEB_THREADS of each gunicorn worker")
    parser.add_argument("--rate", type=float, default=1.0, help="a factor on every traffic rate (default 1)")
    parser.add_argument("--json", action="store_true", help="the report as JSON on stdout")
    parser.add_argument("--keep-database", action="store_true")
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------- memory


def rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def command_of(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"
    return raw[:80]


def sample_memory(roots: dict[str, int]) -> dict:
    """{role: {"total": KiB, "processes": {pid: KiB}}} for every live process under each root."""
    shot = {}
    for role, root in roots.items():
        pids = descendants(root) if role != "soak" else {root}
        processes = {pid: kib for pid in sorted(pids) if (kib := rss_kib(pid)) is not None}
        shot[role] = {"total": sum(processes.values()), "processes": processes}
    return shot


# ---------------------------------------------------------------------------- webhook receiver


class Receiver:
    """Outbound webhooks arrive here: each webhook-id counted once, duplicates counted apart."""

    def __init__(self):
        self.ids: set[str] = set()
        self.duplicates = 0
        self.by_type = Counter()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                message_id = self.headers.get("webhook-id") or ""
                with receiver.lock:
                    if message_id in receiver.ids:
                        receiver.duplicates += 1
                    else:
                        receiver.ids.add(message_id)
                        with contextlib.suppress(ValueError, KeyError):
                            receiver.by_type[json.loads(body)["eventType"]] += 1
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{HOST}:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------------- seeding


def seed(args, receiver_url: str, minutes: float, chain=None) -> dict:
    from django.db import connection

    from apps.apikeys.services import api_key_create as customer_key_create
    from apps.cards.services.charges import card_save, card_setup_start
    from apps.catalog.demo import seed_catalog
    from apps.catalog.models import PaymentTerm, Plan
    from apps.catalog.services import billable_metric_create, plan_create, price_create, product_create
    from apps.customers.services import customer_create
    from apps.merchants.models import Merchant
    from apps.merchants.services import api_key_create, merchant_create
    from apps.payments.services import adjustment_create, topup_session_create
    from apps.subscriptions.services import subscription_create
    from apps.webhooks.services import webhook_endpoint_create

    live = merchant_create(name="Soak Merchant", contact_email="soak@example.com")
    merchant = Merchant.objects.get(live_merchant=live)
    _, secret = api_key_create(merchant=merchant, name="soak")
    product = product_create(merchant=merchant, name="Soak API")
    calls = billable_metric_create(merchant=merchant, product=product, name="calls", aggregation="COUNT", unit="call")
    tokens = billable_metric_create(merchant=merchant, product=product, name="tokens", aggregation="SUM", unit="token")
    call_price = price_create(
        merchant=merchant,
        billable_metric=calls,
        model="standard",
        payment_term=PaymentTerm.INSTANT,
        currency="USD",
        properties={"unitPrice": str(CALL_PRICE)},
    )
    token_price = price_create(
        merchant=merchant,
        billable_metric=tokens,
        model="standard",
        payment_term=PaymentTerm.IN_ARREARS,
        currency="USD",
        properties={"unitPrice": str(TOKEN_PRICE)},
    )
    plan = plan_create(
        merchant=merchant,
        name="Soak daily",
        code="soak-daily",
        product=product,
        currency="USD",
        billing_interval="daily",
        prices=[call_price, token_price],
    )
    now = datetime.now(UTC)
    customer_ids = []
    # periods come due from minute 2 to two minutes before the end, one after another
    span = max(60.0, (minutes - 4) * 60)
    for i in range(args.customers):
        customer, _ = customer_create(merchant=merchant, email=f"soak-{i:04d}@example.com", name=f"Soak {i}")
        due_in = timedelta(seconds=120 + span * i / max(1, args.customers))
        subscription_create(
            merchant=merchant, customer=customer, plan=plan, started_at=now - timedelta(days=1) + due_in
        )
        adjustment_create(merchant=merchant, customer=customer, amount=FUNDING, currency="USD", reason="soak funding")
        customer_ids.append(str(customer.id))

    seed_catalog(merchant=merchant)
    enterprise = Plan.objects.get(merchant=merchant, code="enterprise")
    enterprise.features = {**enterprise.features, "rateLimit": 100_000, "monthlyQueryLimit": None}
    enterprise.save(update_fields=["features"])
    api_keys = [
        customer_key_create(
            merchant=merchant,
            organization_name=f"Soak Org {i}",
            contact_email=f"soak-org-{i}@example.com",
            tier_code="enterprise",
        ).secret
        for i in range(args.api_keys)
    ]

    import httpx

    card_customers = []
    for i in range(args.card_customers):
        customer, _ = customer_create(merchant=merchant, email=f"soak-card-{i}@example.com", name=f"Card {i}")
        session = topup_session_create(merchant=merchant, customer=customer, amount=Decimal("1"), currency="USD")
        setup = card_setup_start(session_id=session.id)
        confirmed = httpx.post(
            f"{setup.api_base}/v1/setup_intents/{setup.setup_intent_id}/confirm",
            json={
                "key": setup.publishable_key,
                "use_stripe_sdk": True,
                "client_secret": setup.client_secret,
                "payment_method_data": {
                    "type": "card",
                    "card": {"number": GOOD_CARD, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
                    "billing_details": {},
                },
            },
            timeout=10,
        )
        confirmed.raise_for_status()
        card = card_save(customer=customer, setup_intent_id=setup.setup_intent_id)
        card_customers.append({"customer_id": str(customer.id), "card_id": card.id})

    usdc_customers = []
    if chain is not None:
        from eth_account import Account
        from eth_account.messages import encode_defunct

        from apps.settlements.services import wallet_address_add, wallet_address_message
        from billing_platform import sandbox_chain

        for i in range(args.usdc_customers):
            customer, _ = customer_create(merchant=merchant, email=f"soak-usdc-{i}@example.com", name=f"USDC {i}")
            payer = Account.create()
            sandbox_chain.fund_payer(chain, payer.address, usdc=10**15)
            message = wallet_address_message(merchant=merchant, customer=customer, address=payer.address)
            signature = payer.sign_message(encode_defunct(text=message)).signature.hex()
            wallet_address_add(
                merchant=merchant,
                customer=customer,
                address=payer.address,
                signature="0x" + signature.removeprefix("0x"),
            )
            usdc_customers.append({"customer_id": str(customer.id), "payer": payer})

    webhook_endpoint_create(merchant=merchant, url=receiver_url, events=["*"])
    connection.close()
    return {
        "merchant": merchant,
        "secret": secret,
        "calls": str(calls.id),
        "tokens": str(tokens.id),
        "customer_ids": customer_ids,
        "api_keys": api_keys,
        "card_customers": card_customers,
        "usdc_customers": usdc_customers,
        "chain": chain,
    }


# ---------------------------------------------------------------------------- traffic


class Client:
    def __init__(self, port: int, secret: str):
        self.port = port
        self.headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
        self.conn = None

    def call(self, method: str, path: str, body=None) -> tuple[int, dict | None]:
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(HOST, self.port, timeout=REQUEST_TIMEOUT)
            try:
                self.conn.request(method, path, body=None if body is None else json.dumps(body), headers=self.headers)
                response = self.conn.getresponse()
                data = response.read()
                if response.getheader("connection", "").lower() == "close":
                    self.close()
                try:
                    return response.status, json.loads(data) if data else None
                except ValueError:
                    return response.status, None
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == 2:
                    return 0, None
        return 0, None

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Traffic:
    """The load: one thread per kind, each at its own pace, every answer counted."""

    def __init__(self, world: dict, port: int, rate: float, stop: threading.Event):
        self.world = world
        self.port = port
        self.rate = rate
        self.stop = stop
        self.lock = threading.Lock()
        self.statuses = defaultdict(Counter)  # kind -> status -> count
        self.acknowledged: set[str] = set()  # usage idempotency keys answered 201 (or listed successful)
        self.valid = 0
        self.card_attempts = Counter()
        self.usdc_sent: dict[str, int] = {}  # settlement id -> base units transferred
        self.rng = random.Random(19)

    def count(self, kind: str, status: int):
        with self.lock:
            self.statuses[kind][status] += 1

    def pace(self, per_second: float):
        self.stop.wait(1.0 / (per_second * self.rate))

    def usage_body(self, rng, key, *, tokens=False, entitlement=None):
        customer = rng.choice(self.world["customer_ids"])
        metric = self.world["tokens"] if tokens else self.world["calls"]
        body = {
            "idempotencyKey": key,
            "customerId": customer,
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "properties": [{"billableMetricId": metric, "quantity": str(rng.randint(1, 50) if tokens else 1)}],
        }
        if entitlement:
            body["entitlementId"] = entitlement
        return body

    def singles(self):
        rng = random.Random(1)
        client = Client(self.port, self.world["secret"])
        sent = []
        while not self.stop.is_set():
            if sent and rng.random() < 0.1:
                body = rng.choice(sent)  # a replay: the same answer, nothing charged again
            else:
                body = self.usage_body(rng, f"single-{uuid.uuid4().hex}", tokens=rng.random() < 0.3)
                sent = (sent + [body])[-100:]
            status, answer = client.call("POST", "/v0/usage", body)
            self.count("usage", status)
            if status == 201:
                with self.lock:
                    self.acknowledged.add(body["idempotencyKey"])
            self.pace(20)
        client.close()

    def batches(self):
        rng = random.Random(2)
        client = Client(self.port, self.world["secret"])
        while not self.stop.is_set():
            events = [self.usage_body(rng, f"batch-{uuid.uuid4().hex}", tokens=rng.random() < 0.5) for _ in range(50)]
            status, answer = client.call("POST", "/v0/usage/batch", {"events": events})
            self.count("batch", status)
            if status in (201, 207) and answer:
                keys = {item.get("idempotencyKey") for item in answer.get("successful", [])}
                if None in keys:  # the successful list holds the events: their keys by position otherwise
                    failed = {item["index"] for item in answer.get("failed", [])}
                    keys = {e["idempotencyKey"] for i, e in enumerate(events) if i not in failed}
                with self.lock:
                    self.acknowledged |= keys
            self.pace(0.5)
        client.close()

    def verify(self):
        rng = random.Random(3)
        client = Client(self.port, self.world["secret"])
        while not self.stop.is_set():
            status, answer = client.call("POST", "/v0/apiKeys/verify", {"apiKey": rng.choice(self.world["api_keys"])})
            self.count("verify", status)
            if status == 200 and answer and answer.get("code") == "VALID":
                with self.lock:
                    self.valid += 1
            self.pace(30)
        client.close()

    def entitlements(self):
        rng = random.Random(4)
        client = Client(self.port, self.world["secret"])
        while not self.stop.is_set():
            customer = rng.choice(self.world["customer_ids"])
            status, hold = client.call(
                "POST",
                "/v0/entitlements",
                {
                    "customerId": customer,
                    "entitlementData": [{"billableMetricId": self.world["calls"], "quantity": "5"}],
                    "expiresIn": 600,
                },
            )
            self.count("entitlement", status)
            if status == 201 and hold:
                body = self.usage_body(rng, f"held-{uuid.uuid4().hex}", entitlement=hold["id"])
                body["customerId"] = customer
                used, _ = client.call("POST", "/v0/usage", body)
                self.count("usage (held)", used)
                if used == 201:
                    with self.lock:
                        self.acknowledged.add(body["idempotencyKey"])
                released, _ = client.call("DELETE", f"/v0/entitlements/{hold['id']}")
                self.count("entitlement release", released)
            self.pace(2)
        client.close()

    def topups(self):
        rng = random.Random(5)
        client = Client(self.port, self.world["secret"])
        while not self.stop.is_set():
            customer = rng.choice(self.world["customer_ids"])
            status, session = client.call(
                "POST", f"/v0/customers/{customer}/topups", {"amount": "5", "currency": "USD"}
            )
            self.count("top-up", status)
            if status == 201 and session:
                paid, _ = client.call("POST", f"/v0/testHelpers/paymentSessions/{session['id']}/pay")
                self.count("top-up paid (test)", paid)
            self.pace(0.5)
        client.close()

    def cards(self):
        """A top-up session by the API, paid with the customer's saved card at localstripe."""
        from django.db import connection

        from apps.cards.models import SavedCard
        from apps.cards.services.charges import card_charge

        rng = random.Random(6)
        client = Client(self.port, self.world["secret"])
        try:
            while not self.stop.is_set() and self.world["card_customers"]:
                chosen = rng.choice(self.world["card_customers"])
                status, session = client.call(
                    "POST", f"/v0/customers/{chosen['customer_id']}/topups", {"amount": "2.50", "currency": "USD"}
                )
                self.count("top-up (card)", status)
                if status == 201 and session:
                    try:
                        attempt = card_charge(
                            session_id=session["id"], card=SavedCard.objects.get(pk=chosen["card_id"])
                        )
                        outcome = attempt.status
                    except Exception as error:  # noqa: BLE001 -- counted and reported
                        outcome = f"error {error.__class__.__name__}"
                    with self.lock:
                        self.card_attempts[outcome] += 1
                self.pace(0.2)
        finally:
            client.close()
            connection.close()

    def usdc(self):
        """A USDC top-up session by the API, paid by a real transfer of the test USDC on the sandbox
        chain and claimed with POST /v0/settlements; two blocks mined after each, so that beat's
        re-check confirms it."""
        chain = self.world["chain"]
        if chain is None or not self.world["usdc_customers"]:
            return
        rng = random.Random(7)
        client = Client(self.port, self.world["secret"])
        w3 = chain.web3()
        token = w3.eth.contract(address=chain.token, abi=chain.abi)
        try:
            while not self.stop.is_set():
                chosen = rng.choice(self.world["usdc_customers"])
                payer = chosen["payer"]
                status, session = client.call(
                    "POST", f"/v0/customers/{chosen['customer_id']}/topups", {"amount": "3.25", "currency": "USDC"}
                )
                self.count("top-up (USDC)", status)
                block = (session or {}).get("usdc") if status == 201 else None
                if block:
                    value = int(block["amount"])
                    tx = token.functions.transfer(block["recipient"], value).build_transaction(
                        {
                            "from": payer.address,
                            "nonce": w3.eth.get_transaction_count(payer.address),
                            "chainId": chain.chain_id,
                            "gasPrice": w3.eth.gas_price,
                        }
                    )
                    tx_hash = w3.eth.send_raw_transaction(payer.sign_transaction(tx).raw_transaction)
                    w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
                    posted, settlement = client.call(
                        "POST",
                        "/v0/settlements",
                        {
                            "paymentSessionId": session["id"],
                            "chain": block["chain"],
                            "transactionHash": "0x" + tx_hash.hex().removeprefix("0x"),
                            "referenceHash": block["referenceHash"],
                            "payerAddress": payer.address,
                            "merchantAddress": block["recipient"],
                        },
                    )
                    self.count("settlement", posted)
                    if posted in (200, 201, 202) and settlement:
                        with self.lock:
                            self.usdc_sent[settlement["id"]] = value
                    for _ in range(2):
                        w3.provider.make_request("evm_mine", [])
                self.pace(0.2)
        finally:
            client.close()

    def threads(self) -> list[threading.Thread]:
        kinds = (self.singles, self.batches, self.verify, self.entitlements, self.topups, self.cards, self.usdc)
        return [threading.Thread(target=kind, name=kind.__name__, daemon=True) for kind in kinds]


# ---------------------------------------------------------------------------- checks


def final_counts(world: dict, traffic: Traffic, receiver: Receiver) -> dict:
    from apps.payments.models import Payment
    from apps.settlements.models import Settlement
    from apps.usage.models import UsageEvent
    from apps.webhooks.models import Delivery, Event

    merchant = world["merchant"]
    events = UsageEvent.objects.filter(merchant=merchant)
    stored_keys = set(events.exclude(idempotency_key__startswith="verify:").values_list("idempotency_key", flat=True))
    counted = events.filter(idempotency_key__startswith="verify:").count()  # one event per VALID call
    deliveries = Counter(Delivery.objects.values_list("status", flat=True))
    return {
        "usageAcknowledged": len(traffic.acknowledged),
        "usageStored": len(stored_keys),
        "acknowledgedNotStored": len(traffic.acknowledged - stored_keys),
        "storedNotAcknowledged": len(stored_keys - traffic.acknowledged),
        "verifyValid": traffic.valid,
        "verifyCounted": counted,
        "cardAttempts": dict(traffic.card_attempts),
        "cardPayments": Payment.objects.filter(source="card").count(),
        "cardPaymentsDistinct": Payment.objects.filter(source="card").values("external_reference").distinct().count(),
        "settlementsPosted": len(traffic.usdc_sent),
        "settlements": dict(Counter(Settlement.objects.values_list("status", flat=True))),
        "usdcSentBaseUnits": sum(traffic.usdc_sent.values()),
        "usdcConfirmedBaseUnits": int(
            sum(Settlement.objects.filter(status="confirmed").values_list("amount_base_units", flat=True), Decimal(0))
        ),
        "chainPayments": Payment.objects.filter(source="usdc").count(),
        "chainPaymentsDistinct": Payment.objects.filter(source="usdc").values("external_reference").distinct().count(),
        "events": Event.objects.count(),
        "deliveries": dict(deliveries),
        "received": len(receiver.ids),
        "receivedDuplicates": receiver.duplicates,
    }


def wait_drained(world, traffic, timeout: float = 120) -> None:
    """Until beat's drain has turned every VALID verify into usage (or the timeout)."""
    from django.db import connection

    from apps.settlements.models import Settlement
    from apps.usage.models import UsageEvent

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counted = UsageEvent.objects.filter(merchant=world["merchant"], idempotency_key__startswith="verify:").count()
        pending = Settlement.objects.filter(status="pending").count()
        connection.close()
        if counted >= traffic.valid and not pending:
            return
        if pending and world["chain"] is not None:
            world["chain"].web3().provider.make_request("evm_mine", [])
        time.sleep(2)


def growth(samples: list[dict], role: str, from_minute: int) -> float | None:
    if len(samples) <= from_minute:
        return None
    start = samples[from_minute]["memory"][role]["total"]
    end = samples[-1]["memory"][role]["total"]
    return round(100.0 * (end - start) / start, 1) if start else None


def print_report(report: dict) -> None:
    samples = report["samples"]
    roles = list(samples[0]["memory"]) if samples else []
    print(
        f"\nSoak {report['minutes']} min, {report['machine']['nproc']} cores, load before {report['machine']['loadavgBefore']}"
    )
    print("\nResident memory (MiB) by minute:")
    print("  min  load1  " + "  ".join(f"{role:>11}" for role in roles))
    for sample in samples:
        row = "  ".join(f"{sample['memory'][role]['total'] / 1024:>11.1f}" for role in roles)
        print(f"  {sample['minute']:>3}  {sample['load1']:>5.2f}  {row}")
    print("  growth from minute 5 to the end: " + ", ".join(f"{r} {report['growth'].get(r)}%" for r in roles))
    print("\nRequests by kind and status:")
    for kind, statuses in report["statuses"].items():
        print(f"  {kind:<22} " + ", ".join(f"{status}: {count}" for status, count in sorted(statuses.items())))
    print("\nCounts:")
    for name, value in report["counts"].items():
        print(f"  {name:<24} {value}")
    print(f"\nledger_check: {report['ledgerProblems'] or 'clean'}")
    print(f"usage_check: {report['usageProblems'] or 'clean'}")
    print(f"invoices by status: {report['invoices']}")
    print(f"load average after: {report['machine']['loadavgAfter']}")
    print(f"verdict: {'OK' if report['ok'] else 'FAILED: ' + '; '.join(report['failures'])}")


def main(argv=None) -> int:
    args = parse_args(argv)
    loadavg_before = os.getloadavg()

    from billing_platform import devservers, localstripe_server

    workdir = Path(tempfile.mkdtemp(prefix="billing-soak-"))
    with contextlib.redirect_stdout(sys.stderr):  # (an embedded Redis, when REDIS_URL does not answer, in workdir)
        base_env = devservers.prepare_environment(redis_dir=workdir / "redis")

    def interrupted(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    # (after devservers, which installs its own handlers): Ctrl-C or SIGTERM still stop what started here
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupted)
    server_url = base_env["DATABASE_URL"]
    database_url = ingest.recreate_database(server_url)
    env = ingest.app_environment(base_env, database_url)
    stripe = localstripe_server.start(
        port=free_port(HOST), store=workdir / "localstripe.pickle", log_path=workdir / "localstripe.log"
    )
    from billing_platform import sandbox_chain

    chain = None
    if args.usdc_customers:
        try:
            chain = sandbox_chain.setup_sandbox_chain(log_path=workdir / "anvil.log", run_dir=workdir)
        except (sandbox_chain.ChainUnavailable, OSError) as error:
            log(f"no USDC traffic: the sandbox chain did not start ({error})")
    webhook_secret = f"whsec_{uuid.uuid4().hex}"
    port = free_port(HOST)
    env.update(
        {
            "USAGE_GRACE_PERIOD_SECONDS": "0",
            "PERIOD_CLOSE_SETTLE_SECONDS": "0",
            "PERIOD_CLOSE_INTERVAL_SECONDS": "5",
            "CELERY_BEAT_SCHEDULE_FILENAME": str(workdir / "celerybeat-schedule"),
            "WEB_THREADS": str(args.threads),
            "STRIPE_TEST_SECRET_KEY": "sk_test_localstripe",
            "STRIPE_TEST_PUBLISHABLE_KEY": "pk_test_localstripe",
            "STRIPE_TEST_WEBHOOK_SECRET": webhook_secret,
            "STRIPE_TEST_API_BASE": stripe.url,
            "PUBLIC_BASE_URL": f"http://{HOST}:{port}",
        }
    )
    if chain is not None:
        env.update(
            {
                "USDC_TEST_CHAINS": json.dumps([chain.chain_config(required_confirmations=2)]),
                "SETTLEMENT_RECHECK_SECONDS": "1",
                "SETTLEMENT_RECHECK_INTERVAL_SECONDS": "1",
            }
        )
    os.environ.update({k: v for k, v in env.items() if k != "PATH"})
    log(f"database {ingest.BENCH_DATABASE} created; logs in {workdir}")
    receiver = Receiver()
    web = worker = beat = None
    stop = threading.Event()
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], env=env, cwd=BASE_DIR, check=True
        )
        import django

        django.setup()
        from django.db import connection

        from apps.invoices.models import Invoice
        from apps.ledger.selectors import ledger_check
        from apps.usage.selectors import usage_check
        from billing_platform.celery import app as celery_app

        celery_app.control.purge()
        world = seed(args, receiver.url, args.minutes, chain)
        log(f"seeded: {len(world['customer_ids'])} customers, {len(world['api_keys'])} API keys, cards")
        stripe.register_webhook(name="soak", url=f"http://{HOST}:{port}/webhooks/stripe", secret=webhook_secret)

        run_id = uuid.uuid4().hex[:8]
        web_args = types.SimpleNamespace(worker_class="gthread", threads=args.threads, workers=args.web_workers)
        web = ingest.start_gunicorn(env, web_args, port, workdir / "gunicorn.log")
        worker = start_celery("worker", env, types.SimpleNamespace(workers=2), workdir, run_id)
        beat = start_celery("beat", env, None, workdir, run_id)
        ingest.wait_healthy(web, port, args.web_workers, timeout=60)
        wait_for_log(worker, workdir / "worker.log", " ready.", timeout=60)
        wait_for_log(beat, workdir / "beat.log", "beat: Starting", timeout=60)
        roots = {
            "gunicorn": web.pid,
            "worker": worker.pid,
            "beat": beat.pid,
            "localstripe": stripe.process.pid,
            "soak": os.getpid(),
        }
        if chain is not None:
            roots["anvil"] = chain.process.pid
        log(
            f"gunicorn {web.pid} on {HOST}:{port}, worker {worker.pid}, beat {beat.pid}, localstripe {stripe.process.pid}"
        )

        traffic = Traffic(world, port, args.rate, stop)
        threads = traffic.threads()
        started = time.monotonic()
        for thread in threads:
            thread.start()
        samples = []
        end = started + args.minutes * 60
        minute = 0
        while True:
            samples.append({"minute": minute, "load1": round(os.getloadavg()[0], 2), "memory": sample_memory(roots)})
            totals = ", ".join(f"{role} {v['total'] / 1024:.0f}" for role, v in samples[-1]["memory"].items())
            log(f"minute {minute}: load {samples[-1]['load1']}, RSS MiB {totals}")
            minute += 1
            next_at = started + minute * 60
            if next_at > end + 1:
                break
            time.sleep(max(0.0, next_at - time.monotonic()))
            for name, process in (("gunicorn", web), ("worker", worker), ("beat", beat)):
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with {process.returncode}; see {workdir}")
        stop.set()
        for thread in threads:
            thread.join(REQUEST_TIMEOUT * 3)
        log("traffic stopped; waiting for the drain, the deliveries and the card webhooks to settle")
        wait_drained(world, traffic)
        time.sleep(15)

        ledger_problems = ledger_check()
        usage_problems = usage_check()
        counts = final_counts(world, traffic, receiver)
        invoices = dict(Counter(Invoice.objects.filter(merchant=world["merchant"]).values_list("status", flat=True)))
        connection.close()
        failures = []
        if counts["acknowledgedNotStored"]:
            failures.append(f"{counts['acknowledgedNotStored']} acknowledged usage events not stored")
        if counts["storedNotAcknowledged"]:
            failures.append(f"{counts['storedNotAcknowledged']} stored usage events never acknowledged")
        if counts["verifyCounted"] != counts["verifyValid"]:
            failures.append(f"{counts['verifyValid']} VALID verifies but {counts['verifyCounted']} counted")
        if counts["cardPayments"] != counts["cardPaymentsDistinct"]:
            failures.append("a card payment credited twice")
        if counts["chainPayments"] != counts["chainPaymentsDistinct"]:
            failures.append("a USDC transfer credited twice")
        if counts["settlements"].get("confirmed", 0) != counts["settlementsPosted"]:
            failures.append(f"{counts['settlementsPosted']} settlements posted, {counts['settlements']} stored")
        if counts["usdcConfirmedBaseUnits"] != counts["usdcSentBaseUnits"]:
            failures.append("USDC confirmed differs from USDC transferred")
        if counts["receivedDuplicates"]:
            failures.append(f"{counts['receivedDuplicates']} webhook deliveries received twice")
        if ledger_problems:
            failures.append("ledger_check")
        if usage_problems:
            failures.append("usage_check")
        report = {
            "minutes": args.minutes,
            "machine": {
                "nproc": os.cpu_count(),
                "python": platform.python_version(),
                "loadavgBefore": [round(x, 2) for x in loadavg_before],
                "loadavgAfter": [round(x, 2) for x in os.getloadavg()],
            },
            "samples": samples,
            "growth": {role: growth(samples, role, 5) for role in roots},
            "statuses": {kind: dict(statuses) for kind, statuses in traffic.statuses.items()},
            "counts": counts,
            "invoices": invoices,
            "ledgerProblems": ledger_problems[:20],
            "usageProblems": usage_problems[:20],
            "failures": failures,
            "ok": not failures,
        }
        if args.json:
            print(json.dumps(report, indent=2, default=str))
        else:
            print_report(report)
        return 0 if report["ok"] else 1
    finally:
        stop.set()
        for process in (beat, worker):
            stop_process(process)
        if web is not None:
            ingest.stop_gunicorn(web)
        stripe.stop()
        if chain is not None:
            chain.stop()
        receiver.close()
        if not args.keep_database:
            with contextlib.suppress(Exception):
                from django.db import connections

                connections.close_all()
            ingest.drop_database(server_url)
        log(f"stopped; logs kept in {workdir}")


if __name__ == "__main__":
    sys.exit(main())
