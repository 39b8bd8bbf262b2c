"""API-key verify benchmark (issue 15): POST /v0/apiKeys/verify against GET /healthz, gunicorn on 127.0.0.1.

    .venv/bin/python bench/verify.py [--runs 5] [--requests N] [--concurrency 16] [--keys 8]
        [--workers W] [--threads T] [--duration-cap S] [--profile N] [--json]

PostgreSQL and Redis as for bench/ingest.py (DATABASE_URL / REDIS_URL when they answer, else
embedded servers); a database `billing_bench_verify` (dropped first and at the end). Seeded, not
timed: one merchant and its secret key, the demo tiers (apps.catalog.demo.seed_catalog), the
enterprise tier's limits raised so that they never refuse the load (rateLimit 1,000,000/s,
monthlyQueryLimit 1,000,000,000: the quota is still counted on every call), and `--keys` keys on it
(through apps.apikeys.services.api_key_create, two customers). gunicorn as the Procfile runs it
(bench/ingest.py's start_gunicorn: gthread, one worker per core, WEB_THREADS 8).

Then `--runs` rounds, each a healthz phase and a verify phase of `--requests` requests at
`--concurrency` (the order alternates from round to round: floor first in odd rounds, verify
first in even ones), with bench/ingest.py's load generator (keep-alive http.client connections,
one per thread, bodies built before the clock starts). Printed: per round and as medians, both
rates, verify/healthz, p50/p99 of each; verify's answers by code; then the stream is drained
in this process (apps.apikeys.tasks.drain_once) and the counted calls in the database (usage events
keyed verify:<entry>) and in Redis (the quota counters) are compared with the VALID answers
received: all three must be equal (exit status 1 otherwise). Nothing about timing is asserted.

`--profile N` starts no server: N verifies through Django's test client in this process, half
timed (the Lua script's round trip against the whole request), half under cProfile.

Target (2 cores, load generator on the same machine): verify >= 60 % of the healthz rate, p99 < 10 ms.
"""

import argparse
import contextlib
import cProfile
import io
import json
import os
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ingest  # noqa: E402 (after the path)

BENCH_DATABASE = "billing_bench_verify"
ingest.BENCH_DATABASE = BENCH_DATABASE  # its create/drop and CPU accounting name this database
BASE_DIR = ingest.BASE_DIR
HOST = ingest.HOST
VERIFY_PATH = "/v0/apiKeys/verify"
RATE_LIMIT = 1_000_000
MONTHLY_LIMIT = 1_000_000_000

TARGET_RATIO = 0.60
TARGET_P99_MS = 10.0


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def parse_args(argv=None):
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="rounds of healthz + verify (default 5)")
    parser.add_argument("--requests", type=int, default=6000, help="requests per phase (default 6000)")
    parser.add_argument("--concurrency", type=int, default=16, help="client threads (default 16)")
    parser.add_argument("--keys", type=int, default=8, help="API keys on the enterprise tier (default 8)")
    parser.add_argument("--workers", type=int, default=cores, help=f"gunicorn workers (default: one per core, {cores})")
    parser.add_argument("--threads", type=int, default=8, help="threads running Django per worker (default 8)")
    parser.add_argument(
        "--duration-cap", type=float, default=600.0, help="cap on the whole run's wall seconds (default 600)"
    )
    parser.add_argument(
        "--profile", type=int, default=0, help="profile N verifies in this process instead (no server; default 0)"
    )
    parser.add_argument("--keep-database", action="store_true", help=f"leave {BENCH_DATABASE} in place at the end")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    args = parser.parse_args(argv)
    ingest.check_limits(
        parser,
        args,
        {
            "runs": (1, 50),
            "requests": (1, 1_000_000),
            "concurrency": (1, 256),
            "keys": (1, 1000),
            "workers": (1, 64),
            "threads": (1, 64),
            "profile": (0, 1_000_000),
        },
    )
    if not 10 <= args.duration_cap <= 7200:
        parser.error("--duration-cap must be between 10 and 7200 seconds")
    return args


# ---------------------------------------------------------------------------- seeding


def seed(keys: int) -> dict:
    """One merchant, its secret key, the demo tiers (enterprise's limits raised) and `keys` keys on
    enterprise, over two customers."""
    from apps.apikeys.services import api_key_create
    from apps.catalog.demo import seed_catalog
    from apps.catalog.models import Plan
    from apps.merchants.services import api_key_create as merchant_key_create
    from apps.merchants.services import merchant_create

    merchant = merchant_create(name="Bench Verify", contact_email="bench-verify@example.com")
    _, secret = merchant_key_create(merchant=merchant, name="bench")
    seed_catalog(merchant=merchant)
    enterprise = Plan.objects.get(merchant=merchant, code="enterprise")
    enterprise.features = {**enterprise.features, "rateLimit": RATE_LIMIT, "monthlyQueryLimit": MONTHLY_LIMIT}
    enterprise.save(update_fields=["features"])
    secrets = []
    for i in range(keys):
        created = api_key_create(
            merchant=merchant,
            organization_name=f"Bench Org {i % 2}",
            contact_email=f"bench-{i % 2}@example.com",
            tier_code="enterprise",
        )
        secrets.append(created.secret)
    return {"merchant": merchant, "secret": secret, "keys": secrets}


def clear_redis() -> None:
    """The bench's Redis database starts without API-key records, counts or counted calls."""
    from apps.core.redis import get_redis

    client = get_redis()
    for pattern in ("apikey:*", "apisub*", "apirate:*", "apiquota:*", "apikeys:*", "ratelimit:*"):
        for name in client.scan_iter(pattern):
            client.delete(name)


# ---------------------------------------------------------------------------- load


class Codes:
    """Verify's answers by code, counted from the load's threads (ingest.run_phase's ack hook)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = Counter()

    def ack(self, status, data) -> int:
        code = f"http {status}"
        if status == 200:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                code = json.loads(data)["code"]
        with self.lock:
            self.counts[code] += 1
        return 1 if code == "VALID" else 0


def verify_bodies(keys: list[str], count: int) -> list[bytes]:
    return [json.dumps({"apiKey": keys[i % len(keys)], "cost": 1}).encode() for i in range(count)]


def phase(name, *, port, secret, bodies, path, concurrency, deadline, ack) -> dict:
    return ingest.run_phase(
        name=name,
        port=port,
        secret=secret,
        bodies=bodies,
        path=path,
        concurrency=concurrency,
        deadline=deadline,
        count_acknowledged=ack,
        events_per_body=1,
    )


def summary(result: dict) -> dict:
    return {
        "requests": result["requests"],
        "perSecond": result["requestsPerSecond"],
        "p50Ms": result["p50Ms"],
        "p99Ms": result["p99Ms"],
        "maxMs": result["maxMs"],
        "statuses": result["statuses"],
        "cut": result["cutByDeadline"],
        "cpu": result.get("cpu", {}),
    }


def median(rounds: list[dict], phase_name: str, field: str):
    values = [r[phase_name][field] for r in rounds if r[phase_name][field] is not None]
    return round(statistics.median(values), 2) if values else None


# ---------------------------------------------------------------------------- the check afterwards


def counted_check(merchant, valid_answers: int) -> dict:
    """Drain the stream; the counted calls in the database and in Redis against the VALID answers."""
    from apps.apikeys.tasks import drain_once
    from apps.apikeys.verify import STREAM
    from apps.core.redis import get_redis
    from apps.usage.models import UsageEvent

    client = get_redis()
    started = time.monotonic()
    drained = 0
    while True:
        taken = drain_once()
        drained += taken
        if not taken:
            break
    seconds = round(time.monotonic() - started, 2)
    in_redis = sum(int(client.get(name) or 0) for name in client.scan_iter("apiquota:*"))
    in_database = UsageEvent.objects.filter(merchant=merchant, idempotency_key__startswith="verify:").count()
    refused = client.xlen(f"{STREAM}:refused")
    return {
        "validAnswers": valid_answers,
        "drained": drained,
        "drainSeconds": seconds,
        "countedInDatabase": in_database,
        "countedInRedis": in_redis,
        "refused": refused,
        "left": client.xlen(STREAM),
        "equal": valid_answers == in_database == in_redis and not refused,
    }


# ---------------------------------------------------------------------------- profile


def profile(world: dict, count: int) -> dict:
    """Verifies through Django's whole request cycle in this process: the Lua round trip timed
    against the request, then cProfile's cumulative view."""
    from django.test import Client

    from apps.apikeys import verify as verify_module

    client = Client(HTTP_HOST=HOST)  # (the bench's ALLOWED_HOSTS)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {world['secret']}"}
    bodies = verify_bodies(world["keys"], count)
    for body in bodies[:50]:  # (records loaded, connections open, caches warm)
        client.post(VERIFY_PATH, body, content_type="application/json", **headers)
    decide = verify_module._decide
    in_redis = []

    def timed_decide(*a, **kw):
        t0 = time.perf_counter()
        try:
            return decide(*a, **kw)
        finally:
            in_redis.append(time.perf_counter() - t0)

    half = count // 2
    whole = []
    verify_module._decide = timed_decide
    try:
        for body in bodies[:half]:
            t0 = time.perf_counter()
            response = client.post(VERIFY_PATH, body, content_type="application/json", **headers)
            whole.append(time.perf_counter() - t0)
            assert response.status_code == 200, response.content
    finally:
        verify_module._decide = decide
    profiler = cProfile.Profile()
    profiler.enable()
    for body in bodies[half:]:
        client.post(VERIFY_PATH, body, content_type="application/json", **headers)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(35)
    mean_whole = statistics.mean(whole) * 1e6
    mean_redis = statistics.mean(in_redis) * 1e6
    return {
        "verifies": half,
        "meanRequestUs": round(mean_whole, 1),
        "meanLuaRoundTripUs": round(mean_redis, 1),
        "luaShare": round(mean_redis / mean_whole, 3),
        "cprofile": out.getvalue(),
    }


# ---------------------------------------------------------------------------- report


def print_report(report: dict) -> None:
    machine, server = report["machine"], report["server"]
    print()
    print(
        f"machine: {machine['nproc']} cores, Python {machine['python']}, loadavg before/after "
        f"{machine['loadavgBefore']} / {machine['loadavgAfter']}"
    )
    print(
        f"server:  gunicorn gthread x {server['workers']} workers x {server['threads']} threads on {server['bind']}; "
        f"Redis {report['redis']}; {report['keys']} keys on enterprise; concurrency {report['concurrency']}"
    )
    print()
    header = (
        f"{'round':<6} {'first':<7} {'healthz/s':>10} {'p50':>6} {'p99':>6} {'verify/s':>9} {'p50':>6} {'p99':>6} "
        f"{'ratio':>6}  loadavg   cpu verify (gunicorn/redis/client/other)"
    )
    print(header)
    print("-" * len(header))
    for i, r in enumerate(report["rounds"], 1):
        f, v = r["healthz"], r["verify"]
        cpu = v["cpu"]
        print(
            f"{i:<6} {r['first']:<7} {f['perSecond']:>10.1f} {f['p50Ms']:>6.2f} {f['p99Ms']:>6.2f} "
            f"{v['perSecond']:>9.1f} {v['p50Ms']:>6.2f} {v['p99Ms']:>6.2f} {r['ratio']:>6.3f}  {r['loadavg']:<8} "
            f"{cpu.get('gunicorn')}/{cpu.get('redis')}/{cpu.get('client')}/{cpu.get('other')}"
        )
    m = report["medians"]
    print(
        f"{'median':<14} {m['healthzPerSecond']:>10.1f} {m['healthzP50Ms']:>6.2f} {m['healthzP99Ms']:>6.2f} "
        f"{m['verifyPerSecond']:>9.1f} {m['verifyP50Ms']:>6.2f} {m['verifyP99Ms']:>6.2f} {m['ratio']:>6.3f}"
    )
    print()
    print("verify answers: " + ", ".join(f"{k} {v}" for k, v in sorted(report["codes"].items())))
    c = report["counted"]
    print(
        f"counted: VALID answers {c['validAnswers']}, in the database {c['countedInDatabase']} (drained "
        f"{c['drained']} in {c['drainSeconds']} s), in Redis {c['countedInRedis']}, refused {c['refused']}, "
        f"left {c['left']} -> {'equal' if c['equal'] else 'NOT EQUAL'}"
    )
    for line in report["targets"]:
        print(f"target: {line}")
    print(f"total wall: {report['wallSeconds']} s")


# ---------------------------------------------------------------------------- main


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    deadline = ingest.Deadline(args.duration_cap)
    loadavg_before = os.getloadavg()

    from billing_platform import devservers

    with contextlib.redirect_stdout(sys.stderr):
        base_env = devservers.prepare_environment()
    server_url = base_env["DATABASE_URL"]
    database_url = ingest.recreate_database(server_url)
    env = ingest.app_environment(base_env, database_url)
    os.environ.update({k: v for k, v in env.items() if k != "PATH"})
    log(f"database {BENCH_DATABASE} created")

    process = None
    workdir = Path(tempfile.mkdtemp(prefix="billing-bench-verify-"))
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            env=env,
            cwd=BASE_DIR,
            check=True,
            timeout=max(10.0, deadline.left()),
        )
        import django

        django.setup()
        from django.db import connection

        clear_redis()
        world = seed(args.keys)
        log(f"seeded: merchant, tiers, {len(world['keys'])} enterprise keys")

        if args.profile:
            result = profile(world, args.profile)
            counted = counted_check(world["merchant"], valid_answers=args.profile + 50)
            print(result["cprofile"])
            print(
                f"profile: {result['verifies']} verifies timed, mean request {result['meanRequestUs']} us, "
                f"mean Lua round trip {result['meanLuaRoundTripUs']} us ({result['luaShare']:.1%} of the request)"
            )
            print(f"counted: {counted}")
            return 0 if counted["equal"] else 1

        port = devservers.free_port(HOST)
        server_args = types.SimpleNamespace(worker_class="gthread", threads=args.threads, workers=args.workers)
        process = ingest.start_gunicorn(env, server_args, port, workdir / "gunicorn.log")
        ingest.wait_healthy(process, port, args.workers, timeout=min(60.0, max(5.0, deadline.left())))
        log(f"gunicorn {process.pid} (gthread x {args.workers} x {args.threads}) on {HOST}:{port}")

        codes = Codes()
        # warm-up, not counted in the figures (its VALID answers are in the check afterwards):
        # every worker loads the merchant key, the records are in Redis, connections are open
        phase(
            "warmup",
            port=port,
            secret=world["secret"],
            bodies=verify_bodies(world["keys"], 200 * args.workers),
            path=VERIFY_PATH,
            concurrency=args.concurrency,
            deadline=ingest.Deadline(min(30.0, deadline.left())),
            ack=codes.ack,
        )
        phase(
            "warmup",
            port=port,
            secret=world["secret"],
            bodies=[None] * 200,
            path="/healthz",
            concurrency=args.concurrency,
            deadline=ingest.Deadline(min(30.0, deadline.left())),
            ack=ingest.single_ack_get,
        )

        bodies = verify_bodies(world["keys"], args.requests)
        rounds = []
        for index in range(args.runs):
            if deadline.left() < 5:
                log("duration cap reached: no more rounds")
                break
            order = ("healthz", "verify") if index % 2 == 0 else ("verify", "healthz")
            loadavg = f"{os.getloadavg()[0]:.2f}"
            results = {}
            for name in order:
                share = max(2.0, deadline.left() / (2 * (args.runs - index)) - 1)
                cpu_before = ingest.cpu_snapshot(process.pid)
                result = phase(
                    name,
                    port=port,
                    secret=world["secret"],
                    bodies=bodies if name == "verify" else [None] * args.requests,
                    path=VERIFY_PATH if name == "verify" else "/healthz",
                    concurrency=args.concurrency,
                    deadline=ingest.Deadline(share),
                    ack=codes.ack if name == "verify" else ingest.single_ack_get,
                )
                result["cpu"] = ingest.cpu_delta(cpu_before, ingest.cpu_snapshot(process.pid), result["wallSeconds"])
                results[name] = summary(result)
            ratio = results["verify"]["perSecond"] / results["healthz"]["perSecond"]
            rounds.append({**results, "first": order[0], "ratio": round(ratio, 3), "loadavg": loadavg})
            log(
                f"round {index + 1}: healthz {results['healthz']['perSecond']}/s, verify "
                f"{results['verify']['perSecond']}/s (ratio {ratio:.3f}), verify p50 {results['verify']['p50Ms']} ms "
                f"p99 {results['verify']['p99Ms']} ms; loadavg {loadavg}"
            )

        ingest.stop_gunicorn(process)
        counted = counted_check(world["merchant"], valid_answers=codes.counts["VALID"])
        connection.close()
        medians = {
            "healthzPerSecond": median(rounds, "healthz", "perSecond"),
            "healthzP50Ms": median(rounds, "healthz", "p50Ms"),
            "healthzP99Ms": median(rounds, "healthz", "p99Ms"),
            "verifyPerSecond": median(rounds, "verify", "perSecond"),
            "verifyP50Ms": median(rounds, "verify", "p50Ms"),
            "verifyP99Ms": median(rounds, "verify", "p99Ms"),
            "ratio": round(statistics.median(r["ratio"] for r in rounds), 3),
        }
        ratio_ok = medians["ratio"] >= TARGET_RATIO
        p99_ok = medians["verifyP99Ms"] < TARGET_P99_MS
        report = {
            "machine": {
                "nproc": os.cpu_count(),
                "python": platform.python_version(),
                "loadavgBefore": [round(x, 2) for x in loadavg_before],
                "loadavgAfter": [round(x, 2) for x in os.getloadavg()],
            },
            "server": {"workers": args.workers, "threads": args.threads, "bind": f"{HOST}:{port}"},
            "redis": urlsplit(env["REDIS_URL"]).netloc.rsplit("@", 1)[-1] + urlsplit(env["REDIS_URL"]).path,
            "keys": len(world["keys"]),
            "concurrency": args.concurrency,
            "rounds": rounds,
            "medians": medians,
            "codes": dict(codes.counts),
            "counted": counted,
            "targets": [
                f"verify/healthz {medians['ratio']:.3f} (>= {TARGET_RATIO}): {'met' if ratio_ok else 'missed'}",
                f"verify p99 {medians['verifyP99Ms']} ms (< {TARGET_P99_MS:g}): {'met' if p99_ok else 'missed'}",
            ],
            "wallSeconds": round(time.monotonic() - started, 2),
        }
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print_report(report)
        return 0 if counted["equal"] else 1
    finally:
        if process is not None:
            ingest.stop_gunicorn(process)
            if process.returncode not in (0, -15):
                log(f"gunicorn ended with {process.returncode}; see {workdir / 'gunicorn.log'}")
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        if not args.keep_database:
            ingest.drop_database(server_url)


if __name__ == "__main__":
    sys.exit(main())
