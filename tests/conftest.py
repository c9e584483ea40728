import os
import signal
import tempfile
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.db.backends.postgresql.operations import DatabaseOperations

from core.models import Role
from portal.celery import app as celery_app
from tests.portal.factories import MembershipFactory, ProjectFactory, UserFactory
from tests.support import servers

ROLES = [r.value for r in Role]


@pytest.fixture(scope="session", autouse=True)
def _flush_past_audit_triggers():
    """The audit tables refuse TRUNCATE (governance 0005). Between transactional tests the
    flush empties them as only a superuser can: with triggers off for its transaction."""
    original = DatabaseOperations.execute_sql_flush

    def execute_sql_flush(self, sql_list):
        return original(self, ["SET LOCAL session_replication_role = replica", *sql_list])

    DatabaseOperations.execute_sql_flush = execute_sql_flush
    yield
    DatabaseOperations.execute_sql_flush = original


@pytest.fixture(autouse=True)
def _training_uploads_left_by_a_test_removed():
    """Training-file uploads live in one folder for the whole session (their rows roll back
    with a test, their files do not), and key rotation must read every one: a file a test
    encrypted under its own key would fail a later test's rotation."""
    from training.services.jobs import training_files_stored

    before = set(training_files_stored())
    yield
    for path in set(training_files_stored()) - before:
        path.unlink(missing_ok=True)


@pytest.fixture
def project(db):
    return ProjectFactory(name="Acme support bot")


@pytest.fixture
def other_project(db):
    return ProjectFactory(name="Other team's project")


def _member(project, role, username):
    return MembershipFactory(project=project, role=role, user=UserFactory(username=username)).user


@pytest.fixture
def annotator(project):
    return _member(project, Role.ANNOTATOR, "ann")


@pytest.fixture
def adjudicator(project):
    return _member(project, Role.ADJUDICATOR, "adj")


@pytest.fixture
def reviewer(project):
    return _member(project, Role.REVIEWER, "rev")


@pytest.fixture
def engineer(project):
    return _member(project, Role.ENGINEER, "eng")


@pytest.fixture
def compliance(project):
    return _member(project, Role.COMPLIANCE, "comp")


@pytest.fixture
def admin(project):
    return _member(project, Role.ADMIN, "boss")


@pytest.fixture
def staff(db):
    return UserFactory(username="root", is_staff=True, is_superuser=True)


@pytest.fixture
def outsider(other_project):
    """A member of another project, with every role there."""
    user = UserFactory(username="stranger")
    for role in ROLES:
        MembershipFactory(project=other_project, role=role, user=user)
    return user


@pytest.fixture
def member_of(project):
    """member_of(role) -> a fresh user holding `role` in `project`."""

    def make(role: str, username: str | None = None):
        return MembershipFactory(
            project=project, role=role, user=UserFactory(username=username or f"as-{role}")
        ).user

    return make


# --- real servers -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def server_log_dir():
    path = Path(os.environ.get("PORTAL_TEST_LOG_DIR") or tempfile.mkdtemp(prefix="portal-logs-"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def test_database_url(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        return servers.database_url(connection.settings_dict)


@pytest.fixture(scope="session")
def celery_worker(test_database_url, server_log_dir):
    """A real Celery worker (prefork, queues default and gpu) on Redis and the test DB.
    Tests that use it must commit their data: mark them django_db(transaction=True)."""
    node = f"test-{os.environ['PORTAL_TEST_RUN_ID']}@localhost"
    child = servers.start_celery_worker(
        servers.child_env(test_database_url), server_log_dir, celery_app, node
    )
    yield child
    child.stop()


class KillableWorkers:
    """Celery workers in sessions of their own, so a test can `kill -9` one whole (the main
    process and its pool) as the kernel's OOM killer or an operator would."""

    def __init__(self, database_url: str, log_dir: Path):
        self.database_url = database_url
        self.log_dir = log_dir
        self.started: list[servers.ChildProcess] = []

    def __call__(self, **env: str) -> servers.ChildProcess:
        tag = uuid.uuid4().hex[:8]
        child = servers.start_celery_worker(
            servers.child_env(self.database_url, **env),
            self.log_dir,
            celery_app,
            f"fault-{tag}@localhost",
            name=f"celery-fault-{tag}",
            new_session=True,
        )
        self.started.append(child)
        return child

    @staticmethod
    def kill(child: servers.ChildProcess) -> None:
        os.killpg(child.proc.pid, signal.SIGKILL)
        child.proc.wait(timeout=10)


@pytest.fixture
def killable_workers(test_database_url, server_log_dir):
    """Start workers this test may kill. The session worker, if one runs, stops taking tasks
    meanwhile, so every task goes to these."""
    session_node = f"test-{os.environ['PORTAL_TEST_RUN_ID']}@localhost"
    for queue in ("default", "gpu"):
        celery_app.control.cancel_consumer(queue, destination=[session_node], reply=True)
    workers = KillableWorkers(test_database_url, server_log_dir)
    yield workers
    for child in workers.started:
        if child.proc.poll() is None:
            workers.kill(child)
        child.stop()
    for queue in ("default", "gpu"):
        celery_app.control.add_consumer(
            queue, exchange=queue, routing_key=queue, destination=[session_node], reply=True
        )


@pytest.fixture(scope="session")
def asgi_server(test_database_url, server_log_dir):
    """The portal served by uvicorn (HTTP and websockets) on the test database."""
    child, base_url = servers.start_asgi_server(
        servers.child_env(test_database_url), server_log_dir
    )
    yield base_url
    child.stop()


@pytest.fixture(scope="session")
def asgi_server_2_workers(test_database_url, server_log_dir):
    """As in production on a 2-core machine: two server processes, for benchmarks."""
    env = servers.child_env(test_database_url, PORTAL_TEST_LEASE_SWEEP_SECONDS="2")
    child, base_url = servers.start_asgi_server(env, server_log_dir, workers=2)
    yield base_url
    child.stop()


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """A random 2-layer Llama with a character tokenizer, built once per session and shared
    by every app's tests (training, evaluation, the demo and the browser journeys)."""
    from training.services.base_models import runner_call

    # Under the test settings' model root: only folders there may become base models.
    root = Path(settings.TRAINING_MODEL_ROOTS[0])
    directory = Path(tempfile.mkdtemp(prefix="tiny-model-", dir=root)) / "tiny"
    runner_call("build-tiny", str(directory))
    return directory
