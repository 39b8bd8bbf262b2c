"""The chains that take USDC, per mode, as the operator configures them (USDC_CHAINS for live,
USDC_TEST_CHAINS for the sandbox: JSON lists, README Configuration), and what a payer is asked
to send on one: the `usdc` block of an open invoice or a pending USDC payment session.

Here, below the apps that show a `usdc` block (payments' sessions, invoices) and the one that
reads the chain (settlements), so that each reads the same configuration."""

import json
import uuid
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from django.conf import settings
from eth_utils import is_address, keccak, to_checksum_address

USDC = "USDC"
USDC_DECIMALS = 6
_FIELDS = ("name", "chainId", "rpcUrl", "token", "requiredConfirmations", "recipient")


class ChainConfigError(ValueError):
    """USDC_CHAINS / USDC_TEST_CHAINS is not what the README describes; the message says where."""


@dataclass(frozen=True)
class Chain:
    livemode: bool
    name: str
    chain_id: int
    rpc_url: str
    token: str  # the USDC contract (checksummed)
    required_confirmations: int
    recipient: str  # the platform's collection address (checksummed)
    explorer_url: str = ""  # e.g. https://basescan.org (a transaction is <explorer_url>/tx/<hash>)

    def explorer_tx_url(self, transaction_hash: str) -> str | None:
        return f"{self.explorer_url}/tx/{transaction_hash}" if self.explorer_url else None

    @property
    def clearing_source(self) -> str:
        """The ledger's clearing account (a "source") of the money arriving on this chain."""
        return f"chain:{self.name}"


def _setting_name(livemode: bool) -> str:
    return "USDC_CHAINS" if livemode else "USDC_TEST_CHAINS"


def _parse(raw: str, livemode: bool) -> tuple[Chain, ...]:
    name = _setting_name(livemode)
    if not raw.strip():
        return ()
    try:
        entries = json.loads(raw)
    except ValueError as exc:
        raise ChainConfigError(f"{name} is not JSON: {exc}") from None
    if not isinstance(entries, list):
        raise ChainConfigError(f"{name} must be a JSON list of chains")
    chains, seen = [], set()
    for index, entry in enumerate(entries):
        where = f"{name}[{index}]"
        if not isinstance(entry, dict):
            raise ChainConfigError(f"{where} must be an object with {', '.join(_FIELDS)}")
        missing = [key for key in _FIELDS if key not in entry]
        if missing:
            raise ChainConfigError(f"{where} lacks {', '.join(missing)}")
        for key in ("token", "recipient"):
            if not isinstance(entry[key], str) or not is_address(entry[key]):
                raise ChainConfigError(f"{where}.{key} is not an Ethereum address")
        for key, low in (("chainId", 1), ("requiredConfirmations", 1)):
            if not isinstance(entry[key], int) or isinstance(entry[key], bool) or entry[key] < low:
                raise ChainConfigError(f"{where}.{key} must be an integer of at least {low}")
        if not isinstance(entry["name"], str) or not entry["name"] or entry["name"] in seen:
            raise ChainConfigError(f"{where}.name must be a name used once")
        if not str(entry["rpcUrl"]).startswith(("http://", "https://")):
            raise ChainConfigError(f"{where}.rpcUrl must be an http(s) address")
        seen.add(entry["name"])
        chains.append(
            Chain(
                livemode=livemode,
                name=entry["name"],
                chain_id=entry["chainId"],
                rpc_url=entry["rpcUrl"],
                token=to_checksum_address(entry["token"]),
                required_confirmations=entry["requiredConfirmations"],
                recipient=to_checksum_address(entry["recipient"]),
                explorer_url=str(entry.get("explorerUrl") or "").rstrip("/"),
            )
        )
    return tuple(chains)


_parsed: dict[tuple[bool, str], tuple[Chain, ...]] = {}


def chains(*, livemode: bool) -> tuple[Chain, ...]:
    """The configured chains of a mode, in the order configured (the first is the default)."""
    raw = getattr(settings, _setting_name(livemode), "") or ""
    key = (livemode, raw)
    if key not in _parsed:
        _parsed[key] = _parse(raw, livemode)
    return _parsed[key]


def chain_get(*, livemode: bool, name: str) -> Chain | None:
    return next((chain for chain in chains(livemode=livemode) if chain.name == name), None)


def default_chain(*, livemode: bool) -> Chain | None:
    configured = chains(livemode=livemode)
    return configured[0] if configured else None


def usdc_unavailable_reason(*, livemode: bool) -> str | None:
    """Why USDC cannot be paid in this mode, or None when a chain is configured."""
    try:
        if chains(livemode=livemode):
            return None
    except ChainConfigError as exc:
        return f"the chain configuration is invalid ({exc})."
    if not livemode and settings.SANDBOX_CHAIN_UNAVAILABLE:
        return f"no sandbox chain runs: {settings.SANDBOX_CHAIN_UNAVAILABLE}."
    return f"no chain is configured for {'live' if livemode else 'the sandbox'} ({_setting_name(livemode)} is not set)."


def reference_hash(target_id) -> str:
    """keccak-256 of the invoice's or session's id as its 16 UUID bytes, 0x + 64 hex: anyone
    can recompute it from the id."""
    return "0x" + keccak(uuid.UUID(str(target_id)).bytes).hex()


def to_base_units(amount: Decimal) -> int:
    """An amount due in base units (10^-6 USDC), rounded up: the payer never sends less."""
    return int((amount * (Decimal(10) ** USDC_DECIMALS)).to_integral_value(rounding=ROUND_CEILING))


def from_base_units(value: int) -> Decimal:
    """What a transfer of `value` base units is worth in USDC, exactly."""
    return Decimal(value).scaleb(-USDC_DECIMALS)


def usdc_block(*, livemode: bool, target_id, amount_due: Decimal, currency: str) -> dict | None:
    """What to send, where, and the reference to quote; None when the target is not in USDC or
    no chain is configured for the mode (or the configuration is invalid: the checkout says why)."""
    if currency != USDC or amount_due <= 0:
        return None
    try:
        chain = default_chain(livemode=livemode)
    except ChainConfigError:
        return None
    if chain is None:
        return None
    return {
        "chain": chain.name,
        "chainId": chain.chain_id,
        "token": chain.token,
        "recipient": chain.recipient,
        "amount": str(to_base_units(amount_due)),
        "referenceHash": reference_hash(target_id),
    }


def chain_data(chain: Chain) -> dict:
    """A chain as GET /v0/chains shows it."""
    return {
        "object": "chain",
        "name": chain.name,
        "chainId": chain.chain_id,
        "token": chain.token,
        "requiredConfirmations": chain.required_confirmations,
        "recipient": chain.recipient,
    }
