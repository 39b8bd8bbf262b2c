"""localstripe (PyPI: a local, stateful fake of Stripe's API with a Stripe.js stand-in) bound to
127.0.0.1, for the sandbox of `make run` and for the tests.

Its own command line binds every interface (`::`) and keeps its store in /tmp/localstripe.pickle,
shared by every instance on the machine; this runner starts its aiohttp app on 127.0.0.1 only,
with its store in the file given (empty at start unless --keep), so that several runs (a test
session, `make run`) each have their own:

    python -m billing_platform.localstripe_server --port 8420 --store .run/localstripe.pickle
"""

import argparse
import logging
import os
import pickle
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path


def _store_in(path: Path) -> None:
    from localstripe import resources

    def try_load_from_disk(store):
        try:
            with path.open("rb") as f:
                old = pickle.load(f)  # noqa: S301 (the file this runner wrote itself)
        except FileNotFoundError:
            return
        store.clear()
        store.update(old)

    def dump_to_disk(store):
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as f:
            pickle.dump(dict(store), f, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(path)

    resources.Store.try_load_from_disk = try_load_from_disk
    resources.Store.dump_to_disk = dump_to_disk


def _confirm_off_session() -> None:
    """Stripe's `off_session` on PaymentIntent confirm, which localstripe 1.15 refuses there
    ("Unexpected off_session"; it takes it only on create with confirm=true): an off-session
    confirmation of a card that needs the customer's authentication fails, as Stripe's does
    (402 authentication_required; the PaymentIntent back to requires_payment_method, and
    payment_intent.payment_failed sent), instead of waiting for an action nobody is present
    to take. Off-session charges of other cards confirm as before. Patched into the routes
    list before localstripe's server module reads it."""
    from localstripe import resources
    from localstripe.errors import UserError
    from localstripe.webhooks import schedule_webhook

    PaymentIntent = resources.PaymentIntent
    original = PaymentIntent._api_confirm

    def confirm(id=None, off_session=None, **kwargs):
        if resources.try_convert_to_bool(off_session) is True and isinstance(id, str):
            intent = PaymentIntent._api_retrieve(id)
            if intent.status == "requires_confirmation" and intent.payment_method:
                method = resources.PaymentMethod._api_retrieve(intent.payment_method)
                if method._requires_authentication():
                    intent._authentication_failed = True
                    intent.payment_method = None
                    schedule_webhook(resources.Event("payment_intent.payment_failed", intent))
                    raise UserError(
                        402,
                        "Your card was declined. This transaction requires authentication.",
                        {"code": "authentication_required", "decline_code": "authentication_required"},
                    )
        return original(id, **kwargs)

    resources.extra_apis[:] = [
        (method, url, confirm if func == original else func) for method, url, func in resources.extra_apis
    ]


@dataclass
class LocalStripe:
    """A localstripe process that this one started (stopped by its pid, through `stop`)."""

    process: subprocess.Popen
    url: str  # its API base, also where it serves Stripe.js: <url>/js.stripe.com/v3/

    def register_webhook(self, *, name: str, url: str, secret: str) -> None:
        """Have localstripe sign and send its events to `url` (its /_config/webhooks API)."""
        import httpx

        response = httpx.post(f"{self.url}/_config/webhooks/{name}", data={"url": url, "secret": secret}, timeout=5)
        response.raise_for_status()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start(*, port: int, store: Path, log_path: Path | None = None, timeout: float = 20.0) -> LocalStripe:
    """Start localstripe on 127.0.0.1:`port` with an empty store in `store`; wait until it answers."""
    import httpx

    log = log_path.open("ab") if log_path else subprocess.DEVNULL
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "billing_platform.localstripe_server",
            "--port",
            str(port),
            "--store",
            str(store),
            "--parent",
            str(os.getpid()),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # stopped by its pid (LocalStripe.stop), never by a signal to a group
        cwd=Path(__file__).resolve().parent.parent,
    )
    if log_path:
        log.close()
    server = LocalStripe(process=process, url=f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(
                f"localstripe exited at start (code {process.returncode})" + (f"; see {log_path}" if log_path else "")
            )
        try:
            if httpx.get(f"{server.url}/js.stripe.com/v3/", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"localstripe did not answer on 127.0.0.1:{port} within {timeout} s")
        time.sleep(0.1)


def _exit_with(parent: int) -> None:
    """Exit once `parent` no longer runs: a test run or make run killed outright (SIGKILL) never
    stops this server itself, and it must not outlive them."""

    def watch():
        while True:
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os._exit(0)
            except PermissionError:
                pass
            time.sleep(1)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--keep", action="store_true", help="start from the store's file instead of empty")
    parser.add_argument("--parent", type=int, help="exit when this process is gone (killed before it could stop us)")
    args = parser.parse_args(argv)
    if args.parent:
        _exit_with(args.parent)
    args.store.parent.mkdir(parents=True, exist_ok=True)
    if not args.keep:
        args.store.unlink(missing_ok=True)
    _store_in(args.store)
    _confirm_off_session()
    from aiohttp import web
    from localstripe.server import app, store

    store.try_load_from_disk()
    logging.basicConfig(level=logging.INFO, format="[localstripe] %(message)s")
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
