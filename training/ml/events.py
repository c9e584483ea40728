"""The runner's side of its conversation with the worker: JSON lines appended to a file, and
a cancel file the worker creates when someone presses Cancel."""

import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import distributed as dist
from transformers import TrainerCallback

from training.ml.modelio import hash_directory


class EventWriter:
    """Appends one JSON object per line and flushes, so the worker can follow the file."""

    def __init__(self, path: Path | str | None):
        self.path = Path(path) if path else None
        self._handle = open(self.path, "a", encoding="utf-8") if self.path else None  # noqa: SIM115

    def emit(self, kind: str, **fields: Any) -> None:
        record = {"type": kind, "time": time.time(), **fields}
        line = json.dumps(record, default=_jsonable)
        if self._handle is None:
            print(line, flush=True)
            return
        self._handle.write(line + "\n")
        self._handle.flush()

    def log(self, message: str, level: str = "info") -> None:
        self.emit("log", level=level, message=message)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()


# How often a phase's progress is sent at most; its start and end are always sent.
PROGRESS_EVERY_S = 1.0


class Phases:
    """Tells the worker which phase of the job the runner is in and how far it got, so the
    job page never shows one status for minutes without saying what is being done."""

    def __init__(self, events: EventWriter):
        self.events = events
        self.name: str | None = None
        self.done = 0
        self.total: int | None = None
        self._sent = 0.0

    def start(
        self, name: str, label: str, *, total: int | None = None, unit: str = "", note: str = ""
    ) -> None:
        """A new phase: `label` names it on the page, `note` (when given) goes to the log."""
        self.name, self.done, self.total = name, 0, total
        self._sent = time.monotonic()
        self.events.emit(
            "phase", phase=name, label=label, done=0, total=total, unit=unit, note=note
        )

    def advance(self, by: int = 1, *, to: int | None = None, force: bool = False) -> None:
        self.done = to if to is not None else self.done + by
        now = time.monotonic()
        if force or now - self._sent >= PROGRESS_EVERY_S or self.done == self.total:
            self._sent = now
            self.events.emit("phase", phase=self.name, done=self.done, total=self.total)


def _jsonable(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def _numbers(logs: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in logs.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            out[key] = float(value)
        elif hasattr(value, "item"):
            try:
                out[key] = float(value.item())
            except (TypeError, ValueError, RuntimeError):
                continue
    return out


class MetricsCallback(TrainerCallback):
    """Every `on_log` becomes a metric line, with tokens per second since the last one."""

    def __init__(self, events: EventWriter):
        self.events = events
        self._last_tokens: float | None = None
        self._last_time: float | None = None
        self.train_started: float | None = None
        self.first_step_time: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.train_started = time.time()
        self._last_time = self.train_started
        self._last_tokens = float(getattr(state, "num_input_tokens_seen", 0) or 0)

    def on_step_end(self, args, state, control, **kwargs):
        if self.first_step_time is None:
            self.first_step_time = time.time()
            self.events.emit("first_step", step=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        values = _numbers(logs or {})
        values.pop("epoch", None)
        values.pop("step", None)
        now = time.time()
        tokens = float(getattr(state, "num_input_tokens_seen", 0) or values.get("num_tokens", 0))
        if "loss" in values and tokens and self._last_time and now > self._last_time:
            values["tokens_per_second"] = (tokens - (self._last_tokens or 0)) / (
                now - self._last_time
            )
            self._last_tokens, self._last_time = tokens, now
        if values:
            self.events.emit("metric", step=state.global_step, epoch=state.epoch, values=values)


class PhaseCallback(TrainerCallback):
    """The training loop's phases: steps done of the total, and the pauses in it for a
    checkpoint save or an evaluation, each named while it lasts."""

    def __init__(self, phases: Phases):
        self.phases = phases

    def _training(self, state) -> None:
        self.phases.start(
            "training", "Training", total=int(state.max_steps or 0) or None, unit="steps"
        )
        self.phases.advance(to=state.global_step, force=True)

    def on_train_begin(self, args, state, control, **kwargs):
        self._training(state)

    def on_step_end(self, args, state, control, **kwargs):
        # Runs after the trainer's own flow callback has decided what follows this step.
        if control.should_evaluate:
            self.phases.start("evaluating", "Evaluating on the validation split")
        elif control.should_save:
            self.phases.start(
                "saving_checkpoint", f"Saving the checkpoint at step {state.global_step}"
            )
        else:
            self.phases.advance(to=state.global_step)

    def on_evaluate(self, args, state, control, **kwargs):
        if control.should_save:
            self.phases.start(
                "saving_checkpoint", f"Saving the checkpoint at step {state.global_step}"
            )
        else:
            self._training(state)

    def on_save(self, args, state, control, **kwargs):
        self._training(state)


class CheckpointCallback(TrainerCallback):
    """Reports every saved checkpoint with the sha256 of each of its files."""

    def __init__(self, events: EventWriter):
        self.events = events
        self.last: str | None = None

    def on_save(self, args, state, control, **kwargs):
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if path.is_dir():
            self.last = str(path)
            latest = state.log_history[-1] if state.log_history else {}
            self.events.emit(
                "checkpoint",
                step=state.global_step,
                path=str(path),
                files=hash_directory(path),
                metrics=_numbers(latest),
            )


class CancelCallback(TrainerCallback):
    """Stops training after the current step when the cancel file appears (or the worker
    that started us is gone), saving a checkpoint first so nothing done is lost."""

    def __init__(self, events: EventWriter, cancel_file: Path | str | None):
        self.events = events
        self.cancel_file = Path(cancel_file) if cancel_file else None
        self.parent = os.getppid()
        self.cancelled = False
        self.orphaned = False

    def _agreed(self, stop: bool, device) -> bool:
        """Across processes, stop when any of them saw the cancel: a rank that stepped on
        alone would wait forever for the others' gradients."""
        if not (dist.is_available() and dist.is_initialized()):
            return stop
        flag = torch.tensor([1 if stop else 0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() and not stop:
            self.cancelled = True
        return bool(flag.item())

    def should_stop(self) -> bool:
        if self.cancel_file is not None and self.cancel_file.exists():
            self.cancelled = True
        elif os.getppid() != self.parent:
            self.orphaned = True
        return self.cancelled or self.orphaned

    def on_step_end(self, args, state, control, **kwargs):
        if self._agreed(self.should_stop(), args.device):
            reason = "cancel requested" if self.cancelled else "the worker went away"
            self.events.log(f"Stopping at step {state.global_step}: {reason}.", "warning")
            control.should_save = True
            control.should_training_stop = True
        return control


class GuardedReporter(TrainerCallback):
    """An experiment tracker's callback (transformers' `report_to`) whose failure costs a
    warning in the job's log and the tracker for the rest of the job, never the job."""

    def __init__(self, name: str, inner: TrainerCallback, events: EventWriter):
        self.name = name
        self.inner = inner
        self.events = events
        self.failed = False

    def _call(self, event: str, args, state, control, **kwargs):
        if self.failed:
            return None
        try:
            answer = getattr(self.inner, event)(args, state, control, **kwargs)
            if event == "on_train_begin":
                self._announce_run()
            return answer
        except Exception as error:  # a tracker's error, whatever it is, must not stop training
            self.failed = True
            self.events.log(
                f"Reporting to {self.name} failed and is off for this job: "
                f"{type(error).__name__}: {error}",
                "warning",
            )
            return None

    def _announce_run(self) -> None:
        """Tell the worker where the tracker keeps this run (W&B: its URL) for the job page."""
        module = getattr(self.inner, "_wandb", None)
        run = getattr(module, "run", None)
        url = getattr(run, "url", None)
        if url:
            self.events.emit("tracking", service=self.name, url=str(url))


def _guarded(event: str):
    def call(self, args, state, control, **kwargs):
        return self._call(event, args, state, control, **kwargs)

    call.__name__ = event
    return call


for _event in [name for name in vars(TrainerCallback) if name.startswith("on_")]:
    setattr(GuardedReporter, _event, _guarded(_event))


def reporting_callbacks(
    report_to: list[str], events: EventWriter, *, job_url: str = ""
) -> list[TrainerCallback]:
    """The trackers in `report_to`, each guarded; one that cannot start (not installed, an
    unknown name) is left out with a warning."""
    from transformers.integrations import get_reporting_integration_callbacks

    if job_url:  # W&B shows it as the run's notes
        os.environ.setdefault("WANDB_NOTES", f"Tuning Portal job: {job_url}")
    callbacks: list[TrainerCallback] = []
    for name in report_to:
        try:
            (callback_class,) = get_reporting_integration_callbacks([name])
            callbacks.append(GuardedReporter(name, callback_class(), events))
        except Exception as error:  # e.g. WandbCallback raises when wandb is not installed
            events.log(f"Not reporting to {name}: {type(error).__name__}: {error}", "warning")
    return callbacks
