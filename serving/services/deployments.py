"""Deployments: create one, place versions on its arms, weigh the canary, pause, resume or
abort its rollout, change its settings, and issue or revoke its gateway keys. Each change
takes the deployment's row lock, writes one DeploymentDecision (the history the page and
the dossier show) and one audit event in the same transaction."""

import re
import secrets
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from core.models import Project, RoleSet, User
from core.selectors import api_key_hash, project_access_get
from core.services.audit import audit_record
from serving.models import Arm, Deployment, DeploymentDecision, DeploymentKey, EngineKind
from serving.services.engines import reward_model_plain_weights
from training.models import BaseModel, JobKind, ModelVersion

Stage = ModelVersion.Stage
# Which stages may sit on which arm: production serves everyone, canary a share of
# traffic; a shadow answers nobody, so any version not archived may take it.
ARM_STAGES: dict[str, tuple[str, ...]] = {
    Arm.STABLE: (Stage.PRODUCTION,),
    Arm.CANARY: (Stage.CANARY,),
    Arm.SHADOW: (Stage.CANDIDATE, Stage.CANARY, Stage.PRODUCTION),
}
DEFAULT_STEPS = [10, 25, 50, 100]
KEY_PREFIX = "sk-tp-"
KEY_PREFIX_LENGTH = 14
PII_ACTIONS = ("off", "redact", "refuse")
RULE_KEYS = {
    "window_s": (30, 86400),
    "min_requests": (1, 1_000_000),
    "error_rate": (0.0, 1.0),
    "p95_ms": (0.0, 600_000.0),
    "flag_rate": (0.0, 1.0),
    "negative_feedback_rate": (0.0, 1.0),
}
DEFAULT_RULES: dict[str, Any] = {"window_s": 300, "min_requests": 50, "error_rate": 0.05}


def _require(actor: User | None, project_id: int, roles: tuple[str, ...]) -> None:
    """The actor must hold one of `roles` in the project (None is the portal itself)."""
    if actor is None:
        return
    project_access_get(project_id=project_id, user=actor).require(*roles)


def _locked(deployment: Deployment) -> Deployment:
    return Deployment.objects.select_for_update().get(pk=deployment.pk)


def _decide(
    deployment: Deployment,
    *,
    actor: User | None,
    kind: str,
    arm: str = "",
    version: ModelVersion | None = None,
    from_weight: int | None = None,
    to_weight: int | None = None,
    reason: str = "",
    figures: dict[str, Any] | None = None,
) -> DeploymentDecision:
    """Record one decision and its audit event. Caller holds the deployment's lock."""
    decision = DeploymentDecision(
        deployment=deployment,
        kind=kind,
        arm=arm,
        model_version=version,
        from_weight=from_weight,
        to_weight=to_weight,
        reason=reason,
        figures=figures or {},
        actor=actor,
    )
    event = audit_record(
        actor=actor,
        action=f"serving.deployment.{kind}",
        target=deployment,
        data={
            "arm": arm,
            "model_version": version.pk if version else None,
            "from_weight": from_weight,
            "to_weight": to_weight,
            "reason": reason,
            "figures": figures or {},
        },
    )
    decision.audit_seq = event.seq
    decision.save()
    return decision


def _check_version(deployment: Deployment, arm: str, version: ModelVersion) -> None:
    if version.project_id != deployment.project_id:
        raise ValidationError({"model_version": "That version belongs to another project."})
    if version.task == JobKind.REWARD:
        raise ValidationError({"model_version": f"{version} is a reward model: it writes no text."})
    allowed = ARM_STAGES[arm]
    if version.stage not in allowed:
        raise ValidationError(
            {
                "model_version": f"{version} is {version.stage}; the {arm} arm takes only "
                f"versions in {' or '.join(allowed)}."
            }
        )


def validate_guardrails(value: Any, *, project_id: int | None = None) -> dict[str, Any]:
    """The cleaned guardrail settings; a classifier must be a reward model version of
    `project_id` with plain weights to load (checked when the project is given)."""
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise ValidationError({"guardrails": "An object is expected."})
    unknown = set(value) - {
        "pii",
        "blocklist",
        "blocklist_action",
        "classifier_version_id",
        "classifier_threshold",
        "classifier_action",
        "classifier_on",
    }
    if unknown:
        raise ValidationError({"guardrails": f"Unknown setting(s): {', '.join(sorted(unknown))}."})
    pii = value.get("pii", "off")
    if pii not in PII_ACTIONS:
        raise ValidationError({"guardrails.pii": f"One of {', '.join(PII_ACTIONS)}."})
    patterns = value.get("blocklist", [])
    if not isinstance(patterns, list) or len(patterns) > 200:
        raise ValidationError({"guardrails.blocklist": "A list of at most 200 patterns."})
    for index, pattern in enumerate(patterns):
        if not isinstance(pattern, str) or not pattern or len(pattern) > 500:
            raise ValidationError(
                {f"guardrails.blocklist[{index}]": "A pattern of 1 to 500 characters."}
            )
        try:
            re.compile(pattern)
        except re.error as error:
            raise ValidationError(
                {f"guardrails.blocklist[{index}]": f"Not a regular expression: {error}."}
            ) from None
    action = value.get("blocklist_action", "refuse")
    if action not in ("refuse", "redact"):
        raise ValidationError({"guardrails.blocklist_action": "refuse or redact."})
    clean: dict[str, Any] = {"pii": pii, "blocklist": patterns, "blocklist_action": action}
    if value.get("classifier_version_id") not in (None, ""):
        clean |= _validate_classifier(value, project_id)
    return clean


def _validate_classifier(value: dict[str, Any], project_id: int | None) -> dict[str, Any]:
    raw = value["classifier_version_id"]
    if isinstance(raw, bool) or not isinstance(raw, int | str) or not str(raw).isdigit():
        raise ValidationError({"guardrails.classifier_version_id": "A model version id."})
    threshold = value.get("classifier_threshold", 0.5)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise ValidationError({"guardrails.classifier_threshold": "Between 0 and 1."})
    if not 0 < threshold <= 1:
        raise ValidationError({"guardrails.classifier_threshold": "Between 0 and 1."})
    action = value.get("classifier_action", "refuse")
    if action not in ("refuse", "flag"):
        raise ValidationError({"guardrails.classifier_action": "refuse or flag."})
    on = value.get("classifier_on", ["input", "output"])
    if not isinstance(on, list) or not on or not set(on) <= {"input", "output"}:
        raise ValidationError(
            {"guardrails.classifier_on": 'A non-empty list of "input" and "output".'}
        )
    version_id = int(raw)
    if project_id is not None:
        version = ModelVersion.objects.filter(pk=version_id, project_id=project_id).first()
        if version is None:
            raise ValidationError(
                {"guardrails.classifier_version_id": "No such model version in this project."}
            )
        if version.task != JobKind.REWARD:
            raise ValidationError(
                {
                    "guardrails.classifier_version_id": f"{version} is not a classifier: "
                    "choose a reward model version."
                }
            )
        try:
            reward_model_plain_weights(version=version)
        except ValueError as error:
            raise ValidationError({"guardrails.classifier_version_id": str(error)}) from None
    return {
        "classifier_version_id": version_id,
        "classifier_threshold": float(threshold),
        "classifier_action": action,
        "classifier_on": [w for w in ("input", "output") if w in on],
    }


def validate_rules(value: Any) -> dict[str, Any]:
    if value in (None, ""):
        return dict(DEFAULT_RULES)
    if not isinstance(value, dict):
        raise ValidationError({"rollback_rules": "An object is expected."})
    clean: dict[str, Any] = {}
    for name, raw in value.items():
        if name not in RULE_KEYS:
            raise ValidationError({f"rollback_rules.{name}": "Unknown rule."})
        if raw is None:
            continue
        low, high = RULE_KEYS[name]
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not low <= raw <= high:
            raise ValidationError({f"rollback_rules.{name}": f"A number from {low} to {high}."})
        clean[name] = int(raw) if isinstance(low, int) else float(raw)
    clean.setdefault("window_s", DEFAULT_RULES["window_s"])
    clean.setdefault("min_requests", DEFAULT_RULES["min_requests"])
    return clean


def validate_steps(value: Any) -> list[int]:
    if value in (None, ""):
        return list(DEFAULT_STEPS)
    if (
        not isinstance(value, list)
        or not value
        or any(isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 100 for v in value)
        or value != sorted(set(value))
    ):
        raise ValidationError(
            {"rollout_steps": "Increasing whole percentages from 1 to 100, e.g. [10, 25, 50, 100]."}
        )
    return list(value)


@transaction.atomic
def deployment_create(
    *,
    actor: User,
    project: Project,
    name: str,
    engine: str = EngineKind.TRANSFORMERS,
    stable_version: ModelVersion | None = None,
    stable_base_model: BaseModel | None = None,
    description: str = "",
    settings: dict[str, Any] | None = None,
) -> Deployment:
    """A new deployment serving `stable_version` (in production) or, before any version
    reached production, `stable_base_model`. `settings` takes what deployment_configure
    takes."""
    _require(actor, project.pk, RoleSet.MANAGERS)
    name = (name or "").strip()
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,99}", name):
        raise ValidationError(
            {"name": "Lower-case letters, digits, dots, dashes or underscores (at most 100)."}
        )
    if Deployment.objects.filter(name=name).exists():
        raise ValidationError({"name": f"A deployment named {name!r} exists."})
    if engine not in EngineKind.values:
        raise ValidationError({"engine": f"One of {', '.join(EngineKind.values)}."})
    if (stable_version is None) == (stable_base_model is None):
        raise ValidationError({"stable": "Give either a production version or a base model."})
    if stable_base_model is not None and stable_base_model.project_id not in (None, project.pk):
        raise ValidationError({"stable_base_model": "That base model belongs to another project."})
    deployment = Deployment(
        project=project,
        name=name,
        description=description,
        engine=engine,
        stable_base_model=stable_base_model,
        rollout_steps=list(DEFAULT_STEPS),
        rollback_rules=dict(DEFAULT_RULES),
        created_by=actor,
    )
    if stable_version is not None:
        _check_version(deployment, Arm.STABLE, stable_version)
        deployment.stable_version = stable_version
    _apply_settings(deployment, settings or {})
    deployment.full_clean(exclude=["created_by", "project"])
    deployment.save()
    _decide(
        deployment,
        actor=actor,
        kind=DeploymentDecision.Kind.CREATE,
        arm=Arm.STABLE,
        version=stable_version,
        figures={"base_model": stable_base_model.pk if stable_base_model else None},
    )
    return deployment


SETTING_FIELDS = (
    "description",
    "price_per_1k_tokens",
    "price_per_gpu_hour",
    "guardrails",
    "logging_policy",
    "logging_sample_percent",
    "retention_days",
    "rollback_rules",
    "rollout_steps",
    "webhook_url",
    "webhook_secret",
)


def _apply_settings(deployment: Deployment, values: dict[str, Any]) -> list[str]:
    unknown = set(values) - set(SETTING_FIELDS)
    if unknown:
        raise ValidationError({name: "Not a deployment setting." for name in sorted(unknown)})
    changed = []
    for name, value in values.items():
        if name == "guardrails":
            value = validate_guardrails(value, project_id=deployment.project_id)
        elif name == "rollback_rules":
            value = validate_rules(value)
        elif name == "rollout_steps":
            value = validate_steps(value)
        elif name == "logging_policy" and value not in Deployment.Logging.values:
            raise ValidationError({name: f"One of {', '.join(Deployment.Logging.values)}."})
        elif name in ("logging_sample_percent",) and not (
            isinstance(value, int) and 0 <= value <= 100
        ):
            raise ValidationError({name: "A whole percentage from 0 to 100."})
        elif name == "retention_days" and not (isinstance(value, int) and 1 <= value <= 3650):
            raise ValidationError({name: "From 1 to 3650 days."})
        setattr(deployment, name, value)
        changed.append(name)
    return changed


@transaction.atomic
def deployment_configure(
    *, actor: User, deployment: Deployment, values: dict[str, Any]
) -> Deployment:
    """Change settings (guardrails, logging policy, rules, prices, webhook...). The webhook
    secret is recorded as changed, never by value."""
    _require(actor, deployment.project_id, RoleSet.MANAGERS)
    deployment = _locked(deployment)
    changed = _apply_settings(deployment, values)
    deployment.full_clean(exclude=["created_by", "project"])
    deployment.save()
    shown = {
        name: ("(set)" if name == "webhook_secret" else _plain(getattr(deployment, name)))
        for name in changed
    }
    _decide(deployment, actor=actor, kind=DeploymentDecision.Kind.SETTINGS, figures=shown)
    return deployment


def _plain(value: Any) -> Any:
    return str(value) if not isinstance(value, dict | list | int | float | str | None) else value


@transaction.atomic
def deployment_place(
    *,
    actor: User,
    deployment: Deployment,
    arm: str,
    version: ModelVersion | None,
    weight: int | None = None,
    reason: str = "",
) -> Deployment:
    """Put `version` on `arm` (None clears the canary or shadow arm). A canary starts
    progressing at `weight` (default: the first rollout step)."""
    _require(actor, deployment.project_id, RoleSet.MANAGERS)
    deployment = _locked(deployment)
    if arm not in Arm.values:
        raise ValidationError({"arm": f"One of {', '.join(Arm.values)}."})
    if version is not None:
        _check_version(deployment, arm, version)
    elif arm == Arm.STABLE:
        raise ValidationError({"model_version": "The stable arm cannot be empty."})
    from_weight = deployment.canary_weight if arm == Arm.CANARY else None
    to_weight = None
    if arm == Arm.STABLE and version is not None:
        deployment.stable_version, deployment.stable_base_model = version, None
        if deployment.canary_version_id == version.pk:
            deployment.canary_version, deployment.canary_weight = None, 0
            deployment.rollout = Deployment.Rollout.NONE
    elif arm == Arm.CANARY:
        deployment.canary_version = version
        if version is None:
            to_weight = 0
            deployment.rollout = Deployment.Rollout.NONE
        else:
            steps = deployment.rollout_steps or DEFAULT_STEPS
            to_weight = steps[0] if weight is None else _weight(weight)
            deployment.rollout = Deployment.Rollout.PROGRESSING
        deployment.canary_weight = to_weight
        deployment.rollout_step_at = timezone.now()
    else:
        deployment.shadow_version = version
    deployment.save()
    _decide(
        deployment,
        actor=actor,
        kind=DeploymentDecision.Kind.PLACE,
        arm=arm,
        version=version,
        from_weight=from_weight,
        to_weight=to_weight,
        reason=reason,
    )
    return deployment


def _weight(weight: Any) -> int:
    if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
        raise ValidationError({"weight": "A whole percentage from 0 to 100."})
    return weight


@transaction.atomic
def deployment_reweight(
    *, actor: User, deployment: Deployment, weight: int, reason: str = ""
) -> Deployment:
    """Set the canary's share of traffic by hand."""
    _require(actor, deployment.project_id, RoleSet.MANAGERS)
    deployment = _locked(deployment)
    weight = _weight(weight)
    if deployment.canary_version_id is None:
        raise ValidationError({"weight": "No canary is placed."})
    before = deployment.canary_weight
    deployment.canary_weight = weight
    deployment.rollout_step_at = timezone.now()
    deployment.save(update_fields=["canary_weight", "rollout_step_at", "updated_at"])
    _decide(
        deployment,
        actor=actor,
        kind=DeploymentDecision.Kind.REWEIGHT,
        arm=Arm.CANARY,
        version=deployment.canary_version,
        from_weight=before,
        to_weight=weight,
        reason=reason,
    )
    return deployment


@transaction.atomic
def deployment_rollout_set(
    *, actor: User | None, deployment: Deployment, action: str, reason: str = ""
) -> Deployment:
    """Pause, resume or abort the canary's rollout. Abort sets its weight to 0."""
    _require(actor, deployment.project_id, RoleSet.MANAGERS)
    deployment = _locked(deployment)
    if deployment.canary_version_id is None:
        raise ValidationError({"action": "No canary is placed."})
    Rollout, Kind = Deployment.Rollout, DeploymentDecision.Kind
    moves = {
        "pause": ({Rollout.PROGRESSING}, Rollout.PAUSED, Kind.PAUSE),
        "resume": ({Rollout.PAUSED}, Rollout.PROGRESSING, Kind.RESUME),
        "abort": (
            {Rollout.PROGRESSING, Rollout.PAUSED, Rollout.COMPLETE},
            Rollout.ABORTED,
            Kind.ABORT,
        ),
    }
    if action not in moves:
        raise ValidationError({"action": "pause, resume or abort."})
    allowed, to_state, kind = moves[action]
    if deployment.rollout not in allowed:
        raise ValidationError(
            {
                "action": f"The rollout is {deployment.get_rollout_display().lower()}: "
                f"cannot {action}."
            }
        )
    before = deployment.canary_weight
    deployment.rollout = to_state
    if action == "abort":
        deployment.canary_weight = 0
    deployment.save(update_fields=["rollout", "canary_weight", "updated_at"])
    _decide(
        deployment,
        actor=actor,
        kind=kind,
        arm=Arm.CANARY,
        version=deployment.canary_version,
        from_weight=before,
        to_weight=deployment.canary_weight,
        reason=reason,
    )
    return deployment


@transaction.atomic
def deployment_key_create(
    *,
    actor: User,
    deployment: Deployment,
    name: str,
    expires_in_days: int | None = None,
    requests_per_minute: int = 0,
    tokens_per_minute: int = 0,
) -> tuple[DeploymentKey, str]:
    """A gateway key for `deployment`; returns it with its secret, shown this once."""
    _require(actor, deployment.project_id, RoleSet.MANAGERS)
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise ValidationError({"name": "Give the key a name of 1 to 100 characters."})
    for field, value in (
        ("requests_per_minute", requests_per_minute),
        ("tokens_per_minute", tokens_per_minute),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10**9:
            raise ValidationError({field: "A whole number from 0 (no limit) to 10^9."})
    if expires_in_days is not None and not (
        isinstance(expires_in_days, int) and 1 <= expires_in_days <= 3650
    ):
        raise ValidationError({"expires_in_days": "From 1 to 3650 days."})
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    key = DeploymentKey.objects.create(
        deployment=deployment,
        name=name,
        prefix=raw[:KEY_PREFIX_LENGTH],
        key_hash=api_key_hash(raw),
        requests_per_minute=requests_per_minute,
        tokens_per_minute=tokens_per_minute,
        created_by=actor,
        expires_at=(timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None),
    )
    audit_record(
        actor=actor,
        action="serving.key.create",
        target=key,
        project_id=deployment.project_id,
        data={
            "deployment": deployment.pk,
            "prefix": key.prefix,
            "name": name,
            "expires_at": key.expires_at.isoformat() if key.expires_at else None,
            "requests_per_minute": requests_per_minute,
            "tokens_per_minute": tokens_per_minute,
        },
    )
    return key, raw


@transaction.atomic
def deployment_key_revoke(*, actor: User, key: DeploymentKey) -> DeploymentKey:
    """Revoke at once; the gateway refuses it from its next lookup on."""
    key = DeploymentKey.objects.select_for_update().select_related("deployment").get(pk=key.pk)
    _require(actor, key.deployment.project_id, RoleSet.MANAGERS)
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        audit_record(
            actor=actor,
            action="serving.key.revoke",
            target=key,
            project_id=key.deployment.project_id,
            data={"deployment": key.deployment_id, "prefix": key.prefix},
        )
    return key
