"""Secrets never reach a log: the redaction itself, Django's request logger (a portal link's
404/410 logs its path), and gunicorn's access and error logs as the Procfile runs them."""

import http.client
import io
import logging
import sys
import time

import pytest

from apps.core.redaction import RedactSecrets, redact
from tests.factories import MerchantFactory, sandbox_of
from tests.integration.test_stalled_clients import DEADLINE, Gunicorn
from tests.portal.world import PortalWorld

SECRETS = {
    "sk_live_AbCdEfGh1234567890abcdefghijklmn": "sk_live_AbCdEfGh[REDACTED]",
    "sk_test_ZyXwVuTs0987654321zyxwvutsrqpon": "sk_test_ZyXwVuTs[REDACTED]",
    "rk_live_Qq11Ww22Ee33Rr44Tt55Yy66": "rk_live_Qq11Ww22[REDACTED]",
    "ak_test_K3yK3yK3yK3yK3yK3yK3yK3yK3yK3yK3": "ak_test_K3yK3yK3[REDACTED]",
    "pt_T0k3nT0k3nT0k3nT0k3nT0k3nT0k3n": "pt_[REDACTED]",
    "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=": "whsec_[REDACTED]",
}


@pytest.mark.parametrize(("secret", "shown"), SECRETS.items())
def test_each_kind_of_secret_is_redacted_wherever_it_stands(secret, shown):
    for line in (f"GET /portal/open/{secret} HTTP/1.1", f"key={secret!r} failed", f"{secret}"):
        redacted = redact(line)
        assert secret not in redacted and shown in redacted, redacted


def test_bearer_values_query_secrets_and_admin_pads_are_redacted():
    line = redact(
        "Authorization: Bearer abc.def.ghi GET /x?token=s3cr3t&limit=5&signature=zz "
        "/admin/merchants/apikey/1/secret/PadPadPad_-/ done"
    )
    assert "abc.def.ghi" not in line and "s3cr3t" not in line and "zz " not in line and "PadPadPad" not in line
    assert "limit=5" in line and "/secret/[REDACTED]/" in line


def test_the_log_filter_redacts_the_formatted_message_and_the_traceback():
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "opened %s", ("pt_SecretSecretSecret",), None)
    try:
        raise ValueError("bad key sk_live_AbCdEfGhSecretSecretSecret")
    except ValueError:
        record.exc_info = sys.exc_info()
    RedactSecrets().filter(record)
    text = logging.Formatter().format(record)
    assert "SecretSecretSecret" not in text and "pt_[REDACTED]" in text and "sk_live_AbCdEfGh[REDACTED]" in text


def configured_console_handler() -> logging.StreamHandler:
    """The handler that settings.LOGGING gives the root logger (its filter configured there)."""
    handlers = [
        handler
        for handler in logging.getLogger().handlers
        if isinstance(handler, logging.StreamHandler) and any(isinstance(f, RedactSecrets) for f in handler.filters)
    ]
    assert handlers, "settings.LOGGING's console handler has no RedactSecrets filter"
    return handlers[0]


def test_django_request_log_lines_of_a_portal_link_carry_no_token(db, client, sandbox):
    """The request logger writes `Gone: /portal/open/pt_...` for a used link, `Not Found: ...`
    for an unknown one: through the configured handler, without the token."""
    world = PortalWorld(sandbox)
    path = "/" + world.link().split("://", 1)[1].split("/", 1)[1]
    token = path.rsplit("/", 1)[1]
    handler = configured_console_handler()
    written = io.StringIO()
    previous = handler.setStream(written)
    try:
        assert client.get(path).status_code == 302
        assert client.get(path).status_code == 410
        assert client.get("/portal/open/pt_" + "U" * 32).status_code == 404
    finally:
        handler.setStream(previous)
    lines = written.getvalue()
    assert "Gone: /portal/open/pt_[REDACTED]" in lines and "Not Found: /portal/open/pt_[REDACTED]" in lines, lines
    assert token not in lines and "U" * 32 not in lines, lines


@pytest.mark.django_db(transaction=True)
def test_gunicorn_access_and_error_logs_carry_no_secret(tmp_path):
    """gunicorn as the Procfile runs it: the portal link's token in the request line, a key in the
    query string and the Authorization header (named in a log format), none in its logs."""
    world = PortalWorld(sandbox_of(MerchantFactory()))
    token = world.link().rsplit("/", 1)[1]
    secret = world.api.secret
    access_log = tmp_path / "access.log"
    server = Gunicorn(
        tmp_path,
        secret,
        extra_args=(
            "--access-logfile",
            str(access_log),
            "--access-logformat",
            '%(h)s "%(r)s" %(s)s q=%(q)s auth=%({authorization}i)s',
        ),
    )
    try:
        for path in (f"/portal/open/{token}", f"/v0/customers?api_key={secret}&limit=5"):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=DEADLINE)
            conn.request("GET", path, headers={"Authorization": f"Bearer {secret}"})
            conn.getresponse().read()
            conn.close()
        deadline = time.monotonic() + DEADLINE
        while access_log.read_text().count("\n") < 3:  # (with the readiness probe's /healthz)
            assert time.monotonic() < deadline, access_log.read_text()
            time.sleep(0.1)
    finally:
        server.stop()
    logged = access_log.read_text() + server.log_path.read_text()
    assert "/portal/open/pt_[REDACTED]" in logged and "api_key=[REDACTED]&limit=5" in logged, logged
    assert "auth=[REDACTED]" in logged and "auth=-" in logged, logged
    assert token not in logged and secret not in logged, logged
    assert secret[len("sk_test_") :][8:] not in logged
