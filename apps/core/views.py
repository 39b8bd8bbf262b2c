"""Health probes: /healthz says the process is up; /readyz that its database and Redis answer."""

import logging

import redis
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from apps.core.errors import json_not_found
from apps.core.redis import get_redis

logger = logging.getLogger(__name__)


# The icon browsers ask every page of the site for (/favicon.ico): a small SVG, so that no page
# (a checkout's success redirect to a plain URL, say) logs a failed request in the customer's console.
FAVICON_SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    b'<rect width="16" height="16" rx="3" fill="#1f3a8a"/>'
    b'<path d="M5 3.5h4a2.25 2.25 0 0 1 0 4.5H5zm0 4.5h4.5a2.25 2.25 0 0 1 0 4.5H5z" fill="none" '
    b'stroke="#fff" stroke-width="1.5"/></svg>'
)


def favicon(request):
    return HttpResponse(FAVICON_SVG, content_type="image/svg+xml", headers={"Cache-Control": "public, max-age=86400"})


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
