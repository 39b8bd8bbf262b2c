"""POST /v0/apiKeys/verify served by real gunicorn processes (as the Procfile runs it) on this run's
Redis and test database (issue 15): a revocation is seen by every web process at the very next
call, the quota holds under concurrent calls through the HTTP server, and a web process killed
mid-load loses no VALID answer it gave.

Rows are committed (transaction=True) so that gunicorn sees them; every wait is for an event
(an answer, a log line) with a generous deadline, never a timing.
"""

import http.client
import re
import threading
import time
from collections import Counter

import pytest

from apps.apikeys.models import CustomerApiKey
from apps.apikeys.services import api_key_create
from apps.apikeys.tasks import drain_once
from apps.apikeys.verify import STREAM
from apps.catalog.demo import seed_catalog
from apps.catalog.models import Plan
from apps.core.redis import get_redis
from apps.usage.models import UsageEvent
from tests.factories import MerchantFactory, issue_key
from tests.integration.test_stalled_clients import DEADLINE, Gunicorn

pytestmark = pytest.mark.django_db(transaction=True)

VERIFY = "/v0/apiKeys/verify"
ACCESS = re.compile(r"^pid=<?(?P<pid>\d+)>? (?P<request>.+)$")


@pytest.fixture
def world():
    """A merchant with its secret key and the demo tiers; `key(...)` issues a customer key on
    enterprise with the given limits."""
    merchant = MerchantFactory()
    secret = issue_key(merchant)
    seed_catalog(merchant=merchant)

    def key(*, rate_limit: int = 100_000, monthly_limit: int | None = None, email: str = "dev@acme.example"):
        enterprise = Plan.objects.get(merchant=merchant, code="enterprise")
        enterprise.features = {**enterprise.features, "rateLimit": rate_limit, "monthlyQueryLimit": monthly_limit}
        enterprise.save(update_fields=["features"])
        created = api_key_create(
            merchant=merchant, organization_name="Acme", contact_email=email, tier_code="enterprise"
        )
        return created.key, created.secret

    return merchant, secret, key


@pytest.fixture
def web(tmp_path):
    servers = []

    def start(secret: str, workers: int, **env):
        access_log = tmp_path / f"access-{len(servers)}.log"
        server = Gunicorn(
            tmp_path,
            secret,
            extra_args=("--access-logfile", str(access_log), "--access-logformat", "pid=%(p)s %(r)s %(s)s"),
            WEB_CONCURRENCY=str(workers),
            **env,
        )
        server.access_log = access_log
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def verify(server, secret: str, cost: int = 1) -> dict:
    status, body = server.request("POST", VERIFY, {"apiKey": secret, "cost": cost})
    assert status == 200, body
    return body


def verify_pids(server) -> list[str]:
    """The worker process of each verify logged so far, in order."""
    pids = []
    for line in server.access_log.read_text().splitlines():
        match = ACCESS.match(line)
        if match and VERIFY in match["request"]:
            pids.append(match["pid"])
    return pids


def verifies_until_both_workers_served(server, secret: str, expected: str) -> list[dict]:
    """Verifies (a connection each) until two distinct worker processes have answered one since
    the start; each answer is returned (all asserted by the caller)."""
    seen_before = len(verify_pids(server))
    answers = []
    deadline = time.monotonic() + DEADLINE
    while len(set(verify_pids(server)[seen_before:])) < 2:
        assert time.monotonic() < deadline, f"one worker served every verify: {verify_pids(server)}"
        answers.append(verify(server, secret))
        assert answers[-1]["code"] == expected, answers[-1]
    return answers


def drain_all() -> int:
    drained = 0
    while taken := drain_once():
        drained += taken
    return drained


def counted_in_redis(subscription_id) -> int:
    client = get_redis()
    return sum(int(client.get(name) or 0) for name in client.scan_iter(f"apiquota:{subscription_id}:*"))


def counted_in_database(subscription_id) -> int:
    return UsageEvent.objects.filter(subscription_id=subscription_id, idempotency_key__startswith="verify:").count()


def test_a_revoked_key_is_refused_at_the_very_next_call_by_every_web_process(world, web):
    merchant, secret, make_key = world
    key, customer_secret = make_key()
    server = web(secret, workers=2)
    # both workers have answered VALID (each has the merchant key and the records at hand)
    assert verifies_until_both_workers_served(server, customer_secret, "VALID")

    status, revoked = server.request("DELETE", f"/v0/billing/apiKeys/{key.id}")
    assert status == 200 and revoked["revokedAt"] is not None, revoked

    # the very next call, and every one after it, whichever worker serves it
    first = verify(server, customer_secret)
    assert (first["valid"], first["code"]) == (False, "REVOKED")
    assert verifies_until_both_workers_served(server, customer_secret, "REVOKED")
    assert CustomerApiKey.objects.get(pk=key.pk).revoked_at is not None


def test_200_concurrent_verifies_with_100_left_give_exactly_100_valid_through_the_server(world, web):
    merchant, secret, make_key = world
    key, customer_secret = make_key(rate_limit=100_000, monthly_limit=100)
    server = web(secret, workers=2)
    codes = Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(20)

    def caller():
        barrier.wait()
        for _ in range(10):
            code = verify(server, customer_secret)["code"]
            with lock:
                codes[code] += 1

    threads = [threading.Thread(target=caller) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE)
    assert codes == {"VALID": 100, "QUOTA_EXCEEDED": 100}
    assert drain_all() == 100
    assert counted_in_database(key.subscription_id) == counted_in_redis(key.subscription_id) == 100


def test_a_web_process_killed_mid_load_loses_no_valid_answer_it_gave(world, web):
    merchant, secret, make_key = world
    key, customer_secret = make_key()
    server = web(secret, workers=2)
    lock = threading.Lock()
    outcomes = Counter()  # VALID received, other answers, sent but unanswered
    stop = threading.Event()
    enough = threading.Event()

    def caller():
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=DEADLINE)
        body = f'{{"apiKey": "{customer_secret}", "cost": 1}}'
        headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
        try:
            while not stop.is_set():
                try:
                    conn.request("POST", VERIFY, body=body, headers=headers)
                except OSError:
                    return  # (not sent: the server was gone before this request)
                try:
                    response = conn.getresponse()
                    answer = response.read()
                except (OSError, http.client.HTTPException):
                    with lock:
                        outcomes["unanswered"] += 1
                    return
                with lock:
                    outcomes["VALID" if response.status == 200 and b'"VALID"' in answer else "other"] += 1
                    if outcomes["VALID"] >= 300:
                        enough.set()
        finally:
            conn.close()

    threads = [threading.Thread(target=caller) for _ in range(16)]
    for thread in threads:
        thread.start()
    assert enough.wait(DEADLINE), outcomes
    server.kill()  # mid-load: the workers die with requests in hand
    stop.set()
    for thread in threads:
        thread.join(DEADLINE)
    assert not any(thread.is_alive() for thread in threads)

    assert outcomes["other"] == 0, outcomes
    assert get_redis().xlen(STREAM) > 0
    drain_all()
    received, unanswered = outcomes["VALID"], outcomes["unanswered"]
    in_database = counted_in_database(key.subscription_id)
    in_redis = counted_in_redis(key.subscription_id)
    assert received <= in_database == in_redis <= received + unanswered, (received, in_database, in_redis, outcomes)
