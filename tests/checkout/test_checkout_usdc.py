"""The checkout's USDC path (Django's test client; the chain is the test session's anvil with the
compiled test USDC): what the page shows (amount, chain, recipient, token, reference, the QR code
of the EIP-681 URI), the pasted hash claimed through the settlements service, its errors in
words for the payer, the address proven from the page, and the status the page polls."""

import json
import re
from decimal import Decimal

import pytest
import segno
from django.test import Client

from apps.invoices.models import Invoice
from apps.ledger.selectors import ledger_check
from apps.payments.chains import reference_hash
from apps.payments.models import Payment, PaymentSession
from apps.settlements.models import Settlement, WalletAddress
from apps.settlements.tasks import check_settlement
from tests.factories import make_customer
from tests.settlements.world import chain_settings, mine, new_payer, prove, send_token, usdc_invoice

pytestmark = pytest.mark.django_db

USDC = 10**6


@pytest.fixture
def chain(anvil_chain):
    with chain_settings(anvil_chain, required=2):
        yield anvil_chain


def invoice_session(test_api, amount="10", email="payer@example.com"):
    """An open USDC invoice and the session behind its payment link."""
    invoice = usdc_invoice(test_api.merchant, amount, email=email)
    data = test_api.get(f"/v0/invoices/{invoice.id}").json()
    session_id = data["paymentUrl"].rsplit("/", 1)[1]
    return data, PaymentSession.objects.get(pk=session_id)


def settle(client, session, **body):
    return client.post(f"/checkout/{session.id}/usdc/settlement", json.dumps(body), content_type="application/json")


def test_the_usdc_path_shows_what_to_send_and_a_qr_code_of_the_eip681_transfer(client, chain, test_api):
    data, session = invoice_session(test_api, "12.345678")
    response = client.get(f"/checkout/{session.id}")
    assert response.status_code == 200
    html = response.content.decode()
    usdc = data["usdc"]
    assert usdc["amount"] == "12345678"
    assert "12.345678 USDC" in html and "(12345678 base units)" in html
    assert "anvil (chain id 31337)" in html and "counted after 2 confirmations" in html
    assert chain.recipient in html and chain.token in html
    # the invoice's reference (the one printed on its PDF), not the session's
    assert reference_hash(data["id"]) in html and reference_hash(session.id) not in html
    uri = f"ethereum:{chain.token}@31337/transfer?address={chain.recipient}&uint256=12345678"
    assert uri.replace("&", "&amp;") in html
    svg = re.search(r"<svg .*?</svg>", html, re.S).group(0)
    assert svg == segno.make(uri, error="m").svg_inline(
        scale=4, dark="#000", light="#fff", title="QR code of the USDC transfer", svgclass="qr-code", lineclass=None
    )
    assert "USDC unavailable" not in html and "Pay with browser wallet" in html
    assert "js/checkout-usdc.js" in html
    policy = response["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    assert directives["script-src"] == "'self'" and directives["connect-src"] == "'self'", policy
    assert "<script>" not in html and " style=" not in html  # nothing inline for the CSP to refuse


def test_a_top_up_session_pays_itself_with_its_own_reference(client, chain, test_api):
    customer = make_customer(test_api.merchant, email="topup@example.com")
    session = test_api.post(f"/v0/customers/{customer.id}/topups", {"amount": "2.5", "currency": "USDC"}).json()
    html = client.get(f"/checkout/{session['id']}").content.decode()
    assert session["usdc"]["referenceHash"] in html and "2.500000 USDC" in html


def test_a_pasted_hash_is_claimed_pending_polled_and_confirmed(client, chain, test_api):
    data, session = invoice_session(test_api, "10")
    payer = new_payer(chain)
    prove(test_api, data["customerId"], payer)
    tx_hash = send_token(chain, payer, to=chain.recipient, value=10 * USDC)

    response = settle(client, session, transactionHash=tx_hash, payerAddress=payer.address.lower())
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["status"], body["confirmations"], body["requiredConfirmations"]) == ("pending", 0, 2)
    assert body["message"] == "Waiting for the transaction to be mined." and body["redirect"] is None
    # the check that the claim queues on commit (run here as the task, eagerly): its own block counts as one
    check_settlement.delay(body["id"])
    shown = client.get(f"/checkout/{session.id}/usdc/settlements/{body['id']}").json()
    assert (shown["status"], shown["message"]) == ("pending", "Waiting for confirmations: 1 of 2.")
    settlement = Settlement.objects.get(pk=body["id"])
    assert (settlement.invoice_id, settlement.reference_hash) == (
        Invoice.objects.get(pk=data["id"]).id,
        data["usdc"]["referenceHash"],
    )
    # the same hash again is a replay
    again = settle(client, session, transactionHash=tx_hash, payerAddress=payer.address)
    assert again.status_code == 200 and again.json()["id"] == body["id"]
    # the page, reloaded, follows the pending settlement
    html = client.get(f"/checkout/{session.id}").content.decode()
    assert f'data-settlement="{body["id"]}"' in html and "waiting for confirmations (1 of 2)" in html

    mine(chain)
    check_settlement.delay(body["id"])
    status = client.get(f"/checkout/{session.id}/usdc/settlements/{body['id']}")
    assert status["Cache-Control"] == "no-store"
    shown = status.json()
    assert (shown["status"], shown["confirmations"], shown["amount"]) == ("confirmed", 2, "10.000000")
    assert shown["paymentSessionStatus"] == "paid" and shown["redirect"] == f"/checkout/{session.id}"
    assert Invoice.objects.get(pk=data["id"]).status == "paid"
    assert Payment.objects.get(source="usdc").amount == Decimal("10")
    assert "Paid on" in client.get(f"/checkout/{session.id}").content.decode()
    # paid: the page takes no more claims
    closed = settle(client, session, transactionHash="0x" + "ef" * 32, payerAddress=payer.address)
    assert closed.status_code == 409 and closed.json()["code"] == "PAYMENT_SESSION_CLOSED"
    assert ledger_check() == []


def test_bad_input_is_a_clear_400_and_writes_nothing(client, chain, test_api):
    _, session = invoice_session(test_api)
    payer = new_payer(chain, usdc=0)
    malformed = settle(client, session, transactionHash="0x1234", payerAddress=payer.address)
    assert malformed.status_code == 400
    assert malformed.json()["errors"][0] == {
        "field": "transactionHash",
        "message": "must be 0x followed by 64 hex digits",
        "code": "INVALID_HASH",
    }
    missing = settle(client, session, transactionHash="0x" + "ab" * 32)
    assert missing.status_code == 400 and missing.json()["code"] == "FIELD_REQUIRED"
    bad_address = settle(client, session, transactionHash="0x" + "ab" * 32, payerAddress="0xnope")
    assert bad_address.status_code == 400 and bad_address.json()["errors"][0]["code"] == "INVALID_ADDRESS"
    not_json = client.post(f"/checkout/{session.id}/usdc/settlement", "{", content_type="application/json")
    assert not_json.status_code == 400 and not_json.json()["code"] == "INVALID_JSON"
    assert not Settlement.objects.exists()


def test_an_unproven_payer_is_told_how_to_prove_it_and_proves_it_from_the_page(client, chain, test_api):
    data, session = invoice_session(test_api, "10")
    payer = new_payer(chain)
    tx_hash = send_token(chain, payer, to=chain.recipient, value=10 * USDC)
    refused = settle(client, session, transactionHash=tx_hash, payerAddress=payer.address)
    assert refused.status_code == 422
    body = refused.json()
    message = f"Pay {test_api.merchant.name} from {payer.address} as customer {data['customerId']}"
    assert body["code"] == "PAYER_NOT_PROVEN" and body["details"] == {"address": payer.address, "message": message}
    assert "Sign the message below" in body["message"] and "/v0/" not in body["message"]
    assert not Settlement.objects.exists()

    other = new_payer(chain, usdc=0)
    wrong_key = client.post(
        f"/checkout/{session.id}/usdc/proof",
        json.dumps({"address": payer.address, "signature": other.sign(message)}),
        content_type="application/json",
    )
    assert wrong_key.status_code == 422 and wrong_key.json()["code"] == "SIGNATURE_MISMATCH"
    proven = client.post(
        f"/checkout/{session.id}/usdc/proof",
        json.dumps({"address": payer.address, "signature": payer.sign(message)}),
        content_type="application/json",
    )
    assert proven.status_code == 201 and proven.json() == {"address": payer.address, "proven": True}
    assert WalletAddress.objects.get(address=payer.address).customer_id == session.customer_id
    assert settle(client, session, transactionHash=tx_hash, payerAddress=payer.address).status_code == 201


def test_a_hash_claimed_for_another_payment_is_409_in_words_for_the_payer(client, chain, test_api):
    first, first_session = invoice_session(test_api, "10")
    customer = Invoice.objects.get(pk=first["id"]).customer
    second = usdc_invoice(test_api.merchant, "10", customer=customer)
    second_session = PaymentSession.objects.get(
        pk=test_api.get(f"/v0/invoices/{second.id}").json()["paymentUrl"].rsplit("/", 1)[1]
    )
    payer = new_payer(chain)
    prove(test_api, first["customerId"], payer)
    tx_hash = send_token(chain, payer, to=chain.recipient, value=10 * USDC)
    assert settle(client, first_session, transactionHash=tx_hash, payerAddress=payer.address).status_code == 201
    reused = settle(client, second_session, transactionHash=tx_hash, payerAddress=payer.address)
    assert reused.status_code == 409 and reused.json()["code"] == "TRANSACTION_ALREADY_USED"
    assert "a transaction pays once" in reused.json()["message"]
    assert Settlement.objects.count() == 1


def test_a_failed_settlement_shows_its_reason(client, chain, test_api):
    data, session = invoice_session(test_api, "10")
    payer, stranger = new_payer(chain), new_payer(chain)
    prove(test_api, data["customerId"], payer)
    tx_hash = send_token(chain, stranger, to=chain.recipient, value=10 * USDC)  # not the payer's transfer
    settlement_id = settle(client, session, transactionHash=tx_hash, payerAddress=payer.address).json()["id"]
    check_settlement.delay(settlement_id)
    body = client.get(f"/checkout/{session.id}/usdc/settlements/{settlement_id}").json()
    assert (body["status"], body["failureReason"]) == ("failed", "wrong_payer")
    assert body["message"].startswith("The transfer in this transaction came from another address")
    assert body["redirect"] is None
    assert Invoice.objects.get(pk=data["id"]).status == "open"
    assert not Payment.objects.exists()
    assert ledger_check() == []


def test_the_status_view_shows_only_this_pages_settlements(client, chain, test_api):
    data, session = invoice_session(test_api, "10", email="one@example.com")
    _, other_session = invoice_session(test_api, "10", email="two@example.com")
    payer = new_payer(chain)
    prove(test_api, data["customerId"], payer)
    tx_hash = send_token(chain, payer, to=chain.recipient, value=10 * USDC)
    settlement_id = settle(client, session, transactionHash=tx_hash, payerAddress=payer.address).json()["id"]
    assert client.get(f"/checkout/{session.id}/usdc/settlements/{settlement_id}").status_code == 200
    assert client.get(f"/checkout/{other_session.id}/usdc/settlements/{settlement_id}").status_code == 404


def test_the_checkout_actions_need_the_csrf_token_and_are_rate_limited(chain, test_api, settings):
    _, session = invoice_session(test_api)
    strict = Client(enforce_csrf_checks=True)
    body = json.dumps({"transactionHash": "0x" + "ab" * 32, "payerAddress": "0x" + "11" * 20})
    forged = strict.post(f"/checkout/{session.id}/usdc/settlement", body, content_type="application/json")
    assert forged.status_code == 403
    settings.PUBLIC_RATE_LIMITS = {**settings.PUBLIC_RATE_LIMITS, "checkout_actions": "1/60"}
    client = Client()
    assert client.post(f"/checkout/{session.id}/usdc/proof", "{}", content_type="application/json").status_code == 400
    limited = client.post(f"/checkout/{session.id}/usdc/proof", "{}", content_type="application/json")
    assert limited.status_code == 429 and limited["Retry-After"]
    assert not Settlement.objects.exists()


def test_without_a_chain_the_usdc_actions_say_why(client, test_api):
    customer = make_customer(test_api.merchant, email="nochain@example.com")
    session = test_api.post(f"/v0/customers/{customer.id}/topups", {"amount": "2", "currency": "USDC"}).json()
    html = client.get(f"/checkout/{session['id']}").content.decode()
    assert "USDC unavailable: no chain is configured for the sandbox" in html and 'id="usdc"' not in html
    response = client.post(
        f"/checkout/{session['id']}/usdc/settlement",
        json.dumps({"transactionHash": "0x" + "ab" * 32, "payerAddress": "0x" + "11" * 20}),
        content_type="application/json",
    )
    assert response.status_code == 422 and response.json()["code"] == "USDC_UNAVAILABLE"
    assert "USDC_TEST_CHAINS is not set" in response.json()["message"]


def test_another_customers_claim_fails_wrong_payer_and_frees_the_hash_for_its_owner(client, chain, test_api):
    alice_data, alice_session = invoice_session(test_api, "10", email="alice@example.com")
    bob_data, bob_session = invoice_session(test_api, "10", email="bob@example.com")
    alice, bob = new_payer(chain), new_payer(chain)
    prove(test_api, alice_data["customerId"], alice)
    prove(test_api, bob_data["customerId"], bob)
    tx_hash = send_token(chain, alice, to=chain.recipient, value=10 * USDC)
    # Bob claims Alice's transfer first, naming his own proven address
    bobs = settle(client, bob_session, transactionHash=tx_hash, payerAddress=bob.address).json()
    # while his claim waits for its check, the hash is held: Alice is told why and what to do
    held = settle(client, alice_session, transactionHash=tx_hash, payerAddress=alice.address)
    assert held.status_code == 409 and held.json()["code"] == "TRANSACTION_ALREADY_USED"
    assert "try again in a minute" in held.json()["message"]
    check_settlement.delay(bobs["id"])
    failed = client.get(f"/checkout/{bob_session.id}/usdc/settlements/{bobs['id']}").json()
    assert (failed["status"], failed["failureReason"]) == ("failed", "wrong_payer")
    assert Settlement.objects.get(pk=bobs["id"]).holds_hash is False
    # then Alice's claim is taken and confirms
    alices = settle(client, alice_session, transactionHash=tx_hash, payerAddress=alice.address)
    assert alices.status_code == 201, alices.content
    mine(chain)
    check_settlement.delay(alices.json()["id"])
    assert client.get(f"/checkout/{alice_session.id}/usdc/settlements/{alices.json()['id']}").json()["status"] == (
        "confirmed"
    )
    assert Invoice.objects.get(pk=alice_data["id"]).status == "paid"
    assert Invoice.objects.get(pk=bob_data["id"]).status == "open"
    assert Payment.objects.filter(source="usdc").count() == 1
    assert ledger_check() == []
