"""Per-address rate limits on every public surface, counted in Redis (shared by every web process).

Each surface has its own limit, `count` requests per `seconds` from one client address, set by an
environment variable (README, Configuration; `0` turns one off):

| surface | what is counted | variable |
|---|---|---|
| the API without a valid key | each /v0 answer 401, and each request for /v0/schema or /v0/docs | `RATE_LIMIT_API_UNAUTHENTICATED` |
| portal links | each request for /portal/open/<token> | `RATE_LIMIT_PORTAL_LINK` |
| portal pages | each other request under /portal/ | `RATE_LIMIT_PORTAL` |
| checkout pages | each GET under /checkout/ | `RATE_LIMIT_CHECKOUT` |
| checkout actions | each POST under /checkout/ (test payment, card setup and payment) | `RATE_LIMIT_CHECKOUT_ACTIONS` |
| inbound webhooks | each request under /webhooks/ | `RATE_LIMIT_WEBHOOKS` |

Past a limit the answer is 429 with `Retry-After` (the seconds left in the window): in the API's
error envelope under /v0 and /webhooks and to the pages' scripts (JSON requests; code
RATE_LIMITED), a short page saying when to try again (and reloading itself then) elsewhere. On the API, a
request without any key is counted (and refused past the limit) before it runs; one whose key does
not authenticate is counted when it answers 401, and past the limit answers 429 instead. Requests
with a valid key cost no Redis call here and never count (the per-key limit,
apps.merchants.throttling, is separate). The address is the connection's
(`REMOTE_ADDR`), or behind reverse proxies the one they report in X-Forwarded-For
(`TRUSTED_PROXY_COUNT`, `client_ip`). When Redis cannot be reached the
request goes through (a lost rate limit is better than pages that refuse everyone).
"""

import ipaddress
import logging
import math
import time
from dataclasses import dataclass

import redis
from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string

from apps.core.errors import error_body
from apps.core.redis import get_redis

logger = logging.getLogger(__name__)

KEY_PREFIX = "ratelimit:ip"


@dataclass(frozen=True)
class Limit:
    count: int
    seconds: int

    @classmethod
    def parse(cls, text: str) -> "Limit":
        """`"60/60"` (60 requests per 60 seconds), `"60"` (per minute) or `"0"` (off)."""
        count, _, seconds = str(text).strip().partition("/")
        limit = cls(int(count), int(seconds or 60))
        if limit.count < 0 or limit.seconds <= 0:
            raise ValueError(f"a rate limit is COUNT/SECONDS with COUNT >= 0 and SECONDS > 0, got {text!r}")
        return limit


def _from_trusted_proxy(remote: str) -> bool:
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return False
    return any(address in network for network in settings.TRUSTED_PROXY_NETWORKS)


def client_ip(request) -> str | None:
    """The client's address: the connection's (`REMOTE_ADDR`), or, behind `TRUSTED_PROXY_COUNT`
    reverse proxies that each append the address they were reached from to X-Forwarded-For, the
    entry the outermost of them appended (entries further left are whatever the client sent, and
    are never trusted). A header with fewer entries, or one that is not an address, is not
    trusted either: the connection's address stands. So is a connection that does not come from
    `TRUSTED_PROXY_NETWORKS` (a client that reaches gunicorn, or an inner proxy, directly would
    otherwise write the entry that is read). None when there is none (a request made in
    process). The admin's lockout counts by it (AXES_CLIENT_IP_CALLABLE)."""
    remote = request.META.get("REMOTE_ADDR") or None
    hops = settings.TRUSTED_PROXY_COUNT
    if hops <= 0 or remote is None or not _from_trusted_proxy(remote):
        return remote
    entries = [entry.strip() for entry in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if entry.strip()]
    if len(entries) < hops:
        return remote
    try:
        return str(ipaddress.ip_address(entries[-hops]))
    except ValueError:
        return remote


def client_address(request) -> str:
    """`client_ip`, as the rate limits count it: an IPv6 address by its /64 (one site's network,
    whose hosts can take any address in it: counting each apart would let one client walk
    around its limit)."""
    address = client_ip(request)
    if address is None:
        return "unknown"
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if parsed.version == 6 and parsed.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return address


def _window(limit: Limit, now: float) -> tuple[int, int]:
    """(the window's number, seconds left in it)."""
    window = int(now // limit.seconds)
    return window, max(1, math.ceil((window + 1) * limit.seconds - now))


def count(scope: str, address: str, limit: Limit) -> int | None:
    """Count one request of `address` on `scope`; the seconds to wait when it is past the limit."""
    if limit.count <= 0:
        return None
    window, left = _window(limit, time.time())
    key = f"{KEY_PREFIX}:{scope}:{address}:{window}"
    try:
        pipe = get_redis().pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, limit.seconds + 1)
        counted, _ = pipe.execute()
    except redis.RedisError:
        logger.warning("rate limit %s skipped: Redis unreachable", scope)
        return None
    return left if counted > limit.count else None


def _wants_json(request) -> bool:
    """The API and inbound webhooks, and the pages' own scripts (which send JSON, as the
    checkout's card and USDC actions do): the error envelope, which they read."""
    if request.path.startswith(("/v0", "/webhooks")):
        return True
    content_type = request.META.get("CONTENT_TYPE", "")
    return content_type.startswith("application/json") or "application/json" in request.META.get("HTTP_ACCEPT", "")


def too_many(request, scope: str, wait: int) -> HttpResponse:
    message = f"Too many requests from this address; retry in {wait} s."
    if _wants_json(request):
        response = JsonResponse(
            error_body("rate_limited", message, "RATE_LIMITED", {"retryAfter": wait, "scope": scope}), status=429
        )
    else:
        # a page a person sees (the portal, the checkout): what happened and when to try again,
        # and the page reloads itself then
        response = HttpResponse(
            # (reloading itself only where that is the same request again: a GET)
            render_to_string(
                "too_many_requests.html", {"message": message, "wait": wait, "reload": request.method == "GET"}
            ),
            status=429,
            content_type="text/html; charset=utf-8",
        )
    response["Retry-After"] = str(wait)
    return response


def surface(request) -> str | None:
    """The rate-limit scope of a request that is counted before it runs, else None."""
    path = request.path
    if path.startswith("/portal/open/"):
        return "portal_link"
    if path.startswith("/portal/"):
        return "portal"
    if path.startswith("/checkout/"):
        return "checkout_actions" if request.method == "POST" else "checkout"
    if path.startswith("/webhooks/"):
        return "webhooks"
    if path in ("/v0/schema", "/v0/docs"):
        return "api_unauthenticated"
    return None


CREDENTIAL_HEADERS = ("HTTP_AUTHORIZATION", "HTTP_X_API_KEY")


class PublicRateLimitMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        limits = {scope: Limit.parse(text) for scope, text in settings.PUBLIC_RATE_LIMITS.items()}
        address = client_address(request)
        scope = surface(request)
        with_key = any(request.META.get(header) for header in CREDENTIAL_HEADERS)
        if scope is None and request.path.startswith("/v0") and not with_key:
            scope = "api_unauthenticated"  # (answered 401 without a view's work: counted first)
        if scope is not None:
            wait = count(scope, address, limits[scope])
            if wait is not None:
                return too_many(request, scope, wait)
        response = self.get_response(request)
        if scope is None and with_key and response.status_code == 401 and request.path.startswith("/v0"):
            # a key that did not authenticate: counted, and once past the limit refused as such
            wait = count("api_unauthenticated", address, limits["api_unauthenticated"])
            if wait is not None:
                return too_many(request, "api_unauthenticated", wait)
        return response
