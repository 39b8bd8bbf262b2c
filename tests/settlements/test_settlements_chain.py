"""USDC settlements against a real local chain (anvil, the session's node) with the test USDC
compiled from contracts/TestUSDC.vy: confirmation at exactly the threshold, underpayment,
overpayment, each failure reason, reused hashes, wrong references, proven payers, and a
reorganisation before the threshold."""

import uuid
from decimal import Decimal

import pytest
from eth_account import Account
from eth_utils import keccak

from apps.invoices.models import Invoice
from apps.ledger.selectors import ledger_check, wallet_balances
from apps.payments.chains import reference_hash, to_base_units
from apps.payments.models import Payment
from apps.settlements.models import Settlement
from apps.settlements.services import settlement_check
from apps.webhooks.models import Event
from billing_platform import sandbox_chain
from tests.factories import make_customer
from tests.settlements.world import (
    chain_settings,
    claim,
    mine,
    new_payer,
    prove,
    rpc,
    send_token,
    usdc_invoice,
)

pytestmark = pytest.mark.django_db

D = Decimal
USDC = 10**6


@pytest.fixture
def chain(anvil_chain):
    with chain_settings(anvil_chain, required=3):
        yield anvil_chain


def open_invoice(test_api, amount="10", email="payer@example.com"):
    invoice = usdc_invoice(test_api.merchant, amount, email=email)
    return test_api.get(f"/v0/invoices/{invoice.id}").json()


def check(settlement_id) -> dict:
    settlement_check(settlement_id=settlement_id)
    return Settlement.objects.select_related("merchant").get(pk=settlement_id)


def test_the_usdc_block_and_chains_show_what_to_send(chain, test_api, api):
    data = open_invoice(test_api, "12.345678")
    assert data["usdc"] == {
        "chain": "anvil",
        "chainId": 31337,
        "token": chain.token,
        "recipient": chain.recipient,
        "amount": "12345678",
        "referenceHash": reference_hash(data["id"]),
    }
    assert data["usdc"]["referenceHash"] == "0x" + keccak(uuid.UUID(data["id"]).bytes).hex()
    chains = test_api.get("/v0/chains").json()["data"]
    assert chains == [
        {
            "object": "chain",
            "name": "anvil",
            "chainId": 31337,
            "token": chain.token,
            "requiredConfirmations": 3,
            "recipient": chain.recipient,
        }
    ]
    # live has no chain configured: nothing listed, no usdc block
    assert api.get("/v0/chains").json()["data"] == []


def test_amounts_due_are_rounded_up_to_base_units_and_the_reference_is_keccak_of_the_id_bytes():
    assert to_base_units(D("12.3456781")) == 12345679  # the payer never sends less than due
    assert to_base_units(D("12.345678")) == 12345678
    assert to_base_units(D("0.000000000001")) == 1
    target = uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")
    assert reference_hash(target) == "0x" + keccak(bytes.fromhex("00112233445566778899aabbccddeeff")).hex()


def test_a_transfer_confirms_at_exactly_the_threshold_and_pays_the_invoice(chain, test_api):
    data = open_invoice(test_api, "10")
    payer = new_payer(chain)
    prove(test_api, data["customerId"], payer)
    tx_hash = send_token(chain, payer, to=chain.recipient, value=10 * USDC)

    response = claim(test_api, data, tx_hash, payer.address)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "pending"
    assert body["requiredConfirmations"] == 3
    assert body["amount"] is None and body["failureReason"] is None

    assert check(body["id"]).confirmations == 1  # its own block
    mine(chain)
    settlement = check(body["id"])
    assert (settlement.status, settlement.confirmations) == ("pending", 2)  # one block before: not yet
    assert not Payment.objects.filter(source="usdc").exists()
    mine(chain)
    settlement = check(body["id"])
    assert (settlement.status, settlement.confirmations) == ("confirmed", 3)

    shown = test_api.get(f"/v0/settlements/{body['id']}").json()
    assert shown["status"] == "confirmed" and shown["amount"] == "10.000000" and shown["failureReason"] is None
    invoice = test_api.get(f"/v0/invoices/{data['id']}").json()
    assert invoice["status"] == "paid" and invoice["usdc"] is None
    payment = Payment.objects.get(source="usdc")
    assert payment.amount == D("10") and payment.external_reference.startswith(f"anvil:{tx_hash}:")
    assert Event.objects.filter(type="settlement.confirmed", data__id=body["id"]).count() == 1
    listed = test_api.get("/v0/settlements", {"invoiceId": data["id"]}).json()["data"]
    assert [row["id"] for row in listed] == [body["id"]]
    # read again later (a reorganisation, a replayed task): a confirmed settlement stays as it is
    assert check(body["id"]).status == "confirmed"
    assert Payment.objects.filter(source="usdc").count() == 1
    assert ledger_check() == []


def test_paying_less_leaves_the_invoice_open_with_amount_paid(chain, test_api):
    data = open_invoice(test_api, "10")
    payer = new_payer(chain)
    prove(test_api, data["customerId"], payer)
    tx_hash = send_token(chain, payer, to=chain.recipient, value=4 * USDC + 250_000)
    settlement_id = claim(test_api, data, tx_hash, payer.address).json()["id"]
    mine(chain, 2)
    assert check(settlement_id).status == "confirmed"
    invoice = test_api.get(f"/v0/invoices/{data['id']}").json()
    assert (invoice["status"], invoice["amountPaid"], invoice["amountDue"]) == ("open", "4.250000", "5.750000")
    assert invoice["usdc"]["amount"] == "5750000"
    assert ledger_check() == []


def test_paying_more_leaves_the_rest_on_the_wallet(chain, test_api):
    data = open_invoice(test_api, "10")
    payer = new_payer(chain)
    prove(test_api, data["customerId"], payer)
    tx_hash = send_token(chain, payer, to=chain.recipient, value=15 * USDC)
    settlement_id = claim(test_api, data, tx_hash, payer.address).json()["id"]
    mine(chain, 2)
    assert check(settlement_id).amount == D("15")
    invoice = Invoice.objects.get(pk=data["id"])
    assert invoice.status == "paid"
    assert wallet_balances(wallet=invoice.wallet).available == D("5")
    assert ledger_check() == []


@pytest.mark.parametrize("case", ["wrong_recipient", "wrong_token", "reverted"])
def test_a_transfer_that_does_not_pay_the_claim_fails_naming_why(chain, test_api, case):
    data = open_invoice(test_api, "10")
    payer = new_payer(chain)
    prove(test_api, data["customerId"], payer)
    if case == "wrong_recipient":
        tx_hash = send_token(chain, payer, to=Account.create().address, value=10 * USDC)
    elif case == "wrong_token":
        compiled = sandbox_chain.compiled_token()
        other = sandbox_chain.deploy_token(chain.web3(), deployer=chain.deployer, compiled=compiled, symbol="FAKE")
        chain.web3().eth.wait_for_transaction_receipt(
            chain.web3()
            .eth.contract(address=other, abi=chain.abi)
            .functions.mint(payer.address, 10 * USDC)
            .transact({"from": chain.deployer})
        )
        tx_hash = send_token(chain, payer, to=chain.recipient, value=10 * USDC, token=other)
    else:  # more than the payer holds: the token reverts (the gas given, so it is mined)
        tx_hash = send_token(chain, payer, to=chain.recipient, value=10**9 * USDC, gas=100_000)
    settlement_id = claim(test_api, data, tx_hash, payer.address).json()["id"]
    settlement = check(settlement_id)
    assert (settlement.status, settlement.failure_reason) == ("failed", case)
    shown = test_api.get(f"/v0/settlements/{settlement_id}").json()
    assert shown["status"] == "failed" and shown["failureReason"] == case
    assert Event.objects.filter(type="settlement.failed", data__id=str(settlement_id)).count() == 1
    assert not Payment.objects.filter(source="usdc").exists()
    assert Invoice.objects.get(pk=data["id"]).status == "open"


def test_a_hash_pays_once_replay_answers_the_first_and_another_invoice_is_409(chain, test_api):
    first = open_invoice(test_api, "10")
    second = usdc_invoice(test_api.merchant, "10", customer=Invoice.objects.get(pk=first["id"]).customer)
    second = test_api.get(f"/v0/invoices/{second.id}").json()
    payer = new_payer(chain)
    prove(test_api, first["customerId"], payer)
    tx_hash = send_token(chain, payer, to=chain.recipient, value=10 * USDC)
    created = claim(test_api, first, tx_hash, payer.address)
    assert created.status_code == 201
    replay = claim(test_api, first, tx_hash.upper().replace("0X", "0x"), payer.address)
    assert replay.status_code == 200 and replay.json()["id"] == created.json()["id"]
    before = Settlement.objects.count()
    reused = claim(test_api, second, tx_hash, payer.address)
    assert reused.status_code == 409 and reused.json()["code"] == "TRANSACTION_ALREADY_USED"
    assert Settlement.objects.count() == before


def test_a_wrong_reference_is_422_and_writes_nothing(chain, test_api):
    data = open_invoice(test_api, "10")
    payer = new_payer(chain)
    prove(test_api, data["customerId"], payer)
    tx_hash = send_token(chain, payer, to=chain.recipient, value=10 * USDC)
    response = claim(test_api, data, tx_hash, payer.address, referenceHash=reference_hash(data["customerId"]))
    assert response.status_code == 422 and response.json()["code"] == "REFERENCE_MISMATCH"
    assert not Settlement.objects.exists()


def test_another_customers_transfer_cannot_be_claimed(chain, test_api):
    alice_invoice = open_invoice(test_api, "10", email="alice@example.com")
    bob_invoice = open_invoice(test_api, "10", email="bob@example.com")
    alice, bob = new_payer(chain), new_payer(chain)
    prove(test_api, alice_invoice["customerId"], alice)
    prove(test_api, bob_invoice["customerId"], bob)
    tx_hash = send_token(chain, alice, to=chain.recipient, value=10 * USDC)  # Alice's own payment
    # Bob names Alice's address: not one he proved
    refused = claim(test_api, bob_invoice, tx_hash, alice.address)
    assert refused.status_code == 422 and refused.json()["code"] == "PAYER_NOT_PROVEN"
    # Bob names his own address: the chain shows the transfer came from someone else
    claimed = claim(test_api, bob_invoice, tx_hash, bob.address)
    assert claimed.status_code == 201
    settlement = check(claimed.json()["id"])
    assert (settlement.status, settlement.failure_reason) == ("failed", "wrong_payer")
    # which does not use Alice's hash up: she claims it for her invoice
    mine(chain, 2)
    mine_claim = claim(test_api, alice_invoice, tx_hash, alice.address)
    assert mine_claim.status_code == 201
    assert check(mine_claim.json()["id"]).status == "confirmed"
    assert Invoice.objects.get(pk=alice_invoice["id"]).status == "paid"
    assert Invoice.objects.get(pk=bob_invoice["id"]).status == "open"


def test_a_wallet_address_signed_by_another_key_is_refused(chain, test_api):
    customer = make_customer(test_api.merchant, email="sig@example.com")
    holder, stranger = Account.create(), new_payer(chain, usdc=0)
    message = f"Pay {test_api.merchant.name} from {holder.address} as customer {customer.id}"
    response = test_api.post(
        f"/v0/customers/{customer.id}/walletAddresses", {"address": holder.address, "signature": stranger.sign(message)}
    )
    assert response.status_code == 422 and response.json()["code"] == "SIGNATURE_MISMATCH"
    garbage = test_api.post(
        f"/v0/customers/{customer.id}/walletAddresses", {"address": holder.address, "signature": "0x12"}
    )
    assert garbage.status_code == 400
    assert test_api.get(f"/v0/customers/{customer.id}/walletAddresses").json()["data"] == []


def test_wallet_addresses_are_listed_removed_and_one_customer_per_address(chain, test_api):
    first = make_customer(test_api.merchant, email="one@example.com")
    second = make_customer(test_api.merchant, email="two@example.com")
    payer = new_payer(chain, usdc=0)
    prove(test_api, first.id, payer)
    newer = new_payer(chain, usdc=0)
    prove(test_api, first.id, newer)
    listed = test_api.get(f"/v0/customers/{first.id}/walletAddresses").json()["data"]
    # newest first, each with its id and mode
    assert [row["address"] for row in listed] == [newer.address, payer.address]
    assert all(row["livemode"] is False and row["id"] for row in listed)
    first_id = listed[1]["id"]
    message = f"Pay {test_api.merchant.name} from {payer.address} as customer {second.id}"
    taken = test_api.post(
        f"/v0/customers/{second.id}/walletAddresses", {"address": payer.address, "signature": payer.sign(message)}
    )
    assert taken.status_code == 409 and taken.json()["code"] == "WALLET_ADDRESS_TAKEN"
    removed = test_api.delete(f"/v0/customers/{first.id}/walletAddresses/{payer.address}")
    assert removed.status_code == 200
    assert (removed.json()["address"], removed.json()["id"]) == (payer.address, first_id)
    left = test_api.get(f"/v0/customers/{first.id}/walletAddresses").json()["data"]
    assert [row["address"] for row in left] == [newer.address]


def test_a_reorganisation_before_the_threshold_returns_it_to_pending(chain, test_api):
    data = open_invoice(test_api, "10")
    payer = new_payer(chain)
    prove(test_api, data["customerId"], payer)
    snapshot = rpc(chain, "evm_snapshot")
    tx_hash = send_token(chain, payer, to=chain.recipient, value=10 * USDC)
    settlement_id = claim(test_api, data, tx_hash, payer.address).json()["id"]
    mine(chain)
    seen = check(settlement_id)
    assert (seen.status, seen.confirmations) == ("pending", 2) and seen.block_number is not None
    assert rpc(chain, "evm_revert", [snapshot]) is True  # the blocks holding it are gone
    mine(chain, 3)
    after = check(settlement_id)
    assert (after.status, after.confirmations, after.block_number) == ("pending", 0, None)
    assert not Payment.objects.filter(source="usdc").exists()
    assert Invoice.objects.get(pk=data["id"]).status == "open"


def test_a_transaction_not_found_in_time_fails_and_frees_its_hash(chain, test_api, settings):
    data = open_invoice(test_api, "10")
    payer = new_payer(chain, usdc=0)
    prove(test_api, data["customerId"], payer)
    never_sent = "0x" + "ab" * 32
    first = claim(test_api, data, never_sent, payer.address).json()
    assert check(first["id"]).status == "pending"  # not mined yet: looked at again later
    settings.SETTLEMENT_NOT_FOUND_SECONDS = 0
    failed = check(first["id"])
    assert (failed.status, failed.failure_reason, failed.holds_hash) == ("failed", "not_found_in_time", False)
    again = claim(test_api, data, never_sent, payer.address)
    assert again.status_code == 201 and again.json()["id"] != first["id"]


def test_posting_checks_the_chain_and_the_merchant_address(chain, test_api):
    data = open_invoice(test_api, "10")
    payer = new_payer(chain, usdc=0)
    prove(test_api, data["customerId"], payer)
    tx_hash = "0x" + "cd" * 32
    unknown = claim(test_api, data, tx_hash, payer.address, chain="base")
    assert unknown.status_code == 422 and unknown.json()["code"] == "UNKNOWN_CHAIN"
    elsewhere = claim(test_api, data, tx_hash, payer.address, merchantAddress=Account.create().address)
    assert elsewhere.status_code == 422 and elsewhere.json()["code"] == "MERCHANT_ADDRESS_MISMATCH"
    malformed = claim(test_api, data, "0x1234", payer.address)
    assert malformed.status_code == 400
    assert not Settlement.objects.exists()


def test_a_pending_usdc_session_carries_the_usdc_block(chain, test_api):
    customer = make_customer(test_api.merchant, email="topup@example.com")
    session = test_api.post(f"/v0/customers/{customer.id}/topups", {"amount": "2.5", "currency": "USDC"}).json()
    assert session["usdc"]["amount"] == "2500000"
    assert session["usdc"]["referenceHash"] == reference_hash(session["id"])
    usd = test_api.post(f"/v0/customers/{customer.id}/topups", {"amount": "2.5", "currency": "USD"}).json()
    assert usd["usdc"] is None


def test_a_claim_posted_while_the_broker_is_out_of_reach_is_201_and_checked_by_beat(
    chain, test_api, monkeypatch, django_capture_on_commit_callbacks
):
    """The claim is stored and answered 201 although its check could not be handed to a worker
    (the broker out of reach after the commit): beat's re-check finds it due and confirms it."""
    from kombu.exceptions import OperationalError

    from apps.settlements.tasks import check_settlement, recheck_pending_settlements

    data = open_invoice(test_api, "10")
    payer = new_payer(chain)
    prove(test_api, data["customerId"], payer)
    tx_hash = send_token(chain, payer, to=chain.recipient, value=10 * USDC)
    mine(chain)
    mine(chain)

    def out_of_reach(*args, **kwargs):
        raise OperationalError("[Errno 111] Connection refused")

    monkeypatch.setattr(check_settlement, "delay", out_of_reach)
    with django_capture_on_commit_callbacks(execute=True):
        response = claim(test_api, data, tx_hash, payer.address)
    assert response.status_code == 201, response.content
    assert Settlement.objects.get(pk=response.json()["id"]).status == "pending"
    monkeypatch.undo()  # the broker is back

    assert recheck_pending_settlements() == 1
    assert Settlement.objects.get(pk=response.json()["id"]).status == "confirmed"
    assert test_api.get(f"/v0/invoices/{data['id']}").json()["status"] == "paid"
    assert ledger_check() == []
