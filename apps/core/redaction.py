"""Secrets never reach a log: every log line of the web process (Django's loggers, gunicorn's access
and error logs, billing_platform/gunicorn_worker.py) and of Celery passes through `redact`.

What it hides, wherever it stands in a line (a url's path or query, a message, a repr):
merchant secret keys (sk_live_/sk_test_), Stripe restricted keys (rk_), customers' API keys
(ak_live_/ak_test_), portal link tokens (pt_), webhook signing secrets (whsec_), the one-time
pad of the admin's secret page (/secret/<pad>/), bearer credentials, and the values of query
parameters named like a secret (token, key, secret, signature, password). A key keeps its
visible prefix (what the admin lists), so that a line still says which key it was.
"""

import logging
import re

REDACTED = "[REDACTED]"

# prefix, then the random part: sk_test_AbCdEfGh|rest...
_KEYED = re.compile(r"\b((?:sk|rk|ak)_(?:live|test)_[A-Za-z0-9]{0,8})[A-Za-z0-9]*")
_PORTAL = re.compile(r"\bpt_[A-Za-z0-9]+")
_WEBHOOK_SECRET = re.compile(r"\bwhsec_[A-Za-z0-9+/=_-]+")
_ADMIN_PAD = re.compile(r"(/secret/)[^/\s?\"']+")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s\"',]+")
_QUERY = re.compile(r"(?i)([?&;](?:[a-z_]*?)(?:token|secret|password|signature|api_?key|key)=)[^&\s\"']*")


def redact(text: str) -> str:
    """`text` with every secret it holds replaced (a key keeps its visible prefix)."""
    if not text or not isinstance(text, str):
        return text
    text = _KEYED.sub(lambda match: match.group(1) + REDACTED, text)
    text = _PORTAL.sub("pt_" + REDACTED, text)
    text = _WEBHOOK_SECRET.sub("whsec_" + REDACTED, text)
    text = _ADMIN_PAD.sub(lambda match: match.group(1) + REDACTED, text)
    text = _BEARER.sub(lambda match: match.group(1) + REDACTED, text)
    return _QUERY.sub(lambda match: match.group(1) + REDACTED, text)


class RedactSecrets(logging.Filter):
    """A logging filter (on a handler) that redacts the formatted message of every record and
    of its exception text, so that no formatter writes a secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 (a record that cannot be formatted is left to the handler)
            return True
        redacted = redact(message)
        if redacted != message or record.args:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if getattr(record, "request", None) is not None:
            record.request = None  # (Django's request logger attaches the request; its repr holds the path)
        return True
