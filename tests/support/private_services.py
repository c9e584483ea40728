"""Private PostgreSQL and Redis servers for tests that stop and restart them.

The PostgreSQL on 5432 and the Redis on 6379 are shared: a test that restarts a server
starts its own, on a free port in a temp dir, and removes it at the end."""

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.support.servers import free_port


def postgres_bin_dir() -> Path | None:
    """The newest installed PostgreSQL's bin directory, if it has initdb."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key)
    return Path(found[-1]).parent if found else None


def _version_key(path: str) -> int:
    version = Path(path).parent.parent.name
    return int(version) if version.isdigit() else 0


class PrivatePostgres:
    """A PostgreSQL cluster of its own: trust auth, superuser `postgres`."""

    def __init__(self, bin_dir: Path):
        self.bin_dir = bin_dir
        self.dir = Path(tempfile.mkdtemp(prefix="portal-pg-"))
        # PostgreSQL refuses to run as root: as root, run it as the `postgres` OS user.
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.dir, "postgres")
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = free_port()
        self._run(
            "initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
            "--no-sync",
        )  # fmt: skip
        self.start()

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(  # noqa: S603 - fixed argv of the installed PostgreSQL
            [*self.as_user, str(self.bin_dir / tool), *args],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def _pg_ctl(self, *args: str) -> None:
        # Fast is how a package upgrade or an operator restarts it: open sessions are
        # terminated, connections the portal holds break.
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-o", options, *args)

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        self._pg_ctl("start")

    def stop(self) -> None:
        self._pg_ctl("-m", "fast", "stop")

    def restart(self) -> None:
        self._pg_ctl("-m", "fast", "restart")

    def copy_database(self, source_url: str, database: str) -> None:
        """Create `database` here as a copy of another server's database (schema and rows),
        which is much faster than running every migration again."""
        self._psql("postgres", f'CREATE DATABASE "{database}"')
        dump = subprocess.Popen(  # noqa: S603
            [str(self.bin_dir / "pg_dump"), "--no-owner", "--no-privileges", source_url],
            stdout=subprocess.PIPE,
        )
        restore = subprocess.run(  # noqa: S603
            [str(self.bin_dir / "psql"), "-q", "-v", "ON_ERROR_STOP=1", self.url(database)],
            stdin=dump.stdout,
            capture_output=True,
            timeout=120,
        )
        dump.stdout.close()
        if dump.wait(timeout=120) != 0 or restore.returncode != 0:
            raise RuntimeError(f"copying {source_url} failed: {restore.stderr.decode()[-2000:]}")

    def _psql(self, database: str, sql: str) -> None:
        subprocess.run(  # noqa: S603
            [
                str(self.bin_dir / "psql"),
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
                self.url(database),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self._pg_ctl("-m", "immediate", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRedis:
    """A redis-server of its own. With `appendonly`, as docker/compose.yaml runs it, what
    was written before a restart (queued Celery messages) is there after it."""

    def __init__(self, *, appendonly: bool = True):
        self.dir = Path(tempfile.mkdtemp(prefix="portal-redis-"))
        self.port = free_port()
        self.appendonly = appendonly
        self.proc: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            shutil.which("redis-server") or "redis-server",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
            "--save", "",
        ]  # fmt: skip
        self.log = open(self.dir / "server.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)  # noqa: S603
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 20
        while True:
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        """As `redis-cli shutdown` does: the append-only file is flushed first."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        self.log.close()

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
