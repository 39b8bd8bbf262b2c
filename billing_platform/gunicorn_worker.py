"""gunicorn's pieces for the web process (billing_platform/gunicorn.conf.py):

- `Worker`: the threaded worker, whose refusals of a request before the application sees it
  (a request line over `limit_request_line`, 4094 bytes: 414; headers over their limits: 431)
  are answered in the API's error envelope (JSON) instead of gunicorn's HTML page, as
  /v0/schema documents for every operation.
- `Logger`: gunicorn's logger with secrets redacted (apps.core.redaction) from the access log
  (the request line, the query string, any header that a log format names) and the error log,
  so that a portal link's token, a key or the admin's one-time pad never reach a log file.
"""

import contextlib
import json

from gunicorn import util
from gunicorn.glogging import Logger as GunicornLogger
from gunicorn.http.errors import LimitRequestHeaders, LimitRequestLine
from gunicorn.workers.gthread import ThreadWorker

from apps.core.redaction import RedactSecrets, redact

# Headers whose whole value is a credential (a log format may name any header).
SECRET_HEADERS = (
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "stripe-signature",
    "webhook-signature",
)


def refusal(exc, cfg) -> tuple[int, str, dict] | None:
    """(status, reason, error envelope) for a request gunicorn refuses on its limits, else None."""
    if isinstance(exc, LimitRequestLine):
        return (
            414,
            "URI Too Long",
            {
                "error": "uri_too_long",
                "message": (
                    f"The request line (method, path and query string) is longer than {cfg.limit_request_line} "
                    "bytes. Send fewer or shorter query parameters."
                ),
                "code": "URI_TOO_LONG",
                "details": {"limit": cfg.limit_request_line},
            },
        )
    if isinstance(exc, LimitRequestHeaders):
        return (
            431,
            "Request Header Fields Too Large",
            {
                "error": "request_headers_too_large",
                "message": (
                    f"The request's headers are too large: at most {cfg.limit_request_fields} headers of at most "
                    f"{cfg.limit_request_field_size} bytes each. Send fewer or shorter headers."
                ),
                "code": "REQUEST_HEADERS_TOO_LARGE",
                "details": {
                    "maxHeaders": cfg.limit_request_fields,
                    "maxHeaderBytes": cfg.limit_request_field_size,
                },
            },
        )
    return None


class Worker(ThreadWorker):
    def handle_error(self, req, client, addr, exc):
        refused = refusal(exc, self.cfg)
        if refused is None:
            super().handle_error(req, client, addr, exc)
            return
        status, reason, envelope = refused
        self.log.warning("Refused a request from ip=%s: %s %s", (addr or ("",))[0], status, envelope["code"])
        body = json.dumps(envelope).encode()
        head = (
            f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode("latin1")
        with contextlib.suppress(OSError):
            util.write_nonblock(client, head + body)


class Logger(GunicornLogger):
    def setup(self, cfg):
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                if not any(isinstance(existing, RedactSecrets) for existing in handler.filters):
                    handler.addFilter(RedactSecrets())

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for name, value in atoms.items():
            if any(name == f"{{{header}}}i" for header in SECRET_HEADERS):
                atoms[name] = "[REDACTED]"
            elif isinstance(value, str):
                atoms[name] = redact(value)
        return atoms
