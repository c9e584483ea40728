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
