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


# --- accounts and members ----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class User(APIObject):
    id: int
    username: str = ""
    email: str = ""
    first_name: str = ""
    last_name: str = ""
    is_staff: bool = False
    is_active: bool = True
    date_joined: str | None = None
    last_login: str | None = None


@dataclass(frozen=True, kw_only=True)
class ApiKey(APIObject):
    """An API key; `key` (the secret) only in the answer that made it."""

    id: int
    name: str = ""
    prefix: str = ""
    key: str = ""
    created_at: str | None = None
    last_used_at: str | None = None
    expires_at: str | None = None
    revoked_at: str | None = None


@dataclass(frozen=True, kw_only=True)
class Membership(APIObject):
    id: int
    user: int = 0
    username: str = ""
    role: str = ""
    created_at: str | None = None


# --- annotation ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class AnnotationSettings(APIObject):
    labels_per_item: int = 1
    agreement_rule: str = ""
    majority_min: int | None = None
    order: str = ""
    random_seed: int | None = None
    lease_seconds: int = 0
    gold_rate: float = 0.0


@dataclass(frozen=True, kw_only=True)
class Task(APIObject):
    """An item leased to the caller to annotate, with the schema to answer it by."""

    lease: int
    item: int = 0
    expires_at: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    schema_version: int = 0
    task_type: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    guideline_version: int | None = None


@dataclass(frozen=True, kw_only=True)
class Submission(APIObject):
    """A stored answer; `next` is the next task when asked for (None when none is left)."""

    annotation: int
    item: int = 0
    seconds_spent: float | None = None
    seconds_source: str = ""
    too_fast: bool = False
    time_rule: str = ""
    next: Task | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        following = data.get("next")
        row = {k: v for k, v in data.items() if k != "next"}
        parsed = super().from_dict(row)
        if following:
            object.__setattr__(parsed, "next", Task.from_dict(following))
        object.__setattr__(parsed, "raw", dict(data))
        return parsed


@dataclass(frozen=True, kw_only=True)
class AdjudicationTask(APIObject):
    """A disputed item leased to the adjudicator, with each annotator's (pseudonymous) label."""

    lease: int
    item: int = 0
    payload: dict[str, Any] = field(default_factory=dict)
    labels: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class Resolution(APIObject):
    gold_label: int
    item: int = 0
    value: Any = None


@dataclass(frozen=True, kw_only=True)
class Disagreement(APIObject):
    item: int
    external_id: str = ""
    state: str = ""
    labels: list[dict[str, Any]] = field(default_factory=list)
    gold: Any = None
    method: str = ""
    decided_by: str = ""
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class QualityCheck(APIObject):
    id: int
    kind: str = ""
    dataset: int | None = None
    snapshot: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    status: str = ""
    done: int = 0
    total: int = 0
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    created_at: str | None = None
    finished_at: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in JOB_FINAL


# --- evaluation ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PromptSet(APIObject):
    id: int
    name: str = ""
    source: str = ""
    adversarial: bool = False
    general: bool = False
    prompt_count: int = 0
    license: str = ""
    synthetic: bool = False
    created_at: str | None = None


@dataclass(frozen=True, kw_only=True)
class Contestant(APIObject):
    id: int
    label: str = ""
    model_version: int | None = None
    base_model: int | None = None
    prompt_template: str = ""
    created_at: str | None = None


@dataclass(frozen=True, kw_only=True)
class GenerationJob(APIObject):
    id: int
    prompt_set: int = 0
    prompt_set_name: str = ""
    contestant: int = 0
    contestant_label: str = ""
    kind: str = ""
    status: str = ""
    decoding: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    batch_size: int | None = None
    done: int = 0
    total: int = 0
    error: str = ""
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in JOB_FINAL


@dataclass(frozen=True, kw_only=True)
class GenerationOutput(APIObject):
    """One generated answer beside its prompt (`prompt["text"]`, `prompt["reference"]`)."""

    id: int
    generation_job: int = 0
    contestant: dict[str, Any] = field(default_factory=dict)
    prompt: dict[str, Any] = field(default_factory=dict)
    output: str = ""
    truncated: bool = False
    self_identification: str = ""


@dataclass(frozen=True, kw_only=True)
class Campaign(APIObject):
    id: int
    name: str = ""
    status: str = ""
    prompt_set: int = 0
    prompt_set_name: str = ""
    contestants: list[dict[str, Any]] = field(default_factory=list)
    question: str = ""
    criteria: list[dict[str, Any]] = field(default_factory=list)
    raters_per_pair: int = 1
    rater_quota: int = 0
    pair_selection: str = ""
    attention_every: int = 0
    judged: int = 0
    stats: dict[str, Any] = field(default_factory=dict)
    created_at: str | None = None
    closed_at: str | None = None


@dataclass(frozen=True, kw_only=True)
class Bootstrap(APIObject):
    id: int
    campaign: int = 0
    status: str = ""
    rounds: int = 0
    judgments: int = 0
    error: str = ""
    created_at: str | None = None
    finished_at: str | None = None

    @property
    def done(self) -> bool:
        return self.status in JOB_FINAL


@dataclass(frozen=True, kw_only=True)
class Rater(APIObject):
    reviewer: int
    campaign: int = 0
    attention_checks: int = 0
    attention_failed: int = 0
    flagged: bool = False
    excluded: bool = False


@dataclass(frozen=True, kw_only=True)
class PreferenceExport(APIObject):
    snapshot: int
    name: str = ""
    version: int = 0
    member_count: int = 0
    manifest_sha256: str = ""


@dataclass(frozen=True, kw_only=True)
class BlindPair(APIObject):
    """Two answers to one prompt, with nothing that says which model wrote which."""

    token: str
    prompt: str = ""
    turns: list[dict[str, Any]] | None = None
    response_a: str = ""
    response_b: str = ""
    question: str = ""
    criteria: list[dict[str, Any]] = field(default_factory=list)
    adversarial: bool = False
    truncated_a: bool = False
    truncated_b: bool = False
    notice: str = ""
    submitted: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class MetricRun(APIObject):
    id: int
    contestant: int = 0
    prompt_set: int = 0
    kind: str = ""
    status: str = ""
    results: dict[str, Any] = field(default_factory=dict)
    slices: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    created_at: str | None = None
    finished_at: str | None = None

    @property
    def done(self) -> bool:
        return self.status in JOB_FINAL


@dataclass(frozen=True, kw_only=True)
class Gate(APIObject):
    id: int
    checks: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class GateRun(APIObject):
    id: int
    gate: int = 0
    candidate: int = 0
    baseline: int = 0
    model_version: int | None = None
    passed: bool = False
    results: list[dict[str, Any]] = field(default_factory=list)


# --- governance ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SignOff(APIObject):
    id: int
    model_version: int = 0
    role: str = ""
    decision: str = ""
    username: str = ""
    comment: str = ""
    created_at: str | None = None


@dataclass(frozen=True, kw_only=True)
class Approval(APIObject):
    """A version's sign-offs and whether they let it be promoted (`satisfied`)."""

    model_version: int
    required: dict[str, int] = field(default_factory=dict)
    approvals: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    rejected: bool = False
    satisfied: bool = False
    signoffs: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class StageChange(APIObject):
    id: int
    model_version: int = 0
    from_stage: str = ""
    to_stage: str = ""
    kind: str = ""
    reason: str = ""
    gate_run_id: int | None = None
    actor: str = ""
    created_at: str | None = None


@dataclass(frozen=True, kw_only=True)
class StageChangeResult(APIObject):
    model_version: int
    stage: str = ""
    changes: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class UseDeclaration(APIObject):
    declared: bool = False
    model_version: int = 0
    intended_use: str = ""
    limitations: str = ""
    out_of_scope: str = ""
    license: str = ""
    commercial_use: bool = False
    updated_by: str | None = None
    updated_at: str | None = None
