"""Real servers for tests: a Celery worker and a uvicorn (ASGI) server, each a child
process on the test database, started once per session."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import closing
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[2]
# What the test settings add for PostgreSQL and Redis; the embedded default has none of it.
NOT_EMBEDDED = {
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "CELERY_KEY_PREFIX",
    "CHANNELS_PREFIX",
    "MEDIA_ROOT",
    "SECRET_KEY",
    "STATIC_ROOT",
    "PORTAL_AUDIT_CHECKPOINT_DIR",
    "DJANGO_ALLOW_ASYNC_UNSAFE",
}


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url(settings_dict: dict) -> str:
    user = quote(settings_dict.get("USER") or "")
    password = settings_dict.get("PASSWORD") or ""
    auth = f"{user}:{quote(password)}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{settings_dict['NAME']}"


def child_env(database: str, **extra: str) -> dict[str, str]:
    # The servers run with Django's async-safety checks on, as in production.
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env.update(
        DJANGO_SETTINGS_MODULE="portal.settings_test",
        DATABASE_URL=database,
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def embedded_env(var_dir: Path, **extra: str) -> dict[str, str]:
    """The environment `make demo` runs in (SQLite, the filesystem broker, in-process
    websockets), with everything it writes under `var_dir`."""
    env = {k: v for k, v in os.environ.items() if k not in NOT_EMBEDDED}
    env.update(
        DJANGO_SETTINGS_MODULE="portal.settings",
        DEBUG="1",
        PORTAL_VAR_DIR=str(var_dir),
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def manage(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    """Run `manage.py` with `args` in a child process; its output, or a failed assertion
    quoting its error."""
    done = subprocess.run(  # noqa: S603 - our own manage.py
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


class ChildProcess:
    def __init__(
        self,
        name: str,
        args: list[str],
        env: dict[str, str],
        log_dir: Path,
        *,
        new_session: bool = False,
    ):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        # In a session of its own, a fault test can kill the child and all of its processes
        # (os.killpg) without touching pytest.
        self.proc = subprocess.Popen(  # noqa: S603 - fixed argv of our own tools
            args,
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
        )

    def log_tail(self, chars: int = 4000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
            )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()


def wait_until_up(child: ChildProcess, url: str, timeout: float = 90) -> None:
    """Return once `url` answers; raise with the child's log if it dies or times out."""
    deadline = time.monotonic() + timeout
    while True:
        child.check_alive()
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - our own server
                return
        except OSError:
            assert time.monotonic() < deadline, child.log_tail()
            time.sleep(0.2)


def start_asgi_server(
    env: dict[str, str], log_dir: Path, *, workers: int = 1
) -> tuple[ChildProcess, str]:
    """uvicorn, as in production: HTTP and websockets, `workers` processes."""
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "uvicorn",
        "portal.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
        "--timeout-graceful-shutdown",
        "5",
    ]
    child = ChildProcess(f"uvicorn-{port}", args, env, log_dir)
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        child.check_alive()
        try:
            with urllib.request.urlopen(base_url + "/healthz/", timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return child, base_url
        except OSError:
            pass
        if time.monotonic() > deadline:
            child.stop()
            raise RuntimeError(f"the web server did not answer within 60 s:\n{child.log_tail()}")
        time.sleep(0.1)


def start_celery_worker(
    env: dict[str, str],
    log_dir: Path,
    app,
    node: str,
    *,
    name: str = "celery",
    new_session: bool = False,
) -> ChildProcess:
    args = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "portal",
        "worker",
        "-Q",
        "default,gpu",
        "--concurrency",
        "2",
        "-n",
        node,
        "--without-gossip",
        "--without-mingle",
        "-l",
        "info",
    ]
    child = ChildProcess(name, args, env, log_dir, new_session=new_session)
    deadline = time.monotonic() + 90
    while True:
        child.check_alive()
        if app.control.ping(destination=[node], timeout=0.5):
            return child
        if time.monotonic() > deadline:
            child.stop()
            raise RuntimeError(f"celery worker did not answer within 90 s:\n{child.log_tail()}")


def start_celery_beat(env: dict[str, str], log_dir: Path, name: str = "beat") -> ChildProcess:
    """The scheduler, as the compose stack runs it; its schedule file in a temp folder."""
    schedule = log_dir / f"{name}-schedule"
    args = [sys.executable, "-m", "celery", "-A", "portal", "beat", "-l", "info"]
    args += ["--schedule", str(schedule)]
    child = ChildProcess(name, args, env, log_dir)
    child.check_alive()
    return child
