"""Every write of the training app. Split by topic; import from here.

`training.services.inference` is left out on purpose: it loads torch and runs only on
workers."""

from training.services.base_models import (
    base_model_ensure_default,
    base_model_register,
    base_model_registration_start,
    model_cache_dir,
)
from training.services.jobs import (
    training_file_path,
    training_file_store,
    training_job_cancel,
    training_job_create,
    training_job_resume,
    training_jobs_sweep_stale,
)
from training.services.playground import playground_generate
from training.services.sweeps import (
    sweep_advance,
    sweep_cancel,
    sweep_create,
    sweep_register_best,
)

__all__ = [
    "base_model_ensure_default",
    "base_model_register",
    "base_model_registration_start",
    "model_cache_dir",
    "playground_generate",
    "sweep_advance",
    "sweep_cancel",
    "sweep_create",
    "sweep_register_best",
    "training_file_path",
    "training_file_store",
    "training_job_cancel",
    "training_job_create",
    "training_job_resume",
    "training_jobs_sweep_stale",
]
