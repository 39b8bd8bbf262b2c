"""Outbound-webhook benchmark: events published, relayed and delivered to a local receiver.

    .venv/bin/python bench/webhooks.py [--events N] [--merchants M] [--batch B] [--floor-requests F]

It uses DATABASE_URL / REDIS_URL when they answer, else embedded servers
(billing_platform.devservers), creates a fresh database `billing_bench_webhooks` (dropped
first), migrates it, and seeds M merchants with one endpoint each (all event types) on a
receiver on 127.0.0.1 that answers 204 at once. Then, in this process, one thread publishes
N events (spread over the merchants, B per transaction, as the apps publish them) while a
relay-and-dispatch loop runs beside it, as the Celery worker's sweep does. Printed:

- floor: POSTs per second to the same receiver from the same client setup (no database):
  what HTTP on this machine costs alone, the ceiling of any delivery rate;
- delivered per second (first publish to last receipt), and delivery lag (receipt time less
  the event's time) p50 / p99 / max.

It asserts nothing about timing; it checks that every event arrived once with a valid signature.
"""

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
sys.path.insert(0, str(BASE_DIR / "bench"))

import ingest  # noqa: E402 (after the path)

ingest.BENCH_DATABASE = "billing_bench_webhooks"


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


class Receiver:
    def __init__(self):
        self.received: dict[str, float] = {}
        self.duplicates = 0
        self.bodies: list[tuple[dict, bytes]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                at = time.time()
                message_id = self.headers.get("webhook-id") or ""
                with receiver.lock:
                    if message_id in receiver.received:
                        receiver.duplicates += 1
                    elif message_id:
                        receiver.received[message_id] = at
                        if len(receiver.bodies) < 200:
                            receiver.bodies.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def floor(url: str, requests: int, threads: int) -> float:
    import httpx

    def run(count):
        with httpx.Client(timeout=15, trust_env=False) as client:
            for _ in range(count):
                client.post(url, content=b"{}", headers={"webhook-id": ""})

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(run, [requests // threads] * threads))
    return requests / (time.monotonic() - started)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--merchants", type=int, default=10)
    parser.add_argument("--batch", type=int, default=20, help="events per publishing transaction")
    parser.add_argument("--floor-requests", type=int, default=3000)
    args = parser.parse_args(argv)

    from billing_platform import devservers

    with contextlib.redirect_stdout(sys.stderr):
        base_env = devservers.prepare_environment()
    server_url = base_env["DATABASE_URL"]
    database_url = ingest.recreate_database(server_url)
    env = ingest.app_environment(base_env, database_url)
    env["WEBHOOK_ALLOW_PRIVATE_URLS"] = "true"
    env["WEBHOOK_WAKE_RELAY"] = "false"  # the loop below relays, as the worker's sweep would
    os.environ.update({k: v for k, v in env.items() if k != "PATH"})
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], env=env, cwd=BASE_DIR, check=True
        )
        import django

        django.setup()
        from django.db import connection, transaction
        from standardwebhooks.webhooks import Webhook

        from apps.merchants.services import merchant_create
        from apps.webhooks.delivery import dispatch_due, relay_events
        from apps.webhooks.models import Delivery, Event
        from apps.webhooks.outbox import publish
        from apps.webhooks.services import webhook_endpoint_create

        receiver = Receiver()
        floor_rate = floor(receiver.url, args.floor_requests, 16)
        receiver.received.clear()
        log(f"floor: {floor_rate:,.0f} POST/s to the receiver")

        merchants, secrets = [], {}
        for index in range(args.merchants):
            merchant = merchant_create(name=f"Bench {index}", contact_email=f"bench{index}@example.com")
            endpoint = webhook_endpoint_create(merchant=merchant, url=receiver.url, events=["*"])
            merchants.append(merchant)
            secrets[str(merchant.pk)] = endpoint.secret
        run = uuid.uuid4().hex[:8]
        done_publishing = threading.Event()

        def publisher():
            try:
                for start in range(0, args.events, args.batch):
                    with transaction.atomic():
                        for i in range(start, min(args.events, start + args.batch)):
                            merchant = merchants[i % len(merchants)]
                            publish(
                                merchant=merchant,
                                type="customer.created",
                                data={"object": "customer", "id": f"{run}-{i}", "merchantId": str(merchant.pk)},
                            )
            finally:
                done_publishing.set()
                connection.close()

        def pump():
            try:
                while True:
                    relayed = relay_events()
                    sent = dispatch_due()
                    idle = done_publishing.is_set() and not relayed and not sent
                    if (
                        idle
                        and not Delivery.objects.filter(status="pending").exists()
                        and not Event.objects.filter(relayed_at__isnull=True).exists()
                    ):
                        return
            finally:
                connection.close()

        started = time.time()
        threads = [threading.Thread(target=publisher), threading.Thread(target=pump)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        finished = max(receiver.received.values(), default=time.time())

        created = {str(pk): at for pk, at in Event.objects.values_list("id", "created_at")}
        lags = [
            (receiver.received[pk] - at.timestamp()) * 1000 for pk, at in created.items() if pk in receiver.received
        ]
        verified = 0
        for headers, body in receiver.bodies:
            import json

            merchant_id = json.loads(body)["data"]["merchantId"]
            Webhook(secrets[merchant_id]).verify(body, headers)
            verified += 1
        rate = len(receiver.received) / (finished - started)
        print(f"webhooks benchmark ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs)")
        print(f"  floor (POST to the receiver, no database)  {floor_rate:10,.0f} req/s")
        print(f"  events published                           {len(created):10,d}  ({args.merchants} endpoints)")
        print(
            f"  delivered once                             {len(receiver.received):10,d}  duplicates {receiver.duplicates}"
        )
        print(f"  delivered per second                       {rate:10,.0f}")
        print(
            f"  lag p50 / p99 / max (ms)                   {statistics.median(lags):10,.0f} / "
            f"{percentile(lags, 0.99):,.0f} / {max(lags):,.0f}"
        )
        print(f"  signatures verified (sample)               {verified:10,d}")
        return 0 if len(receiver.received) == len(created) else 1
    finally:
        with contextlib.suppress(Exception):
            from django.db import connection

            connection.close()
        ingest.drop_database(server_url)


if __name__ == "__main__":
    sys.exit(main())
