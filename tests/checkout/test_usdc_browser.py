"""The checkout's USDC path in headless Chromium (Debian `chromium`, Playwright for Python with
executable_path) against the test session's anvil and the compiled test USDC:

- a transfer sent with web3 from a funded payer, its hash pasted: the page asks to prove the
  address (the payer signs the contract's message, the signature is pasted), shows the
  confirmations as the settlement's check (the Celery task, run eagerly as in the other
  settlement tests) counts them, and shows the invoice paid once confirmed;
- a browser wallet: window.ethereum is a small EIP-1193 shim that the test injects
  (page.add_init_script), forwarding each request to anvil's JSON-RPC through a function the
  test exposes (so the page's CSP, connect-src 'self', still holds), where anvil's unlocked
  account signs (personal_sign) and sends the transfer; the activation it pays goes to the
  session's success URL.

axe-core on the page; screenshots at 1280 and 375 px under artifacts/checkout/."""

from decimal import Decimal

import pytest

from apps.invoices.models import Invoice
from apps.ledger.selectors import ledger_check
from apps.payments.models import Payment, PaymentSession
from apps.settlements.models import Settlement, WalletAddress
from apps.settlements.tasks import check_settlement
from apps.subscriptions.models import Subscription
from apps.subscriptions.services import subscription_create
from billing_platform import sandbox_chain
from tests.checkout.test_card_browser import ARTIFACTS, browser  # noqa: F401 (the fixture)
from tests.factories import make_customer, make_plan
from tests.portal.test_browser import CHROMIUM, Watched, _axe_serious
from tests.settlements.world import chain_settings, mine, new_payer, rpc, send_token, usdc_invoice

USDC = 10**6

pytestmark = [
    pytest.mark.skipif(not __import__("pathlib").Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing"),
    pytest.mark.django_db(transaction=True),
]

SHIM = """
window.ethereum = {
  isTestShim: true,
  request: function (args) { return window.__anvilRpc(args.method, args.params || []); }
};
"""


@pytest.fixture
def chain(anvil_chain, live_server, settings):
    settings.PUBLIC_BASE_URL = live_server.url
    with chain_settings(anvil_chain, required=3):
        yield anvil_chain


def shot(page, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def wait_for_settlement(**filters) -> Settlement:
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = Settlement.objects.filter(**filters).first()
        if found is not None:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no settlement {filters}")


def test_a_pasted_hash_pays_an_invoice_and_shows_confirmed(browser, chain, test_api, live_server):  # noqa: F811
    from playwright.sync_api import expect

    invoice = usdc_invoice(test_api.merchant, "10")
    data = test_api.get(f"/v0/invoices/{invoice.id}").json()
    payer = new_payer(chain)
    tx_hash = send_token(chain, payer, to=chain.recipient, value=10 * USDC)

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    watched = Watched(context)
    page = watched.page
    page.goto(data["paymentUrl"])
    expect(page.get_by_test_id("usdc-amount")).to_have_text("10.000000 USDC")
    expect(page.get_by_test_id("usdc-reference")).to_have_text(data["usdc"]["referenceHash"])
    expect(page.get_by_test_id("usdc-qr").locator("svg")).to_be_visible()
    expect(page.locator("#usdc-needs-js")).to_be_hidden()
    # no window.ethereum here: no browser-wallet button
    expect(page.get_by_role("button", name="Pay with browser wallet")).to_be_hidden()
    for width in (1280, 375):
        page.set_viewport_size({"width": width, "height": 900})
        shot(page, f"usdc-{width}")
        assert _axe_serious(page) == [], f"USDC path at {width}px"
        assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0

    # a malformed hash: said on the page, nothing sent
    page.get_by_label("Transaction hash").fill("0x1234")
    page.get_by_label("Paid from (your address)").fill(payer.address)
    page.get_by_role("button", name="Submit transaction hash").click()
    expect(page.get_by_role("alert")).to_have_text("The transaction hash must be 0x followed by 64 hex digits.")
    assert not Settlement.objects.exists()

    # the payer's address is not proven yet: the page shows the message to sign
    page.get_by_label("Transaction hash").fill(tx_hash)
    page.get_by_role("button", name="Submit transaction hash").click()
    expect(page.get_by_role("alert")).to_contain_text("is not yet proven to be yours")
    message = f"Pay {test_api.merchant.name} from {payer.address} as customer {data['customerId']}"
    expect(page.locator("#usdc-proof-message")).to_have_text(message)
    page.set_viewport_size({"width": 375, "height": 900})
    shot(page, "usdc-prove-375")
    assert _axe_serious(page) == [], "the proof form"
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    page.get_by_label("Signature").fill(payer.sign(message))
    page.get_by_role("button", name="Prove address and submit").click()

    # claimed; the check queued on commit (eager) saw its own block
    expect(page.get_by_test_id("usdc-status")).to_have_text("Waiting for confirmations: 1 of 3.", timeout=20_000)
    settlement = wait_for_settlement(transaction_hash=tx_hash)
    assert WalletAddress.objects.filter(customer_id=data["customerId"], address=payer.address).exists()
    mine(chain)
    check_settlement.delay(str(settlement.id))
    expect(page.get_by_test_id("usdc-status")).to_have_text("Waiting for confirmations: 2 of 3.", timeout=20_000)
    shot(page, "usdc-pending-375")
    mine(chain)
    check_settlement.delay(str(settlement.id))
    expect(page.get_by_test_id("status")).to_contain_text("Paid on", timeout=20_000)  # the page once confirmed
    page.set_viewport_size({"width": 1280, "height": 900})
    shot(page, "usdc-paid-1280")
    assert Invoice.objects.get(pk=invoice.id).status == "paid"
    assert Payment.objects.get(source="usdc").amount == Decimal("10")
    # the one console error: the browser's own report of the 422 PAYER_NOT_PROVEN answer
    assert [p for p in watched.problems if "422 (Unprocessable" not in p] == []
    assert ledger_check() == []


def test_a_browser_wallet_proves_its_address_pays_and_confirms(browser, chain, test_api, live_server):  # noqa: F811
    from playwright.sync_api import expect

    merchant = test_api.merchant
    subscription = subscription_create(
        merchant=merchant,
        customer=make_customer(merchant, email="wallet@example.com"),
        plan=make_plan(merchant, currency="USDC"),
        prefund_amount=Decimal("25"),
        success_url=f"{live_server.url}/healthz",
    )
    session = PaymentSession.objects.get(subscription=subscription)
    w3 = chain.web3()
    account = w3.eth.accounts[3]  # an anvil account that anvil itself signs for
    sandbox_chain.fund_payer(chain, account, usdc=100 * USDC)
    calls = []

    def anvil_rpc(method, params):
        calls.append(method)
        if method == "eth_requestAccounts":
            return [account.lower()]
        return rpc(chain, method, params)

    context = browser.new_context(viewport={"width": 375, "height": 800})
    watched = Watched(context)
    page = watched.page
    page.expose_function("__anvilRpc", anvil_rpc)
    page.add_init_script(SHIM)
    response = page.goto(f"{live_server.url}/checkout/{session.id}")
    policy = response.headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    assert directives["connect-src"] == "'self'", policy
    wallet_button = page.get_by_role("button", name="Pay with browser wallet")
    expect(wallet_button).to_be_visible()
    shot(page, "usdc-wallet-375")
    assert _axe_serious(page) == [], "the USDC path with a browser wallet"

    wallet_button.click()
    expect(page.get_by_test_id("usdc-status")).to_have_text("Waiting for confirmations: 1 of 3.", timeout=20_000)
    assert calls[:4] == ["eth_requestAccounts", "eth_chainId", "personal_sign", "eth_sendTransaction"]
    settlement = wait_for_settlement(session=session)
    assert settlement.payer_address.lower() == account.lower()
    assert WalletAddress.objects.get(customer=session.customer).address.lower() == account.lower()
    expect(page.get_by_label("Transaction hash")).to_have_value(settlement.transaction_hash)
    mine(chain, 2)
    check_settlement.delay(str(settlement.id))
    page.wait_for_url(f"{live_server.url}/healthz", timeout=20_000)  # the session's success redirect
    settlement.refresh_from_db()
    assert (settlement.status, settlement.amount) == ("confirmed", Decimal("25"))
    assert Subscription.objects.get(pk=subscription.id).status == "active"
    assert Payment.objects.get(session=session).source == "usdc"
    assert watched.problems == []
    assert ledger_check() == []
