"""Celery entry points of the training app: thin, ids only, each calls one service."""

from celery import shared_task

# Long enough for a real fine-tune; a job that needs more raises it per deployment.
TRAINING_SOFT_LIMIT_S = 12 * 3600
INFERENCE_SOFT_LIMIT_S = 1800


@shared_task(
    name="training.run_job",
    acks_late=True,
    soft_time_limit=TRAINING_SOFT_LIMIT_S,
    time_limit=TRAINING_SOFT_LIMIT_S + 300,
    ignore_result=True,
)
def training_job_run_task(job_id: int) -> None:
    from training.services import execution  # keeps the runner plumbing out of web imports

    execution.training_job_execute(job_id=job_id)


@shared_task(
    name="training.register_base_model",
    acks_late=True,
    soft_time_limit=1800,
    time_limit=1900,
    ignore_result=True,
)
def base_model_register_task(registration_id: int) -> None:
    from training.services import base_models  # services import this module: not at the top

    base_models.base_model_registration_run(registration_id=registration_id)


@shared_task(
    name="training.generate",
    soft_time_limit=INFERENCE_SOFT_LIMIT_S,
    time_limit=INFERENCE_SOFT_LIMIT_S + 60,
)
def generate_task(
    base_model_id: int,
    model_version_id: int | None,
    prompts: list[str],
    max_new_tokens: int = 128,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    prompt_template: str | None = None,
) -> list[str]:
    from training.services import inference  # torch is loaded on workers only

    return inference.generate_by_ids(
        base_model_id=base_model_id,
        model_version_id=model_version_id,
        prompts=prompts,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        prompt_template=prompt_template,
    )


@shared_task(name="training.sweeps_advance", ignore_result=True)
def sweeps_advance_task() -> int:
    from training.services import sweeps  # optuna stays out of web imports of this module

    return sweeps.sweeps_advance_all()
