"""Per-key rate limit, requests per second, counted in Redis (shared by every web process)."""

import logging
import math
import time

import redis
from django.conf import settings
from rest_framework.throttling import BaseThrottle

from apps.core.redis import get_redis

logger = logging.getLogger(__name__)


def key_rate_limit(key) -> int:
    return settings.API_DEFAULT_RATE_LIMIT if key.rate_limit is None else key.rate_limit


def rate_limit_wait(key) -> int | None:
    """Seconds to wait when this request is past the key's limit, else None.

    A one-second fixed window per key; a limit of 0 is off. When Redis cannot be
    reached the request goes through: a lost rate limit is better than a billing API
    that refuses every call.
    """
    limit = key_rate_limit(key)
    if limit <= 0:
        return None
    now = time.time()
    window = int(now)
    counter = f"ratelimit:{key.pk}:{window}"
    try:
        pipe = get_redis().pipeline(transaction=False)
        pipe.incr(counter)
        pipe.expire(counter, 2)
        count, _ = pipe.execute()
    except redis.RedisError:
        logger.warning("rate limit skipped: Redis unreachable")
        return None
    if count > limit:
        return max(1, math.ceil(window + 1 - now))
    return None


class MerchantKeyRateThrottle(BaseThrottle):
    def allow_request(self, request, view):
        key = getattr(request, "auth", None)
        if key is None:
            return True
        self._wait = rate_limit_wait(key)
        return self._wait is None

    def wait(self):
        return getattr(self, "_wait", None) or 1
