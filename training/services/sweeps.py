"""Hyperparameter sweeps: launch trial jobs chosen by Optuna, prune the hopeless ones from
the eval losses they report, and register the best.

Optuna's state is rebuilt from our own rows every time it is needed (`_study`): each trial
row holds its parameters, state, objective and the eval losses it reported, which is all a
sampler or pruner reads. A lost worker, a restart or a second web process therefore never
leaves the sweep and Optuna disagreeing, and no tables or files of Optuna's exist. The cost
is one small in-memory study per decision, milliseconds for the tens of trials a sweep has.

A sweep moves forward only in `sweep_advance`, under the sweep's row lock: when it is
created, when one of its trial jobs ends (execution._settle and the dead-job sweep call
`sweep_job_settled`), and from the beat (`sweeps_advance_all`) for what slips past those.
"""

import logging
import math
from datetime import timedelta
from typing import Any

import optuna
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from core.models import JOB_ACTIVE, JobStatus, Project, User
from core.services.audit import audit_record
from core.services.jobs import job_cancel_request
from training import presets
from training.models import ModelVersion, Sweep, SweepTrial, TrainingJob, TrainingMetric
from training.services.jobs import job_push, training_job_create
from training.services.registry import model_version_create_for_job

logger = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)

OBJECTIVE = "eval_loss"  # minimised; what the pruner watches as the trial runs
MAX_TRIALS = 500
SPACE_TYPES = ("float", "int", "categorical")
PRUNER_SETTINGS: dict[str, dict[str, int]] = {
    Sweep.Pruner.MEDIAN: {"n_startup_trials": 2, "n_warmup_steps": 0},
    Sweep.Pruner.ASHA: {"min_resource": 1, "reduction_factor": 3},
    Sweep.Pruner.NONE: {},
}


# --- the search space ---------------------------------------------------------------


def _distribution(name: str, spec: Any) -> optuna.distributions.BaseDistribution:
    if not isinstance(spec, dict):
        raise ValidationError({"search_space": f"{name}: give an object with a type."})
    kind = spec.get("type")
    try:
        if kind == "float":
            return optuna.distributions.FloatDistribution(
                float(spec["low"]),
                float(spec["high"]),
                log=bool(spec.get("log", False)),
                step=float(spec["step"]) if spec.get("step") else None,
            )
        if kind == "int":
            return optuna.distributions.IntDistribution(
                int(spec["low"]),
                int(spec["high"]),
                log=bool(spec.get("log", False)),
                step=int(spec.get("step") or 1),
            )
        if kind == "categorical":
            choices = spec["choices"]
            if not isinstance(choices, list) or not choices:
                raise ValueError("choices must be a non-empty list")
            return optuna.distributions.CategoricalDistribution(choices)
    except (KeyError, TypeError, ValueError) as error:
        raise ValidationError({"search_space": f"{name}: {error}"}) from None
    raise ValidationError(
        {"search_space": f"{name}: type must be one of {', '.join(SPACE_TYPES)}."}
    )


def sweep_distributions(space: dict[str, Any]) -> dict[str, optuna.distributions.BaseDistribution]:
    """Optuna's distributions for a stored search space (checked at create)."""
    return {name: _distribution(name, spec) for name, spec in sorted(space.items())}


def _corners(distribution: optuna.distributions.BaseDistribution) -> list[Any]:
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return list(distribution.choices)
    return [distribution.low, distribution.high]  # type: ignore[attr-defined]


def _check_space(
    *, space: Any, initial: Any, base_job: TrainingJob, values: dict[str, Any]
) -> dict[str, optuna.distributions.BaseDistribution]:
    """Every setting of the space is a job setting, and every edge of every range (and every
    initial trial) makes a job the base model accepts: a sweep refuses at create what would
    otherwise fail trial after trial."""
    if not isinstance(space, dict) or not space:
        raise ValidationError({"search_space": "Give at least one setting to search over."})
    unknown = [name for name in space if name not in presets.FIELDS or name == "seed"]
    if unknown:
        raise ValidationError(
            {"search_space": [presets.unknown_key_message(n, presets.FIELDS) for n in unknown]}
        )
    distributions = sweep_distributions(space)
    trials = [{name: value} for name, d in distributions.items() for value in _corners(d)]
    if not isinstance(initial, list) or not all(isinstance(p, dict) for p in initial):
        raise ValidationError({"initial_trials": "Give a list of parameter objects."})
    for params in initial:
        extra = set(params) - set(distributions)
        if extra:
            raise ValidationError(
                {"initial_trials": f"{', '.join(sorted(extra))} is not in the search space."}
            )
        trials.append(params)
    for params in trials:
        try:
            presets.check_config(
                kind=base_job.kind,
                method=base_job.method,
                values={**values, **params},
                info=base_job.base_model.info,
            )
        except presets.ConfigError as error:
            problems = "; ".join(f"{k}: {v}" for k, v in error.errors.items())
            raise ValidationError({"search_space": f"{params} is refused: {problems}"}) from None
    return distributions


def _base_spec(job: TrainingJob) -> dict[str, Any]:
    """What every trial copies from the base job: its kind, method, model, data and every
    setting (the searched ones are overridden per trial), as a resume copies them."""
    return {
        "job": job.pk,
        "kind": job.kind,
        "method": job.method,
        "base_model": job.base_model_id,
        "values": {k: v for k, v in job.config.items() if k in presets.FIELDS},
        "snapshot": job.snapshot_id,
        "accept_leakage": bool(job.data.get("leakage", {}).get("accepted")),
        "train_file": (job.data.get("train") or {}).get("path"),
        "eval_file": (job.data.get("validation") or {}).get("path"),
        "parent_version": job.parent_version_id,
        "reward_version": job.reward_version_id,
    }


# --- create, cancel, register ---------------------------------------------------------


@transaction.atomic
def sweep_create(
    *,
    actor: User,
    project: Project,
    name: str,
    base_job: TrainingJob,
    search_space: dict[str, Any],
    n_trials: int,
    concurrency: int = 1,
    max_minutes: int | None = None,
    sampler: str = Sweep.Sampler.TPE,
    pruner: str = Sweep.Pruner.MEDIAN,
    pruner_settings: dict[str, Any] | None = None,
    initial_trials: list[dict[str, Any]] | None = None,
    seed: int = 0,
) -> Sweep:
    """Check the sweep and queue its first trials (up to `concurrency`). The base job gives
    every trial's data and settings; it needs validation data and evaluation steps, since
    the eval loss is both the objective and what the pruner watches."""
    if base_job.project_id != project.pk:
        raise ValidationError({"base_job": "That job belongs to another project."})
    spec = _base_spec(base_job)
    errors: dict[str, str] = {}
    if not (spec["eval_file"] or spec["snapshot"]):
        errors["base_job"] = "The base job has no validation data: trials need an eval loss."
    elif not spec["values"].get("eval_steps") and "eval_steps" not in search_space:
        errors["base_job"] = "The base job does not evaluate (eval_steps is 0)."
    if not 1 <= n_trials <= MAX_TRIALS:
        errors["n_trials"] = f"Between 1 and {MAX_TRIALS} trials."
    if not 1 <= concurrency <= n_trials:
        errors["concurrency"] = "At least 1 and at most the number of trials."
    if max_minutes is not None and max_minutes < 1:
        errors["max_minutes"] = "At least one minute, or none."
    if sampler not in Sweep.Sampler.values:
        errors["sampler"] = f"One of {', '.join(Sweep.Sampler.values)}."
    if pruner not in Sweep.Pruner.values:
        errors["pruner"] = f"One of {', '.join(Sweep.Pruner.values)}."
    if errors:
        raise ValidationError(errors)
    settings = {**PRUNER_SETTINGS[pruner], **(pruner_settings or {})}
    unknown = set(settings) - set(PRUNER_SETTINGS[pruner])
    if unknown:
        raise ValidationError({"pruner_settings": f"Unknown: {', '.join(sorted(unknown))}."})
    _check_space(
        space=search_space, initial=initial_trials or [], base_job=base_job, values=spec["values"]
    )
    sweep = Sweep.objects.create(
        project=project,
        name=name.strip() or f"sweep of {base_job.name}",
        base_job=base_job,
        base_spec=spec,
        search_space=search_space,
        initial_trials=initial_trials or [],
        sampler=sampler,
        pruner=pruner,
        pruner_settings=settings,
        seed=seed,
        n_trials=n_trials,
        concurrency=concurrency,
        max_minutes=max_minutes,
        created_by=actor,
    )
    audit_record(
        actor=actor,
        action="training.sweep.create",
        target=sweep,
        data={
            "base_job": base_job.pk,
            "search_space": search_space,
            "initial_trials": sweep.initial_trials,
            "sampler": sampler,
            "pruner": pruner,
            "pruner_settings": settings,
            "n_trials": n_trials,
            "concurrency": concurrency,
            "max_minutes": max_minutes,
        },
    )
    sweep_advance(sweep_id=sweep.pk)
    sweep.refresh_from_db()
    return sweep


@transaction.atomic
def sweep_cancel(*, actor: User, sweep: Sweep) -> Sweep:
    """Stop the sweep: no more trials, and its running trial jobs are asked to stop."""
    sweep = Sweep.objects.select_for_update().get(pk=sweep.pk)
    if not sweep.is_active:
        raise ValidationError(f"The sweep is {sweep.get_status_display().lower()}.")
    running = sweep.trials.filter(state=SweepTrial.State.RUNNING, job__isnull=False)
    for job_id in running.values_list("job_id", flat=True):
        _job_stop(job_id)
    sweep.status = Sweep.Status.CANCELLED
    sweep.finished_at = timezone.now()
    sweep.save(update_fields=["status", "finished_at"])
    audit_record(actor=actor, action="training.sweep.cancel", target=sweep)
    return sweep


@transaction.atomic
def sweep_register_best(*, actor: User, sweep: Sweep) -> ModelVersion:
    """Put the best trial's model in the registry (trials do not register their own: a
    sweep's dozens of candidates would bury the one that matters)."""
    sweep = Sweep.objects.select_for_update().get(pk=sweep.pk)
    best = sweep.best_trial
    if best is None or best.job_id is None:
        raise ValidationError("The sweep has no completed trial yet.")
    job = TrainingJob.objects.select_for_update().select_related("base_model").get(pk=best.job_id)
    if job.status != JobStatus.SUCCEEDED:
        raise ValidationError("The best trial's job did not succeed.")
    if ModelVersion.objects.filter(job=job).exists():
        raise ValidationError(f"Trial {best.number}'s model is already registered.")
    version = model_version_create_for_job(job=job)
    audit_record(
        actor=actor,
        action="training.sweep.register_best",
        target=sweep,
        data={"trial": best.number, "job": job.pk, "version": version.pk, "value": best.value},
    )
    return version


# --- Optuna, rebuilt from our rows ----------------------------------------------------

_OPTUNA_STATE = {
    SweepTrial.State.RUNNING: optuna.trial.TrialState.RUNNING,
    SweepTrial.State.COMPLETE: optuna.trial.TrialState.COMPLETE,
    SweepTrial.State.PRUNED: optuna.trial.TrialState.PRUNED,
    SweepTrial.State.FAILED: optuna.trial.TrialState.FAIL,
}


def _pruner(sweep: Sweep) -> optuna.pruners.BasePruner:
    settings = sweep.pruner_settings
    if sweep.pruner == Sweep.Pruner.MEDIAN:
        return optuna.pruners.MedianPruner(
            n_startup_trials=int(settings.get("n_startup_trials", 2)),
            n_warmup_steps=int(settings.get("n_warmup_steps", 0)),
        )
    if sweep.pruner == Sweep.Pruner.ASHA:
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=int(settings.get("min_resource", 1)),
            reduction_factor=int(settings.get("reduction_factor", 3)),
        )
    return optuna.pruners.NopPruner()


def _sampler(sweep: Sweep, salt: int) -> optuna.samplers.BaseSampler:
    # A fresh sampler per decision: seeding it with the trial count keeps a sweep
    # reproducible without drawing the same "random" startup point every time.
    seed = sweep.seed * 100_003 + salt
    if sweep.sampler == Sweep.Sampler.RANDOM:
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _frozen(
    trial: SweepTrial, distributions: dict[str, optuna.distributions.BaseDistribution]
) -> optuna.trial.FrozenTrial:
    state = _OPTUNA_STATE[SweepTrial.State(trial.state)]
    intermediate = {int(step): value for step, value in trial.intermediate.items()}
    value = trial.value if state == optuna.trial.TrialState.COMPLETE else None
    params = {k: v for k, v in trial.params.items() if k in distributions}
    return optuna.trial.create_trial(
        state=state,
        value=value,
        params=params,
        distributions={k: distributions[k] for k in params},
        intermediate_values={
            s: v for s, v in intermediate.items() if v is not None and math.isfinite(v)
        }
        | {s: math.nan for s, v in intermediate.items() if v is None or not math.isfinite(v)},
        user_attrs={"number": trial.number},
    )


def sweep_study(sweep: Sweep, trials: list[SweepTrial] | None = None) -> optuna.Study:
    """An in-memory Optuna study holding the sweep's trials as our rows record them."""
    distributions = sweep_distributions(sweep.search_space)
    trials = list(sweep.trials.all()) if trials is None else trials
    study = optuna.create_study(
        direction="minimize", sampler=_sampler(sweep, len(trials)), pruner=_pruner(sweep)
    )
    for trial in trials:
        study.add_trial(_frozen(trial, distributions))
    return study


# --- advancing ----------------------------------------------------------------------------


def _eval_losses(job_id: int) -> dict[str, float | None]:
    """The objective as the job reported it, step by step (what `intermediate` holds)."""
    found: dict[str, float | None] = {}
    rows = TrainingMetric.objects.filter(job_id=job_id, values__has_key=OBJECTIVE)
    for step, values in rows.values_list("step", "values"):
        value = values.get(OBJECTIVE)
        numeric = isinstance(value, int | float) and math.isfinite(value)
        found[str(step)] = float(value) if numeric else None
    return found


def _settle_trial(trial: SweepTrial, job: TrainingJob) -> None:
    """A running trial whose job has ended becomes complete (its last eval loss is its
    value) or failed."""
    trial.intermediate = _eval_losses(job.pk)
    losses = [v for _, v in sorted(trial.intermediate.items(), key=lambda kv: int(kv[0]))]
    trial.finished_at = job.finished_at or timezone.now()
    if job.status == JobStatus.SUCCEEDED and losses and losses[-1] is not None:
        trial.state = SweepTrial.State.COMPLETE
        trial.value = losses[-1]
    elif job.status == JobStatus.SUCCEEDED:
        trial.state = SweepTrial.State.FAILED
        trial.error = "The job reported no finite eval loss."
    else:
        trial.state = SweepTrial.State.FAILED
        trial.error = job.error or f"The job was {job.get_status_display().lower()}."
    trial.save(update_fields=["intermediate", "state", "value", "error", "finished_at"])


def _trial_of(job_id: int) -> QuerySet[SweepTrial]:
    """The trial a job runs: its own, or (for the job the dead-job sweep resumed a lost
    trial's job as) the lost job's, until the sweep moves the trial onto it."""
    return SweepTrial.objects.filter(Q(job_id=job_id) | Q(job__resumptions=job_id))


def _follow_resume(trial: SweepTrial) -> None:
    """A trial whose job was lost with its worker and resumed automatically goes on as the
    resumed job (its lineage keeps the lost one through `resumed_from`)."""
    job = trial.job
    if job is None or job.status != JobStatus.FAILED:
        return
    resumed = (
        TrainingJob.objects.filter(resumed_from=job, data__automatic_resume=True)
        .order_by("pk")
        .first()
    )
    if resumed is not None:
        trial.job = resumed
        trial.save(update_fields=["job"])


def _job_stop(job_id: int) -> None:
    try:
        with transaction.atomic():
            job_cancel_request(TrainingJob, pk=job_id)
    except ValidationError:  # it ended meanwhile: nothing to stop
        pass


def _launch(sweep: Sweep, trials: list[SweepTrial]) -> SweepTrial:
    """Ask Optuna for the next parameters (or take the next initial trial) and queue the
    trial's job. Settings a job refuses fail the trial, not the sweep."""
    number = len(trials)
    if number < len(sweep.initial_trials):
        params = dict(sweep.initial_trials[number])
    else:
        params = sweep_study(sweep, trials).ask(sweep_distributions(sweep.search_space)).params
    trial = SweepTrial.objects.create(sweep=sweep, number=number, params=params)
    spec = sweep.base_spec
    project = sweep.project
    try:
        with transaction.atomic():
            job = training_job_create(
                actor=None,
                owner=sweep.created_by,
                project=project,
                name=f"{sweep.name} · trial {number}",
                kind=spec["kind"],
                method=spec["method"],
                base_model=sweep.base_job.base_model,
                values={**spec["values"], **params},
                snapshot=sweep.base_job.snapshot if spec["snapshot"] else None,
                accept_leakage=spec["accept_leakage"],
                train_file=spec["train_file"],
                eval_file=spec["eval_file"],
                parent_version=_version(project, spec["parent_version"]),
                reward_version=_version(project, spec["reward_version"]),
            )
    except ValidationError as error:
        trial.state = SweepTrial.State.FAILED
        trial.error = " ".join(error.messages)
        trial.finished_at = timezone.now()
        trial.save(update_fields=["state", "error", "finished_at"])
        return trial
    trial.job = job
    trial.save(update_fields=["job"])
    audit_record(
        actor=None,
        action="training.sweep.trial",
        target=sweep,
        data={"trial": number, "job": job.pk, "params": params},
    )
    return trial


def _version(project: Project, version_id: int | None) -> ModelVersion | None:
    return ModelVersion.objects.get(project=project, pk=version_id) if version_id else None


def _best(trials: list[SweepTrial]) -> SweepTrial | None:
    done = [t for t in trials if t.state == SweepTrial.State.COMPLETE and t.value is not None]
    return min(done, key=lambda t: (t.value, t.number)) if done else None


@transaction.atomic
def sweep_advance(*, sweep_id: int) -> Sweep:
    """Bring the sweep up to date under its row lock: settle the trials whose jobs ended,
    stop trials past the time budget, queue new ones up to the concurrency limit and the
    budget, and finish the sweep when nothing runs and nothing more may start. Safe to call
    any number of times, from anywhere."""
    sweep = Sweep.objects.select_for_update().select_related("project", "base_job").get(pk=sweep_id)
    trials = list(sweep.trials.select_related("job").order_by("number"))
    for trial in trials:
        if trial.state == SweepTrial.State.RUNNING:
            _follow_resume(trial)
        job = trial.job
        if trial.state == SweepTrial.State.RUNNING and job is not None:
            if job.status not in JOB_ACTIVE:
                _settle_trial(trial, job)
        elif trial.state == SweepTrial.State.PRUNED and job is not None and job.is_active:
            _job_stop(job.pk)  # the prune's cancel was lost (a crash between the two)
    if sweep.is_active:
        over_time = sweep.max_minutes is not None and timezone.now() >= (
            sweep.created_at + timedelta(minutes=sweep.max_minutes)
        )
        running = [t for t in trials if t.state == SweepTrial.State.RUNNING]
        if over_time:
            for trial in running:
                if trial.job_id is not None:
                    _job_stop(trial.job_id)
        else:
            while len(running) < sweep.concurrency and len(trials) < sweep.n_trials:
                trial = _launch(sweep, trials)
                trials.append(trial)
                if trial.state == SweepTrial.State.RUNNING:
                    running.append(trial)
        if not running:
            _sweep_finish(sweep, trials, over_time=over_time)
    best = _best(trials)
    if best is not None and sweep.best_trial_id != best.pk:
        sweep.best_trial = best
        sweep.save(update_fields=["best_trial"])
    transaction.on_commit(lambda: _push(sweep))
    return sweep


def _sweep_finish(sweep: Sweep, trials: list[SweepTrial], *, over_time: bool) -> None:
    best = _best(trials)
    sweep.status = Sweep.Status.SUCCEEDED if best is not None else Sweep.Status.FAILED
    if best is None:
        sweep.error = "No trial completed with an eval loss."
    elif over_time and len(trials) < sweep.n_trials:
        sweep.error = f"Stopped at the time budget after {len(trials)} trials."
    sweep.finished_at = timezone.now()
    sweep.save(update_fields=["status", "error", "finished_at"])
    audit_record(
        actor=None,
        action=f"training.sweep.{sweep.status}",
        target=sweep,
        data={
            "trials": len(trials),
            "best_trial": best.number if best else None,
            "best_value": best.value if best else None,
        },
    )


def _push(sweep: Sweep) -> None:
    job_push(sweep.base_job, "training.sweep", sweep=sweep.pk, sweep_status=sweep.status)


def sweep_job_settled(*, job_id: int) -> None:
    """A job ended (or was found dead): advance its sweep if it is a trial. Called after the
    job's own commit; a sweep problem is logged and left to the beat, never raised into the
    job's end."""
    sweep_id = _trial_of(job_id).values_list("sweep_id", flat=True).first()
    if sweep_id is None:
        return
    try:
        sweep_advance(sweep_id=sweep_id)
    except Exception:  # the beat retries; the job's end must stand whatever went wrong
        logger.exception("sweep %s: advancing after job %s ended failed", sweep_id, job_id)


def sweep_is_trial(job: TrainingJob) -> bool:
    return _trial_of(job.pk).exists()


def sweeps_advance_all() -> int:
    """The beat's pass over running sweeps (trials lost with their worker, queued trials
    cancelled by hand, time budgets). Returns how many it advanced."""
    count = 0
    for sweep_id in Sweep.objects.filter(status=Sweep.Status.RUNNING).values_list("pk", flat=True):
        try:
            sweep_advance(sweep_id=sweep_id)
            count += 1
        except Exception:  # one broken sweep must not stop the others
            logger.exception("sweep %s: advancing failed", sweep_id)
    return count


# --- pruning ----------------------------------------------------------------------------


@transaction.atomic
def sweep_trial_report(*, job_id: int, step: int, values: dict[str, Any]) -> bool:
    """A running job logged `values` at `step`: when it is a trial and the objective is
    among them, record it, and prune the trial (ask its job to stop) when the pruner says
    so against the sweep's other trials. Returns whether the trial was pruned now."""
    if OBJECTIVE not in values:
        return False
    found = _trial_of(job_id).values_list("sweep_id", "pk").first()
    if found is None:
        return False
    # Sweep first, then its trials: the lock order sweep_advance takes too.
    sweep = Sweep.objects.select_for_update().get(pk=found[0])
    trials = list(sweep.trials.select_related("job").order_by("number"))
    trial = next(t for t in trials if t.pk == found[1])
    _follow_resume(trial)
    value = values[OBJECTIVE]
    numeric = isinstance(value, int | float) and math.isfinite(value)
    trial.intermediate = {**trial.intermediate, str(step): float(value) if numeric else None}
    trial.save(update_fields=["intermediate"])
    if trial.state != SweepTrial.State.RUNNING or not sweep.is_active:
        return False
    study = sweep_study(sweep, trials)
    frozen = next(
        t for t in study.get_trials(deepcopy=False) if t.user_attrs["number"] == trial.number
    )
    if not study.pruner.prune(study, frozen):
        return False
    trial.state = SweepTrial.State.PRUNED
    trial.value = float(value) if numeric else None
    trial.finished_at = timezone.now()
    trial.save(update_fields=["state", "value", "finished_at"])
    _job_stop(job_id)
    audit_record(
        actor=None,
        action="training.sweep.prune",
        target=sweep,
        data={"trial": trial.number, "job": job_id, "step": step, "value": trial.value},
    )
    return True
