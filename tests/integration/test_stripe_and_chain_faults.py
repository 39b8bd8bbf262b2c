"""Faults of Stripe and of the chain's RPC node (issue 19, item 3): a fault-injecting HTTP proxy in
front of localstripe and in front of anvil (`FaultProxy`: pass-through, 500, hang until the client
times out, or forward the request and drop its answer), switched per request.

Card: the checkout's charge and an off-session invoice collection (`POST /v0/invoices/{id}/pay`
with an Idempotency-Key) while Stripe answers 500, hangs, or confirms the charge and loses its
answer. The customer gets a clear answer (503 STRIPE_UNAVAILABLE with Retry-After when nothing was
charged; "being processed" / 409 PAYMENT_IN_FLIGHT when the outcome is not known), never a 500;
the attempt left in flight is settled by beat's resolver from the PaymentIntent once Stripe
answers; the money is credited once and the card charged once (counted in localstripe itself);
no Stripe call runs inside a database transaction; the ledger check is clean.

Chain: settlement checks while the node answers 500 or hangs stay pending (never failed, never
"not found in time", even past its deadline), hold no transaction and no row lock while they
wait, and confirm once the node is back (beat's re-check)."""

import json
import re
import threading
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from apps.cards.models import StripeCustomer
from apps.cards.tasks import resolve_card_attempts
from apps.invoices.models import Invoice
from apps.invoices.services.invoices import invoice_create_one_off
from apps.ledger.selectors import ledger_check, wallet_balances
from apps.payments.models import Payment, PaymentAttempt, PaymentSource
from apps.payments.services import payment_attempt_start, topup_session_create
from apps.settlements.models import Settlement
from apps.settlements.services import settlement_check
from apps.settlements.tasks import recheck_pending_settlements
from tests.cards.test_card_path import GOOD, confirm_card_setup
from tests.checkout.test_card_browser import ARTIFACTS, activation, browser, fill_card  # noqa: F401 (fixtures)
from tests.checkout.test_checkout_card import Setup
from tests.conftest import Api
from tests.factories import MerchantFactory, issue_key, make_customer, sandbox_of
from tests.invoices.test_card_collection import save_card
from tests.portal.test_browser import CHROMIUM

pytestmark = pytest.mark.django_db(transaction=True)

D = Decimal
PASS, FAIL, HANG, DROP = "pass", "500", "hang", "drop"
# how long the proxy holds a hanging request at most (the clients give up long before)
HANG_LIMIT = 30


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 in front of `upstream`, in a thread. Each request meets the mode
    of the first rule whose method and path (a regular expression) match it, else the default:

    - pass: forwarded, and its answer returned;
    - 500: answered 500 (a JSON error, as Stripe's or a node's front end gives), not forwarded;
    - hang: held without an answer until the client gives up (its timeout), not forwarded;
    - drop: forwarded, then the connection closed without the answer (the worst case for a
      charge: it happened, and the client cannot know)."""

    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.default = PASS
        self.rules: list[tuple[str, re.Pattern, str]] = []
        self.lock = threading.Lock()
        self.seen = Counter()  # mode -> requests that met it
        self.hanging = threading.Event()  # set when a request starts hanging
        self.closed = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                mode = proxy.mode_for(self.command, self.path)
                if mode == FAIL:
                    payload = b'{"error": {"type": "api_error", "message": "injected fault: 500"}}'
                    self.send_response(500)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(payload)
                    self.close_connection = True
                    return
                if mode == HANG:
                    proxy.hanging.set()
                    proxy.closed.wait(HANG_LIMIT)
                    self.close_connection = True
                    return
                headers = {
                    name: value
                    for name, value in self.headers.items()
                    if name.lower() not in ("host", "content-length", "connection", "accept-encoding")
                }
                answer = httpx.request(
                    self.command, proxy.upstream + self.path, content=body, headers=headers, timeout=30
                )
                if mode == DROP:
                    self.close_connection = True
                    return
                self.send_response(answer.status_code)
                for name, value in answer.headers.multi_items():
                    # (its CORS headers included: the browser's Stripe.js calls through it too)
                    if name.lower() not in ("content-length", "content-encoding", "transfer-encoding", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = do_DELETE = do_OPTIONS = handle_one  # noqa: N815 (http.server's names)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def mode_for(self, method: str, path: str) -> str:
        with self.lock:
            mode = next(
                (mode for rule_method, pattern, mode in self.rules if rule_method == method and pattern.search(path)),
                self.default,
            )
            self.seen[mode] += 1
            return mode

    def fault(self, mode: str, method: str | None = None, path: str | None = None) -> None:
        """`mode` for requests of `method` whose path matches `path`; for every request without them."""
        with self.lock:
            if method is None:
                self.default = mode
            else:
                self.rules.append((method, re.compile(path), mode))

    def heal(self) -> None:
        with self.lock:
            self.default = PASS
            self.rules.clear()

    def close(self) -> None:
        self.closed.set()
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------------------- helpers


def assert_no_transaction_or_lock_held() -> None:
    """No connection to this database but the test's own is inside a transaction or holds a
    lock on a table or row (a session's advisory lock on an Idempotency-Key is neither)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, state, left(query, 200) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL"
        )
        open_transactions = cursor.fetchall()
        cursor.execute(
            "SELECT l.pid, l.locktype, l.mode, l.relation::regclass::text FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE a.datname = current_database() AND l.pid <> pg_backend_pid() AND l.locktype <> 'advisory' "
            "AND l.locktype <> 'virtualxid'"
        )
        locks = cursor.fetchall()
    assert open_transactions == [], open_transactions
    assert locks == [], locks


def succeeded_charges(proxy: "FaultProxy", customer) -> int:
    """The customer's succeeded charges as localstripe itself holds them (read from it directly,
    not through the proxy)."""
    stripe_id = StripeCustomer.objects.get(customer=customer).stripe_id
    answer = httpx.get(
        f"{proxy.upstream}/v1/charges",
        params={"customer": stripe_id, "limit": 100},
        headers={"Authorization": "Bearer sk_test_localstripe"},
        timeout=10,
    )
    answer.raise_for_status()
    return sum(1 for charge in answer.json()["data"] if charge["status"] == "succeeded")


def age_attempts() -> None:
    """Attempts in flight become old enough for beat's resolver (it leaves younger ones to the
    request that started them)."""
    PaymentAttempt.objects.filter(status=PaymentAttempt.Status.IN_FLIGHT).update(
        created_at=timezone.now() - timedelta(minutes=10)
    )


@pytest.fixture
def stripe_proxy(localstripe, stripe_sandbox):
    """The sandbox's Stripe API base pointed at a FaultProxy in front of localstripe; one second
    per request to Stripe (each sent three times at most, as in production)."""
    proxy = FaultProxy(localstripe.url)
    with override_settings(STRIPE_TEST_API_BASE=proxy.url, STRIPE_TIMEOUT_SECONDS=1.0):
        yield proxy
    proxy.close()


@pytest.fixture
def sandbox_api(db):
    sandbox = sandbox_of(MerchantFactory())
    return Api(issue_key(sandbox), sandbox)


# ---------------------------------------------------------------------------------- the checkout


def checkout_pay(client, session, proxy):
    """What the checkout's card form does: a SetupIntent, confirmed by Stripe.js (straight to
    localstripe: the browser's path is not the server's), then the server charges."""
    answer = client.post(f"/checkout/{session.id}/card/setup")
    assert answer.status_code == 200, answer.content
    setup = Setup(answer.json())
    setup.api_base = proxy.upstream
    assert confirm_card_setup(setup, GOOD).status_code == 200
    return client.post(
        f"/checkout/{session.id}/card/pay", {"setupIntentId": setup.setup_intent_id}, content_type="application/json"
    )


@pytest.fixture
def topup(sandbox_api, stripe_proxy):
    customer = make_customer(sandbox_api.merchant, email="faults@example.com")
    return topup_session_create(merchant=sandbox_api.merchant, customer=customer, amount=D("7.50"), currency="USD")


def assert_paid_once(proxy, session, amount: Decimal) -> None:
    session.refresh_from_db()
    assert (session.status, session.amount_paid) == ("paid", amount)
    assert Payment.objects.filter(source=PaymentSource.CARD).count() == 1
    assert wallet_balances(wallet=session.wallet).available == amount
    assert succeeded_charges(proxy, session.customer) == 1
    assert not PaymentAttempt.objects.filter(status=PaymentAttempt.Status.IN_FLIGHT).exists()
    assert ledger_check() == []


@pytest.mark.parametrize("fault", [FAIL, HANG, DROP])
def test_checkout_charge_while_stripe_cannot_create_the_payment_intent_is_a_clear_503_and_charges_nothing(
    client, topup, stripe_proxy, fault
):
    stripe_proxy.fault(fault, "POST", r"^/v1/payment_intents$")

    answer = checkout_pay(client, topup, stripe_proxy)

    assert answer.status_code == 503, answer.content
    body = answer.json()
    assert body["code"] == "STRIPE_UNAVAILABLE"
    assert "nothing was charged" in body["message"] and "Try again" in body["message"]
    assert answer["Retry-After"] == "5"
    assert stripe_proxy.seen[fault] == 3  # (the SDK sent it three times, then gave up)
    assert succeeded_charges(stripe_proxy, topup.customer) == 0
    assert not Payment.objects.exists()
    # nothing is left in flight: the customer can pay at once once Stripe answers
    assert set(PaymentAttempt.objects.values_list("status", flat=True)) == {"failed"}

    stripe_proxy.heal()
    again = checkout_pay(client, topup, stripe_proxy)
    assert again.status_code == 200, again.content
    assert (again.json()["status"], again.json()["paymentSessionStatus"]) == ("succeeded", "paid")
    age_attempts()
    resolve_card_attempts()  # (changes nothing)
    assert_paid_once(stripe_proxy, topup, D("7.50"))


def test_checkout_charge_whose_confirmation_answer_is_lost_is_processing_then_resolved_by_beat(
    client, topup, stripe_proxy
):
    # Stripe confirms (charges the card) but the answer never arrives, and then cannot be read
    stripe_proxy.fault(DROP, "POST", r"^/v1/payment_intents/[^/]+/confirm$")
    stripe_proxy.fault(FAIL, "GET", r"^/v1/payment_intents/")

    answer = checkout_pay(client, topup, stripe_proxy)

    # the outcome is not known: "being processed", never an error that invites paying again
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert (body["status"], body["paymentSessionStatus"], body["nextAction"]) == ("in_flight", "pending", None)
    assert stripe_proxy.seen[DROP] >= 1
    assert succeeded_charges(stripe_proxy, topup.customer) == 1  # (it did go through at Stripe)
    attempt = PaymentAttempt.objects.get()
    assert attempt.status == "in_flight" and attempt.external_reference.startswith("pi_")
    assert not Payment.objects.exists()

    # paying again meanwhile is refused clearly, and charges nothing
    retry = checkout_pay(client, topup, stripe_proxy)
    assert retry.status_code == 409, retry.content
    assert retry.json()["code"] == "PAYMENT_IN_FLIGHT"
    # beat while Stripe still fails: left in flight
    age_attempts()
    resolve_card_attempts()
    assert PaymentAttempt.objects.get().status == "in_flight"

    stripe_proxy.heal()
    resolve_card_attempts()
    assert PaymentAttempt.objects.get().status == "succeeded"
    assert_paid_once(stripe_proxy, topup, D("7.50"))
    # the page asked again (Stripe.js's confirm path) says paid
    confirmed = client.post(
        f"/checkout/{topup.id}/card/confirm", {"paymentAttemptId": str(attempt.id)}, content_type="application/json"
    )
    assert confirmed.json()["paymentSessionStatus"] == "paid"


def test_checkout_charge_whose_confirmation_times_out_is_canceled_by_beat_and_paid_again_once(
    client, topup, stripe_proxy
):
    # the confirmation never reaches Stripe (it hangs until the client gives up)
    stripe_proxy.fault(HANG, "POST", r"^/v1/payment_intents/[^/]+/confirm$")

    answer = checkout_pay(client, topup, stripe_proxy)

    assert answer.status_code == 200, answer.content
    assert (answer.json()["status"], answer.json()["paymentSessionStatus"]) == ("in_flight", "pending")
    assert succeeded_charges(stripe_proxy, topup.customer) == 0
    stripe_proxy.heal()
    # beat: the PaymentIntent was never confirmed, so it is canceled (it can never charge) and failed
    age_attempts()
    resolve_card_attempts()
    attempt = PaymentAttempt.objects.get()
    assert attempt.status == "failed"
    assert Payment.objects.count() == 0
    # the customer pays again: charged once in all
    again = checkout_pay(client, topup, stripe_proxy)
    assert again.json()["paymentSessionStatus"] == "paid", again.content
    assert_paid_once(stripe_proxy, topup, D("7.50"))


def test_beat_stops_resolving_at_the_first_attempt_stripe_does_not_answer_for(sandbox_api, stripe_proxy):
    """While Stripe fails, one run of the resolver asks once (the SDK's three tries) and leaves
    the other attempts to the next run, instead of waiting out each one's timeouts."""
    customer = make_customer(sandbox_api.merchant, email="many@example.com")
    for index in range(3):
        session = topup_session_create(merchant=sandbox_api.merchant, customer=customer, amount=D("5"), currency="USD")
        attempt = payment_attempt_start(session_id=session.id, source=PaymentSource.CARD, merchant=session.merchant)
        PaymentAttempt.objects.filter(pk=attempt.pk).update(external_reference=f"pi_lost{index}")
    stripe_proxy.fault(FAIL, "GET", r"^/v1/payment_intents/")
    age_attempts()

    resolve_card_attempts()

    assert stripe_proxy.seen[FAIL] == 3
    assert PaymentAttempt.objects.filter(status=PaymentAttempt.Status.IN_FLIGHT).count() == 3
    assert ledger_check() == []


# ---------------------------------------------------------------------------------- off-session collection


@pytest.fixture
def usd_invoice(sandbox_api, stripe_proxy):
    """An open USD invoice of 12.50 whose customer's wallet is empty and who has a default card."""
    customer = make_customer(sandbox_api.merchant, email="offsession@example.com")
    save_card(customer, GOOD)
    return invoice_create_one_off(
        merchant=sandbox_api.merchant,
        customer=customer,
        currency="USD",
        lines=[("Consulting", D("12.50"))],
        auto_collect=False,
    )


def pay(api, invoice, key):
    return api.post(f"/v0/invoices/{invoice.id}/pay", HTTP_IDEMPOTENCY_KEY=key)


def assert_invoice_paid_once(proxy, invoice) -> None:
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid) == ("paid", D("12.50"))
    assert Payment.objects.filter(source=PaymentSource.CARD).count() == 1
    assert succeeded_charges(proxy, invoice.customer) == 1
    assert not PaymentAttempt.objects.filter(status=PaymentAttempt.Status.IN_FLIGHT).exists()
    assert ledger_check() == []


@pytest.mark.parametrize("fault", [FAIL, HANG, DROP])
def test_invoice_pay_while_stripe_is_down_is_503_not_stored_and_the_same_key_pays_once_stripe_is_back(
    sandbox_api, usd_invoice, stripe_proxy, fault
):
    stripe_proxy.fault(fault, "POST", r"^/v1/payment_intents$")
    outcome = {}

    def request():
        outcome["answer"] = pay(sandbox_api, usd_invoice, "pay-1")
        connection.close()

    thread = threading.Thread(target=request)
    thread.start()
    if fault == HANG:
        # while the request waits for Stripe it holds no transaction and no row lock
        assert stripe_proxy.hanging.wait(20), "the request never reached Stripe"
        assert_no_transaction_or_lock_held()
    thread.join(60)
    answer = outcome["answer"]

    assert answer.status_code == 503, answer.content
    assert answer.json()["code"] == "STRIPE_UNAVAILABLE"
    assert "nothing was charged" in answer.json()["message"]
    assert answer["Retry-After"] == "5"
    assert Invoice.objects.get(pk=usd_invoice.pk).status == "open"
    assert succeeded_charges(stripe_proxy, usd_invoice.customer) == 0

    stripe_proxy.heal()
    # the same key runs the request again (the 503 was not stored as its answer)
    again = pay(sandbox_api, usd_invoice, "pay-1")
    assert again.status_code == 200, again.content
    assert "Idempotent-Replayed" not in again
    assert again.json()["status"] == "paid"
    replayed = pay(sandbox_api, usd_invoice, "pay-1")
    assert (replayed.status_code, replayed["Idempotent-Replayed"]) == (200, "true")
    assert_invoice_paid_once(stripe_proxy, usd_invoice)


def test_invoice_pay_whose_confirmation_answer_is_lost_keeps_the_attempt_and_beat_credits_it_once(
    sandbox_api, usd_invoice, stripe_proxy
):
    stripe_proxy.fault(DROP, "POST", r"^/v1/payment_intents/[^/]+/confirm$")
    stripe_proxy.fault(FAIL, "GET", r"^/v1/payment_intents/")

    answer = pay(sandbox_api, usd_invoice, "pay-1")

    assert answer.status_code == 409, answer.content
    assert answer.json()["code"] == "PAYMENT_IN_FLIGHT"
    assert succeeded_charges(stripe_proxy, usd_invoice.customer) == 1  # charged at Stripe, its answer lost
    # the attempt that charged the card is committed with its PaymentIntent (a rollback of the
    # request would have lost it: money charged and never credited)
    attempt = PaymentAttempt.objects.get(source=PaymentSource.CARD)
    assert attempt.status == "in_flight" and attempt.external_reference.startswith("pi_")
    # the same key again while it is in flight: 409 again, nothing charged twice
    assert pay(sandbox_api, usd_invoice, "pay-1").json()["code"] == "PAYMENT_IN_FLIGHT"
    assert succeeded_charges(stripe_proxy, usd_invoice.customer) == 1

    stripe_proxy.heal()
    age_attempts()
    resolve_card_attempts()
    assert_invoice_paid_once(stripe_proxy, usd_invoice)
    assert pay(sandbox_api, usd_invoice, "pay-1").json()["code"] == "INVOICE_NOT_OPEN"


# ---------------------------------------------------------------------------------- the chain


@pytest.fixture
def chain_proxy(anvil_chain):
    proxy = FaultProxy(anvil_chain.rpc_url)
    chain_config = {**anvil_chain.chain_config(required_confirmations=3), "rpcUrl": proxy.url}
    with override_settings(
        USDC_TEST_CHAINS=json.dumps([chain_config]),
        CHAIN_RPC_TIMEOUT_SECONDS=1.0,
        # a settlement not found at once would fail: a node's error must never read as "not found"
        SETTLEMENT_NOT_FOUND_SECONDS=0,
    ):
        yield proxy
    proxy.close()


@pytest.mark.parametrize("fault", [FAIL, HANG])
def test_settlement_checks_while_the_node_fails_stay_pending_hold_nothing_and_confirm_once_it_is_back(
    anvil_chain, chain_proxy, fault
):
    from tests.settlements.test_settlement_workers import paid_claim

    settlement_id, invoice_id = paid_claim(anvil_chain)  # (sent, claimed, mined to 3 confirmations)
    settlement = Settlement.objects.get(pk=settlement_id)
    assert settlement.status == "pending"
    chain_proxy.fault(fault)

    def check():
        settlement_check(settlement_id=settlement_id)
        connection.close()

    for _ in range(2):
        # (cleared for each check: the second check's sample must wait for its own read of the
        # chain, not find the first check's hang and look at a connection still starting)
        chain_proxy.hanging.clear()
        thread = threading.Thread(target=check)
        thread.start()
        if fault == HANG:
            assert chain_proxy.hanging.wait(20), "the check never read the chain"
            # while the read waits for the node: no transaction, no lock, and the row is free
            assert_no_transaction_or_lock_held()
            with connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT id FROM {Settlement._meta.db_table} WHERE id = %s FOR UPDATE NOWAIT", [settlement_id]
                )
        thread.join(30)
        assert not thread.is_alive()
        after = Settlement.objects.get(pk=settlement_id)
        assert (after.status, after.failure_reason) == ("pending", ""), after.failure_reason
        assert after.next_check_at > timezone.now()  # read again later, with backoff
    assert Settlement.objects.get(pk=settlement_id).checks == settlement.checks + 2
    assert not Payment.objects.filter(source=PaymentSource.USDC).exists()
    # one request to the node per check (bounded by CHAIN_RPC_TIMEOUT_SECONDS, not sent again
    # inside the check: the settlement is read again later)
    assert chain_proxy.seen[fault] == 2

    # the node is back: beat's re-check, once due, confirms it and credits once
    chain_proxy.heal()
    Settlement.objects.filter(pk=settlement_id).update(next_check_at=timezone.now())
    assert recheck_pending_settlements() == 1
    confirmed = Settlement.objects.get(pk=settlement_id)
    assert confirmed.status == "confirmed"
    assert Payment.objects.filter(source=PaymentSource.USDC).count() == 1
    assert Invoice.objects.get(pk=invoice_id).status == "paid"
    assert recheck_pending_settlements() == 0
    assert ledger_check() == []


# ---------------------------------------------------------------------------------- what the customer sees


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing: `make test` installs it")
def test_the_checkout_page_in_chromium_says_what_happened_while_stripe_fails(request, live_server, stripe_proxy):
    """The card form in Chromium: Stripe failing before the charge shows that nothing was charged
    and to try again (and trying again once Stripe answers pays); a charge whose answer was lost
    shows that the payment is being processed (never "pay again"), and beat settles it."""
    from playwright.sync_api import expect

    # (the browser tests' fixtures: Chromium, and a sandbox activation of 25 USD to pay)
    chromium = request.getfixturevalue("browser")
    new_activation = request.getfixturevalue("activation")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = chromium.new_context(viewport={"width": 375, "height": 900})
    page = context.new_page()

    session = new_activation("down@example.com")
    page.goto(f"{live_server.url}/checkout/{session.id}")
    fill_card(page, GOOD)
    stripe_proxy.fault(FAIL, "POST", r"^/v1/payment_intents$")
    page.get_by_role("button", name="Pay 25.00 USD by card").click()
    expect(page.get_by_role("alert")).to_contain_text("nothing was charged. Try again in a moment.")
    page.screenshot(path=str(ARTIFACTS / "card-stripe-down-375.png"), full_page=True)
    assert succeeded_charges(stripe_proxy, session.customer) == 0
    stripe_proxy.heal()
    page.get_by_role("button", name="Pay 25.00 USD by card").click()  # (the form kept the card)
    expect(page.get_by_test_id("status")).to_contain_text("Paid on")
    assert_paid_once(stripe_proxy, session, D("25.00"))

    session = new_activation("lost@example.com")
    page.goto(f"{live_server.url}/checkout/{session.id}")
    fill_card(page, GOOD)
    stripe_proxy.fault(DROP, "POST", r"^/v1/payment_intents/[^/]+/confirm$")
    stripe_proxy.fault(FAIL, "GET", r"^/v1/payment_intents/")
    page.get_by_role("button", name="Pay 25.00 USD by card").click()
    expect(page.get_by_role("status")).to_contain_text("The payment is being processed", timeout=30_000)
    expect(page.locator("#card-error")).to_have_text("")
    page.screenshot(path=str(ARTIFACTS / "card-stripe-answer-lost-375.png"), full_page=True)
    stripe_proxy.heal()
    age_attempts()
    resolve_card_attempts()
    page.reload()
    expect(page.get_by_test_id("status")).to_contain_text("Paid on")
    assert Payment.objects.filter(session=session).count() == 1
    assert succeeded_charges(stripe_proxy, session.customer) == 1
    assert ledger_check() == []
