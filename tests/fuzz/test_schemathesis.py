"""Schemathesis against the app's own /v0 schema (issue 19): every operation, generated from the
document that /v0/schema serves, sent to gunicorn as the Procfile runs it, on this run's test
database seeded with make run's demo data and a world made through the API (tests/fuzz/world.py),
with a real sandbox secret key and a real customer API key. Every response must not be a 500,
must have a status documented for its operation, and must match that status's schema (body,
content type, headers). Links between operations (a created resource's id used by the next
call) are inferred by schemathesis from the schema and walked in its stateful phase.

Bounded here (FUZZ_MAX_EXAMPLES, default 10, and FUZZ_MAX_TIME seconds); `make fuzz` runs the
same much longer. FUZZ_SEED picks the generation (printed; the same seed replays the same run).
Each run ends with the ledger's check of both modes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from tests.fuzz.world import seed_merchant, seed_through_the_api, write_ids
from tests.integration.test_stalled_clients import REPO_ROOT, Gunicorn

HERE = Path(__file__).resolve().parent
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def server(tmp_path):
    sandbox, secret = seed_merchant()
    web = Gunicorn(
        tmp_path,
        secret,
        DATABASE_CONN_MAX_AGE="60",
        WEB_CONCURRENCY="1",
        WEB_THREADS="4",
        # tasks run inline, as in the unit tests: nothing is left queued for another run's worker
        CELERY_TASK_ALWAYS_EAGER="true",
        # no delivery is attempted (endpoints the fuzzer creates point anywhere)
        WEBHOOK_WAKE_RELAY="false",
        WEBHOOK_ALLOW_PRIVATE_URLS="sandbox",
    )
    web.base_url = f"http://127.0.0.1:{web.port}"
    web.merchant = sandbox
    yield web
    web.stop()


def test_schemathesis_finds_no_undocumented_answer_in_any_v0_operation(server, tmp_path):
    ids = seed_through_the_api(server.base_url, server.secret, server.merchant)
    write_ids(tmp_path / "ids.json", ids)
    seed = os.environ.get("FUZZ_SEED", "1")
    env = {
        **os.environ,
        "FUZZ_MERCHANT_KEY": server.secret,
        "FUZZ_CUSTOMER_KEY": ids["customerApiKeySecret"][0],
        "FUZZ_IDS_FILE": str(tmp_path / "ids.json"),
        "SCHEMATHESIS_HOOKS": "tests.fuzz.hooks",
        "PYTHONPATH": str(REPO_ROOT),
    }
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(HERE / "schemathesis.toml"),
        "--no-color",
        "run",
        f"{server.base_url}/v0/schema",
        "--max-examples",
        os.environ.get("FUZZ_MAX_EXAMPLES", "10"),
        "--seed",
        seed,
        "--workers",
        os.environ.get("FUZZ_WORKERS", "1"),
        "--generation-database",
        "none",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    if os.environ.get("FUZZ_MAX_TIME"):
        command += ["--max-time", os.environ["FUZZ_MAX_TIME"]]
    if os.environ.get("FUZZ_PHASES"):
        command += ["--phases", os.environ["FUZZ_PHASES"]]
    run = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=6 * 3600)
    report = run.stdout[-40000:] + run.stderr[-5000:]
    print(report)
    assert run.returncode == 0, f"schemathesis (seed {seed}) found defects:\n{report}"
    call_command("ledger_check")
