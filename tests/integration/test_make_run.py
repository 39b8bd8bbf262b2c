"""`make run` as a person or a supervisor runs it: real embedded PostgreSQL and Redis, honcho,
gunicorn, a Celery worker and beat, on a free port, in a data directory of its own.

Stopping it (SIGTERM to make or to its process group, as `docker stop` or a supervisor does;
Ctrl-C, which is SIGINT to the group; SIGHUP) stops every process it started, the embedded
PostgreSQL included, which runs outside the process tree (pg_ctl detaches it). The processes are
collected from the tree (and from PostgreSQL's postmaster.pid) while the platform runs; each is
identified by its pid and start time, so that a reused pid is not taken for a survivor.

The machine's own PostgreSQL and Redis are never used: DATABASE_URL and REDIS_URL are unset.
"""

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from billing_platform import sandbox_chain
from billing_platform.devservers import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parent.parent  # (not resolved: the venv the suite runs in)
START_TIMEOUT = 240  # a fresh data directory: initdb, every migration, the demo seed
STOP_TIMEOUT = 60  # honcho gives its processes 5 s, devservers 30 s, then PostgreSQL stops
GONE_TIMEOUT = 15  # a process that exits as its parent does may still be there for a moment


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """One data directory for the module: migrations run once, later starts take seconds."""
    return tmp_path_factory.mktemp("make-run")


class Platform:
    """One `make run` (or `python -m billing_platform.devservers run`) in a session of its own."""

    def __init__(self, *, how: str, run_dir: Path, log_path: Path):
        self.run_dir = run_dir
        self.port = free_port()
        env = {
            key: value
            for key, value in os.environ.items()
            if key
            not in (
                "DATABASE_URL",
                "REDIS_URL",
                "CELERY_BROKER_URL",
                "PUBLIC_BASE_URL",
                "DJANGO_SETTINGS_MODULE",
                "TEST_DATABASE_NAME",
                "CELERY_BEAT_SCHEDULE_FILENAME",
                "MAKEFLAGS",
                "MFLAGS",
                # what tests/settings.py sets for the suite: make run's own defaults apply
                "DEBUG",
                "SECRET_KEY",
                "SECURE_SSL_REDIRECT",
                "ALLOWED_HOSTS",
                "CELERY_TASK_ALWAYS_EAGER",
            )
        }
        env.update(PORT=str(self.port), RUN_DIR=str(run_dir), WEB_CONCURRENCY="1", WORKER_CONCURRENCY="1")
        if how == "make":
            # -o: the venv is there already (the suite runs in it); install nothing.
            command = ["make", "--no-print-directory", "-o", f"{VENV}/.installed", f"VENV={VENV}", "run"]
        else:
            command = [sys.executable, "-m", "billing_platform.devservers", "run"]
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.seen: dict[tuple[int, float], str] = {}

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def postmaster(self) -> psutil.Process | None:
        try:
            pid = int((self.run_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
            return psutil.Process(pid)
        except (OSError, ValueError, IndexError, psutil.NoSuchProcess):
            return None

    def collect(self) -> None:
        """Remember every process of the tree, and PostgreSQL's (outside the tree)."""
        roots = []
        with contextlib.suppress(psutil.NoSuchProcess):
            roots.append(psutil.Process(self.process.pid))
        postmaster = self.postmaster()
        if postmaster is not None:
            roots.append(postmaster)
        for root in roots:
            with contextlib.suppress(psutil.NoSuchProcess):
                for proc in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        self.seen[(proc.pid, proc.create_time())] = " ".join(proc.cmdline())[:120] or proc.name()

    def get(self, path: str, headers: dict | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def post(self, path: str, body: dict, headers: dict) -> tuple[int, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("POST", path, json.dumps(body), headers={**headers, "Content-Type": "application/json"})
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"{}")
        finally:
            conn.close()

    def wait_until_serving(self) -> None:
        """/healthz answers, and the worker and beat have started (their processes are collected)."""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            self.collect()
            if self.process.poll() is not None:
                raise AssertionError(f"make run exited ({self.process.returncode}):\n{self.output()[-5000:]}")
            with contextlib.suppress(OSError):
                if self.get("/healthz")[0] == 200 and "celery@" in self.output() and "beat: Starting" in self.output():
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"make run did not serve within {START_TIMEOUT}s:\n{self.output()[-5000:]}")
            time.sleep(0.2)
        for _ in range(5):  # gunicorn's workers and Celery's pool start after the first answer
            self.collect()
            time.sleep(0.2)

    def signal(self, signum: int, *, group: bool) -> None:
        if group:
            os.killpg(self.process.pid, signum)
        else:
            self.process.send_signal(signum)

    def wait_for_exit(self) -> int:
        deadline = time.monotonic() + STOP_TIMEOUT
        while self.process.poll() is None:
            self.collect()  # (what starts while stopping counts too)
            if time.monotonic() > deadline:
                raise AssertionError(f"make run did not exit within {STOP_TIMEOUT}s:\n{self.output()[-5000:]}")
            time.sleep(0.1)
        return self.process.returncode

    def survivors(self) -> list[str]:
        left = []
        for (pid, started), what in self.seen.items():
            with contextlib.suppress(psutil.NoSuchProcess):
                proc = psutil.Process(pid)
                if proc.create_time() == started and proc.status() != psutil.STATUS_ZOMBIE:
                    left.append(f"{pid} {what}")
        return left

    def wait_until_all_gone(self) -> list[str]:
        deadline = time.monotonic() + GONE_TIMEOUT
        while (left := self.survivors()) and time.monotonic() < deadline:
            time.sleep(0.1)
        return left

    def kill_everything(self) -> None:
        """After a failure: leave nothing behind for the rest of the suite."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for (pid, started), _ in self.seen.items():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                proc = psutil.Process(pid)
                if proc.create_time() == started:
                    proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)


@pytest.fixture
def start(run_dir, tmp_path):
    started = []

    def start_platform(how: str) -> Platform:
        platform = Platform(how=how, run_dir=run_dir, log_path=tmp_path / f"{how}-run.log")
        started.append(platform)
        platform.wait_until_serving()
        return platform

    yield start_platform
    for platform in started:
        if platform.process.poll() is None or platform.survivors():
            platform.kill_everything()


@pytest.mark.parametrize(
    ("how", "signum", "group"),
    [
        pytest.param("make", signal.SIGTERM, False, id="SIGTERM to make"),
        pytest.param("make", signal.SIGTERM, True, id="SIGTERM to make's process group"),
        pytest.param("make", signal.SIGINT, True, id="Ctrl-C (SIGINT to the group)"),
        pytest.param("devservers", signal.SIGHUP, False, id="SIGHUP to devservers"),
    ],
)
def test_stopping_make_run_stops_every_process_it_started(start, how, signum, group):
    platform = start(how)
    postmaster = platform.postmaster()
    assert postmaster is not None, platform.output()[-3000:]
    names = " ".join(platform.seen.values())
    expected_processes = ["honcho", "gunicorn", "worker", "beat", "redis-server", "postgres", "localstripe_server"]
    if sandbox_chain.ANVIL_BIN.exists():
        expected_processes.append("anvil")
    for expected in expected_processes:
        assert expected in names, (expected, sorted(platform.seen.values()))

    platform.signal(signum, group=group)
    platform.wait_for_exit()
    left = platform.wait_until_all_gone()

    assert left == [], f"still running after make run exited: {left}\n{platform.output()[-3000:]}"
    assert not (platform.run_dir / "pgdata" / "postmaster.pid").exists()
    assert not postmaster.is_running() or postmaster.status() == psutil.STATUS_ZOMBIE


def test_links_that_make_run_hands_out_point_at_its_port(start):
    platform = start("devservers")
    sandbox_key = re.search(r"Sandbox key:\s+(sk_test_\S+)", platform.output())[1]
    headers = {"Authorization": f"Bearer {sandbox_key}"}
    status, body = platform.get("/v0/customers", headers)
    assert status == 200, body
    customer_id = json.loads(body)["data"][0]["id"]

    status, session = platform.post(f"/v0/customers/{customer_id}/topups", {"amount": "5", "currency": "USDC"}, headers)

    assert status == 201, session
    base = f"http://127.0.0.1:{platform.port}/checkout/"
    assert session["checkoutUrl"].startswith(base), session
    assert session["url"].startswith(base), session
    assert platform.get(session["checkoutUrl"].removeprefix(f"http://127.0.0.1:{platform.port}"))[0] == 200
    platform.signal(signal.SIGTERM, group=False)
    platform.wait_for_exit()
    assert platform.wait_until_all_gone() == []


SEEDS = Path(__file__).resolve().parent / "seeds"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is needed to run Paygentic's integration class")
def test_paygentics_integration_class_runs_to_its_end_against_make_run(start):
    """Paygentic's "Complete Integration Example" (seed 001), its base addresses changed and
    nothing else, run by node against `make run`: a customer, a subscription with a prefund, the
    checkout paid in the sandbox, entitlements and usage, and the portal link the guide's
    /billing-portal route redirects to, which opens the portal once."""
    platform = start("devservers")
    output = platform.output()
    sandbox_key = re.search(r"Sandbox key:\s+(sk_test_\S+)", output)[1]
    merchant_id = re.search(r"Merchant id:\s+(\S+)", output)[1]
    plan_id, metric_id = re.search(
        r"Sandbox plan payg:\s+(\S+) \(billable metric 'API calls': (\S+)\)", output
    ).groups()
    base = f"http://127.0.0.1:{platform.port}"
    env = {
        "PATH": os.environ["PATH"],
        "API_BASE": base,
        "EDGE_API_BASE": base,
        "PAYGENTIC_MERCHANT_ID": merchant_id,
        "PAYGENTIC_API_KEY": sandbox_key,
        "PAYGENTIC_PLAN_ID": plan_id,
        "PAYGENTIC_BILLABLE_METRIC_ID": metric_id,
    }

    run = subprocess.run(
        ["node", str(SEEDS / "paygentic_code_execution.mjs")], env=env, capture_output=True, text=True, timeout=120
    )

    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\n{platform.output()[-3000:]}"
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["subscriptionStatus"] == "active"
    assert seen["executions"] == ["exec_python_1", "exec_javascript_2"]
    # the payg plan charges 0.001 USDC a call, taken from the 10 USDC prefund as it happens
    assert [(u["price"], u["balanceAfter"]) for u in seen["usage"]] == [
        ("0.001000", "9.999000"),
        ("0.001000", "9.998000"),
    ]
    assert seen["portal"] == {"status": 200, "showsCustomer": True, "reopenedStatus": 410}
    headers = {"Authorization": f"Bearer {sandbox_key}"}
    status, body = platform.get(f"/v0/usage?customerId={seen['customerId']}", headers)
    assert status == 200, body
    assert sorted(event["id"] for event in json.loads(body)["data"]) == sorted(u["id"] for u in seen["usage"])
    platform.signal(signal.SIGTERM, group=False)
    platform.wait_for_exit()
    assert platform.wait_until_all_gone() == []


@pytest.mark.skipif(not sandbox_chain.ANVIL_BIN.exists(), reason="anvil (npm @foundry-rs/anvil: make anvil) is missing")
def test_make_run_pays_an_invoice_in_usdc_on_its_sandbox_chain(start):
    """The banner's sandbox chain, used as a merchant's backend and its customer would: the funded
    payer proves its address, pays a USDC invoice's usdc block with a real transfer of the test
    USDC, the merchant posts the settlement, and make run's own worker confirms it from the chain."""
    from eth_account import Account
    from eth_account.messages import encode_defunct
    from web3 import HTTPProvider, Web3

    platform = start("devservers")
    output = platform.output()
    sandbox_key = re.search(r"Sandbox key:\s+(sk_test_\S+)", output)[1]
    rpc_url, chain_name, chain_id = re.search(r"Sandbox chain: (\S+) \(name (\S+), chain id (\d+)\)", output).groups()
    token = re.search(r"Test USDC: (0x[0-9a-fA-F]{40})", output)[1]
    recipient = re.search(r"USDC recipient: (0x[0-9a-fA-F]{40})", output)[1]
    payer_address, payer_key = re.search(r"Funded payer: (0x[0-9a-fA-F]{40}) \(key (0x[0-9a-f]{64})\)", output).groups()
    headers = {"Authorization": f"Bearer {sandbox_key}"}
    status, body = platform.get("/v0/customers", headers)
    assert status == 200, body
    customer_id = json.loads(body)["data"][0]["id"]  # (a demo customer)
    status, body = platform.get("/v0/chains", headers)
    assert status == 200 and json.loads(body)["data"][0]["token"] == token, body
    payer = Account.from_key(payer_key)
    assert payer.address == payer_address
    message = f"Pay {json.loads(platform.get('/v0/merchants/me', headers)[1])['name']} from {payer_address} as customer {customer_id}"
    signature = "0x" + payer.sign_message(encode_defunct(text=message)).signature.hex().removeprefix("0x")
    status, body = platform.post(
        f"/v0/customers/{customer_id}/walletAddresses", {"address": payer_address, "signature": signature}, headers
    )
    assert status == 201, body
    status, invoice = platform.post(
        "/v0/invoices",
        {
            "customerId": customer_id,
            "currency": "USDC",
            "amount": "3.5",
            "description": "On chain",
            "autoCollect": False,
        },
        headers,
    )
    assert status == 201, invoice
    usdc = invoice["usdc"]
    assert (usdc["chain"], usdc["chainId"], usdc["token"], usdc["recipient"], usdc["amount"]) == (
        chain_name,
        int(chain_id),
        token,
        recipient,
        "3500000",
    )
    w3 = Web3(HTTPProvider(rpc_url))
    abi = [
        {
            "name": "transfer",
            "type": "function",
            "stateMutability": "nonpayable",
            "inputs": [{"name": "receiver", "type": "address"}, {"name": "amount", "type": "uint256"}],
            "outputs": [{"name": "", "type": "bool"}],
        }
    ]
    tx = (
        w3.eth.contract(address=token, abi=abi)
        .functions.transfer(recipient, int(usdc["amount"]))
        .build_transaction(
            {"from": payer_address, "nonce": w3.eth.get_transaction_count(payer_address), "chainId": int(chain_id)}
        )
    )
    tx_hash = w3.eth.send_raw_transaction(payer.sign_transaction(tx).raw_transaction)
    w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
    status, settlement = platform.post(
        "/v0/settlements",
        {
            "invoiceId": invoice["id"],
            "chain": chain_name,
            "transactionHash": "0x" + tx_hash.hex().removeprefix("0x"),
            "referenceHash": usdc["referenceHash"],
            "payerAddress": payer_address,
            "merchantAddress": recipient,
        },
        headers,
    )
    assert status == 201, settlement
    deadline = time.monotonic() + 60
    while settlement["status"] == "pending" and time.monotonic() < deadline:
        time.sleep(0.5)
        settlement = json.loads(platform.get(f"/v0/settlements/{settlement['id']}", headers)[1])
    assert (settlement["status"], settlement["amount"]) == ("confirmed", "3.500000"), settlement
    assert json.loads(platform.get(f"/v0/invoices/{invoice['id']}", headers)[1])["status"] == "paid"
    platform.signal(signal.SIGTERM, group=False)
    platform.wait_for_exit()
    assert platform.wait_until_all_gone() == []
