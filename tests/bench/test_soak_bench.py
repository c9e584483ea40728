"""The soak: 32 annotators for ten minutes on a 1M-item project while a training job and
dossier builds run on the worker. Zero errors, zero over-assigned items, the server's memory
flat. `PORTAL_SOAK_SECONDS` and `PORTAL_SOAK_ITEMS` shorten it for a trial run."""

import json
import os
import statistics
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest
from django.db.models import Count

from annotation.models import Annotation, Item
from core.models import JOB_ACTIVE, JobStatus
from core.services.audit import audit_chain_verify
from governance.models import Dossier
from governance.services.approvals import use_declaration_set
from governance.services.dossiers import dossier_request
from tests.annotation.factories import classification_setup
from tests.bench.test_annotation_bench import Client, import_generated_rows
from tests.governance.factories import gate_passed, lineage_fixture
from tests.portal.factories import MembershipFactory, ProjectFactory, UserFactory, api_key_for
from tests.training.conftest import QUICK, sft_rows
from training import services as training
from training.models import TrainingJob

pytestmark = pytest.mark.django_db(transaction=True)

SECONDS = float(os.environ.get("PORTAL_SOAK_SECONDS", "600"))
ITEMS = int(os.environ.get("PORTAL_SOAK_ITEMS", "1000000"))
ANNOTATORS = 32


def _server_processes(base_url: str) -> list[psutil.Process]:
    """The uvicorn processes behind `base_url`: the supervisor and its workers."""
    port = str(urlsplit(base_url).port)
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "uvicorn" in " ".join(cmdline) and port in cmdline:
            found.append(proc)
            found.extend(proc.children(recursive=True))
    assert found, f"no uvicorn process serves {base_url}"
    return found


def _rss_mb(processes: list[psutil.Process]) -> float:
    return sum(p.memory_info().rss for p in processes if p.is_running()) / 2**20


def _start_training(engineer, project, tiny_model_dir: Path, folder: Path) -> TrainingJob:
    train = folder / "soak_train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in sft_rows(256)))
    base = training.base_model_register(
        actor=None, project=None, name="tiny-llama", source="local", path=str(tiny_model_dir)
    )
    # Long enough to outlast the soak; cancelled at the end.
    values = {**QUICK, "max_steps": 1_000_000, "save_steps": 200}
    return training.training_job_create(
        actor=engineer,
        project=project,
        name="soak sft",
        kind="sft",
        method="lora",
        base_model=base,
        values=values,
        train_file=str(train),
        eval_file=None,
    )


# The soak itself, plus a million-row import and the training job's start.
@pytest.mark.timeout(int(SECONDS) + 900)
def test_soak_32_annotators_with_training_and_dossier_builds(
    asgi_server_2_workers, celery_worker, tiny_model_dir, report, tmp_path, project
):
    engineer = UserFactory(username="soak-engineer")
    MembershipFactory(project=project, user=engineer, role="engineer")
    # The background load: a training job on the gpu queue (started first: its pre-flight
    # and smoke run take a while), dossier builds on the default queue.
    job = _start_training(engineer, project, tiny_model_dir, tmp_path)
    import_generated_rows(project, engineer, tmp_path / "soak.jsonl", ITEMS)
    classification_setup(project, k=2)
    tokens = []
    for i in range(ANNOTATORS):
        user = UserFactory(username=f"soak-annotator-{i}")
        MembershipFactory(project=project, user=user, role="annotator")
        tokens.append(api_key_for(user))

    other = ProjectFactory(name="Soak dossier project")
    MembershipFactory(project=other, user=engineer, role="engineer")
    lineage = lineage_fixture(other, engineer, n_items=2000, n_annotators=6, per_item=3)
    gate_passed(lineage.version, engineer)
    use_declaration_set(
        actor=engineer,
        version=lineage.version,
        intended_use="Support replies.",
        license="Apache-2.0",
        commercial_use=True,
    )

    deadline = time.monotonic() + 600
    while not job.metrics.exists():
        job.refresh_from_db()
        assert job.status in JOB_ACTIVE, job.error
        assert time.monotonic() < deadline, "the training job logged no step in 10 minutes"
        time.sleep(1)
    steps_before = job.metrics.count()

    servers = _server_processes(asgi_server_2_workers)
    rss_start = _rss_mb(servers)
    counts = [0] * ANNOTATORS
    timings: list[list[float]] = [[] for _ in range(ANNOTATORS)]
    errors: list[str] = []
    stop_at = time.monotonic() + SECONDS
    barrier = threading.Barrier(ANNOTATORS + 1)

    def annotate(index: int) -> None:
        client = Client(asgi_server_2_workers, tokens[index], project.pk)
        barrier.wait()
        try:
            while time.monotonic() < stop_at:
                t0 = time.perf_counter()
                if not client.round_trip():
                    break
                timings[index].append((time.perf_counter() - t0) * 1000)
                counts[index] += 1
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(f"annotator {index}: {error!r}")

    threads = [threading.Thread(target=annotate, args=(i,)) for i in range(ANNOTATORS)]
    for t in threads:
        t.start()
    barrier.wait()
    dossiers = set()
    rss_samples = [rss_start]
    while time.monotonic() < stop_at:
        built = dossier_request(actor=engineer, version=lineage.version)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            built.refresh_from_db()
            if built.status in (Dossier.Status.SUCCEEDED, Dossier.Status.FAILED):
                break
            time.sleep(0.5)
        assert built.status == Dossier.Status.SUCCEEDED, built.error
        dossiers.add(built.pk)
        # The same inputs give the same dossier back; ask again when the log has grown.
        time.sleep(5)
        rss_samples.append(_rss_mb(servers))
    for t in threads:
        t.join()
    rss_end = _rss_mb(servers)

    job.refresh_from_db()
    training_steps = job.metrics.count() - steps_before
    if job.status == JobStatus.RUNNING:
        training.training_job_cancel(actor=engineer, job=job)

    submissions = sum(counts)
    flat = [t for per_client in timings for t in per_client]
    report("soak_seconds", SECONDS, "s")
    report("soak_annotators", ANNOTATORS, "clients")
    report("soak_submissions_per_s", submissions / SECONDS, "submissions/s")
    report("soak_next_item_submit_p95_ms", statistics.quantiles(flat, n=20)[-1], "ms")
    report("soak_errors", len(errors), "errors")
    report("soak_training_steps_logged", training_steps, "steps")
    report("soak_dossier_builds", len(dossiers), "builds")
    report("soak_server_rss_start_mb", rss_start, "MB")
    report("soak_server_rss_end_mb", rss_end, "MB")
    report("soak_server_rss_max_mb", max(rss_samples + [rss_end]), "MB")
    over = Item.objects.filter(project=project, assigned_count__gt=2).count()
    most = (
        Annotation.objects.filter(item__project=project)
        .values("item")
        .annotate(n=Count("id"))
        .order_by("-n")
        .first()
    )
    report("soak_over_assigned_items", over, "items")

    assert not errors, errors[:3]
    assert over == 0
    assert most is None or most["n"] <= 2
    assert training_steps > 0, "the training job made no progress during the soak"
    assert dossiers
    # Flat: the servers end within 100 MB of where they started.
    assert rss_end - rss_start < 100, (rss_start, rss_end)
    assert audit_chain_verify().ok
