import json
import random
import time
from pathlib import Path

import pytest

from core.models import JobStatus
from training import services
from training.models import BaseModel, TrainingJob

WORDS = ["cat", "dog", "sun", "tree", "blue", "red", "fish", "bird"]
# Small and quick: a few dozen optimizer steps on a 2-layer, 64-wide model.
QUICK = {
    "max_steps": 12,
    "per_device_train_batch_size": 8,
    "learning_rate": 5e-3,
    "max_length": 64,
    "save_steps": 6,
    "logging_steps": 1,
    "warmup_ratio": 0.0,
    "lora_r": 8,
    "lora_target_modules": ["q_proj", "v_proj", "o_proj"],
}


@pytest.fixture
def tiny_base_model(tiny_model_dir, db) -> BaseModel:
    return services.base_model_register(
        actor=None, project=None, name="tiny-llama", source="local", path=str(tiny_model_dir)
    )


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def sft_rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        word = rng.choice(WORDS)
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": f"repeat {word}"},
                    {"role": "assistant", "content": f"{word} {word}"},
                ],
                "metadata": {"item_id": i, "snapshot_id": None},
            }
        )
    return rows


def preference_rows(n: int, seed: int = 0) -> list[dict]:
    """Separable preferences: the chosen answer is polite words, the rejected one noise."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        word = rng.choice(WORDS)
        noise = "".join(rng.choice("zqxjk") for _ in range(6))
        rows.append(
            {
                "prompt": [{"role": "user", "content": f"say {word}"}],
                "chosen": [{"role": "assistant", "content": f"{word} yes good"}],
                "rejected": [{"role": "assistant", "content": f"{noise} {word}"}],
                "metadata": {},
            }
        )
    return rows


@pytest.fixture(scope="session")
def data_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("training-data")
    return {
        "sft_train": _write(folder / "sft_train.jsonl", sft_rows(64)),
        "sft_val": _write(folder / "sft_val.jsonl", sft_rows(16, seed=1)),
        "pref_train": _write(folder / "pref_train.jsonl", preference_rows(64)),
        "pref_val": _write(folder / "pref_val.jsonl", preference_rows(24, seed=1)),
    }


def wait_for(job: TrainingJob, statuses, timeout: float = 120) -> TrainingJob:
    statuses = {statuses} if isinstance(statuses, str) else set(statuses)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.status in statuses:
            return job
        time.sleep(0.2)
    lines = "\n".join(job.log_lines.values_list("message", flat=True))
    raise AssertionError(f"job {job.pk} is {job.status}, wanted {statuses}:\n{lines}")


def wait_finished(job: TrainingJob, timeout: float = 120) -> TrainingJob:
    return wait_for(job, (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED), timeout)
