"""Health probes: /healthz says the process is up; /readyz that its database and Redis answer."""

import logging

import redis
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from apps.core.errors import json_not_found
from apps.core.redis import get_redis

logger = logging.getLogger(__name__)


@never_cache
def healthz(request):
    return JsonResponse({"status": "ok"})


@never_cache
def readyz(request):
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # any failure to reach the database means not ready
        logger.warning("readyz: database unreachable: %s", exc)
        checks["database"] = "unreachable"
    try:
        get_redis().ping()
        checks["redis"] = "ok"
    except redis.RedisError as exc:
        logger.warning("readyz: redis unreachable: %s", exc)
        checks["redis"] = "unreachable"
    ready = all(v == "ok" for v in checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)


@csrf_exempt
def unknown_endpoint(request):
    """Any /v0 path that no route matches, with any method."""
    return json_not_found(request)
