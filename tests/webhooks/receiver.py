"""A real HTTP receiver on 127.0.0.1 for webhook tests: records every request, answers as told."""

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict
    body: bytes


@dataclass
class Receiver:
    """`answers` is consumed in order (status codes), then `default` is answered. `hold`, when
    set, makes each request wait until it is released (`release.set()`)."""

    answers: list = field(default_factory=list)
    default: int = 200
    hold: bool = False

    def __post_init__(self):
        self.requests: list[Received] = []
        self.arrived = threading.Condition()
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with receiver.arrived:
                    receiver.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    status = receiver.answers.pop(0) if receiver.answers else receiver.default
                    receiver.arrived.notify_all()
                if receiver.hold:
                    receiver.release.wait(30)
                try:
                    self.send_response(status)
                    self.send_header("content-type", "text/plain")
                    self.end_headers()
                    self.wfile.write(f"answer {status}".encode())
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender is gone (a killed worker, a timeout): nothing to answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, count: int, timeout: float = 20) -> list[Received]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.requests) >= count, timeout)
            return list(self.requests)

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
