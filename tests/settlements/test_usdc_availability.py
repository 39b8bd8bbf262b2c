"""Where USDC cannot be paid, the checkout says why (and /v0/chains still answers); the chain
configuration is checked as the README describes it."""

import json

import pytest

from apps.payments.chains import ChainConfigError, chains
from tests.factories import make_customer

pytestmark = pytest.mark.django_db

BASE = {
    "name": "base",
    "chainId": 8453,
    "rpcUrl": "https://mainnet.base.org",
    "token": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
    "requiredConfirmations": 12,
    "recipient": "0x000000000000000000000000000000000000dEaD",
    "explorerUrl": "https://basescan.org",
}


def checkout_html(client, test_api) -> str:
    customer = make_customer(test_api.merchant, email="usdc@example.com")
    session = test_api.post(f"/v0/customers/{customer.id}/topups", {"amount": "5", "currency": "USDC"}).json()
    response = client.get(f"/checkout/{session['id']}")
    assert response.status_code == 200
    return response.content.decode()


def test_without_a_sandbox_chain_the_checkout_says_why_and_chains_is_empty(client, test_api, settings):
    settings.SANDBOX_CHAIN_UNAVAILABLE = "npm is not installed"
    html = checkout_html(client, test_api)
    assert "USDC unavailable: no sandbox chain runs: npm is not installed." in html
    assert test_api.get("/v0/chains").json()["data"] == []


def test_with_a_chain_the_block_is_offered_and_the_page_points_at_it(client, test_api, settings):
    settings.USDC_TEST_CHAINS = json.dumps([BASE])
    html = checkout_html(client, test_api)
    assert "Pay with browser wallet" in html and "USDC unavailable" not in html
    assert [chain["name"] for chain in test_api.get("/v0/chains").json()["data"]] == ["base"]


def test_live_and_sandbox_chains_are_configured_apart(settings):
    settings.USDC_CHAINS = json.dumps([BASE])
    settings.USDC_TEST_CHAINS = ""
    (live,) = chains(livemode=True)
    assert (live.chain_id, live.required_confirmations, live.clearing_source) == (8453, 12, "chain:base")
    assert live.explorer_tx_url("0xabc") == "https://basescan.org/tx/0xabc"
    assert chains(livemode=False) == ()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not json", "is not JSON"),
        (json.dumps({"name": "base"}), "must be a JSON list"),
        (json.dumps([{**BASE, "token": "0x12"}]), "token is not an Ethereum address"),
        (json.dumps([{**BASE, "requiredConfirmations": 0}]), "requiredConfirmations must be an integer"),
        (json.dumps([BASE, BASE]), "name must be a name used once"),
        (json.dumps([{k: v for k, v in BASE.items() if k != "recipient"}]), "lacks recipient"),
    ],
)
def test_a_malformed_chain_configuration_names_what_is_wrong(settings, value, message):
    settings.USDC_CHAINS = value
    with pytest.raises(ChainConfigError, match=message):
        chains(livemode=True)


def test_an_open_usdc_invoice_pdf_shows_its_usdc_block(test_api, settings):
    from apps.payments.chains import reference_hash
    from tests.invoices.test_pdf import pdf_text
    from tests.settlements.world import usdc_invoice

    settings.USDC_TEST_CHAINS = json.dumps([BASE])
    invoice = usdc_invoice(test_api.merchant, "7.25")
    text = pdf_text(test_api.get(f"/v0/invoices/{invoice.id}/pdf"))
    flat = "".join(text.split())  # (long hex strings may wrap)
    assert "PayinUSDConchain" in flat
    assert "7.250000USDC(7250000baseunits)" in flat
    assert BASE["recipient"] in flat and BASE["token"] in flat
    assert reference_hash(invoice.id) in flat
    settings.USDC_TEST_CHAINS = ""
    assert "PayinUSDConchain" not in "".join(pdf_text(test_api.get(f"/v0/invoices/{invoice.id}/pdf")).split())
