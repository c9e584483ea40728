"""The serving worker: a long-running supervisor (`manage.py run_engines`) that keeps one
`transformers serve` process for every model a deployment with the transformers engine
places on an arm, one serving.classify_server for every guardrail classifier such a
deployment calls, and nothing else.

Each pass of `reconcile()` compares what the deployments want (serving.selectors.engines)
with the processes it runs: it prepares a missing model's folder (an adapter version is
merged into its base once, in a runner child process, on a pool thread so the loop keeps
watching the others), starts `transformers serve DIR --host 127.0.0.1 --port FREE`, polls
`/health` until the model is loaded and marks the engine ready; a process that dies or
stops answering is marked failed and started again after a growing pause; an engine no
deployment uses any more is stopped. The web process never loads a model.

One supervisor per site: two would each start every engine (the gateway would still route
to the newest ready one). vLLM and other servers are registered, not started here.
"""

import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.db import close_old_connections

from serving.selectors.engines import EngineTarget, engine_targets
from serving.services.engines import (
    engine_mark_failed,
    engine_mark_ready,
    engine_mark_stopped,
    engine_model_dir,
    engine_start_record,
    engine_stop_orphans,
)
from training.services.base_models import scrub_paths

log = logging.getLogger(__name__)

HEALTH_EVERY_S = 5.0
HEALTH_TIMEOUT_S = 3.0
# Misses in a row before a running engine counts as hung (a long generation can keep a
# small CPU server busy for a few seconds).
HEALTH_MISSES = 3
START_TIMEOUT_S = 900.0
# The pause before the n-th restart in a row; it starts again from the first once an
# engine has stayed ready for STEADY_S.
BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
STEADY_S = 60.0
STOP_GRACE_S = 10.0
# Exec'd in the child before `transformers serve`: the kernel ends the engine with SIGTERM
# if the supervisor dies without stopping it (PR_SET_PDEATHSIG = 1), so no orphan keeps a
# port and a model in memory.
LAUNCHER = (
    "import ctypes, os, sys\n"
    "try:\n    ctypes.CDLL(None).prctl(1, 15)\nexcept (OSError, AttributeError):\n    pass\n"
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def engine_command(
    model_dir: str, *, host: str, port: int, device: str = "auto", extra: tuple[str, ...] = ()
) -> list[str]:
    """The argv of one engine: `transformers serve` from this interpreter's environment,
    preloading `model_dir` (the only model it then answers for)."""
    argv = [sys.executable, "-c", LAUNCHER, "-m", "transformers.cli.transformers", "serve"]
    argv += [model_dir, "--host", host, "--port", str(port)]
    return argv + ["--device", device, "--log-level", "warning", *extra]


def classifier_command(model_dir: str, *, host: str, port: int, device: str = "auto") -> list[str]:
    """The argv of a guardrail classifier's engine: serving.classify_server (vLLM's
    /classify API) on `model_dir`, from this interpreter's environment."""
    argv = [sys.executable, "-c", LAUNCHER, "-m", "serving.classify_server", model_dir]
    return argv + ["--host", host, "--port", str(port), "--device", device]


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=HEALTH_TIMEOUT_S) as response:  # noqa: S310 - our child
        return json.loads(response.read() or b"null")


@dataclass
class Slot:
    """What the supervisor holds for one target model."""

    target: EngineTarget
    # waiting (for its start or restart time) → preparing (the model folder) → starting
    # (process up, model loading) → ready
    state: str = "waiting"
    retry_at: float = 0.0
    restarts: int = 0  # failures in a row, for the backoff
    preparing: Future | None = None
    model_dir: str = ""
    instance_id: int | None = None
    proc: subprocess.Popen | None = None
    log_file: IO[bytes] | None = None
    log_path: Path | None = None
    port: int = 0
    started_at: float = 0.0
    ready_at: float = 0.0
    next_health: float = 0.0
    misses: int = 0


class EngineSupervisor:
    def __init__(
        self,
        *,
        device: str = "auto",
        log_dir: Path | None = None,
        extra_args: tuple[str, ...] = (),
        bind: str = "127.0.0.1",
        advertise: str = "",
    ):
        """`bind` is the address engines listen on; `advertise` the host the gateway
        reaches them at (the service's name when the gateway runs in another container)."""
        self.device = device
        self.bind = bind
        # Listening on every interface, the engine is still reached on loopback by default.
        wildcard = bind in ("0.0.0.0", "::")  # noqa: S104
        self.advertise = advertise or ("127.0.0.1" if wildcard else bind)
        self.extra_args = extra_args
        self.log_dir = Path(log_dir or Path(settings.VAR_DIR) / "engines")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.host = socket.gethostname()
        self.worker = f"{self.host}:{os.getpid()}"
        self.slots: dict[tuple[str, int], Slot] = {}
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="engine-prepare")

    # --- the loop ---------------------------------------------------------------------

    def run(self, *, stop: Callable[[], bool], interval: float = 1.0) -> None:
        left = engine_stop_orphans(
            worker_prefix=f"{self.host}:", reason="The serving worker restarted."
        )
        if left:
            log.info("marked %d engines of an earlier serving worker stopped", left)
        try:
            while not stop():
                self.reconcile()
                time.sleep(interval)
        finally:
            self.shutdown()

    def reconcile(self) -> None:
        """One pass: stop what no deployment wants, then move every wanted model on."""
        close_old_connections()
        targets = engine_targets()
        for key in [k for k in self.slots if k not in targets]:
            self._stop(self.slots.pop(key), "No deployment serves this model any more.")
        for key, target in targets.items():
            slot = self.slots.setdefault(key, Slot(target=target))
            try:
                self._step(slot)
            except Exception as error:  # one engine's trouble must not stop the others
                log.exception("engine %s: %s", target, error)
                self._fail(slot, f"The serving worker hit {type(error).__name__}: {error}")

    def shutdown(self) -> None:
        # All engines are asked to stop at once: each takes seconds to shut down.
        for slot in self.slots.values():
            if slot.proc is not None and slot.proc.poll() is None:
                slot.proc.terminate()
        for slot in self.slots.values():
            self._stop(slot, "The serving worker stopped.")
        self.slots.clear()
        self.pool.shutdown(wait=False, cancel_futures=True)

    # --- one model's state machine ----------------------------------------------------

    def _step(self, slot: Slot) -> None:
        now = time.monotonic()
        if slot.state == "waiting" and now >= slot.retry_at:
            slot.preparing = self.pool.submit(self._prepare, slot.target)
            slot.state = "preparing"
        elif slot.state == "preparing" and slot.preparing is not None and slot.preparing.done():
            future, slot.preparing = slot.preparing, None
            error = future.exception()
            if error is not None:
                slot.instance_id = engine_start_record(
                    target=slot.target, model_dir="", worker=self.worker
                ).pk
                self._fail(slot, f"The model folder could not be prepared: {error}")
                return
            self._spawn(slot, future.result())
        elif slot.state == "starting" and slot.proc is not None:
            self._check_starting(slot, slot.proc, now)
        elif slot.state == "ready" and slot.proc is not None:
            self._check_ready(slot, slot.proc, now)

    def _prepare(self, target: EngineTarget) -> str:
        """On a pool thread: the model folder, merging an adapter the first time."""
        try:
            return engine_model_dir(target=target)
        finally:
            close_old_connections()

    def _spawn(self, slot: Slot, model_dir: str) -> None:
        slot.model_dir = model_dir
        slot.port = free_port()
        instance = engine_start_record(target=slot.target, model_dir=model_dir, worker=self.worker)
        slot.instance_id = instance.pk
        slot.log_path = self.log_dir / f"engine-{instance.pk}.log"
        slot.log_file = open(slot.log_path, "wb")  # noqa: SIM115 - closed in _end_process
        if slot.target.classify:
            argv = classifier_command(model_dir, host=self.bind, port=slot.port, device=self.device)
        else:
            argv = engine_command(
                model_dir, host=self.bind, port=slot.port, device=self.device,
                extra=self.extra_args,
            )  # fmt: skip
        slot.proc = subprocess.Popen(  # noqa: S603 - fixed argv, our own venv
            argv,
            stdout=slot.log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
        )
        slot.state = "starting"
        slot.started_at = time.monotonic()
        log.info("engine %s: started pid %s on port %s", slot.target, slot.proc.pid, slot.port)

    def _base(self, slot: Slot) -> str:
        """Where the supervisor itself checks the engine (same host)."""
        return f"http://127.0.0.1:{slot.port}"

    def _healthy(self, slot: Slot) -> bool:
        try:
            return (_get_json(self._base(slot) + "/health") or {}).get("status") == "ok"
        except (OSError, ValueError):
            return False

    def _check_starting(self, slot: Slot, proc: subprocess.Popen, now: float) -> None:
        if proc.poll() is not None:
            self._fail(slot, self._exit_reason(slot, proc))
        elif self._healthy(slot):
            # `transformers serve` preloads the model before it listens, and accepts only
            # the name it was started with: take that name from /v1/models.
            listed = _get_json(self._base(slot) + "/v1/models").get("data") or []
            served = listed[0]["id"] if listed else slot.model_dir
            engine_mark_ready(
                instance_id=slot.instance_id or 0,
                base_url=f"http://{self.advertise}:{slot.port}/v1",
                served_model=served,
                pid=proc.pid,
            )
            slot.state, slot.ready_at, slot.misses = "ready", now, 0
            slot.next_health = now + HEALTH_EVERY_S
            log.info("engine %s: ready on port %s", slot.target, slot.port)
        elif now - slot.started_at > START_TIMEOUT_S:
            self._fail(slot, f"The engine did not answer within {START_TIMEOUT_S:.0f} s.")

    def _check_ready(self, slot: Slot, proc: subprocess.Popen, now: float) -> None:
        if proc.poll() is not None:
            self._fail(slot, self._exit_reason(slot, proc))
            return
        if slot.restarts and now - slot.ready_at > STEADY_S:
            slot.restarts = 0
        if now < slot.next_health:
            return
        slot.next_health = now + HEALTH_EVERY_S
        slot.misses = 0 if self._healthy(slot) else slot.misses + 1
        if slot.misses >= HEALTH_MISSES:
            self._fail(slot, f"The engine missed {HEALTH_MISSES} health checks in a row.")

    def _exit_reason(self, slot: Slot, proc: subprocess.Popen) -> str:
        code = proc.returncode
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        return f"The engine process {how}.{self._log_tail(slot)}"

    def _log_tail(self, slot: Slot, lines: int = 8) -> str:
        if slot.log_path is None or not slot.log_path.exists():
            return ""
        tail = slot.log_path.read_text(errors="replace").strip().splitlines()[-lines:]
        return ("\n" + scrub_paths("\n".join(tail))) if tail else ""

    def _fail(self, slot: Slot, error: str) -> None:
        """Record the failure, end the process, and schedule a start after the backoff."""
        self._end_process(slot)
        if slot.instance_id is not None:
            engine_mark_failed(instance_id=slot.instance_id, error=error)
        pause = BACKOFF_S[min(slot.restarts, len(BACKOFF_S) - 1)]
        log.warning("engine %s failed (%s); restarting in %.0f s", slot.target, error, pause)
        slot.restarts += 1
        slot.state, slot.retry_at, slot.instance_id = "waiting", time.monotonic() + pause, None

    def _stop(self, slot: Slot, reason: str) -> None:
        if slot.preparing is not None:
            slot.preparing.cancel()
        self._end_process(slot)
        if slot.instance_id is not None:
            engine_mark_stopped(instance_id=slot.instance_id, reason=reason)
            slot.instance_id = None
        log.info("engine %s stopped: %s", slot.target, reason)

    def _end_process(self, slot: Slot) -> None:
        proc, slot.proc = slot.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()  # again after shutdown's: harmless, uvicorn exits once
            try:
                proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if slot.log_file is not None:
            slot.log_file.close()
            slot.log_file = None
