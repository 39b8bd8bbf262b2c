import pytest
from rest_framework.test import APIClient

from tests.factories import MerchantFactory, issue_key, sandbox_of

# localstripe and anvil (each started only by the tests that use it), the sandbox's Stripe pointed at it
pytest_plugins = ["tests.stripe_fixtures", "tests.chain_fixtures"]


class Api:
    """An API client for one key: `api.post("/v0/widgets", {...})` sends JSON with the key."""

    def __init__(self, secret: str, merchant):
        self.secret = secret
        self.merchant = merchant
        self.client = APIClient()
        self.client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")

    def get(self, path, params=None, **extra):
        return self.client.get(path, params or {}, **extra)

    def post(self, path, data=None, **extra):
        return self.client.post(path, data if data is not None else {}, format="json", **extra)

    def patch(self, path, data=None, **extra):
        return self.client.patch(path, data if data is not None else {}, format="json", **extra)

    def delete(self, path, **extra):
        return self.client.delete(path, **extra)


@pytest.fixture
def merchant(db):
    return MerchantFactory()


@pytest.fixture
def sandbox(merchant):
    return sandbox_of(merchant)


@pytest.fixture
def api(merchant):
    """The live key of `merchant`."""
    return Api(issue_key(merchant), merchant)


@pytest.fixture
def test_api(sandbox):
    """The sandbox (sk_test_) key of `merchant`."""
    return Api(issue_key(sandbox), sandbox)


@pytest.fixture
def other_api(db):
    """The live key of another merchant."""
    other = MerchantFactory()
    return Api(issue_key(other), other)


@pytest.fixture(autouse=True)
def _clear_process_caches():
    """Cached keys and accounts would outlive the rows that each test rolls back."""
    from apps.core.process_cache import clear_process_caches

    clear_process_caches()
    yield
    clear_process_caches()


@pytest.fixture(autouse=True)
def _celery_join_flag_reset():
    """Celery keeps "a result.get() here would block" in one process-wide flag that each eager
    task sets and restores around itself; eager tasks run at once from several threads (concurrent
    webhook deliveries) can restore it in the wrong order and leave it set, after which every
    later test's EagerResult.get() raises "Never call result.get() within a task!". Each test
    starts with it clear, as a test process that runs no task has it."""
    from celery.result import _set_task_join_will_block

    _set_task_join_will_block(False)
    yield


@pytest.fixture(autouse=True)
def _clear_redis_counters():
    """Rate-limit counters, queued-close marks and API-key verify's records and counts live in
    Redis; start each test without any."""
    from apps.core.redis import get_redis

    client = get_redis()
    for pattern in ("ratelimit:*", "periods:queued:*", "apikey:*", "apisub*", "apirate:*", "apiquota:*", "apikeys:*"):
        for key in client.scan_iter(pattern):
            client.delete(key)
    yield
