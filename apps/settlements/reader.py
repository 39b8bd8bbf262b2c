"""What a chain says of a transaction, read through web3 from the chain's RPC node (never inside a
database transaction): its receipt, whether its block is still the canonical one at that
height, the head, and its Transfer logs judged against what a settlement claims."""

from dataclasses import dataclass, field

from eth_utils import keccak, to_checksum_address

from apps.payments.chains import Chain

TRANSFER_TOPIC = "0x" + keccak(text="Transfer(address,address,uint256)").hex()


class ChainReadError(Exception):
    """The node could not be read (down, timed out, answered nonsense): try again later."""


@dataclass(frozen=True)
class Transfer:
    token: str
    sender: str
    receiver: str
    value: int
    log_index: int


@dataclass
class Reading:
    """A transaction as the chain shows it now. `mined` False: no receipt, or its block was
    replaced by a reorganisation (it may be mined again later)."""

    mined: bool
    succeeded: bool = False
    block_number: int | None = None
    block_hash: str = ""
    head: int = 0
    transfers: list[Transfer] = field(default_factory=list)

    @property
    def confirmations(self) -> int:
        """head - block + 1: the block itself counts as one."""
        if not self.mined or self.block_number is None:
            return 0
        return max(self.head - self.block_number + 1, 0)


def _hex(value) -> str:
    text = value.hex() if hasattr(value, "hex") else str(value)
    return text if text.startswith("0x") else f"0x{text}"


def _topic_address(topic) -> str:
    return to_checksum_address("0x" + _hex(topic)[-40:])


def _web3(chain: Chain, timeout: float):
    from web3 import HTTPProvider, Web3

    # (no retries inside one read: web3's default sends a request that timed out five times, so
    # a node that hangs would hold the check for five timeouts; the settlement is read again
    # later with backoff instead)
    return Web3(HTTPProvider(chain.rpc_url, request_kwargs={"timeout": timeout}, exception_retry_configuration=None))


def read_transaction(chain: Chain, transaction_hash: str, *, timeout: float = 10.0) -> Reading:
    from web3.exceptions import BlockNotFound, TransactionNotFound

    w3 = _web3(chain, timeout)
    try:
        try:
            receipt = w3.eth.get_transaction_receipt(transaction_hash)
        except TransactionNotFound:
            return Reading(mined=False)
        if receipt is None:
            return Reading(mined=False)
        block_number = receipt["blockNumber"]
        block_hash = _hex(receipt["blockHash"])
        try:
            canonical = w3.eth.get_block(block_number)
        except BlockNotFound:
            return Reading(mined=False)
        if _hex(canonical["hash"]).lower() != block_hash.lower():
            # the block that held it is no longer the chain's block at that height
            return Reading(mined=False)
        head = w3.eth.block_number
    except (TransactionNotFound, BlockNotFound):
        return Reading(mined=False)
    except Exception as exc:  # the node's transport and its answers: all "read again later"
        raise ChainReadError(f"{chain.name}: {exc.__class__.__name__}: {exc}") from exc
    transfers = []
    for log in receipt["logs"]:
        topics = log["topics"]
        if len(topics) != 3 or _hex(topics[0]).lower() != TRANSFER_TOPIC:
            continue
        data = _hex(log["data"])
        transfers.append(
            Transfer(
                token=to_checksum_address(log["address"]),
                sender=_topic_address(topics[1]),
                receiver=_topic_address(topics[2]),
                value=int(data, 16) if data != "0x" else 0,
                log_index=int(log["logIndex"]),
            )
        )
    return Reading(
        mined=True,
        succeeded=receipt["status"] == 1,
        block_number=block_number,
        block_hash=block_hash,
        head=head,
        transfers=transfers,
    )


def judge(reading: Reading, *, chain: Chain, payer: str) -> tuple[list[Transfer], str | None]:
    """The Transfer logs that pay the claim (the chain's USDC, from the payer, to the chain's
    recipient), or why none does: (matching, failure reason)."""
    if not reading.succeeded:
        return [], "reverted"
    # (the USDC contract's address: public, as every address here)
    usdc, recipient, payer = chain.token.lower(), chain.recipient.lower(), payer.lower()
    matching = [
        t
        for t in reading.transfers
        if t.token.lower() == usdc and t.sender.lower() == payer and t.receiver.lower() == recipient and t.value > 0
    ]
    if matching:
        return matching, None
    transfers = [t for t in reading.transfers if t.value > 0]
    if any(t.token.lower() == usdc and t.receiver.lower() == recipient for t in transfers):
        return [], "wrong_payer"
    if any(t.token.lower() != usdc and t.receiver.lower() == recipient for t in transfers):
        return [], "wrong_token"
    if any(t.token.lower() == usdc and t.sender.lower() == payer for t in transfers):
        return [], "wrong_recipient"
    return [], "no_matching_transfer"
