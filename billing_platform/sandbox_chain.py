"""The sandbox chain, for `make run` and the tests: anvil (npm `@foundry-rs/anvil`, a real
Ethereum node, installed in node_modules by the Makefile) on a free 127.0.0.1 port, with the
repository's 6-decimals test USDC (contracts/TestUSDC.vy, compiled by `vyper` from PyPI)
deployed, a payer funded with ETH for gas and with test USDC, and the platform's collection
address (the chain's recipient).

The compiled contract is cached under RUN_DIR/contracts, keyed by the SHA-256 of its source, so
that it is compiled once per change of the source.

    python -m billing_platform.sandbox_chain    # start one, print what the banner prints, wait
"""

import contextlib
import ctypes
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
RUN_DIR = Path(os.environ.get("RUN_DIR", BASE_DIR / ".run"))
CONTRACT_SOURCE = BASE_DIR / "contracts" / "TestUSDC.vy"
ANVIL_PACKAGE = "@foundry-rs/anvil"
ANVIL_BIN = BASE_DIR / "node_modules" / ".bin" / "anvil"
CHAIN_NAME = "anvil"
CHAIN_ID = 31337
# What the funded payer gets: test USDC (base units, 6 decimals) and ETH for gas (wei).
PAYER_USDC = 1_000_000 * 10**6
PAYER_ETH = 10 * 10**18


class ChainUnavailable(Exception):
    """The sandbox chain cannot start here; the message says why, in words a person can act on."""


def compiled_token(run_dir: Path | None = None) -> dict:
    """{"abi", "bytecode"} of contracts/TestUSDC.vy, compiled by vyper (cached by source hash)."""
    source = CONTRACT_SOURCE.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:16]
    cache = (run_dir or RUN_DIR) / "contracts" / f"TestUSDC-{digest}.json"
    with contextlib.suppress(OSError, ValueError):
        return json.loads(cache.read_text())
    vyper = Path(sys.executable).parent / "vyper"
    command = [str(vyper)] if vyper.exists() else [sys.executable, "-m", "vyper"]
    result = subprocess.run(
        [*command, "-f", "abi,bytecode", str(CONTRACT_SOURCE)], capture_output=True, text=True, check=False
    )
    if result.returncode:
        raise ChainUnavailable(f"vyper could not compile {CONTRACT_SOURCE.name}: {result.stderr.strip()[-500:]}")
    abi_line, bytecode = result.stdout.strip().splitlines()
    compiled = {"abi": json.loads(abi_line), "bytecode": bytecode.strip()}
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(compiled))
    tmp.replace(cache)
    return compiled


def anvil_unavailable_reason() -> str | None:
    """Why anvil cannot run here (None when node_modules has it, or npm can install it)."""
    if ANVIL_BIN.exists():
        return None
    if shutil.which("npm") is None:
        return (
            f"npm is not installed, so the sandbox chain (npm {ANVIL_PACKAGE}) cannot be installed: install "
            "Node.js and npm (Debian: apt-get install npm), then run make run again"
        )
    return None


def ensure_anvil() -> Path:
    """node_modules/.bin/anvil, installed by npm from package.json when missing."""
    if ANVIL_BIN.exists():
        return ANVIL_BIN
    reason = anvil_unavailable_reason()
    if reason:
        raise ChainUnavailable(reason)
    result = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode or not ANVIL_BIN.exists():
        raise ChainUnavailable(f"npm could not install {ANVIL_PACKAGE}: {(result.stderr or result.stdout)[-500:]}")
    return ANVIL_BIN


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """(In the child, before exec) ask Linux to SIGTERM it when the process that started it
    dies, even by SIGKILL: a killed test run or make run must not leave anvil behind."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class SandboxChain:
    process: subprocess.Popen
    rpc_url: str
    chain_id: int
    name: str
    token: str = ""
    recipient: str = ""
    payer: str = ""
    payer_key: str = ""
    deployer: str = ""
    abi: list = field(default_factory=list)

    def web3(self):
        from web3 import HTTPProvider, Web3

        return Web3(HTTPProvider(self.rpc_url, request_kwargs={"timeout": 10}))

    def chain_config(self, *, required_confirmations: int = 1) -> dict:
        """This chain as one entry of USDC_TEST_CHAINS."""
        return {
            "name": self.name,
            "chainId": self.chain_id,
            "rpcUrl": self.rpc_url,
            "token": self.token,
            "requiredConfirmations": required_confirmations,
            "recipient": self.recipient,
        }

    def banner_lines(self) -> list[str]:
        return [
            f"Sandbox chain: {self.rpc_url} (name {self.name}, chain id {self.chain_id})",
            f"Test USDC: {self.token}",
            f"USDC recipient: {self.recipient}",
            f"Funded payer: {self.payer} (key {self.payer_key})",
        ]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_anvil(*, log_path: Path | None = None, timeout: float = 30.0) -> SandboxChain:
    """anvil on a free 127.0.0.1 port, mining a block per transaction (and on request), until
    stopped by its pid (SandboxChain.stop) or the death of this process."""
    anvil = ensure_anvil()
    port = _free_port()
    log = log_path.open("ab") if log_path else subprocess.DEVNULL
    process = subprocess.Popen(
        [str(anvil), "--host", "127.0.0.1", "--port", str(port), "--chain-id", str(CHAIN_ID), "--silent"],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # stopped by its pid, never by a signal to a group
        preexec_fn=_die_with_parent,  # noqa: PLW1509 (only prctl, async-signal-safe enough here)
    )
    if log_path:
        log.close()
    chain = SandboxChain(process=process, rpc_url=f"http://127.0.0.1:{port}", chain_id=CHAIN_ID, name=CHAIN_NAME)
    w3 = chain.web3()
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise ChainUnavailable(f"anvil exited at start (code {process.returncode})")
        with contextlib.suppress(Exception):
            if w3.eth.chain_id == CHAIN_ID:
                return chain
        if time.monotonic() > deadline:
            chain.stop()
            raise ChainUnavailable(f"anvil did not answer on 127.0.0.1:{port} within {timeout} s")
        time.sleep(0.1)


def deploy_token(w3, *, deployer: str, compiled: dict, name: str = "Test USDC", symbol: str = "USDC") -> str:
    """Deploy a test USDC from `deployer` (an unlocked account of the node); its address."""
    contract = w3.eth.contract(abi=compiled["abi"], bytecode=compiled["bytecode"])
    tx_hash = contract.constructor(name, symbol).transact({"from": deployer})
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
    return receipt.contractAddress


def setup_sandbox_chain(*, log_path: Path | None = None, run_dir: Path | None = None) -> SandboxChain:
    """Start anvil, deploy the test USDC, make a recipient and fund a payer (a fresh key each run)."""
    from eth_account import Account

    compiled = compiled_token(run_dir)
    chain = start_anvil(log_path=log_path)
    try:
        w3 = chain.web3()
        accounts = w3.eth.accounts
        chain.deployer = accounts[0]
        chain.abi = compiled["abi"]
        chain.token = deploy_token(w3, deployer=chain.deployer, compiled=compiled)
        chain.recipient = Account.create().address
        payer = Account.create()
        chain.payer, chain.payer_key = payer.address, payer.key.hex()
        if not chain.payer_key.startswith("0x"):
            chain.payer_key = f"0x{chain.payer_key}"
        fund_payer(chain, payer.address)
    except Exception:
        chain.stop()
        raise
    return chain


def fund_payer(chain: SandboxChain, address: str, *, usdc: int = PAYER_USDC, eth: int = PAYER_ETH) -> None:
    """Send `address` ETH for gas and mint it test USDC (base units)."""
    w3 = chain.web3()
    hashes = [w3.eth.send_transaction({"from": chain.deployer, "to": address, "value": eth})]
    token = w3.eth.contract(address=chain.token, abi=chain.abi)
    hashes.append(token.functions.mint(address, usdc).transact({"from": chain.deployer}))
    for tx_hash in hashes:
        w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)


def main() -> int:
    chain = setup_sandbox_chain()
    print("\n".join(chain.banner_lines()), flush=True)
    print(json.dumps(chain.chain_config()), flush=True)
    try:
        chain.process.wait()
    except KeyboardInterrupt:
        chain.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
