"""Test settings: the real PostgreSQL and Redis on 127.0.0.1, overridable by environment."""

import os
import secrets
import tempfile
import uuid
from pathlib import Path

# Under pytest-xdist each worker is a session of its own (pytest-django gives it its own
# test database), but it inherits what the controller set below: it takes its own run id,
# prefixes and folders instead, once (its servers and workers inherit the worker's).
_xdist_worker = os.environ.get("PYTEST_XDIST_WORKER")
if _xdist_worker and os.environ.get("PORTAL_TEST_WORKER") != _xdist_worker:
    os.environ["PORTAL_TEST_WORKER"] = _xdist_worker
    for _name in (
        "TRAINING_MODEL_ROOTS",
        "PORTAL_TEST_RUN_ID",
        "CELERY_KEY_PREFIX",
        "CHANNELS_PREFIX",
        "MEDIA_ROOT",
        "PORTAL_AUDIT_CHECKPOINT_DIR",
    ):
        os.environ.pop(_name, None)
    # Development keys and the secret key file are made on first use: one folder per
    # worker, so two workers never race to write them.
    os.environ["PORTAL_VAR_DIR"] = tempfile.mkdtemp(prefix=f"portal-test-var-{_xdist_worker}-")

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/portal")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")
# Local base models (the tiny test model among them) are registered from here only.
os.environ.setdefault("TRAINING_MODEL_ROOTS", tempfile.mkdtemp(prefix="portal-test-models-"))
# A fresh key per session (inherited by the worker and server it starts): a fixed one
# would be a published key that production must refuse.
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(64))
# Playwright's sync API keeps an event loop on the test thread; the ORM calls the tests
# make there are still synchronous.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
# One id per test session, inherited by the worker and server it starts, keeps this run's
# queues and channel groups apart from any other run on the same Redis.
os.environ.setdefault("PORTAL_TEST_RUN_ID", uuid.uuid4().hex[:10])
os.environ.setdefault("CELERY_KEY_PREFIX", f"t{os.environ['PORTAL_TEST_RUN_ID']}:")
os.environ.setdefault("CHANNELS_PREFIX", f"t{os.environ['PORTAL_TEST_RUN_ID']}")
os.environ.setdefault("MEDIA_ROOT", tempfile.mkdtemp(prefix="portal-test-media-"))
# Signed audit checkpoints go outside the database; tests that sign point this at their
# own directory (tests/governance/conftest.py), since the file outlives a rolled-back test.
os.environ.setdefault(
    "PORTAL_AUDIT_CHECKPOINT_DIR", tempfile.mkdtemp(prefix="portal-test-checkpoints-")
)

from portal.settings import *  # noqa: E402, F403

DEBUG = False
# Tests talk plain HTTP to a local server.
SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
SECURE_HSTS_SECONDS = 0
ALLOWED_HOSTS = ["*"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {  # noqa: F405
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
STATIC_ROOT = Path(tempfile.mkdtemp(prefix="portal-test-static-"))
# Sweep overdue leases on every request, so expiry tests need no clock games.
PORTAL_LEASE_SWEEP_SECONDS = float(os.environ.get("PORTAL_TEST_LEASE_SWEEP_SECONDS", "0"))
# Dossier signing and at-rest encryption keys are generated under var/dev_keys.
PORTAL_DEV_KEYS = True
# The demo chain polls its jobs; in tests it need not wait 10 s between looks.
PORTAL_DEMO_RETRY_SECONDS = 1
