"""Settings, read from the environment with django-environ.

Every variable is listed, with its default, in README.md (Configuration).
"""

import ipaddress
import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)

SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("Set SECRET_KEY (50+ random characters), or DEBUG=true for local development.")
    SECRET_KEY = "insecure-development-key-only-for-DEBUG-true-never-in-production-0123456789"

# API keys and portal tokens are stored as HMAC-SHA256 under this key; changing it
# invalidates every issued key, so it is separate from SECRET_KEY.
API_KEY_HMAC_SECRET = env.str("API_KEY_HMAC_SECRET", default="") or f"api-key-hmac:{SECRET_KEY}"

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "apps.core",
    "apps.merchants",
    "apps.webhooks",
    "apps.catalog",
    "apps.customers",
    "apps.ledger",
    "apps.payments",
    "apps.cards",
    "apps.subscriptions",
    "apps.entitlements",
    "apps.usage",
    "apps.invoices",
    "apps.apikeys",
    "apps.settlements",
    "apps.checkout",
    "apps.portal",
    "csp",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "apps.core.middleware.RequestSizeLimitMiddleware",
    "apps.core.ratelimit.PublicRateLimitMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: turns a locked-out sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

# The contract's body limit: a full 1,000-event usage batch with metadata fits (413 beyond).
MAX_REQUEST_BODY_BYTES = 8 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES

ROOT_URLCONF = "billing_platform.urls"
WSGI_APPLICATION = "billing_platform.wsgi.application"
AUTH_USER_MODEL = "merchants.User"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

if "DATABASE_URL" not in env:
    raise ImproperlyConfigured(
        "Set DATABASE_URL to a PostgreSQL database (postgres://user:password@host:5432/name); "
        "`make run` and `make test` start an embedded PostgreSQL when it is unset."
    )
DATABASES = {"default": env.db("DATABASE_URL")}
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured("DATABASE_URL must point at PostgreSQL: money must behave the same everywhere.")
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
# A health check costs a round trip per request; without it, the first request on a
# connection that the server closed fails (500, safe to retry) and the next one reconnects.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("DATABASE_CONN_HEALTH_CHECKS", default=False)
# The ingestion hot path (apps.core.bulk.run_statements) prepares its statements once per
# connection; Django's own queries are never prepared (its cursors bind on the client side).
# Its statements are written to run well under a generic plan (their arrays drive index
# lookups), which spares PostgreSQL planning them again at every execution.
# DATABASE_PREPARED_STATEMENTS=false (behind a connection pooler in transaction mode that does
# not support prepared statements) prepares nothing at all: prepare_threshold None stops psycopg
# from preparing a statement on its own after it ran `prepare_threshold` (5) times, and
# an explicit prepare=True is ignored too (psycopg checks the threshold first).
DATABASE_PREPARED_STATEMENTS = env.bool("DATABASE_PREPARED_STATEMENTS", default=True)
_db_options = DATABASES["default"].setdefault("OPTIONS", {})
if DATABASE_PREPARED_STATEMENTS:
    _db_options["prepare_threshold"] = 0
    _db_options["options"] = f"{_db_options.get('options', '')} -c plan_cache_mode=force_generic_plan".strip()
else:
    _db_options["prepare_threshold"] = None
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")

# The admin's sign-in is locked for a username from an address after AXES_FAILURE_LIMIT wrong
# passwords, for AXES_COOLOFF_MINUTES (0: until `manage.py axes_reset_username`/`axes_reset`).
# The API authenticates with keys, not Django's authenticate(): axes never sees it.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out sign-in before any check
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
_axes_cooloff_minutes = env.float("AXES_COOLOFF_MINUTES", default=15.0)
AXES_COOLOFF_TIME = timedelta(minutes=_axes_cooloff_minutes) if _axes_cooloff_minutes > 0 else None
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]  # the pair: other users and addresses sign in
AXES_RESET_ON_SUCCESS = True  # a successful sign-in clears that pair's failures
AXES_LOCKOUT_CALLABLE = "apps.merchants.views.admin_locked_out"
AXES_CLIENT_IP_CALLABLE = "apps.core.ratelimit.client_ip"  # (TRUSTED_PROXY_COUNT, as the rate limits)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# Content-Security-Policy (django-csp) of the pages customers see (checkout, portal): nothing
# but this site's own scripts, styles, images and fonts; no inline script or style, no frames,
# forms posting only here. The admin and Swagger UI (whose pages carry inline script) are left out.
CONTENT_SECURITY_POLICY = {
    "EXCLUDE_URL_PREFIXES": ["/admin", "/v0/docs"],
    "DIRECTIVES": {
        "default-src": ["'none'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "form-action": ["'self'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
    },
}

# The hosted portal: a session started by a single-use link ends after this many idle seconds.
PORTAL_SESSION_IDLE_SECONDS = env.int("PORTAL_SESSION_IDLE_SECONDS", default=30 * 60)

# Production hardening: on unless DEBUG; each can be overridden for a TLS-terminating proxy.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if env.bool("USE_X_FORWARDED_PROTO", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# /healthz and /readyz answer over plain HTTP to load balancers and probes.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["apps.merchants.authentication.MerchantKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["apps.merchants.authentication.IsMerchant"],
    "DEFAULT_THROTTLE_CLASSES": ["apps.merchants.throttling.MerchantKeyRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["apps.core.parsers.StrictJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "apps.core.schema.ApiAutoSchema",
    "EXCEPTION_HANDLER": "apps.core.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Billing platform API",
    "DESCRIPTION": "The merchant-facing /v0 API: usage-based billing with exact money.",
    "VERSION": "v0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": r"/v0",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {"CurrencyEnum": ["USDC", "USD"], "PaymentTermEnum": "apps.catalog.models.PaymentTerm"},
}

# Per-address rate limits of the public surfaces (apps.core.ratelimit): "COUNT/SECONDS" (COUNT
# requests per SECONDS from one address), "COUNT" (per minute) or "0" (off).
PUBLIC_RATE_LIMITS = {
    scope: env.str(variable, default=default).strip()
    for scope, variable, default in (
        ("api_unauthenticated", "RATE_LIMIT_API_UNAUTHENTICATED", "60/60"),
        ("portal_link", "RATE_LIMIT_PORTAL_LINK", "20/60"),
        ("portal", "RATE_LIMIT_PORTAL", "300/60"),
        ("checkout", "RATE_LIMIT_CHECKOUT", "300/60"),
        ("checkout_actions", "RATE_LIMIT_CHECKOUT_ACTIONS", "30/60"),
        ("webhooks", "RATE_LIMIT_WEBHOOKS", "600/60"),
    )
}
# How many reverse proxies in front of the web process append the address they were reached from
# to X-Forwarded-For (0: none, the connection's address is the client's). The rate limits and the
# admin's lockout count by the address the outermost one saw (apps.core.ratelimit.client_ip).
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
if TRUSTED_PROXY_COUNT < 0:
    raise ImproperlyConfigured(f"TRUSTED_PROXY_COUNT is a number of proxies (0 or more), not {TRUSTED_PROXY_COUNT}.")
# The networks those proxies connect from (comma-separated CIDRs): X-Forwarded-For is read only on
# a connection from one of them. Default: loopback and the private ranges.
try:
    TRUSTED_PROXY_NETWORKS = tuple(
        ipaddress.ip_network(text.strip())
        for text in env.str(
            "TRUSTED_PROXY_NETWORKS", default="127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7"
        ).split(",")
        if text.strip()
    )
except ValueError as exc:
    raise ImproperlyConfigured(f"TRUSTED_PROXY_NETWORKS must be comma-separated networks (CIDR): {exc}") from exc
for _scope, _limit in PUBLIC_RATE_LIMITS.items():
    if not re.fullmatch(r"\d+(/[1-9]\d*)?", _limit):
        raise ImproperlyConfigured(
            f"The rate limit of {_scope} must be COUNT/SECONDS (such as 60/60) or 0, not {_limit!r}."
        )

# Platform rules the operator sets.
DEFAULT_COMMISSION_RATE = Decimal(env.str("DEFAULT_COMMISSION_RATE", default="0.05"))
API_DEFAULT_RATE_LIMIT = env.int("API_DEFAULT_RATE_LIMIT", default=0)
API_KEY_CACHE_SECONDS = env.float("API_KEY_CACHE_SECONDS", default=5.0)
PAYMENT_SESSION_TTL_SECONDS = env.int("PAYMENT_SESSION_TTL_SECONDS", default=24 * 3600)
# Usage may still be reported for the previous period this long after it ends (until its invoice is final).
USAGE_GRACE_PERIOD_SECONDS = env.int("USAGE_GRACE_PERIOD_SECONDS", default=3600)
# A period is read for its invoice this long after its usage window shut, so that a usage
# request accepted just before commits first (apps.subscriptions.services.periods).
PERIOD_CLOSE_SETTLE_SECONDS = env.int("PERIOD_CLOSE_SETTLE_SECONDS", default=60)
# How often beat looks for periods to close (seconds).
PERIOD_CLOSE_INTERVAL_SECONDS = env.float("PERIOD_CLOSE_INTERVAL_SECONDS", default=30.0)
# A subscription whose close is queued is not queued again by beat for this long (or until its
# task ends): the bound should a worker die with it.
PERIOD_CLOSE_ENQUEUE_SECONDS = env.int("PERIOD_CLOSE_ENQUEUE_SECONDS", default=600)
# Subscriptions whose periods one close task moves together, set-wise (in few transactions).
# Larger batches cost fewer statements per subscription, but single usage events of a batch's
# customers wait for their wallets until its commit (docs/benchmarks.md, issue 13).
PERIOD_CLOSE_BATCH_SIZE = env.int("PERIOD_CLOSE_BATCH_SIZE", default=100)
# An invoice that the wallet cannot cover is due this long after it is finalized.
INVOICE_DUE_SECONDS = env.int("INVOICE_DUE_SECONDS", default=7 * 24 * 3600)
# Dunning: collection of an invoice unpaid at its due date is retried this many days after it.
INVOICE_DUNNING_RETRY_DAYS = [float(day) for day in env.list("INVOICE_DUNNING_RETRY_DAYS", default=["1", "3", "7"])]
# Charge single usage reports that arrive at the same time in one web process together
# (one transaction; apps.usage.services.combining). Useful with threaded workers.
USAGE_COMBINE_REPORTS = env.bool("USAGE_COMBINE_REPORTS", default=True)
ENTITLEMENT_DEFAULT_TTL_SECONDS = env.int("ENTITLEMENT_DEFAULT_TTL_SECONDS", default=3600)
IDEMPOTENCY_KEY_TTL_HOURS = env.int("IDEMPOTENCY_KEY_TTL_HOURS", default=24)

# The web process (gunicorn, billing_platform/buffering.py): threads per process that run
# requests (each keeps a database connection), and how long a client may take to send a body.
WEB_THREADS = env.int("WEB_THREADS", default=8)
WEB_BODY_TIMEOUT = env.float("WEB_BODY_TIMEOUT", default=10.0)
# Outbound webhooks. WEBHOOK_ALLOW_PRIVATE_URLS: "false" (live and sandbox endpoints must be
# public https), "sandbox" (sandbox endpoints may be http and private, e.g. 127.0.0.1), "true" (all).
WEBHOOK_ALLOW_PRIVATE_URLS = env.str("WEBHOOK_ALLOW_PRIVATE_URLS", default="false")
# How long a dispatcher holds an endpoint while it sends (a killed worker's lease runs out).
WEBHOOK_LEASE_SECONDS = env.int("WEBHOOK_LEASE_SECONDS", default=120)
# Enqueue the relay right after each commit that published events (false: beat's 1 s sweep only).
WEBHOOK_WAKE_RELAY = env.bool("WEBHOOK_WAKE_RELAY", default=True)
# Endpoints sent to in parallel by one dispatcher.
WEBHOOK_DELIVERY_THREADS = env.int("WEBHOOK_DELIVERY_THREADS", default=16)

# Stripe, the card processor, one account per mode: STRIPE_* is live, STRIPE_TEST_* the sandbox.
# A mode without a secret key offers no card payments (the checkout says why); make run starts
# localstripe for the sandbox when no STRIPE_TEST_SECRET_KEY is given.
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_PUBLISHABLE_KEY = env.str("STRIPE_PUBLISHABLE_KEY", default="")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="https://api.stripe.com").rstrip("/")
STRIPE_TEST_SECRET_KEY = env.str("STRIPE_TEST_SECRET_KEY", default="")
STRIPE_TEST_PUBLISHABLE_KEY = env.str("STRIPE_TEST_PUBLISHABLE_KEY", default="")
STRIPE_TEST_WEBHOOK_SECRET = env.str("STRIPE_TEST_WEBHOOK_SECRET", default="")
STRIPE_TEST_API_BASE = env.str("STRIPE_TEST_API_BASE", default="https://api.stripe.com").rstrip("/")
# How old a signed inbound Stripe event may be (Stripe's own default tolerance).
STRIPE_WEBHOOK_TOLERANCE_SECONDS = env.int("STRIPE_WEBHOOK_TOLERANCE_SECONDS", default=300)
# How long one request to Stripe may take (seconds; the SDK's own default is 80), and how many
# times a request that got no answer or a 5xx is sent again (with the same idempotency key).
STRIPE_TIMEOUT_SECONDS = env.float("STRIPE_TIMEOUT_SECONDS", default=30.0)
STRIPE_MAX_NETWORK_RETRIES = env.int("STRIPE_MAX_NETWORK_RETRIES", default=2)

# USDC on chain, per mode: USDC_CHAINS (live) and USDC_TEST_CHAINS (sandbox) are JSON lists of
# {"name", "chainId", "rpcUrl", "token", "requiredConfirmations", "recipient", "explorerUrl"?}
# (apps.payments.chains; README Configuration). A mode without one offers no USDC (the checkout
# says why); make run starts anvil for the sandbox when USDC_TEST_CHAINS is not given.
USDC_CHAINS = env.str("USDC_CHAINS", default="")
USDC_TEST_CHAINS = env.str("USDC_TEST_CHAINS", default="")
# Set by make run when its sandbox chain could not start: why (shown where USDC is unavailable).
SANDBOX_CHAIN_UNAVAILABLE = env.str("SANDBOX_CHAIN_UNAVAILABLE", default="")
# A settlement whose transaction has no receipt this long after it was posted fails ("not found
# in time"), which does not use its hash up.
SETTLEMENT_NOT_FOUND_SECONDS = env.int("SETTLEMENT_NOT_FOUND_SECONDS", default=3600)
# Pending settlements are read again with backoff: first after this many seconds, doubling up to the maximum.
SETTLEMENT_RECHECK_SECONDS = env.float("SETTLEMENT_RECHECK_SECONDS", default=5.0)
SETTLEMENT_RECHECK_MAX_SECONDS = env.float("SETTLEMENT_RECHECK_MAX_SECONDS", default=300.0)
# How often beat looks for pending settlements due a check (seconds).
SETTLEMENT_RECHECK_INTERVAL_SECONDS = env.float("SETTLEMENT_RECHECK_INTERVAL_SECONDS", default=5.0)
# How long one request to a chain's RPC node may take (seconds). A read that fails is not sent
# again at once: the settlement is read again later, with backoff.
CHAIN_RPC_TIMEOUT_SECONDS = env.float("CHAIN_RPC_TIMEOUT_SECONDS", default=10.0)

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
# A task is acknowledged when it finishes, and one whose worker died (SIGKILL, OOM) is put back
# on the queue: no task is lost to a killed worker. With Redis, a message taken by a worker that
# vanished returns after the visibility timeout, so it is short: every task is idempotent (locks,
# leases, unique keys), and one that outlives it runs twice harmlessly.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# (kombu looks for such messages every unacked_restore_interval x unacked_restore_throttle
# seconds, 100 by default: here every second, one small Redis query.)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=300),
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
    # a broker host that does not answer at all fails a send within seconds (then it is logged
    # and beat catches up, apps.core.jobs.enqueue_after_commit) instead of holding the request
    "socket_connect_timeout": 5,
}
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A worker process keeps its database connection from task to task (Celery's Django fixup
# closes it around every task otherwise: a new PostgreSQL backend, cold caches and prepared
# statements made again for each task, -26 % of the period close when kept). It is still closed
# when obsolete (DATABASE_CONN_MAX_AGE) or broken, before each task (billing_platform/celery.py),
# and after this many tasks.
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE_FILENAME = env.str(
    "CELERY_BEAT_SCHEDULE_FILENAME", default=str(BASE_DIR / ".run" / "celerybeat-schedule")
)
# How often the calls that API-key verify counted are drained from Redis into usage events.
APIKEY_DRAIN_INTERVAL_SECONDS = env.float("APIKEY_DRAIN_INTERVAL_SECONDS", default=1.0)
CELERY_BEAT_SCHEDULE = {
    "release-expired-entitlements": {
        "task": "apps.entitlements.tasks.release_expired_entitlements",
        "schedule": crontab(minute="*"),
    },
    "expire-payment-sessions": {
        "task": "apps.payments.tasks.expire_payment_sessions",
        "schedule": crontab(minute="*"),
    },
    "webhooks-relay-and-dispatch": {
        "task": "apps.webhooks.tasks.relay_and_dispatch_webhooks",
        "schedule": 1.0,
    },
    "advance-due-periods": {
        "task": "apps.subscriptions.tasks.advance_due_periods",
        "schedule": PERIOD_CLOSE_INTERVAL_SECONDS,
    },
    "drain-counted-calls": {
        "task": "apps.apikeys.tasks.drain_counted_calls",
        "schedule": APIKEY_DRAIN_INTERVAL_SECONDS,
    },
    "dun-invoices": {
        "task": "apps.invoices.tasks.dun_invoices",
        "schedule": crontab(minute="*"),
    },
    "retry-stuck-stripe-events": {
        "task": "apps.cards.tasks.retry_stuck_stripe_events",
        "schedule": crontab(minute="*"),
    },
    "resolve-card-attempts": {
        "task": "apps.cards.tasks.resolve_card_attempts",
        "schedule": crontab(minute="*"),
    },
    "resume-auto-recharges": {
        "task": "apps.cards.tasks.resume_auto_recharges",
        "schedule": crontab(minute="*"),
    },
    "recheck-pending-settlements": {
        "task": "apps.settlements.tasks.recheck_pending_settlements",
        "schedule": SETTLEMENT_RECHECK_INTERVAL_SECONDS,
    },
    "purge-expired-idempotency-keys": {
        "task": "apps.core.tasks.purge_expired_idempotency_keys",
        "schedule": crontab(minute="*/15"),
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    # Secrets (keys, portal link tokens, webhook secrets, the admin's one-time pads) are redacted
    # from every line, urls of the request logger included (apps.core.redaction).
    "filters": {"redact_secrets": {"()": "apps.core.redaction.RedactSecrets"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact_secrets"]}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # an invoice PDF would log each step of WeasyPrint's rendering and fontTools' font subsetting
    "loggers": {name: {"level": "WARNING"} for name in ("weasyprint.progress", "fontTools")},
}
