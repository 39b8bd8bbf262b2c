"""Period-close benchmark (issue 13): every subscription's period closed by the real worker.

    .venv/bin/python bench/invoicing.py [--subscriptions N] [--events N] [--workers W]
        [--single-rate-seconds S] [--single-concurrency C] [--duration-cap S] [--json]
    .venv/bin/python bench/invoicing.py --subscriptions 300 --events 30000 --profile 100

It uses DATABASE_URL / REDIS_URL when they answer, else embedded servers
(billing_platform.devservers), creates a fresh database `billing_bench_invoicing` on that
PostgreSQL server (dropped first and at the end), migrates it and seeds, untimed:

- one merchant, two metrics (calls: COUNT, tokens: SUM) and 4 daily plans through the catalog
  services, each pricing calls instant and tokens in_arrears, with standard, graduated and
  package prices on both terms (the fourth plan adds an in_arrears fee of 1.00 USDC), in USDC;
- N customers, each subscribed to one plan (in turn): the first 8 through customer_create and
  subscription_create, the others as bulk rows of the same shape (customer, wallet with its
  accounts and balance rows, active subscription, first billing period; checked against the
  service-made ones; their outbox events left out). One in 25 reports no usage (it is invoiced
  only where its plan has a fee);
- the usage events, half calls (instant: priced by the engine against the period's running
  total with the hot path's own functions), half tokens (in_arrears), spread over the other
  subscriptions and over their first period, written with COPY from --seed-processes
  processes, with what the hot path writes beside them: per subscription one usage ledger
  transaction (through the ledger service, as a batch of its events would post it) and the
  period's running totals;
- every wallet credited what its usage and its invoice cost, plus 2 USDC: adjustment_create for
  the first 8, the same ledger transaction and Adjustment row in bulk for the others;
- VACUUM ANALYZE, as autovacuum would have run on a month of usage.

Then gunicorn (as bench/ingest.py starts it), a Celery worker (--workers processes) and Celery
beat run with USAGE_GRACE_PERIOD_SECONDS=0, PERIOD_CLOSE_SETTLE_SECONDS=0 and
PERIOD_CLOSE_INTERVAL_SECONDS=1. The subscriptions' first period is moved so that it ends a few
seconds later; before its end, GET /healthz (the floor) and single usage events (POST /v0/usage,
quantity 1 of calls) for --single-rate-seconds; from its end, single events again while beat and
the worker close every period. Printed: seconds from the period's end until every period is
closed (its invoice finalized and collected from the wallet), the invoices by status and the
sum of their totals against what the seed expects, the single-event rate (p50/p99) without and
during the close and their ratio, where the CPU went, what the database backends waited on, the
worker's tasks, ledger_check() and usage_check(). Nothing about timing is asserted; the exit
status is 1 when an invoice or a check is not as expected.

--profile N: no servers; at the period's end, closes N subscriptions one after another in this
process: half timed alone (statements, commits and Python per close), half under cProfile (where
a close's time goes, by step of the close).

Target (issue 13, 2 cores): the close of 10,000 subscriptions with 1,000,000 events under 60 s,
with single events at no less than half their rate without a close.
"""

import argparse
import contextlib
import cProfile
import io
import json
import multiprocessing
import os
import platform
import pstats
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import types
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from urllib.parse import urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
sys.path.insert(0, str(BASE_DIR / "bench"))

import ingest  # noqa: E402 (after the path)

from billing_platform.devservers import free_port, postgres_conninfo  # noqa: E402 (after the path)

# BENCH_DATABASE in the environment: another name, so that two people can bench on one server.
BENCH_DATABASE = os.environ.get("BENCH_DATABASE", "billing_bench_invoicing")
ingest.BENCH_DATABASE = BENCH_DATABASE  # its create/drop and CPU accounting name this database

HOST = ingest.HOST
CURRENCY = "USDC"
TARGET_CLOSE_SECONDS = 60
TARGET_SINGLE_RATIO = 0.5
# One subscription in IDLE_EVERY reports no usage (invoiced only where its plan has a fee).
IDLE_EVERY = 25
FUNDING_MARGIN = Decimal("2")
FEE = Decimal("1.00")
TOKENS_MAX = 2000
# The seeded usage lies in [seed time - 11 h, seed time - 1 h]; the daily period is moved later
# to end a few seconds after the servers are up (its start stays before the first event).
USAGE_FROM, USAGE_TO = timedelta(hours=11), timedelta(hours=1)
FIRST_START = timedelta(hours=12)
DAY = timedelta(days=1)
# Subscriptions made through the services (two per plan); the rest are bulk rows of their shape.
SERVICE_MADE = 8
ROWS_PER_COPY = 20_000

# (code, the calls price (instant), the tokens price (in_arrears), an in_arrears fee)
PLANS = (
    ("standard", ("standard", {"unitPrice": "0.0002"}), ("standard", {"unitPrice": "0.000002"}), None),
    (
        "graduated",
        ("graduated", {"tiers": [{"upTo": "40", "unitPrice": "0.0004"}, {"upTo": None, "unitPrice": "0.0002"}]}),
        ("package", {"packageSize": 1000, "packagePrice": "0.0015"}),
        None,
    ),
    (
        "package",
        ("package", {"packageSize": 10, "packagePrice": "0.0015"}),
        (
            "graduated",
            {"tiers": [{"upTo": "50000", "unitPrice": "0.000003"}, {"upTo": None, "unitPrice": "0.0000015"}]},
        ),
        None,
    ),
    (
        "fee",
        (
            "graduated",
            {
                "tiers": [
                    {"upTo": "20", "unitPrice": "0.0005"},
                    {"upTo": None, "unitPrice": "0.00025", "flatFee": "0.001"},
                ]
            },
        ),
        ("standard", {"unitPrice": "0.0000025"}),
        FEE,
    ),
)


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- arguments


def parse_args(argv=None):
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscriptions", type=int, default=10_000, help="subscriptions (default 10000)")
    parser.add_argument("--events", type=int, default=1_000_000, help="seeded usage events (default 1000000)")
    parser.add_argument(
        "--workers",
        type=int,
        default=cores,
        help=f"Celery worker processes (--concurrency; default one per core, {cores})",
    )
    parser.add_argument(
        "--web-workers", type=int, default=cores, help=f"gunicorn processes (default one per core, {cores})"
    )
    parser.add_argument(
        "--threads", type=int, default=8, help="threads running Django per gunicorn process (default 8)"
    )
    parser.add_argument(
        "--single-rate-seconds",
        type=float,
        default=10.0,
        help="seconds of single events before the period ends: the rate without a close (default 10)",
    )
    parser.add_argument(
        "--single-concurrency",
        type=int,
        default=16,
        help="client threads sending single events, before and during the close (default 16; 0: none)",
    )
    parser.add_argument(
        "--floor-requests",
        type=int,
        default=3000,
        help="GET /healthz requests first: the server's floor (default 3000)",
    )
    parser.add_argument(
        "--seed-processes", type=int, default=cores, help=f"processes writing usage rows (default {cores})"
    )
    parser.add_argument(
        "--duration-cap",
        type=float,
        default=1800.0,
        help="cap on the whole run's wall seconds, seeding included; the close gets what is left (default 1800)",
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="no servers: close N subscriptions in this process under cProfile and print where the time went",
    )
    parser.add_argument("--keep-database", action="store_true", help=f"leave {BENCH_DATABASE} in place at the end")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    args = parser.parse_args(argv)
    limits = {
        "subscriptions": (1, 1_000_000),
        "events": (0, 100_000_000),
        "workers": (1, 64),
        "web_workers": (1, 64),
        "threads": (1, 64),
        "single_concurrency": (0, 256),
        "floor_requests": (0, 1_000_000),
        "seed_processes": (1, 32),
        "profile": (0, 1_000_000),
    }
    ingest.check_limits(parser, args, limits)
    if not 1 <= args.single_rate_seconds <= 600:
        parser.error("--single-rate-seconds must be between 1 and 600")
    if not 30 <= args.duration_cap <= 24 * 3600:
        parser.error("--duration-cap must be between 30 and 86400 seconds")
    return args


# ---------------------------------------------------------------------------- seeding: catalog and subscriptions


def seed_catalog() -> dict:
    """The merchant, its live key, the two metrics and the four plans, through the services."""
    from apps.catalog.models import PaymentTerm
    from apps.catalog.services import billable_metric_create, plan_create, price_create, product_create
    from apps.merchants.services import api_key_create, merchant_create

    merchant = merchant_create(name="Bench Invoicing", contact_email="bench-invoicing@example.com")
    _, secret = api_key_create(merchant=merchant, name="bench")
    product = product_create(merchant=merchant, name="Bench inference API")
    calls = billable_metric_create(merchant=merchant, product=product, name="calls", aggregation="COUNT", unit="call")
    tokens = billable_metric_create(merchant=merchant, product=product, name="tokens", aggregation="SUM", unit="token")
    plans = []
    for code, (calls_model, calls_props), (tokens_model, tokens_props), fee in PLANS:
        calls_price = price_create(
            merchant=merchant,
            billable_metric=calls,
            model=calls_model,
            payment_term=PaymentTerm.INSTANT,
            currency=CURRENCY,
            properties=calls_props,
        )
        tokens_price = price_create(
            merchant=merchant,
            billable_metric=tokens,
            model=tokens_model,
            payment_term=PaymentTerm.IN_ARREARS,
            currency=CURRENCY,
            properties=tokens_props,
        )
        prices = [calls_price, tokens_price]
        if fee is not None:
            prices.append(
                price_create(
                    merchant=merchant,
                    billable_metric=None,
                    payment_term=PaymentTerm.IN_ARREARS,
                    currency=CURRENCY,
                    amount=fee,
                    invoice_display_name="Platform fee",
                )
            )
        plan = plan_create(
            merchant=merchant,
            name=f"Bench {code}",
            code=code,
            product=product,
            currency=CURRENCY,
            billing_interval="daily",
            prices=prices,
        )
        plans.append({"plan": plan, "code": code, "calls_price": calls_price, "tokens_price": tokens_price, "fee": fee})
    return {"merchant": merchant, "secret": secret, "calls": calls, "tokens": tokens, "plans": plans}


def seed_subscriptions(world: dict, count: int, started_at: datetime) -> list[dict]:
    """`count` customers, each subscribed (active at once) to plan index % 4. The first
    SERVICE_MADE through the services (customer_create, subscription_create); the others in
    bulk, row for row as those services write them (customer, wallet with its two accounts and
    their balance rows, subscription, first billing period), without their outbox events.
    `compare_shapes` then checks the bulk rows against the service-made ones."""
    from django.db import transaction
    from django.utils import timezone

    from apps.customers.models import Customer
    from apps.customers.services import customer_create
    from apps.ledger.models import Account, Balance, Wallet
    from apps.subscriptions.models import BillingPeriod, Subscription
    from apps.subscriptions.services import subscription_create

    merchant, plans = world["merchant"], world["plans"]
    rows = []

    def row(i, subscription):
        return {
            "index": i,
            "subscription_id": subscription.id,
            "customer_id": subscription.customer_id,
            "wallet_id": subscription.wallet_id,
            "plan_index": i % len(plans),
            "service_made": i < SERVICE_MADE,
        }

    for i in range(min(SERVICE_MADE, count)):
        customer, _ = customer_create(merchant=merchant, email=f"bench-{i:07d}@example.com", name=f"Bench customer {i}")
        subscription = subscription_create(
            merchant=merchant, customer=customer, plan=plans[i % len(plans)]["plan"], started_at=started_at
        )
        rows.append(row(i, subscription))
    indexes = range(SERVICE_MADE, count)
    if not indexes:
        return rows
    now = timezone.now()
    with transaction.atomic():
        customers = Customer.objects.bulk_create(
            [
                Customer(merchant=merchant, email=f"bench-{i:07d}@example.com", name=f"Bench customer {i}")
                for i in indexes
            ],
            batch_size=2000,
        )
        accounts = [
            Account(
                merchant=merchant,
                kind=kind,
                currency=CURRENCY,
                customer=customer,
                source="",
                livemode=merchant.livemode,
                shard_count=1,
            )
            for customer in customers
            for kind in (Account.Kind.WALLET_AVAILABLE, Account.Kind.WALLET_HELD)
        ]
        Account.objects.bulk_create(accounts, batch_size=2000)
        Balance.objects.bulk_create([Balance(account=account, shard=0) for account in accounts], batch_size=2000)
        wallets = Wallet.objects.bulk_create(
            [
                Wallet(
                    merchant=merchant,
                    customer=customer,
                    currency=CURRENCY,
                    available_account=accounts[2 * n],
                    held_account=accounts[2 * n + 1],
                )
                for n, customer in enumerate(customers)
            ],
            batch_size=2000,
        )
        subscriptions = Subscription.objects.bulk_create(
            [
                Subscription(
                    merchant=merchant,
                    customer=customer,
                    plan=plans[i % len(plans)]["plan"],
                    wallet=wallet,
                    name=plans[i % len(plans)]["plan"].name,
                    status=Subscription.Status.ACTIVE,
                    started_at=started_at,
                    period_anchor=started_at,
                    activated_at=now,
                )
                for i, customer, wallet in zip(indexes, customers, wallets, strict=True)
            ],
            batch_size=2000,
        )
        BillingPeriod.objects.bulk_create(
            [
                BillingPeriod(
                    merchant=merchant,
                    subscription=subscription,
                    plan_id=subscription.plan_id,
                    start=started_at,
                    end=started_at + DAY,
                    cycle_start=started_at,
                    cycle_end=started_at + DAY,
                )
                for subscription in subscriptions
            ],
            batch_size=2000,
        )
    rows.extend(row(i, subscription) for i, subscription in zip(indexes, subscriptions, strict=True))
    return rows


def compare_shapes(subscriptions: list[dict]) -> list[str]:
    """Fields in which a bulk-made row differs from a service-made one of the same plan (ids,
    times, names and the keys between them aside): empty when the bulk rows are as the
    services write them."""
    from apps.ledger.models import Account, Balance, Wallet
    from apps.subscriptions.models import BillingPeriod, Subscription

    service = {s["plan_index"]: s for s in subscriptions if s["service_made"]}
    bulk = {}
    for s in subscriptions:
        if not s["service_made"]:
            bulk.setdefault(s["plan_index"], s)
    skip = {"id", "created_at", "updated_at", "customer", "wallet", "subscription", "activated_at", "account"}
    skip |= {"available_account", "held_account", "email", "name", "amount"}  # (a balance: what was funded)
    differences = []

    def values(instance):
        return {
            f.name: getattr(instance, f.attname)
            for f in instance._meta.concrete_fields
            if f.name not in skip and not (f.name == "name" and isinstance(instance, Subscription))
        }

    for plan_index, reference in service.items():
        other = bulk.get(plan_index)
        if other is None:
            continue
        pairs = []
        for s in (reference, other):
            subscription = Subscription.objects.select_related("wallet").get(pk=s["subscription_id"])
            wallet = Wallet.objects.get(pk=subscription.wallet_id)
            accounts = list(Account.objects.filter(customer_id=subscription.customer_id).order_by("kind"))
            balances = list(Balance.objects.filter(account__in=accounts).order_by("account__kind"))
            period = BillingPeriod.objects.get(subscription=subscription)
            pairs.append([subscription, wallet, *accounts, *balances, period])
        for mine, theirs in zip(*pairs, strict=True):
            a, b = values(mine), values(theirs)
            for name in a:
                if a[name] != b[name]:
                    differences.append(f"{type(mine).__name__}.{name}: service {a[name]!r}, bulk {b[name]!r}")
    return differences


# ---------------------------------------------------------------------------- seeding: usage rows


def usage_plan(subscriptions: list[dict], events: int, rng: random.Random) -> None:
    """How many calls and tokens events each subscription reports (set on its dict)."""
    active = [s for s in subscriptions if s["index"] % IDLE_EVERY != IDLE_EVERY - 1]
    for s in subscriptions:
        s["n_calls"] = s["n_tokens"] = 0
        s["seed"] = rng.randrange(2**32)
    if not active:
        return
    for k in range(events):
        s = active[rng.randrange(len(active))]
        s["n_calls" if k % 2 == 0 else "n_tokens"] += 1


def _seed_usage_part(job: dict) -> list[dict]:
    """In a child process: build the usage events and lines of some subscriptions, priced as the
    hot path prices them (apps.usage.services.charging.rate), and COPY them; returns what the
    parent needs per subscription (funding, the ledger transaction, the running total, the
    invoice total expected)."""
    import psycopg

    from apps.catalog.pricing import price_quantity, price_strategy, pricing_strategy
    from apps.core.money import ZERO, round_to_minor_unit, split_commission
    from apps.usage.inputs import event_hash
    from apps.usage.models import UsageEvent, UsageLine
    from apps.usage.pricing import needs_counter
    from apps.usage.services.charging.rate import price_line
    from apps.usage.services.charging.resolve import ResolvedLine
    from apps.usage.services.charging.rows import EVENT_COLUMNS, LINE_COLUMNS

    merchant_id, rate, now = job["merchant_id"], job["commission_rate"], job["now"]
    usage_from, span = job["usage_from"], job["usage_to"] - job["usage_from"]
    plans = job["plans"]
    for plan in plans:  # parsed once, as the plan price cache keeps them (price_strategy)
        for price in (plan["calls_price"], plan["tokens_price"]):
            price.parsed_strategy = pricing_strategy(price.model, price.properties)
    event_copy = f"COPY {UsageEvent._meta.db_table} ({', '.join(EVENT_COLUMNS)}) FROM STDIN"
    line_copy = f"COPY {UsageLine._meta.db_table} (id, {', '.join(LINE_COLUMNS)}) FROM STDIN"
    summaries = []
    event_rows: list[tuple] = []
    line_rows: list[tuple] = []

    def flush(cursor):
        if event_rows:
            with cursor.copy(event_copy) as copy:
                for row in event_rows:
                    copy.write_row(row)
            with cursor.copy(line_copy) as copy:
                for row in line_rows:
                    copy.write_row(row)
        event_rows.clear()
        line_rows.clear()

    with psycopg.connect(job["conninfo"]) as conn, conn.cursor() as cursor:
        for sub in job["subscriptions"]:
            plan = plans[sub["plan_index"]]
            rng = random.Random(sub["seed"])
            kinds = [0] * sub["n_calls"] + [1] * sub["n_tokens"]
            rng.shuffle(kinds)
            offsets = sorted(rng.random() for _ in kinds)
            subscription_id, customer_id = str(sub["subscription_id"]), str(sub["customer_id"])
            units_before = ZERO
            tokens_total = ZERO
            priced = []
            for position, (kind, offset) in enumerate(zip(kinds, offsets, strict=True)):
                metric, price = (
                    (plan["calls"], plan["calls_price"]) if kind == 0 else (plan["tokens"], plan["tokens_price"])
                )
                quantity = 1 if kind == 0 else rng.randint(1, TOKENS_MAX)
                line = ResolvedLine(metric, price, Decimal(quantity), Decimal(quantity), "", None)
                price_line(line, units_before)
                if needs_counter(price):
                    units_before += line.quantity
                if kind == 1:
                    tokens_total += line.quantity
                amount = line.amount if line.amount is not None else ZERO
                commission, owner = split_commission(amount, rate)
                timestamp = usage_from + span * offset
                key = f"seed-{sub['index']}-{position}"
                raw = {
                    "idempotencyKey": key,
                    "customerId": customer_id,
                    "timestamp": timestamp.isoformat().replace("+00:00", "Z"),
                    "properties": [{"billableMetricId": str(metric.id), "quantity": quantity}],
                }
                priced.append((key, event_hash(raw), timestamp, metric, price, line, amount, commission, owner))
            instant_total = sum((p[6] for p in priced), ZERO)
            commission_total = sum((p[7] for p in priced), ZERO)
            # what the invoice of the period says (apps.invoices.services.lines), from the seed's own sums
            invoice_total = ZERO
            if sub["n_tokens"]:
                tokens_price = plan["tokens_price"]
                result = price_quantity(price_strategy(tokens_price), tokens_total, free_units=tokens_price.free_units)
                invoice_total += round_to_minor_unit(result.amount, CURRENCY)
            if plan["fee"] is not None:
                invoice_total += round_to_minor_unit(plan["fee"], CURRENCY)
            funding = (instant_total + invoice_total + FUNDING_MARGIN).quantize(Decimal("0.01"), ROUND_CEILING)
            transaction_id = uuid.uuid4() if instant_total > ZERO else None
            balance = funding
            charged = 0
            for key, request_hash, timestamp, metric, price, line, amount, commission, owner in priced:
                event_id = str(uuid.uuid4())
                if amount > ZERO:
                    balance -= amount
                    charged += 1
                event_rows.append(
                    (
                        event_id,
                        now,
                        now,
                        merchant_id,
                        key,
                        request_hash,
                        customer_id,
                        subscription_id,
                        None,
                        timestamp,
                        CURRENCY,
                        amount,
                        commission,
                        owner,
                        balance,
                        transaction_id if amount > ZERO else None,
                        None,
                        "{}",
                        "",
                    )
                )
                line_rows.append(
                    (
                        str(uuid.uuid4()),
                        now,
                        now,
                        merchant_id,
                        event_id,
                        0,
                        metric.id,
                        price.id,
                        customer_id,
                        subscription_id,
                        timestamp,
                        line.quantity,
                        line.value,
                        line.value_text,
                        line.payment_term,
                        line.unit_price,
                        line.amount,
                    )
                )
            has_usage = bool(priced)
            summaries.append(
                {
                    "index": sub["index"],
                    "funding": funding,
                    "instant_total": instant_total,
                    "commission_total": commission_total,
                    "charged_events": charged,
                    "transaction_id": transaction_id,
                    "counter_units": units_before if needs_counter(plan["calls_price"]) and sub["n_calls"] else None,
                    "invoice_expected": has_usage or plan["fee"] is not None,
                    "invoice_total": invoice_total,
                }
            )
            if len(event_rows) >= ROWS_PER_COPY:
                flush(cursor)
        flush(cursor)
        conn.commit()
    return summaries


def seed_usage(world: dict, subscriptions: list[dict], args, conninfo: str, now: datetime) -> None:
    """Usage rows in child processes (COPY), then, here, the funding, the usage ledger
    transactions and the running totals."""
    from django.db import connections

    from apps.ledger.models import LedgerTransaction, Wallet
    from apps.ledger.services import (
        Posting,
        TransactionSpec,
        ledger_post_many,
        merchant_revenue_account,
        platform_commission_account,
    )
    from apps.subscriptions.models import UsageCounter

    merchant = world["merchant"]
    plans = [
        {
            "calls": world["calls"],
            "tokens": world["tokens"],
            "calls_price": p["calls_price"],
            "tokens_price": p["tokens_price"],
            "fee": p["fee"],
        }
        for p in world["plans"]
    ]
    parts = max(1, min(len(subscriptions), args.seed_processes * 4))
    jobs = [
        {
            "conninfo": conninfo,
            "merchant_id": str(merchant.id),
            "commission_rate": merchant.commission_rate,
            "now": now,
            "usage_from": now - USAGE_FROM,
            "usage_to": now - USAGE_TO,
            "plans": plans,
            "subscriptions": subscriptions[part::parts],
        }
        for part in range(parts)
    ]
    connections.close_all()  # no connection crosses the fork
    t0 = time.monotonic()
    with ProcessPoolExecutor(max_workers=args.seed_processes, mp_context=multiprocessing.get_context("fork")) as pool:
        by_index = {s["index"]: s for part in pool.map(_seed_usage_part, jobs) for s in part}
    for sub in subscriptions:
        sub.update(by_index[sub["index"]])
    log(f"usage rows written in {time.monotonic() - t0:.1f} s")

    wallets = {
        w.id: w.available_account for w in Wallet.objects.filter(merchant=merchant).select_related("available_account")
    }
    t0 = time.monotonic()
    fund(world, subscriptions, wallets)
    log(f"wallets funded in {time.monotonic() - t0:.1f} s")

    # What the hot path posts beside its events: a usage transaction per subscription (as a
    # batch of its events would post) and the period's running totals.
    t0 = time.monotonic()
    revenue = merchant_revenue_account(merchant=merchant, currency=CURRENCY)
    commission = platform_commission_account(currency=CURRENCY, livemode=merchant.livemode)
    specs = [
        TransactionSpec(
            merchant=merchant,
            kind=LedgerTransaction.Kind.USAGE,
            currency=CURRENCY,
            postings=[
                Posting(wallets[s["wallet_id"]], -s["instant_total"]),
                Posting(revenue, s["instant_total"] - s["commission_total"]),
                Posting(commission, s["commission_total"]),
            ],
            description=f"usage: {s['charged_events']} event(s)",
            metadata={"events": s["charged_events"]},
            id=s["transaction_id"],
        )
        for s in subscriptions
        if s["transaction_id"] is not None
    ]
    for start in range(0, len(specs), 500):
        ledger_post_many(specs[start : start + 500])
    UsageCounter.objects.bulk_create(
        [
            UsageCounter(
                merchant=merchant,
                subscription_id=s["subscription_id"],
                price=world["plans"][s["plan_index"]]["calls_price"],
                period_start=now - FIRST_START,
                units=s["counter_units"],
            )
            for s in subscriptions
            if s["counter_units"] is not None
        ],
        batch_size=2000,
    )
    log(f"usage ledger transactions and running totals in {time.monotonic() - t0:.1f} s")


def fund(world: dict, subscriptions: list[dict], accounts: dict) -> None:
    """Each wallet credited its funding from the merchant's revenue, as the payments service's
    adjustment does: through adjustment_create for the service-made subscriptions, else the
    same ledger transaction (through the ledger service) and Adjustment row in bulk."""
    from apps.customers.models import Customer
    from apps.ledger.models import LedgerTransaction
    from apps.ledger.services import Posting, TransactionSpec, ledger_post_many, merchant_revenue_account
    from apps.payments.models import Adjustment
    from apps.payments.services import adjustment_create

    merchant = world["merchant"]
    revenue = merchant_revenue_account(merchant=merchant, currency=CURRENCY)
    for s in subscriptions:
        if s["service_made"]:
            customer = Customer.objects.get(pk=s["customer_id"])
            adjustment_create(
                merchant=merchant, customer=customer, amount=s["funding"], currency=CURRENCY, reason="bench funding"
            )
    bulk = [s for s in subscriptions if not s["service_made"]]
    for start in range(0, len(bulk), 500):
        part = bulk[start : start + 500]
        specs = [
            TransactionSpec(
                merchant=merchant,
                kind=LedgerTransaction.Kind.ADJUSTMENT,
                currency=CURRENCY,
                postings=[Posting(revenue, -s["funding"]), Posting(accounts[s["wallet_id"]], s["funding"])],
                description="bench funding",
                metadata={"customerId": str(s["customer_id"]), "actor": "api"},
            )
            for s in part
        ]
        ledger_post_many(specs)
        Adjustment.objects.bulk_create(
            [
                Adjustment(
                    merchant=merchant,
                    customer_id=s["customer_id"],
                    wallet_id=s["wallet_id"],
                    amount=s["funding"],
                    currency=CURRENCY,
                    reason="bench funding",
                    actor="api",
                    ledger_transaction_id=spec.id,
                )
                for s, spec in zip(part, specs, strict=True)
            ]
        )


def vacuum_analyze(conninfo: str) -> float:
    import psycopg

    t0 = time.monotonic()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
    return time.monotonic() - t0


def move_first_period(world: dict, end: datetime) -> datetime:
    """Make every subscription's first (daily) period end at `end`: its start, the
    subscriptions' startedAt and the running totals of that period move with it."""
    from django.db import transaction

    from apps.subscriptions.models import BillingPeriod, Subscription, UsageCounter

    start = end - timedelta(days=1)
    merchant = world["merchant"]
    with transaction.atomic():
        Subscription.objects.filter(merchant=merchant).update(started_at=start, period_anchor=start)
        BillingPeriod.objects.filter(merchant=merchant, status=BillingPeriod.Status.OPEN).update(
            start=start, end=end, cycle_start=start, cycle_end=end
        )
        UsageCounter.objects.filter(merchant=merchant).update(period_start=start)
    return start


# ---------------------------------------------------------------------------- processes


def start_celery(kind: str, env: dict, args, workdir: Path, run_id: str) -> subprocess.Popen:
    celery = str(Path(sys.executable).parent / "celery")
    if kind == "worker":
        command = [
            celery,
            "-A",
            "billing_platform",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            str(args.workers),
            "--hostname",
            f"bench-invoicing-{run_id}@%h",
        ]
    else:
        command = [
            celery,
            "-A",
            "billing_platform",
            "beat",
            "--loglevel",
            "INFO",
            "--schedule",
            str(workdir / "celerybeat-schedule"),
        ]
    log_file = open(workdir / f"{kind}.log", "wb")  # noqa: SIM115 -- kept open for the child's lifetime
    process = subprocess.Popen(
        command, env=env, cwd=BASE_DIR, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
    )
    log_file.close()
    return process


def wait_for_log(process: subprocess.Popen, path: Path, pattern: str, timeout: float) -> None:
    deadline = ingest.Deadline(timeout)
    while not deadline.passed():
        if process.poll() is not None:
            raise RuntimeError(f"{path.stem} exited with {process.returncode}; see {path}")
        if pattern in path.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise RuntimeError(f"{path.stem} was not ready within {timeout:.0f} s; see {path}")


def stop_process(process: subprocess.Popen | None, timeout: float = 20) -> None:
    """SIGTERM (Celery's warm shutdown, gunicorn's graceful one), then SIGKILL to its session."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 9)  # its own session (start_new_session): only what it started
        process.wait(5)


def purge_queue() -> int:
    from billing_platform.celery import app

    return app.control.purge() or 0


def descendants(root: int) -> set[int]:
    children = defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = ingest._proc_stat(int(entry))
            if stat:
                children[stat[1]].append(int(entry))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, ()))
    return found


def bench_backends(conninfo: str) -> list[int]:
    """The PostgreSQL backends connected to the bench database (not this query's own)."""
    import psycopg

    with contextlib.suppress(psycopg.Error), psycopg.connect(conninfo, autocommit=True) as conn:
        return [
            row[0]
            for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [BENCH_DATABASE]
            )
        ]
    return []


def cpu_snapshot(roots: dict, conninfo: str) -> dict:
    """CPU seconds by group: each named process tree (gunicorn, celery), PostgreSQL (all of the
    machine's, and `pg_bench`: the backends serving the bench database), Redis, this process,
    the machine."""
    groups = Counter()
    groups["pg_bench"] = sum(stat[2] for stat in map(ingest._proc_stat, bench_backends(conninfo)) if stat)
    trees = {name: descendants(pid) for name, pid in roots.items() if pid}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        stat = ingest._proc_stat(pid)
        if stat is None:
            continue
        comm, _, seconds = stat
        for name, tree in trees.items():
            if pid in tree:
                groups[name] += seconds
                break
        else:
            if comm.startswith("postgres"):
                groups["postgres"] += seconds
            elif comm.startswith("redis"):
                groups["redis"] += seconds
    groups["client"] = time.process_time()
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        groups["machine_busy"] = (sum(values) - idle) / ingest.CLOCK_TICKS
        groups["machine_total"] = sum(values) / ingest.CLOCK_TICKS
    except (OSError, ValueError, IndexError):
        pass
    return dict(groups)


CPU_GROUPS = ("gunicorn", "celery", "postgres", "redis", "client")


def cpu_delta(before: dict, after: dict, wall: float) -> dict:
    """Each group's CPU in cores over the wall time; `other`: the rest of the machine.
    (`pg_bench` counts only backends alive at both ends: a lower bound.)"""
    shares = {}
    for key in (*CPU_GROUPS[:3], "pg_bench", *CPU_GROUPS[3:]):
        shares[key] = round((after.get(key, 0) - before.get(key, 0)) / wall, 2) if wall > 0 else None
    if after.get("machine_total", 0) > before.get("machine_total", 0) and wall > 0:
        busy = after["machine_busy"] - before["machine_busy"]
        total = after["machine_total"] - before["machine_total"]
        shares["machine_busy_pct"] = round(100 * busy / total, 1)
        known = sum(after.get(k, 0) - before.get(k, 0) for k in CPU_GROUPS)
        shares["other"] = round(max(0.0, busy - known) / wall, 2)
    return shares


# ---------------------------------------------------------------------------- single events


class SingleBodies:
    """Single-event bodies made on demand (quantity 1 of calls, customers in turn from a
    shuffled list): a close may last minutes, too many bodies to build before the clock."""

    def __init__(self, run_id: str, prefix: str, customer_ids: list[str], metric_id: str, count: int):
        self.template = (
            '{"idempotencyKey":"' + run_id + "-" + prefix + '-%d","customerId":"%s",'
            '"properties":[{"billableMetricId":"' + metric_id + '","quantity":1}]}'
        )
        self.customer_ids = customer_ids
        self.count = count

    def __len__(self):
        return self.count

    def __getitem__(self, index: int) -> bytes:
        return (self.template % (index, self.customer_ids[index % len(self.customer_ids)])).encode()


class Until:
    """A deadline for ingest.run_phase that also ends when `done` is set."""

    def __init__(self, done: threading.Event, deadline: "ingest.Deadline"):
        self.done, self.deadline = done, deadline

    def left(self) -> float:
        return self.deadline.left()

    def passed(self) -> bool:
        return self.done.is_set() or self.deadline.passed()


def singles_phase(name, port, secret, bodies, concurrency, deadline) -> dict:
    return ingest.run_phase(
        name=name,
        port=port,
        secret=secret,
        bodies=bodies,
        path="/v0/usage",
        concurrency=concurrency,
        deadline=deadline,
        count_acknowledged=ingest.single_ack,
        events_per_body=1,
    )


# ---------------------------------------------------------------------------- the close, watched


class CloseWatch(threading.Thread):
    """Polls the database (every period of the first start closed? invoices by status) and
    samples what the bench database's backends wait on and the Celery queue's length."""

    INTERVAL = 0.25

    def __init__(self, *, conninfo, broker_url, period_start, period_end, subscriptions, deadline):
        super().__init__(name="close-watch", daemon=True)
        self.conninfo, self.broker_url = conninfo, broker_url
        self.period_start, self.period_end = period_start, period_end
        self.subscriptions, self.deadline = subscriptions, deadline
        self.done = threading.Event()
        self.finished_at: float | None = None  # seconds after the period's end
        self.first_closed_at: float | None = None
        self.progress: list[tuple[float, int, int]] = []  # (seconds, periods closed, invoices paid)
        self.samples = 0
        self.backends = Counter()  # state/wait of the bench database's backends, summed over samples
        self.lock_waits = Counter()  # (wait_event, statement) of backends waiting on a lock
        self.queue_lengths: list[int] = []
        self.error: str | None = None
        # CPU seconds of the bench database's backends over the close, summed per sample (their
        # connections come and go: CONN_MAX_AGE), and where they were last seen
        self.pg_bench_seconds = 0.0
        self._backend_cpu: dict[int, float] = {}

    def run(self):
        import psycopg
        import redis

        from apps.invoices.models import Invoice
        from apps.subscriptions.models import BillingPeriod

        periods, invoices = BillingPeriod._meta.db_table, Invoice._meta.db_table
        end_epoch = self.period_end.timestamp()
        try:
            broker = redis.Redis.from_url(self.broker_url)
            with psycopg.connect(self.conninfo, autocommit=True) as conn:
                for pid in bench_backends(self.conninfo):  # what they used before the close
                    stat = ingest._proc_stat(pid)
                    if stat is not None:
                        self._backend_cpu[pid] = stat[2]
                while not self.deadline.passed():
                    at = time.time() - end_epoch
                    closed, paid = conn.execute(
                        f"SELECT (SELECT count(*) FROM {periods} WHERE start = %s AND status = 'closed'), "  # noqa: S608 (table names only)
                        f"(SELECT count(*) FROM {invoices} WHERE period_start = %s AND kind = 'period' "
                        "AND status = 'paid')",
                        [self.period_start, self.period_start],
                    ).fetchone()
                    self.progress.append((round(at, 2), closed, paid))
                    if closed and self.first_closed_at is None:
                        self.first_closed_at = at
                    for pid, state, wait_type, wait_event, query in conn.execute(
                        "SELECT pid, state, wait_event_type, wait_event, query FROM pg_stat_activity "
                        "WHERE datname = %s AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
                        [BENCH_DATABASE],
                    ):
                        stat = ingest._proc_stat(pid)
                        if stat is not None:
                            # a backend first seen now started during the close (or at its start)
                            self.pg_bench_seconds += stat[2] - self._backend_cpu.get(pid, 0.0)
                            self._backend_cpu[pid] = stat[2]
                        if state == "active":
                            self.backends[f"active, {wait_type or 'CPU'}:{wait_event or '-'}"] += 1
                            if wait_type == "Lock":
                                self.lock_waits[(wait_event, " ".join((query or "").split())[:110])] += 1
                        elif state == "idle in transaction":
                            self.backends["idle in transaction"] += 1
                    self.samples += 1
                    with contextlib.suppress(redis.RedisError):
                        self.queue_lengths.append(int(broker.llen("celery")))
                    if closed >= self.subscriptions:
                        self.finished_at = at
                        break
                    time.sleep(self.INTERVAL)
        except Exception as exc:  # noqa: BLE001 -- reported, the run goes on to its checks
            self.error = f"{exc.__class__.__name__}: {exc}"
        finally:
            self.done.set()

    def summary(self) -> dict:
        n = max(1, self.samples)
        return {
            "samples": self.samples,
            "backendsAverage": {k: round(v / n, 2) for k, v in self.backends.most_common()},
            "lockWaitsAverage": [
                {"waitEvent": event, "statement": query, "backends": round(count / n, 2)}
                for (event, query), count in self.lock_waits.most_common(6)
            ],
            "queueLengthMax": max(self.queue_lengths, default=None),
        }

    def milestones(self) -> dict:
        """Seconds after the period's end at which 10/50/90/100 % of the periods were closed."""
        marks = {}
        for share in (0.1, 0.5, 0.9, 1.0):
            need = share * self.subscriptions
            hit = next((at for at, closed, _ in self.progress if closed >= need), None)
            marks[f"{int(share * 100)}%"] = hit
        return marks


def worker_tasks(log_path: Path) -> dict:
    """The worker's task lines (INFO): per task name, how many ran, their seconds and, for
    advance_periods, how many found nothing to move (a subscription enqueued again by a later
    beat tick before its first task ran)."""
    pattern = re.compile(r"Task ([\w.]+)\[[^\]]+\] succeeded in ([\d.]+)s: (.*)$")
    tasks: dict[str, dict] = {}
    failed = 0
    with contextlib.suppress(OSError):
        for line in log_path.read_text(errors="replace").splitlines():
            match = pattern.search(line)
            if match is None:
                if "raised unexpected" in line:
                    failed += 1
                continue
            name = match.group(1).rsplit(".", 1)[-1]
            entry = tasks.setdefault(name, {"count": 0, "seconds": 0.0, "returnedZero": 0, "returnedSum": 0})
            entry["count"] += 1
            entry["seconds"] += float(match.group(2))
            result = match.group(3).strip()
            if result.isdigit():
                entry["returnedSum"] += int(result)
                entry["returnedZero"] += result == "0"
    for entry in tasks.values():
        entry["seconds"] = round(entry["seconds"], 2)
    return {"tasks": tasks, "failed": failed}


# ---------------------------------------------------------------------------- checks


def close_results(world: dict, subscriptions: list[dict], period_start: datetime, period_end: datetime) -> dict:
    from django.db.models import Count, Max, Min, Q, Sum

    from apps.invoices.models import Invoice
    from apps.payments.models import Payment
    from apps.subscriptions.models import BillingPeriod

    merchant = world["merchant"]
    invoices = Invoice.objects.filter(merchant=merchant, kind=Invoice.Kind.PERIOD, period_start=period_start)
    statuses = dict(invoices.values_list("status").annotate(n=Count("id")).order_by())
    totals = invoices.aggregate(total=Sum("total"), paid=Sum("amount_paid"), last_paid=Max("paid_at"))
    periods = BillingPeriod.objects.filter(merchant=merchant, start=period_start).aggregate(
        closed=Count("id", filter=Q(status=BillingPeriod.Status.CLOSED)),
        first_ended=Min("ended_at"),
        last_closed=Max("closed_at"),
    )
    next_periods = BillingPeriod.objects.filter(
        merchant=merchant, start=period_end, status=BillingPeriod.Status.OPEN
    ).count()
    expected = [s for s in subscriptions if s["invoice_expected"]]
    expected_total = sum((s["invoice_total"] for s in expected), Decimal(0))
    from_wallet = Payment.objects.filter(merchant=merchant, source="wallet", created_at__gte=period_end).count()
    count = sum(statuses.values())
    return {
        "invoices": count,
        "invoicesExpected": len(expected),
        "statuses": statuses,
        "sumOfTotals": str(totals["total"] or 0),
        "sumOfTotalsExpected": str(expected_total),
        "amountPaid": str(totals["paid"] or 0),
        "zeroTotalInvoices": invoices.filter(total=0).count(),
        "walletPayments": from_wallet,
        "periodsClosed": periods["closed"],
        "nextPeriodsOpen": next_periods,
        "firstEndedSeconds": _seconds_after(periods["first_ended"], period_end),
        "lastClosedSeconds": _seconds_after(periods["last_closed"], period_end),
        "lastPaidSeconds": _seconds_after(totals["last_paid"], period_end),
        "ok": count == len(expected)
        and statuses.get("paid", 0) == count
        and (totals["total"] or 0) == expected_total
        and periods["closed"] == len(subscriptions),
    }


def _seconds_after(moment, origin):
    return None if moment is None else round((moment - origin).total_seconds(), 2)


# ---------------------------------------------------------------------------- profile mode


# Functions of the close whose cumulative time the profile reports (module file, function).
PROFILE_PHASES = (
    ("periods.py", "periods_advance_many", "the whole close of a batch (both moves), per subscription"),
    ("periods.py", "_round", "  each round (one transaction; the last finds nothing due), with its commit"),
    ("periods.py", "_create_next_periods", "  the next periods' rows"),
    ("invoices.py", "on_periods_ended", "  drafts: lines computed and written (hook)"),
    ("lines.py", "periods_lines", "    lines computed from the usage"),
    ("lines.py", "_usage_by_price", "      the usage query"),
    ("invoices.py", "_issue_drafts", "    drafts and lines written, invoice.created"),
    ("invoices.py", "on_periods_closed", "  final: finalized and collected (hook)"),
    ("invoices.py", "invoices_finalize", "    finalize"),
    ("sessions.py", "payment_sessions_create", "      payment sessions"),
    ("invoices.py", "_next_numbers", "      numbers (the merchant's sequence row locked from here)"),
    ("collection.py", "invoices_collect", "      collection from the wallets"),
    ("receive.py", "payments_from_wallet", "        the payments (attempts, payments, sessions)"),
    ("purposes.py", "apply_many", "        the invoices paid (handler)"),
    ("services.py", "ledger_post_many", "          the ledger transactions"),
    ("events.py", "invoices_publish", "  invoice.* events (each invoice's lines shaped once)"),
    ("outbox.py", "publish_many", "  every outbox event"),
)


def profile_close(world: dict, subscriptions: list[dict], count: int) -> dict:
    """Close `count` subscriptions' periods here, in batches of PERIOD_CLOSE_BATCH_SIZE as the
    beat's tasks do: the first half timed alone (wall, statements, time waiting for PostgreSQL,
    commits), the second half under cProfile. Statements are timed at Django's cursor, the
    pipelined round trips (apps.core.bulk.run_statements) as one entry each."""
    from django.conf import settings
    from django.db import connection

    import apps.invoices.services.invoices as invoices_services
    import apps.invoices.services.lines as lines_services
    import apps.ledger.lock_objects as lock_objects
    import apps.ledger.services as ledger_services
    import apps.webhooks.outbox as outbox
    from apps.subscriptions.services import periods_advance_many

    statements: dict[str, list] = defaultdict(lambda: [0, 0.0])

    def account(label, started):
        entry = statements[label[:170]]
        entry[0] += 1
        entry[1] += time.perf_counter() - started

    def timed(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            account(" ".join(sql.split()), started)

    originals = {}

    def wrap_pipeline(module):
        original = originals[module] = module.run_statements

        def run(batch):
            started = time.perf_counter()
            try:
                return original(batch)
            finally:
                account(
                    "pipeline: " + " | ".join(" ".join(s.sql.split())[:45] for s in batch if s is not None), started
                )

        module.run_statements = run

    original_commit = connection._commit

    def commit():
        started = time.perf_counter()
        try:
            return original_commit()
        finally:
            account("COMMIT", started)

    for module in (ledger_services, lock_objects, lines_services, invoices_services, outbox):
        wrap_pipeline(module)
    connection._commit = commit
    ids = [s["subscription_id"] for s in subscriptions if not s["service_made"]][:count]
    plain, profiled = ids[: len(ids) // 2], ids[len(ids) // 2 :]
    size = max(1, settings.PERIOD_CLOSE_BATCH_SIZE)
    profiler = cProfile.Profile()
    moves = 0
    try:
        with connection.execute_wrapper(timed):
            started = time.perf_counter()
            for start in range(0, len(plain), size):
                moves += periods_advance_many(subscription_ids=plain[start : start + size])
            plain_wall = time.perf_counter() - started
            plain_statements = {k: list(v) for k, v in statements.items()}
            statements.clear()
            profiler.enable()
            for start in range(0, len(profiled), size):
                moves += periods_advance_many(subscription_ids=profiled[start : start + size])
            profiler.disable()
    finally:
        for module, original in originals.items():
            module.run_statements = original
        del connection._commit
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(20)
    per = max(1, len(profiled))
    phases = []
    for filename, function, label in PROFILE_PHASES:
        found = [
            (value[1], value[3])
            for (path, _, name), value in stats.stats.items()
            if name == function and path.endswith(filename) and "/apps/" in path
        ]
        if found:
            calls, cumulative = max(found, key=lambda f: f[1])
            phases.append({"phase": label, "calls": round(calls / per, 2), "ms": round(1000 * cumulative / per, 2)})
    n = max(1, len(plain))
    sql_seconds = sum(t for _, t in plain_statements.values())
    commit_count, commit_seconds = plain_statements.get("COMMIT", (0, 0.0))
    top = sorted(plain_statements.items(), key=lambda kv: -kv[1][1])[:30]
    return {
        "subscriptions": len(ids),
        "moves": moves,
        "timedAlone": len(plain),
        "msPerSubscription": round(1000 * plain_wall / n, 2),
        "statementsPerSubscription": round(sum(c for k, (c, _) in plain_statements.items() if k != "COMMIT") / n, 1),
        "commitsPerSubscription": round(commit_count / n, 1),
        "sqlMsPerSubscription": round(1000 * (sql_seconds - commit_seconds) / n, 2),
        "commitMsPerSubscription": round(1000 * commit_seconds / n, 2),
        "pythonMsPerSubscription": round(1000 * (plain_wall - sql_seconds) / n, 2),
        "profiled": len(profiled),
        "phasesUnderProfile": phases,
        "topStatements": [
            {"statement": sql, "perSubscription": round(c / n, 2), "ms": round(1000 * t / n, 3)} for sql, (c, t) in top
        ],
        "profile": out.getvalue(),
    }


# ---------------------------------------------------------------------------- report


def print_report(report: dict) -> None:
    machine, seed = report["machine"], report["seed"]
    print()
    print(
        f"machine: {machine['nproc']} cores, Python {machine['python']}, load average before/after "
        f"{machine['loadavgBefore']} / {machine['loadavgAfter']}"
    )
    print(f"uptime before: {machine['uptimeBefore']}")
    print(
        f"seed: {seed['subscriptions']} subscriptions on 4 daily plans, {seed['events']} usage events "
        f"({seed['instantEvents']} instant calls, {seed['arrearsEvents']} in_arrears tokens) in {seed['seconds']} s "
        f"(subscriptions {seed['subscriptionSeconds']} s, usage, funding and ledger {seed['usageSeconds']} s, "
        f"VACUUM ANALYZE {seed['vacuumSeconds']} s); migrate {report['migrateSeconds']} s"
    )
    print(
        f"      {seed['serviceMade']} subscriptions made through the services, the others in bulk: their rows "
        + ("as the services write them" if not seed["shapeDifferences"] else f"DIFFER: {seed['shapeDifferences']}")
    )
    if "profile" in report:
        prof = report["profile"]
        print()
        print(prof["profile"])
        print(f"where a close's time goes (cumulative ms per subscription, under cProfile, {prof['profiled']} closes):")
        for row in prof["phasesUnderProfile"]:
            print(f"  {row['ms']:>8.2f} ms  {row['calls']:>5} x  {row['phase']}")
        print()
        print(f"statements per close ({prof['timedAlone']} closes without the profiler), by time:")
        for row in prof["topStatements"]:
            print(f"  {row['ms']:>7.3f} ms {row['perSubscription']:>5} x  {row['statement']}")
        print()
        print(
            f"profile: {prof['timedAlone']} subscriptions closed one after another in this process: "
            f"{prof['msPerSubscription']} ms each = {prof['sqlMsPerSubscription']} ms waiting for "
            f"{prof['statementsPerSubscription']} statements + {prof['commitMsPerSubscription']} ms for "
            f"{prof['commitsPerSubscription']} commits + {prof['pythonMsPerSubscription']} ms of Python"
        )
        return
    env = report["environment"]
    print(
        f"servers: gunicorn gthread x {env['webWorkers']} x {env['threads']} threads; Celery worker "
        f"--concurrency {env['workers']} + beat; PostgreSQL {report['database']}; Redis {report['redis']}"
    )
    print(
        "worker and beat environment: " + ", ".join(f"{k}={v}" for k, v in env["settings"].items()) + " (gunicorn too)"
    )
    close = report["close"]
    print()
    print(
        f"close: {close['seconds']} s from the period's end until every period was closed (polled every "
        f"{CloseWatch.INTERVAL} s; database times: first period ended {close['firstEndedSeconds']} s, last closed "
        f"{close['lastClosedSeconds']} s, last invoice paid {close['lastPaidSeconds']} s)"
    )
    print(
        "       periods closed 10/50/90/100 %: "
        + ", ".join(f"{k} {v} s" for k, v in close["milestones"].items())
        + f"; {close['periodsPerSecond']} periods/s"
    )
    print(
        f"invoices: {close['invoices']} (expected {close['invoicesExpected']}: subscriptions with usage or a fee), "
        f"statuses {close['statuses']}, {close['zeroTotalInvoices']} of total 0; sum of totals {close['sumOfTotals']} "
        f"{CURRENCY} (expected {close['sumOfTotalsExpected']}), paid {close['amountPaid']}; "
        f"{close['walletPayments']} wallet payments; periods closed {close['periodsClosed']}, next periods open "
        f"{close['nextPeriodsOpen']}"
    )
    tasks = report["workerTasks"]
    for name, entry in sorted(tasks["tasks"].items(), key=lambda kv: -kv[1]["count"]):
        extra = ""
        if name in ("advance_periods", "advance_periods_many"):
            extra = f", {entry['returnedZero']} found nothing to move, {entry['returnedSum']} moves"
        if name == "advance_due_periods":
            extra = f", {entry['returnedSum']} subscriptions enqueued in all"
        print(f"worker task {name}: {entry['count']} runs, {entry['seconds']} s in all{extra}")
    print(f"worker: {tasks['leftOnQueue']} messages still queued when it stopped (purged)")
    if tasks["failed"]:
        print(f"worker: {tasks['failed']} tasks raised; see the worker log")
    watch = report["closeWatch"]
    print(
        f"database backends during the close (average over {watch['samples']} samples): "
        + ", ".join(f"{k} {v}" for k, v in watch["backendsAverage"].items())
        + f"; Celery queue length at most {watch['queueLengthMax']}"
    )
    for wait in watch["lockWaitsAverage"]:
        print(f"  waiting on {wait['waitEvent']} ({wait['backends']} backends on average): {wait['statement']}")
    print()
    header = f"{'phase':<14} {'reqs':>7} {'wall s':>7} {'per s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  statuses"
    print(header)
    print("-" * len(header))
    for phase in report["phases"]:
        statuses = ", ".join(f"{k}:{v}" for k, v in phase["statuses"].items())
        print(
            f"{phase['phase']:<14} {phase['requests']:>7} {phase['wallSeconds']:>7.2f} "
            f"{phase['requestsPerSecond'] or 0:>8.1f} {phase['p50Ms'] or 0:>8.2f} {phase['p99Ms'] or 0:>8.2f} "
            f"{phase['maxMs'] or 0:>8.2f}  {statuses}"
        )
        for sample in phase["errorSamples"][:3]:
            print(f"  {phase['phase']} error sample: {sample}")
    print()
    for name, cpu in report["cpu"].items():
        shares = ", ".join(f"{k} {v}" for k, v in cpu.items() if k != "machine_busy_pct")
        print(f"cpu {name:<13} (cores): {shares}; machine busy {cpu.get('machine_busy_pct')} %")
    singles = report["singles"]
    print()
    print(
        f"single events: {singles['baselinePerSecond']}/s without a close, {singles['duringClosePerSecond']}/s during "
        f"it (ratio {singles['ratio']}); stored {singles['stored']} = acknowledged {singles['acknowledged']}: "
        f"{'yes' if singles['stored'] == singles['acknowledged'] else 'NO'}"
    )
    print(
        f"checks: ledger_check problems {report['ledgerCheck']['problems']}, usage_check problems "
        f"{report['usageCheck']['problems']}, invoices as expected: {'yes' if close['ok'] else 'NO'}"
    )
    for problem in report["ledgerCheck"]["sample"] + report["usageCheck"]["sample"]:
        print(f"  {problem}")
    for line in report["targets"]:
        print(f"target: {line}")
    print(f"total wall: {report['wallSeconds']} s")


# ---------------------------------------------------------------------------- main


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    deadline = ingest.Deadline(args.duration_cap)
    loadavg_before = os.getloadavg()
    uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()

    from billing_platform import devservers

    with contextlib.redirect_stdout(sys.stderr):  # devservers logs to stdout; keep it for the figures
        base_env = devservers.prepare_environment()
    server_url = base_env["DATABASE_URL"]
    embedded_db = "host=" in server_url and urlsplit(server_url).hostname is None
    database_url = ingest.recreate_database(server_url)
    conninfo = postgres_conninfo(database_url)
    env = ingest.app_environment(base_env, database_url)
    workdir = Path(tempfile.mkdtemp(prefix="billing-bench-invoicing-"))
    close_settings = {
        "USAGE_GRACE_PERIOD_SECONDS": "0",
        "PERIOD_CLOSE_SETTLE_SECONDS": "0",
        "PERIOD_CLOSE_INTERVAL_SECONDS": "1",
    }
    env.update(close_settings)
    env["CELERY_BEAT_SCHEDULE_FILENAME"] = str(workdir / "celerybeat-schedule")
    env["WEB_THREADS"] = str(args.threads)
    os.environ.update({k: v for k, v in env.items() if k != "PATH"})
    log(
        f"database {BENCH_DATABASE} created ({'embedded' if embedded_db else 'DATABASE_URL'} server); logs in {workdir}"
    )

    web = worker = beat = None
    try:
        t0 = time.monotonic()
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            env=env,
            cwd=BASE_DIR,
            check=True,
            timeout=max(10.0, deadline.left()),
        )
        migrate_seconds = round(time.monotonic() - t0, 2)
        log(f"migrated in {migrate_seconds} s")

        import django

        django.setup()
        from django.db import connection

        from apps.ledger.selectors import ledger_check
        from apps.usage.models import UsageEvent
        from apps.usage.selectors import usage_check

        # ------------------------------------------------------------------ seed (untimed)
        seed_started = time.monotonic()
        now = datetime.now(UTC)
        world = seed_catalog()
        subscriptions = seed_subscriptions(world, args.subscriptions, now - FIRST_START)
        subscription_seconds = round(time.monotonic() - seed_started, 2)
        log(f"{len(subscriptions)} customers subscribed in {subscription_seconds} s")
        usage_plan(subscriptions, args.events, random.Random(13))
        t0 = time.monotonic()
        seed_usage(world, subscriptions, args, conninfo, now)
        usage_seconds = round(time.monotonic() - t0, 2)
        shape_differences = compare_shapes(subscriptions)
        for difference in shape_differences:
            log(f"bulk row unlike the services': {difference}")
        connection.close()
        vacuum_seconds = round(vacuum_analyze(conninfo), 2)
        seed_seconds = round(time.monotonic() - seed_started, 2)
        log(f"seeded in {seed_seconds} s (VACUUM ANALYZE {vacuum_seconds} s)")
        seed_report = {
            "subscriptions": len(subscriptions),
            "events": args.events,
            "instantEvents": sum(s["n_calls"] for s in subscriptions),
            "arrearsEvents": sum(s["n_tokens"] for s in subscriptions),
            "seconds": seed_seconds,
            "subscriptionSeconds": subscription_seconds,
            "usageSeconds": usage_seconds,
            "vacuumSeconds": vacuum_seconds,
            "serviceMade": sum(s["service_made"] for s in subscriptions),
            "shapeDifferences": shape_differences,
        }
        report = {
            "machine": {
                "nproc": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "loadavgBefore": [round(x, 2) for x in loadavg_before],
                "uptimeBefore": uptime_before,
            },
            "seed": seed_report,
            "migrateSeconds": migrate_seconds,
        }
        if deadline.passed():
            raise RuntimeError("the duration cap passed while seeding")

        if args.profile:
            end = datetime.now(UTC) + timedelta(seconds=1)
            move_first_period(world, end)
            time.sleep(max(0.0, (end - datetime.now(UTC)).total_seconds()) + 0.05)
            report["profile"] = profile_close(world, subscriptions, args.profile)
            report["machine"]["loadavgAfter"] = [round(x, 2) for x in os.getloadavg()]
            report["wallSeconds"] = round(time.monotonic() - started, 2)
            if args.json:
                print(json.dumps(report, indent=2, default=str))
            else:
                print_report(report)
            return 0

        # ------------------------------------------------------------------ servers
        run_id = uuid.uuid4().hex[:10]
        purged = purge_queue()
        if purged:
            log(f"purged {purged} messages left on the Celery queue")
        port = free_port(HOST)
        web_args = types.SimpleNamespace(worker_class="gthread", threads=args.threads, workers=args.web_workers)
        web = ingest.start_gunicorn(env, web_args, port, workdir / "gunicorn.log")
        worker = start_celery("worker", env, args, workdir, run_id)
        beat = start_celery("beat", env, args, workdir, run_id)
        ingest.wait_healthy(web, port, args.web_workers, timeout=60)
        wait_for_log(worker, workdir / "worker.log", " ready.", timeout=60)
        wait_for_log(beat, workdir / "beat.log", "beat: Starting", timeout=60)
        log(f"gunicorn {web.pid} on {HOST}:{port}, worker {worker.pid}, beat {beat.pid}")
        roots = {"gunicorn": web.pid, "celery": worker.pid, "beat": beat.pid}
        phases, cpu = {}, {}

        def snapshot():
            shot = cpu_snapshot(roots, conninfo)
            shot["celery"] = shot.get("celery", 0) + shot.pop("beat", 0)
            return shot

        if args.floor_requests:
            before = snapshot()
            phases["floor"] = ingest.run_phase(
                name="floor",
                port=port,
                secret=world["secret"],
                bodies=[None] * args.floor_requests,
                path="/healthz",
                concurrency=args.single_concurrency or 16,
                deadline=ingest.Deadline(min(60.0, max(5.0, deadline.left() / 4))),
                count_acknowledged=ingest.single_ack_get,
                events_per_body=1,
            )
            cpu["floor"] = cpu_delta(before, snapshot(), phases["floor"]["wallSeconds"])

        # the period ends once the warm-up and the rate without a close are done
        lead = args.single_rate_seconds + 6.0
        period_end = (datetime.now(UTC) + timedelta(seconds=lead)).replace(microsecond=0) + timedelta(seconds=1)
        period_start = move_first_period(world, period_end)
        end_epoch = period_end.timestamp()
        log(f"every first period now ends at {period_end.isoformat()}")

        customer_ids = [str(s["customer_id"]) for s in subscriptions if s["n_calls"] + s["n_tokens"]]
        random.Random(7).shuffle(customer_ids)
        metric_id = str(world["calls"].id)
        baseline = None
        if args.single_concurrency:
            singles_phase(
                "warmup",
                port,
                world["secret"],
                SingleBodies(run_id, "w", customer_ids, metric_id, 4 * args.web_workers * args.threads),
                min(args.single_concurrency, args.web_workers),
                ingest.Deadline(3.0),
            )
            window = min(args.single_rate_seconds, end_epoch - time.time() - 1.5)
            before = snapshot()
            baseline = singles_phase(
                "single",
                port,
                world["secret"],
                SingleBodies(run_id, "b", customer_ids, metric_id, 10_000_000),
                args.single_concurrency,
                ingest.Deadline(window),
            )
            cpu["single"] = cpu_delta(before, snapshot(), baseline["wallSeconds"])
            phases["single"] = baseline
        time.sleep(max(0.0, end_epoch - time.time()))

        # ------------------------------------------------------------------ the close (timed)
        watch = CloseWatch(
            conninfo=conninfo,
            broker_url=env.get("CELERY_BROKER_URL") or env["REDIS_URL"],
            period_start=period_start,
            period_end=period_end,
            subscriptions=len(subscriptions),
            deadline=ingest.Deadline(max(10.0, deadline.left() - 60)),
        )
        before = snapshot()
        close_started = time.monotonic()
        watch.start()
        during = None
        if args.single_concurrency:
            during = singles_phase(
                "single (close)",
                port,
                world["secret"],
                SingleBodies(run_id, "c", customer_ids, metric_id, 100_000_000),
                args.single_concurrency,
                Until(watch.done, ingest.Deadline(max(10.0, deadline.left() - 60))),
            )
            phases["closing"] = during
        watch.join()
        close_wall = time.monotonic() - close_started
        cpu["close"] = cpu_delta(before, snapshot(), close_wall)
        cpu["close"]["pg_bench"] = round(watch.pg_bench_seconds / close_wall, 2)
        if watch.error:
            log(f"close watch: {watch.error}")
        close_seconds = None if watch.finished_at is None else round(watch.finished_at, 2)
        log(f"close: {close_seconds} s" if close_seconds is not None else "close: not finished within the cap")
        time.sleep(1.5)  # the worker's last log lines
        stop_process(beat)
        stop_process(worker, timeout=30)
        stop_process(web)
        beat = worker = web = None
        left_on_queue = purge_queue()

        # ------------------------------------------------------------------ checks
        close = close_results(world, subscriptions, period_start, period_end)
        close["seconds"] = close_seconds
        close["milestones"] = watch.milestones()
        close["periodsPerSecond"] = round(len(subscriptions) / close_seconds, 1) if close_seconds else None
        acknowledged = sum(p["eventsAcknowledged"] for k, p in phases.items() if k != "floor")
        stored = UsageEvent.objects.filter(merchant=world["merchant"], idempotency_key__startswith=run_id).count()
        warmup_stored = UsageEvent.objects.filter(
            merchant=world["merchant"], idempotency_key__startswith=f"{run_id}-w-"
        ).count()
        problems = ledger_check()
        usage_problems = usage_check()
        connection.close()
        baseline_rate = baseline["eventsPerSecond"] if baseline else None
        during_rate = during["eventsPerSecond"] if during else None
        ratio = round(during_rate / baseline_rate, 2) if baseline_rate and during_rate is not None else None
        targets = [
            f"close {close_seconds} s (< {TARGET_CLOSE_SECONDS} s on 2 cores): "
            + ("met" if close_seconds is not None and close_seconds < TARGET_CLOSE_SECONDS else "missed")
        ]
        if ratio is not None:
            targets.append(
                f"single events during the close at {ratio} of their rate without one (>= {TARGET_SINGLE_RATIO}): "
                + ("met" if ratio >= TARGET_SINGLE_RATIO else "missed")
            )
        report.update(
            {
                "environment": {
                    "workers": args.workers,
                    "webWorkers": args.web_workers,
                    "threads": args.threads,
                    "singleConcurrency": args.single_concurrency,
                    "settings": close_settings,
                },
                "database": "embedded (socket)" if embedded_db else "at DATABASE_URL",
                "redis": urlsplit(env["REDIS_URL"]).netloc.rsplit("@", 1)[-1] + urlsplit(env["REDIS_URL"]).path,
                "periodEnd": period_end.isoformat(),
                "close": close,
                "closeWatch": watch.summary(),
                "workerTasks": {**worker_tasks(workdir / "worker.log"), "leftOnQueue": left_on_queue},
                "phases": [phases[k] for k in ("floor", "single", "closing") if k in phases],
                "cpu": cpu,
                "singles": {
                    "baselinePerSecond": baseline_rate,
                    "duringClosePerSecond": during_rate,
                    "ratio": ratio,
                    "acknowledged": acknowledged,
                    "stored": stored - warmup_stored,
                },
                "ledgerCheck": {"problems": len(problems), "sample": problems[:5]},
                "usageCheck": {"problems": len(usage_problems), "sample": usage_problems[:5]},
                "targets": targets,
                "logs": str(workdir),
            }
        )
        report["machine"]["loadavgAfter"] = [round(x, 2) for x in os.getloadavg()]
        report["wallSeconds"] = round(time.monotonic() - started, 2)
        if args.json:
            print(json.dumps(report, indent=2, default=str))
        else:
            print_report(report)
        ok = (
            close["ok"]
            and not shape_differences
            and not problems
            and not usage_problems
            and stored - warmup_stored == acknowledged
        )
        return 0 if ok else 1
    finally:
        for process in (beat, worker, web):
            stop_process(process)
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        if not args.keep_database:
            ingest.drop_database(server_url)


if __name__ == "__main__":
    sys.exit(main())
