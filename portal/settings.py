"""Settings for every deployment; values that differ come from the environment.

With nothing set, the portal runs embedded: SQLite under var/, a Celery broker on
the filesystem, in-process websockets. Production sets DATABASE_URL, REDIS_URL and
SECRET_KEY; with DEBUG off the portal refuses a missing, default or short key.
"""

import secrets
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF

from portal.env import env_bool, env_int, env_list, env_secret, env_str

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

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

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
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "axes",
    "channels",
    "csp",
    "portal",
    "governance",
    "annotation",
    "training",
    "evaluation",
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
                "portal.templatetags.portal_tags",
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
        "timeout": 30,
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool(
    "DATABASE_PREPARED", default=True
):
    # Lets portal.db.fetch_one prepare the hot paths' statements (Django turns preparing off
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

AUTH_USER_MODEL = "portal.User"
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
AXES_IPWARE_PROXY_COUNT = env_int("AXES_PROXY_COUNT", 0)
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
    # A key prefix lets several portals (or test runs) share one Redis without crosstalk.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"global_keyprefix": env_str("CELERY_KEY_PREFIX", "")}
    CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = CELERY_BROKER_TRANSPORT_OPTIONS
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [REDIS_URL],
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
# Housekeeping run by `celery beat` (embedded in the demo's default worker with -B).
CELERY_BEAT_SCHEDULE = {
    "training-jobs-sweep-stale": {"task": "training.sweep_stale_jobs", "schedule": 60.0},
    "purge-raw-uploads": {"task": "governance.purge_raw_uploads", "schedule": 24 * 3600.0},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# Converted base models (the packaged GGUF model becomes safetensors once) live here.
TRAINING_MODEL_CACHE = env_str("TRAINING_MODEL_CACHE", str(VAR_DIR / "models"))
# A started job whose worker sent no heartbeat for this long is marked failed (resumable).
TRAINING_HEARTBEAT_STALE_SECONDS = env_int("TRAINING_HEARTBEAT_STALE_SECONDS", 90)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON that refuses non-finite numbers, huge integers and deep nesting with a 400.
    "DEFAULT_PARSER_CLASSES": [
        "portal.parsers.StrictJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "portal.api_errors.portal_exception_handler",
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
SECURE_REDIRECT_EXEMPT = [r"^healthz/$"]
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
    },
}

# Largest dataset file accepted (bytes); bigger uploads are refused while streaming.
PORTAL_MAX_UPLOAD_BYTES = env_int("PORTAL_MAX_UPLOAD_BYTES", 2 * 1024**3)
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
# Fernet keys for files at rest, newest first: the first encrypts, all decrypt (rotation).
PORTAL_ENCRYPTION_KEYS = env_list("PORTAL_ENCRYPTION_KEYS", [])
# Without the keys above, DEBUG runs and tests generate per-checkout keys under var/dev_keys.
PORTAL_DEV_KEYS = env_bool("PORTAL_DEV_KEYS", default=DEBUG)
# Raw dataset uploads are deleted this many days after import (0 keeps them); items,
# snapshots and every hash stay.
PORTAL_RAW_UPLOAD_RETENTION_DAYS = env_int("PORTAL_RAW_UPLOAD_RETENTION_DAYS", 0)
