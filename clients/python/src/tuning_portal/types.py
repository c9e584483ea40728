"""What the API answers, as frozen dataclasses. Each keeps the whole answer in `raw`, so a
field the server adds later is readable before this package names it, and a field it does
not send takes its default instead of failing."""

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Self

JOB_FINAL = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True, kw_only=True)
class APIObject:
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        names = {f.name for f in fields(cls)} - {"raw"}
        return cls(**{k: v for k, v in data.items() if k in names}, raw=dict(data))


@dataclass(frozen=True, kw_only=True)
class Project(APIObject):
    id: int
    name: str = ""
    slug: str = ""
    description: str = ""
    archived: bool = False
    created_at: str | None = None
    roles: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class Dataset(APIObject):
    id: int
    name: str = ""
    file_name: str = ""
    file_format: str = ""
    file_sha256: str = ""
    file_bytes: int = 0
    row_count: int = 0
    source_description: str = ""
    license: str = ""
    consent_basis: str = ""
    collection_date: str | None = None
    synthetic: bool = False
    prompt_synthetic: bool = False
    response_synthetic: bool = False
    synthetic_share: dict[str, Any] = field(default_factory=dict)
    created_at: str | None = None


@dataclass(frozen=True, kw_only=True)
class Upload(APIObject):
    """A dataset file being imported; `dataset` is set once it succeeded."""

    id: str
    file_name: str = ""
    file_bytes: int = 0
    status: str = ""
    rows: int = 0
    error: str = ""
    report: dict[str, Any] = field(default_factory=dict)
    dataset: int | None = None
    created_at: str | None = None
    finished_at: str | None = None

    @property
    def done(self) -> bool:
        return self.status in JOB_FINAL


@dataclass(frozen=True, kw_only=True)
class Item(APIObject):
    id: int
    dataset: int = 0
    row_number: int = 0
    external_id: str = ""
    payload: dict[str, Any] = field(default_factory=dict)
    content_hash: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    state: str = ""
    priority: int = 0
    label_count: int = 0
    is_gold: bool = False


@dataclass(frozen=True, kw_only=True)
class LabelSchema(APIObject):
    id: int
    version: int = 0
    task_type: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    created_at: str | None = None


@dataclass(frozen=True, kw_only=True)
class Guideline(APIObject):
    id: int
    version: int = 0
    markdown: str = ""
    examples: list[dict[str, Any]] = field(default_factory=list)
    created_at: str | None = None


@dataclass(frozen=True, kw_only=True)
class Snapshot(APIObject):
    id: int
    name: str = ""
    version: int = 0
    task_type: str = ""
    seed: int = 0
    split_ratios: dict[str, float] = field(default_factory=dict)
    filter: dict[str, Any] = field(default_factory=dict)
    member_count: int = 0
    manifest_sha256: str = ""
    stats: dict[str, Any] = field(default_factory=dict)
    created_at: str | None = None
    leakage: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class ExportFile:
    """An export written to disk: its rows, size and sha256 as written, and the manifest
    hash of the snapshot it came from (the server's X-Manifest-SHA256)."""

    path: Path
    rows: int
    bytes: int
    sha256: str
    manifest_sha256: str


@dataclass(frozen=True, kw_only=True)
class TrainingFile(APIObject):
    id: str
    filename: str = ""
    sha256: str = ""
    rows: int = 0


@dataclass(frozen=True, kw_only=True)
class Job(APIObject):
    """A fine-tuning job, shaped like OpenAI's (`created_at` and `finished_at` are Unix
    seconds; `fine_tuned_model` is the id of the model version it registered)."""

    id: int
    object: str = "fine_tuning.job"
    name: str = ""
    kind: str = ""
    method: str = ""
    model: str = ""
    status: str = ""
    cancel_requested: bool = False
    fine_tuned_model: int | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    manifest_sha256: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    preflight: dict[str, Any] = field(default_factory=dict)
    progress: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    checkpoint_sha256: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    created_at: int | None = None
    finished_at: int | None = None
    estimated_finish: int | None = None

    @property
    def done(self) -> bool:
        return self.status in JOB_FINAL


@dataclass(frozen=True, kw_only=True)
class JobEvent(APIObject):
    """A log line (`type` "message") or a step's metrics (`type` "metrics", values in
    `data` with the step under "step")."""

    id: str
    object: str = "fine_tuning.job.event"
    created_at: int | None = None
    level: str = "info"
    message: str = ""
    type: str = "message"
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class JobStatusEvent:
    """What `jobs.stream` yields when the job's status changes (the first one too)."""

    job: Job
    type: Literal["status"] = "status"

    @property
    def status(self) -> str:
        return self.job.status


JobStreamEvent = JobEvent | JobStatusEvent


@dataclass(frozen=True, kw_only=True)
class Checkpoint(APIObject):
    id: int
    object: str = "fine_tuning.job.checkpoint"
    step_number: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Any] = field(default_factory=dict)
    created_at: int | None = None


@dataclass(frozen=True, kw_only=True)
class ModelVersion(APIObject):
    id: int
    name: str = ""
    base_model: int | None = None
    job: int | None = None
    parent: int | None = None
    kind: str = ""
    task: str = ""
    path: str = ""
    merged_path: str = ""
    base_weights_sha256: str = ""
    checkpoint_sha256: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    stage: str = ""
    created_at: str | None = None
    lineage: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class BaseModel(APIObject):
    id: int
    name: str = ""
    source: str = ""
    architecture: str = ""
    parameter_count: int = 0
    tokenizer: str = ""
    license: str = ""
    weights_sha256: str = ""
    global_model: bool = False


@dataclass(frozen=True, kw_only=True)
class Dossier(APIObject):
    """One build of a model version's signed dossier."""

    id: int
    model_version: int = 0
    status: str = ""
    progress: int = 0
    step: str = ""
    inputs_sha256: str = ""
    bundle_sha256: str = ""
    bundle_bytes: int = 0
    warnings: list[Any] = field(default_factory=list)
    error: str = ""
    created_at: str | None = None
    finished_at: str | None = None

    @property
    def done(self) -> bool:
        return self.status in JOB_FINAL


@dataclass(frozen=True, kw_only=True)
class DossierFile:
    """A dossier bundle written to disk, with the sha256 of what was written."""

    path: Path
    bytes: int
    sha256: str
    dossier: Dossier


@dataclass(frozen=True, kw_only=True)
class AuditEvent(APIObject):
    seq: int
    created_at: str | None = None
    actor_username: str = ""
    action: str = ""
    target_type: str = ""
    target_id: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    prev_hash: str = ""
    hash: str = ""
