"""DATABASE_PREPARED_STATEMENTS: true prepares the hot path's statements once per connection;
false prepares nothing at all (behind a pooler in transaction mode, a statement prepared on one
server connection is missing on the next), not even a statement psycopg would prepare on its
own after running it `prepare_threshold` times, nor one that asks to be prepared."""

import copy
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest
from django.db import connections

from apps.core.bulk import Statement, run_statements

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNS = 12  # past psycopg's default prepare_threshold (5)


def database_options(prepared_statements: str) -> dict:
    """The database OPTIONS billing_platform.settings builds for DATABASE_PREPARED_STATEMENTS."""
    env = {**os.environ, "DATABASE_PREPARED_STATEMENTS": prepared_statements, "DEBUG": "true"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    script = "import json; from billing_platform import settings; print(json.dumps(settings.DATABASES['default']['OPTIONS']))"
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def prepared_after_running_on(options: dict) -> list[str]:
    """On a new connection to the test database with `options`: run the hot path's kind of
    statements (run_statements, with prepare=None and prepare=True) and a query through a
    server-binding psycopg cursor RUNS times each; what pg_prepared_statements then lists."""
    result: list = []
    errors: list = []
    main = connections["default"]

    def work():
        settings_dict = copy.deepcopy(main.settings_dict)
        settings_dict["OPTIONS"] = options
        wrapper = type(main)(settings_dict, "default")
        connections["default"] = wrapper  # (this thread's connection: what run_statements uses)
        try:
            for _ in range(RUNS):
                run_statements(
                    [
                        Statement("SELECT count(*) FROM merchants_merchant WHERE id = ANY(%s::uuid[])", ["{}"]),
                        Statement("SELECT %s::int + 1", [1], prepare=True),
                    ]
                )
                with psycopg.Cursor(wrapper.connection) as cursor:  # server-side binding, unlike Django's
                    cursor.execute("SELECT %s::text || 'x'", ["a"])
            with wrapper.cursor() as cursor:
                cursor.execute("SELECT statement FROM pg_prepared_statements")
                result.extend(row[0] for row in cursor.fetchall())
        except BaseException as exc:
            errors.append(exc)
        finally:
            wrapper.close()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result


@pytest.mark.django_db
def test_prepared_statements_false_prepares_nothing_on_the_connection():
    options = database_options("false")
    assert options["prepare_threshold"] is None
    assert "plan_cache_mode" not in options.get("options", "")

    assert prepared_after_running_on(options) == []


@pytest.mark.django_db
def test_prepared_statements_true_prepares_the_hot_path_once_per_connection():
    options = database_options("true")
    assert options["prepare_threshold"] == 0

    prepared = prepared_after_running_on(options)

    assert any("merchants_merchant" in sql for sql in prepared), prepared
    assert any("::int + 1" in sql for sql in prepared), prepared
    assert any("|| 'x'" in sql for sql in prepared), prepared
