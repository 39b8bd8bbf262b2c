"""The card tests' Stripe: localstripe started by the test run, bound to 127.0.0.1 only, and
reached through the sandbox's own StripeClient."""

import socket

import httpx
import psutil
import pytest
import stripe

from apps.cards.stripe_client import stripe_client


def test_localstripe_listens_on_loopback_only(localstripe):
    port = int(localstripe.url.rsplit(":", 1)[1])
    assert httpx.get(f"{localstripe.url}/js.stripe.com/v3/").status_code == 200
    addresses = {
        address.address.split("%")[0]
        for addresses in psutil.net_if_addrs().values()
        for address in addresses
        if address.family in (socket.AF_INET, socket.AF_INET6) and not address.address.startswith(("127.", "::1"))
    }
    assert addresses, "this machine has no address but loopback to check"
    for address in addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(1)
            assert sock.connect_ex((address, port)) != 0, f"localstripe answers on {address}"
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        assert sock.connect_ex(("::1", port)) != 0


def test_the_sandbox_client_reaches_localstripe_and_live_stays_apart(stripe_sandbox, settings):
    client = stripe_client(livemode=False)
    customer = client.v1.customers.create(params={"email": "card@example.com"})
    assert customer.id.startswith("cus_")
    assert client.v1.customers.retrieve(customer.id).email == "card@example.com"
    # live pointed at a port where nothing listens: its client never uses the sandbox's base
    settings.STRIPE_SECRET_KEY = "sk_live_x"
    settings.STRIPE_PUBLISHABLE_KEY = "pk_live_x"
    settings.STRIPE_WEBHOOK_SECRET = "whsec_x"
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"
    live = stripe_client(livemode=True)
    assert live is not client
    with pytest.raises(stripe.APIConnectionError):
        live.v1.customers.retrieve(customer.id)
    assert client.v1.customers.retrieve(customer.id).id == customer.id


def test_each_start_has_an_empty_store(localstripe, tmp_path):
    from billing_platform import localstripe_server

    store = tmp_path / "store.pickle"
    first = localstripe_server.start(port=_port(), store=store)
    try:
        headers = {"Authorization": "Bearer sk_test_x"}
        created = httpx.post(f"{first.url}/v1/customers", data={"email": "a@example.com"}, headers=headers).json()
        assert store.exists()
    finally:
        first.stop()
    again = localstripe_server.start(port=_port(), store=store)
    try:
        answer = httpx.get(f"{again.url}/v1/customers/{created['id']}", headers=headers)
        assert answer.status_code == 404
    finally:
        again.stop()
    assert first.process.returncode is not None and again.process.returncode is not None


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_localstripe_exits_when_the_process_that_started_it_is_killed(tmp_path):
    import subprocess
    import sys
    import time

    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from billing_platform import localstripe_server\n"
        f"server = localstripe_server.start(port={_port()}, store=Path({str(tmp_path / 's.pickle')!r}))\n"
        "print(server.process.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = psutil.Process(int(parent.stdout.readline()))
    assert child.is_running()
    parent.kill()  # no chance to stop its server
    parent.wait(5)
    deadline = time.monotonic() + 10
    while child.is_running() and child.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
