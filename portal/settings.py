"""Settings for every deployment; values that differ come from the environment.

With nothing set, the portal runs embedded: SQLite under var/, a Celery broker on
the filesystem, in-process websockets. Production sets DATABASE_URL, REDIS_URL and
SECRET_KEY; with DEBUG off the portal refuses a missing, default or short key.
"""

import secrets
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from portal.env import (
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_networks,
    env_report_to,
    env_secret,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("PORTAL_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", default=False)


def _development_secret_key() -> str:
    """A per-checkout random key for DEBUG runs, so no key is ever hard-coded."""
    path = VAR_DIR / "dev_secret_key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(64))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = (
    env_secret("SECRET_KEY")
    if not DEBUG
    else env_str("SECRET_KEY", "") or (_development_secret_key())
)

# Proxies (IPs or CIDR networks) whose X-Forwarded-For is believed; default none, so a
# client cannot choose the address the lockout and the access log record.
PORTAL_TRUSTED_PROXIES = env_networks("PORTAL_TRUSTED_PROXIES")
if env_str("AXES_PROXY_COUNT", ""):
    # The old setting counted X-Forwarded-For entries whoever sent them; refuse to guess.
    raise ImproperlyConfigured(
        "AXES_PROXY_COUNT is gone: name your proxies in PORTAL_TRUSTED_PROXIES instead."
    )

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# Who may scrape /metrics besides loopback (IPs or CIDR networks of Prometheus servers);
# the address is decided as for the lockout, so a forwarded header cannot claim one.
PORTAL_METRICS_ALLOWED_IPS = env_networks("PORTAL_METRICS_ALLOWED_IPS")
# Request records a server process holds while the database is slow or down; past this
# the oldest are dropped (and counted in portal_telemetry_dropped_records_total).
SERVING_TELEMETRY_BUFFER_ROWS = env_int("SERVING_TELEMETRY_BUFFER_ROWS", 100_000)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "axes",
    "channels",
    "csp",
    "core",
    "portal",
    "governance",
    "annotation",
    "training",
    "evaluation",
    "serving",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "csp.middleware.CSPMiddleware",
    "portal.middleware.VaryOnHtmxMiddleware",
    # Last, so that it sees the response of a failed login (django-axes docs).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = None
ASGI_APPLICATION = "portal.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "portal.context_processors.navigation",
            ],
            # Django 6 has {% partialdef %} built in; on 5.2 the package supplies it.
            "builtins": [
                "template_partials.templatetags.partials",
                "core.templatetags.portal_tags",
            ],
        },
    }
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'portal.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool(
    "DATABASE_POOL", default=True
):
    # A pool per process: opening a PostgreSQL connection per request costs more than the
    # request itself (a backend fork), and ASGI servers cannot keep persistent ones safely.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env_int("DATABASE_POOL_MIN", 1),
        "max_size": env_int("DATABASE_POOL_MAX", 16),
        # How long a request waits for a connection. While PostgreSQL is down (a restart)
        # requests wait this long and then answer 503 with Retry-After (core.api_errors),
        # so keep it short: a client that is told to retry beats one left hanging.
        # Connections a restart broke are dropped: Django passes the pool a check
        # (CONN_HEALTH_CHECKS), and the pool reopens them once the server is back.
        "timeout": env_int("DATABASE_POOL_TIMEOUT", 5),
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool(
    "DATABASE_PREPARED", default=True
):
    # Lets core.db.fetch_one prepare the hot paths' statements (Django turns preparing off
    # for the sake of transaction-mode poolers; set DATABASE_PREPARED=0 behind one that cannot
    # prepare). The threshold is never reached: Django's own queries go through client-side
    # binding cursors, which psycopg never prepares, and only fetch_one asks for it.
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 2**31
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process read while the worker writes.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000;",
        "transaction_mode": "IMMEDIATE",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "core.User"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Failed-login throttling: lock a username+address pair after 5 failures for 15 minutes.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = env_int("AXES_COOLOFF_MINUTES", 15) / 60
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_RESET_ON_SUCCESS = True
# The lockout key's address comes from the one function that decides client addresses.
AXES_CLIENT_IP_CALLABLE = "core.client_ip.client_ip_get"
AXES_VERBOSE = False

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "media/"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
if DEBUG:
    STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
    WHITENOISE_USE_FINDERS = True
    WHITENOISE_AUTOREFRESH = True

# Redis carries the Celery broker, Channels and the cache when it is configured;
# without it the embedded defaults need no server at all.
REDIS_URL = env_str("REDIS_URL", "")
if REDIS_URL:
    CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
    CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", REDIS_URL)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # A key prefix lets several portals (or test runs) share one Redis without crosstalk.
        "global_keyprefix": env_str("CELERY_KEY_PREFIX", ""),
        # Tasks that ack late stay in Redis until they finish; one unacked for longer than
        # this is handed to another worker. Redis's default (1 h) is shorter than a
        # training job (12 h + 5 min hard limit), so a running job would be delivered a
        # second time. Longer than the longest time_limit (tests/portal/test_redis_restart.py
        # checks every registered task).
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 13 * 3600),
    }
    CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = CELERY_BROKER_TRANSPORT_OPTIONS
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py 8 reads with a 5 s socket timeout by default, as long as the
                # layer's blocking BZPOPMIN (5 s): with nothing to deliver for 5 s the read
                # timed out, and the consumer, and with it the browser's socket, died.
                "hosts": [{"address": REDIS_URL, "socket_timeout": 15}],
                "prefix": env_str("CHANNELS_PREFIX", "portal"),
            },
        }
    }
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    _queue_dir = VAR_DIR / "celery"
    # The filesystem broker and result backend need their folders before first use.
    for _folder in ("queue", "processed", "results", "control"):
        (_queue_dir / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://localhost/"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir / "queue"),
        "data_folder_out": str(_queue_dir / "queue"),
        "processed_folder": str(_queue_dir / "processed"),
        "store_processed": False,
        # Broadcast (pidbox) exchanges; kombu's default is ./control in the working directory.
        "control_folder": str(_queue_dir / "control"),
    }
    CELERY_RESULT_BACKEND = f"file://{_queue_dir / 'results'}"
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    # On disk, so the web process sees progress the worker writes.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_TRACK_STARTED = True
CELERY_RESULT_EXPIRES = 3600
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Training and generation hold a GPU for hours: they go to `gpu` workers, one task at a
# time, none reserved ahead (a second job waits in the queue, not behind a busy worker).
CELERY_TASK_ROUTES = {
    "training.run_job": {"queue": "gpu"},
    "training.generate": {"queue": "gpu"},
    "evaluation.generate": {"queue": "gpu"},
}
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# How often (seconds) Celery beat signs a checkpoint of the audit chain.
PORTAL_AUDIT_CHECKPOINT_SECONDS = env_int("PORTAL_AUDIT_CHECKPOINT_SECONDS", 3600)
# Jobs are enqueued after their row commits; if Redis is restarting then, Celery's default
# (3 quick retries, under half a second) gave up and left a job queued in the database and
# nowhere in Redis. Keep trying for about 20 s, longer than a Redis restart takes.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 12,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 2,
}
# When the broker connection drops (a Redis restart) running tasks go on: cancelling would
# throw away hours of training for a blip. If the acknowledgement is lost with the connection,
# the message comes back after the visibility timeout and the job's claim turns it away.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# Housekeeping run by `celery beat` (the compose stack's one `beat` service; embedded in the
# demo's default worker with -B); no page view runs any of it. The sweep fails background
# jobs whose worker died, so it runs often: a dead job is failed within this many seconds.
PORTAL_JOB_SWEEP_SECONDS = env_int("PORTAL_JOB_SWEEP_SECONDS", 30)
# Each queue expires the leases in its own way as it hands out work; this sweep expires the
# rest (an item nobody asks for again, a queue nobody opens) within this many seconds.
PORTAL_LEASE_EXPIRY_SWEEP_SECONDS = env_int("PORTAL_LEASE_EXPIRY_SWEEP_SECONDS", 60)
# How often (seconds) beat checks the rollback rules of canaries on traffic: a breach takes
# the canary off traffic within this much of the window showing it.
PORTAL_ROLLOUT_EVALUATE_SECONDS = env_int("PORTAL_ROLLOUT_EVALUATE_SECONDS", 60)
CELERY_BEAT_SCHEDULE = {
    "sweep-dead-jobs": {
        "task": "portal.sweep_dead_jobs",
        "schedule": float(PORTAL_JOB_SWEEP_SECONDS),
    },
    "sweep-expired-leases": {
        "task": "portal.sweep_expired_leases",
        "schedule": float(PORTAL_LEASE_EXPIRY_SWEEP_SECONDS),
    },
    "purge-raw-uploads": {"task": "governance.purge_raw_uploads", "schedule": 24 * 3600.0},
    # Hyperparameter sweeps whose trial ended without the worker telling them (lost, cancelled
    # while queued) or whose time budget ran out.
    "advance-sweeps": {"task": "training.sweeps_advance", "schedule": 30.0},
    "audit-checkpoint-sign": {
        "task": "governance.audit_checkpoint_sign",
        "schedule": float(PORTAL_AUDIT_CHECKPOINT_SECONDS),
    },
    # Request content past its logging policy's retention days is cleared within the hour.
    "purge-telemetry-content": {"task": "serving.telemetry_purge", "schedule": 3600.0},
    "rollout-evaluate": {
        "task": "serving.rollout_evaluate",
        "schedule": float(PORTAL_ROLLOUT_EVALUATE_SECONDS),
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# Converted base models (the packaged GGUF model becomes safetensors once) live here.
TRAINING_MODEL_CACHE = env_str("TRAINING_MODEL_CACHE", str(VAR_DIR / "models"))
# The only folders a "local directory" base model may come from (comma separated), besides
# the cache above; never the portal's own training output under MEDIA_ROOT.
TRAINING_MODEL_ROOTS = env_list("TRAINING_MODEL_ROOTS", [str(VAR_DIR / "models" / "local")])
# What an hour of the machine that serves a model costs, for the compression comparison's
# cost per million generated tokens: per CPU-hour (compressed children are measured on a
# CPU) or per GPU-hour where the measurements come from GPU workers.
COMPRESSION_PRICE_PER_HOUR = env_float("PORTAL_COMPUTE_PRICE_PER_HOUR", 0.10, minimum=0)
COMPRESSION_PRICE_UNIT = env_choice(
    "PORTAL_COMPUTE_PRICE_UNIT", "cpu-hour", ("cpu-hour", "gpu-hour")
)
# A started job whose worker sent no heartbeat for this long is marked failed (resumable).
TRAINING_HEARTBEAT_STALE_SECONDS = env_int("TRAINING_HEARTBEAT_STALE_SECONDS", 90)
# GPUs on each machine of the `gpu` queue, for checking a job's processes, strategy and
# precision before it is queued; -1 counts this machine's (where web and worker share one).
TRAINING_WORKER_GPUS = env_int("TRAINING_WORKER_GPUS", -1)

# Where links from outside (an MLflow run's tags) point back to: the portal's public origin,
# e.g. https://portal.example.org. Empty: such links carry the page's path only.
PORTAL_BASE_URL = env_str("PORTAL_BASE_URL", "").rstrip("/")
# Mirror every training job to MLflow (parameters, metrics, checkpoint hashes, lineage) when
# set: an http(s) tracking server, or a file store (file:///srv/mlruns, which MLflow 3 only
# opens with MLFLOW_ALLOW_FILE_STORE=true). The portal stays the source of truth: the worker
# mirrors from a thread, and MLflow being down costs a warning on the job, never the job.
MLFLOW_TRACKING_URI = env_str("MLFLOW_TRACKING_URI", "")
# The MLflow UI the job page links to; by default the tracking URI when it is http(s).
MLFLOW_UI_URL = env_str("MLFLOW_UI_URL", "").rstrip("/")
# Each project's jobs go to the experiment named this plus the project's id.
MLFLOW_EXPERIMENT_PREFIX = env_str("MLFLOW_EXPERIMENT_PREFIX", "tuning-portal/project-")
# After a job ends, its worker waits this long at most for the mirror to catch up.
TRAINING_MLFLOW_FLUSH_SECONDS = env_int("TRAINING_MLFLOW_FLUSH_SECONDS", 30)
# Trackers the trainer itself reports to (transformers' `report_to`, e.g. wandb, tensorboard),
# comma separated; by default wandb when WANDB_PROJECT is set. Their failure is a warning too.
TRAINING_REPORT_TO = env_report_to(
    "TRAINING_REPORT_TO", ["wandb"] if env_str("WANDB_PROJECT", "") else []
)

REST_FRAMEWORK = {
    # API keys first: DRF answers a failed authentication with the first class's scheme,
    # so a missing, expired or revoked key gets 401 with `WWW-Authenticate: Token`.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "core.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON that refuses non-finite numbers, huge integers and deep nesting with a 400.
    "DEFAULT_PARSER_CLASSES": [
        "core.parsers.StrictJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "core.schema.PortalAutoSchema",
    "DEFAULT_PAGINATION_CLASS": "core.pagination.PortalPagination",
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "core.api_errors.portal_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Tuning Portal API",
    "DESCRIPTION": "Annotation, curation, fine-tuning, evaluation and audit for LLMs.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Several models have a "kind" or task-type choice set; name each once for the schema.
    "ENUM_NAME_OVERRIDES": {
        "TaskTypeEnum": "annotation.models.TaskType",
        "QualityCheckKindEnum": "annotation.models.QualityCheck.Kind",
        "JobKindEnum": "training.models.JobKind",
        "ModelVersionKindEnum": "training.models.ModelVersion.Kind",
        # Names these sets had before other choice sets took the same field names.
        "StatusEnum": "core.models.JobStatus",
        "SourceEnum": "evaluation.models.PromptSet.Source",
        "PairSelectionEnum": "evaluation.models.Campaign.PairSelection",
        "BaseModelSourceEnum": "training.models.BaseModel.Source",
        "CampaignStatusEnum": "evaluation.models.Campaign.Status",
        "RoleEnum": "core.models.Role",
        "SignOffRoleEnum": "governance.models.SignOffRole",
        "SignOffDecisionEnum": "governance.models.SignOff.Decision",
        "ModelVersionStageEnum": "training.models.ModelVersion.Stage",
        "SweepStatusEnum": "training.models.Sweep.Status",
        "SweepTrialStateEnum": "training.models.SweepTrial.State",
        # A distilled student's method, beside the job's own method set.
        "CompressionStudentMethodEnum": ["lora", "full"],
        "MethodEnum": "training.models.JobMethod",
    },
}

# Content-Security-Policy: scripts and styles only from our own static files; no inline
# code, no eval (htmx runs with allowEval off), nothing framed.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# Production hardening; `manage.py check --deploy --fail-level WARNING` passes with DEBUG off.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=not DEBUG)
# Probes and scrapers on the internal network speak plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz/$", r"^metrics$"]
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

# Portal-specific knobs.
# API keys expire after this many days unless their maker asks for another term (at most
# PORTAL_API_KEY_MAX_DAYS).
PORTAL_API_KEY_DAYS = env_int("PORTAL_API_KEY_DAYS", 90)
PORTAL_API_KEY_MAX_DAYS = env_int("PORTAL_API_KEY_MAX_DAYS", 365)
PORTAL_SIGNUP_DEFAULT_OPEN = env_bool("PORTAL_SIGNUP_OPEN", default=False)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # WeasyPrint (dossier PDFs) narrates every rendering step at INFO.
        "weasyprint": {"level": "WARNING"},
        "fontTools": {"level": "WARNING"},
        # httpx logs every request at INFO: on the gateway's path, one log line per completion.
        "httpx": {"level": "WARNING"},
    },
}

# Largest dataset file accepted (bytes); bigger uploads are refused while streaming.
PORTAL_MAX_UPLOAD_BYTES = env_int("PORTAL_MAX_UPLOAD_BYTES", 2 * 1024**3)
# Largest training file (JSONL uploaded for a training job) accepted, in bytes.
PORTAL_TRAINING_FILE_MAX_BYTES = env_int("PORTAL_TRAINING_FILE_MAX_BYTES", 512 * 1024**2)
# JSON Lines files of at least this many bytes are parsed by worker processes (at most
# PORTAL_IMPORT_WORKERS, and no more than the machine's cores); smaller ones in-process.
PORTAL_IMPORT_PARALLEL_MIN_BYTES = env_int("PORTAL_IMPORT_PARALLEL_MIN_BYTES", 8 * 1024**2)
PORTAL_IMPORT_WORKERS = env_int("PORTAL_IMPORT_WORKERS", 2)
# Largest dossier accepted by the verify page (bytes).
PORTAL_MAX_VERIFY_BYTES = env_int("PORTAL_MAX_VERIFY_BYTES", 1024**3)
# Files above this go to a temporary file on disk instead of memory while uploading.
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024**2
# How often (seconds) a web process sweeps a project's overdue annotation leases.
PORTAL_LEASE_SWEEP_SECONDS = float(env_str("PORTAL_LEASE_SWEEP_SECONDS", "2"))

# Governance. The Ed25519 key that signs deployment dossiers: PEM text, or a file holding it.
PORTAL_DOSSIER_SIGNING_KEY = env_str("PORTAL_DOSSIER_SIGNING_KEY", "")
PORTAL_DOSSIER_SIGNING_KEY_FILE = env_str("PORTAL_DOSSIER_SIGNING_KEY_FILE", "")
# The Ed25519 key that signs audit-log checkpoints (PEM text, or a file holding it). Unset,
# checkpoints are signed with a development key under var/dev_keys when PORTAL_DEV_KEYS,
# else with the dossier signing key (a payload type of their own keeps the two apart).
PORTAL_AUDIT_CHECKPOINT_KEY = env_str("PORTAL_AUDIT_CHECKPOINT_KEY", "")
PORTAL_AUDIT_CHECKPOINT_KEY_FILE = env_str("PORTAL_AUDIT_CHECKPOINT_KEY_FILE", "")
# Where signed checkpoints are appended outside the database (checkpoints.jsonl): put it
# on storage the database's administrators cannot write, shared by beat and verifiers.
PORTAL_AUDIT_CHECKPOINT_DIR = Path(
    env_str("PORTAL_AUDIT_CHECKPOINT_DIR", str(VAR_DIR / "audit_checkpoints"))
)
# Fernet keys for files at rest, newest first: the first encrypts, all decrypt (rotation).
PORTAL_ENCRYPTION_KEYS = env_list("PORTAL_ENCRYPTION_KEYS", [])
# Without the keys above, DEBUG runs and tests generate per-checkout keys under var/dev_keys.
PORTAL_DEV_KEYS = env_bool("PORTAL_DEV_KEYS", default=DEBUG)
# Raw dataset uploads and training-file uploads are deleted this many days after import
# or upload (0 keeps them); items, snapshots, jobs and every hash stay.
PORTAL_RAW_UPLOAD_RETENTION_DAYS = env_int("PORTAL_RAW_UPLOAD_RETENTION_DAYS", 0)

# The OpenAI-compatible gateway (/v1/, serving/gateway). Bodies above the limit get a 413.
SERVING_GATEWAY_MAX_BODY_BYTES = env_int("SERVING_GATEWAY_MAX_BODY_BYTES", 1024**2)
# How long an engine may take to start answering (the canary falls back to stable after it).
SERVING_GATEWAY_UPSTREAM_TIMEOUT_S = float(env_str("SERVING_GATEWAY_UPSTREAM_TIMEOUT_S", "60"))
# How long a guardrail classifier may take to answer; past it the text is let through and
# flagged `classifier:unavailable` (as Azure OpenAI does when its content filter is down).
SERVING_GATEWAY_CLASSIFIER_TIMEOUT_S = float(env_str("SERVING_GATEWAY_CLASSIFIER_TIMEOUT_S", "5"))
# How long deployments and keys are held in each process (a revoked key works at most ~2x).
SERVING_GATEWAY_CACHE_S = float(env_str("SERVING_GATEWAY_CACHE_S", "1"))
# Redis key prefix for the per-key limits (test runs sharing one Redis keep apart).
SERVING_GATEWAY_REDIS_PREFIX = env_str(
    "SERVING_GATEWAY_REDIS_PREFIX", env_str("CELERY_KEY_PREFIX", "") + "gw:"
)
