"""A sandbox merchant whose chain is the test session's anvil: customers with proven wallet
addresses, USDC invoices, and real transfers of the compiled test USDC."""

import json
from dataclasses import dataclass
from decimal import Decimal

from django.test import override_settings
from eth_account import Account
from eth_account.messages import encode_defunct

from apps.invoices.services.invoices import invoice_create_one_off
from billing_platform import sandbox_chain
from tests.factories import make_customer


def chain_settings(chain, *, required: int = 3, **extra):
    """The sandbox's USDC_TEST_CHAINS pointed at `chain` (an override_settings)."""
    return override_settings(
        USDC_TEST_CHAINS=json.dumps([chain.chain_config(required_confirmations=required)]), **extra
    )


def rpc(chain, method: str, params=None):
    response = chain.web3().provider.make_request(method, params or [])
    if "error" in response:
        raise RuntimeError(f"{method}: {response['error']}")
    return response["result"]


def mine(chain, blocks: int = 1) -> None:
    for _ in range(blocks):
        rpc(chain, "evm_mine")


@dataclass
class Payer:
    account: object

    @property
    def address(self) -> str:
        return self.account.address

    def sign(self, message: str) -> str:
        signed = self.account.sign_message(encode_defunct(text=message))
        return "0x" + signed.signature.hex().removeprefix("0x")


def new_payer(chain, *, usdc: int = 1_000 * 10**6) -> Payer:
    account = Account.create()
    sandbox_chain.fund_payer(chain, account.address, usdc=usdc)
    return Payer(account)


def send_token(chain, payer: Payer, *, to: str, value: int, token: str | None = None, gas: int | None = None) -> str:
    """A transfer of `value` base units signed by the payer's key; mined (anvil mines a block per
    transaction). Returns its hash (0x...)."""
    w3 = chain.web3()
    contract = w3.eth.contract(address=token or chain.token, abi=chain.abi)
    params = {
        "from": payer.address,
        "nonce": w3.eth.get_transaction_count(payer.address),
        "chainId": chain.chain_id,
        "gasPrice": w3.eth.gas_price,
    }
    if gas is not None:
        params["gas"] = gas
    tx = contract.functions.transfer(to, value).build_transaction(params)
    signed = payer.account.sign_transaction(tx)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
    return "0x" + tx_hash.hex().removeprefix("0x")


def prove(api, customer_id, payer: Payer):
    message = f"Pay {api.merchant.name} from {payer.address} as customer {customer_id}"
    response = api.post(
        f"/v0/customers/{customer_id}/walletAddresses", {"address": payer.address, "signature": payer.sign(message)}
    )
    assert response.status_code == 201, response.content
    return response


def usdc_invoice(merchant, amount: str, *, email="payer@example.com", customer=None):
    customer = customer or make_customer(merchant, email=email)
    return invoice_create_one_off(
        merchant=merchant,
        customer=customer,
        currency="USDC",
        lines=[("Inference credits", Decimal(amount))],
        auto_collect=False,
    )


def claim(api, invoice_data: dict, tx_hash: str, payer_address: str, **overrides):
    usdc = invoice_data["usdc"]
    body = {
        "invoiceId": invoice_data["id"],
        "chain": usdc["chain"],
        "transactionHash": tx_hash,
        "referenceHash": usdc["referenceHash"],
        "payerAddress": payer_address,
        "merchantAddress": usdc["recipient"],
        **overrides,
    }
    return api.post("/v0/settlements", body)
