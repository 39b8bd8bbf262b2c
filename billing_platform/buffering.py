"""Requests reach Django whole, and a client that stalls holds no thread that runs requests.

gunicorn's threaded workers read a request and run the application in the same thread, and
Django reads the body only when a view asks for it: a client that sent its headers and a
Content-Length and then stalled mid-body held that thread (and its database connection) for
as long as it kept the connection open. 24 such clients left no thread to the rest.

Served by gunicorn (billing_platform/gunicorn.conf.py), each request is now taken in two steps:

1. gunicorn's own threads (WEB_CLIENT_THREADS per process, cheap: they wait on the network)
   read the whole body, within WEB_BODY_TIMEOUT seconds from its first byte on. A client that
   has not sent it all by then gets 408 REQUEST_BODY_TIMEOUT and its connection is closed (the
   socket's read timeout is what is left of that time before each read: a stalled client is
   dropped at the bound; one that keeps trickling bytes is dropped at the first read that
   starts past it).
2. Django runs in a pool of WEB_THREADS threads per process (each keeps its database
   connection, as the threads of gthread workers did), on the body read in step 1. The answer is
   collected there, and gunicorn's thread writes it to the client: a client slow to read its
   answer holds no application thread either.
"""

import contextlib
import io
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

READ_STEP = 64 * 1024


class BodyNotReceived(Exception):
    """The client did not send the body it announced: `status` and `code` say how."""

    def __init__(self, status: str, code: str, message: str):
        super().__init__(message)
        self.error = {"408": "request_timeout", "413": "request_too_large"}.get(status[:3], "bad_request")
        self.status = status
        self.code = code
        self.message = message


def too_large(size: int | None, limit: int) -> BodyNotReceived:
    told = f"is {size} bytes" if size is not None else "is chunked and runs past it"
    return BodyNotReceived(
        "413 Content Too Large",
        "REQUEST_TOO_LARGE",
        f"The request body {told}; the limit is {limit} bytes ({limit / 1024 / 1024:g} MiB). "
        "Send it in smaller parts (a usage batch holds up to 1,000 events).",
    )


def read_body(environ: dict, timeout: float, max_bytes: int | None = None) -> bytes | None:
    """The request's whole body, read within `timeout` seconds; None when it has none.

    The body has a Content-Length, or comes chunked (gunicorn decodes it; read to its end).
    Raises BodyNotReceived when the time runs out or the client goes away first.
    """
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0  # (gunicorn refuses an invalid Content-Length before this)
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    if length <= 0 and not chunked:
        return None
    if max_bytes is not None and length > max_bytes:
        raise too_large(length, max_bytes)  # refused before a byte of it is read
    stream = environ["wsgi.input"]
    sock = environ.get("gunicorn.socket")
    prior_timeout = sock.gettimeout() if sock is not None else None
    deadline = time.monotonic() + timeout
    parts = []
    received = 0
    left = length if not chunked else None
    try:
        while left is None or left > 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            if sock is not None:
                sock.settimeout(remaining)
            data = stream.read(READ_STEP if left is None else min(left, READ_STEP))
            if not data:
                if left is None:
                    break
                raise BodyNotReceived(
                    "400 Bad Request",
                    "REQUEST_BODY_INCOMPLETE",
                    f"The connection ended {left} bytes before the end of the body (Content-Length {length}).",
                )
            parts.append(data)
            received += len(data)
            if max_bytes is not None and received > max_bytes:
                raise too_large(None, max_bytes)  # (a chunked body: its size is known only as it comes)
            if left is not None:
                left -= len(data)
    except TimeoutError:
        raise BodyNotReceived(
            "408 Request Timeout",
            "REQUEST_BODY_TIMEOUT",
            f"The request body did not arrive within {timeout:g} seconds.",
        ) from None
    except OSError:
        raise BodyNotReceived(
            "400 Bad Request", "REQUEST_BODY_INCOMPLETE", "The connection failed while the body was being sent."
        ) from None
    finally:
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.settimeout(prior_timeout)
    return b"".join(parts)


class BufferedApplication:
    """WSGI: read each request's body in the server's thread (bounded by `body_timeout`),
    then run `app` in a pool of `app_threads` threads and hand its collected answer back."""

    def __init__(self, app, *, app_threads: int, body_timeout: float, max_body_bytes: int | None = None):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.app_threads = app_threads
        self.body_timeout = body_timeout
        self._pool = None  # made in the process that serves (after gunicorn forks)
        self._pool_lock = threading.Lock()

    def __call__(self, environ, start_response):
        try:
            body = read_body(environ, self.body_timeout, self.max_body_bytes)
        except BodyNotReceived as refused:
            # Nothing more is read from this connection: where its next request would start is
            # unknown. The answer still goes out, then gunicorn finds the end and closes it.
            sock = environ.get("gunicorn.socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RD)
            payload = json.dumps(
                {"error": refused.error, "message": refused.message, "code": refused.code, "details": {}}
            ).encode()
            start_response(
                refused.status, [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
            )
            return [payload]
        if body is not None:
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        if not environ.get("wsgi.multithread"):
            return self.app(environ, start_response)  # one request at a time: nothing to keep apart
        status, headers, exc_info, chunks = self._app_pool().submit(self._run, environ).result()
        start_response(status, headers, exc_info)
        return chunks

    def _app_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            with self._pool_lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(max_workers=self.app_threads, thread_name_prefix="app")
        return self._pool

    def _run(self, environ):
        """Run the application and collect its whole answer (closing it here: Django ends the
        request, and releases the thread's database connection if due, in this thread)."""
        started = {}
        written = []

        def start_response(status, headers, exc_info=None):
            started.update(status=status, headers=headers, exc_info=exc_info)
            return written.append

        result = self.app(environ, start_response)
        try:
            chunks = [*written, *(bytes(chunk) for chunk in result)]
        finally:
            if hasattr(result, "close"):
                result.close()
        return started["status"], started["headers"], started["exc_info"], chunks
