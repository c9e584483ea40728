"""The dossier's lineage is assembled from each app's own lineage section, in the shape
lineage.json has always had, and governance reaches the other apps only through their
selectors and services."""

import grimp
import pytest

from annotation.models import DatasetUpload
from core.services.audit import audit_record
from governance.dossier.collect import dossier_inputs
from tests.governance.factories import dpo_version, gate_passed, lineage_fixture
from tests.portal.factories import ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db

DOMAIN_APPS = ("annotation", "training", "evaluation")


@pytest.fixture
def chain(project, engineer):
    fixture = lineage_fixture(project, engineer, n_items=5)
    fixture.child = dpo_version(fixture, engineer)
    return fixture


def _version_row(version, *, task, parent, checkpoint, metrics):
    return {
        "id": version.pk,
        "name": version.name,
        "kind": "adapter",
        "task": task,
        "stage": "candidate",
        "base_model": version.base_model_id,
        "parent": parent,
        "job": version.job_id,
        "base_weights_sha256": "b" * 64,
        "checkpoint_sha256": checkpoint,
        "metrics": metrics,
        "created_at": version.created_at.isoformat(),
    }


def test_the_dossier_lineage_keeps_its_recorded_shape(chain):
    v1, v2 = chain.version, chain.child
    snapshot, dataset, base = chain.snapshot, chain.dataset, chain.base_model
    sft, dpo = chain.job, v2.job

    inputs = dossier_inputs(v2, signing_key_id="key")

    v1_row = _version_row(
        v1,
        task="sft",
        parent=None,
        checkpoint={"adapter_config.json": "d" * 64, "adapter_model.safetensors": "c" * 64},
        metrics={"final_train_loss": 0.2},
    )
    v2_row = _version_row(
        v2, task="dpo", parent=v1.pk, checkpoint={"a.bin": "1" * 64, "b.bin": "2" * 64}, metrics={}
    )
    assert inputs["version"] == v2_row
    assert inputs["lineage"] == {
        "versions": [v1_row, v2_row],
        "jobs": [
            {
                "id": sft.pk,
                "name": "sft support",
                "kind": "sft",
                "method": "lora",
                "status": "succeeded",
                "base_model": base.pk,
                "parent_version": None,
                "reward_version": None,
                "snapshot": snapshot.pk,
                "manifest_sha256": snapshot.manifest_sha256,
                "data": {},
                "config": {"learning_rate": 0.0002, "epochs": 2, "lora": {"r": 8}},
                "settings": {"epochs": 2, "learning_rate": 0.0002, "lora": {"r": 8}},
                "seed": 1234,
                "environment": {"torch": "2.13.0", "device": "cpu"},
                "checkpoint_sha256": {"adapter_model.safetensors": "c" * 64},
                "result": {},
                "curves": {
                    "learning_rate": [[step, 2e-4] for step in range(1, 11)],
                    "loss": [[step, 2.0 / step] for step in range(1, 11)],
                },
                "created_at": sft.created_at.isoformat(),
                "finished_at": "2026-03-01T12:00:00+00:00",
            },
            {
                "id": dpo.pk,
                "name": "dpo support",
                "kind": "dpo",
                "method": "lora",
                "status": "succeeded",
                "base_model": base.pk,
                "parent_version": v1.pk,
                "reward_version": None,
                "snapshot": snapshot.pk,
                "manifest_sha256": snapshot.manifest_sha256,
                "data": {},
                "config": {"beta": 0.1, "lora": {"r": 4}},
                "settings": {"beta": 0.1, "lora": {"r": 4}},
                "seed": 7,
                "environment": {},
                "checkpoint_sha256": {},
                "result": {},
                "curves": {"loss": [[1, 0.5]]},
                "created_at": dpo.created_at.isoformat(),
                "finished_at": None,
            },
        ],
        "base_models": [
            {
                "id": base.pk,
                "name": "tiny-llama",
                "source": "local",
                "architecture": "LlamaForCausalLM",
                "parameter_count": 1_000_000,
                "license": "Apache-2.0",
                "weights_sha256": "b" * 64,
            }
        ],
        "snapshots": [
            {
                "id": snapshot.pk,
                "name": "support-v1",
                "version": 1,
                "task_type": "classification",
                "seed": 0,
                "split_ratios": {"train": 0.8, "validation": 0.1, "test": 0.1},
                "filter": {},
                "member_count": 5,
                "manifest_sha256": snapshot.manifest_sha256,
                "stats": {},
                "created_at": snapshot.created_at.isoformat(),
            }
        ],
        "datasets": [
            {
                "id": dataset.pk,
                "name": dataset.name,
                "file_name": "rows.jsonl",
                "file_format": "jsonl",
                "file_sha256": dataset.file_sha256,
                "file_bytes": 100,
                "rows": 5,
                "source_description": "Support tickets, 2025",
                "license": "CC-BY-4.0",
                "consent_basis": "terms of service",
                "collection_date": "2025-01-01",
                "synthetic": False,
                "prompt_synthetic": False,
                "response_synthetic": False,
                "synthetic_share": {
                    "rows": 5,
                    "prompt": {"rows": 0, "share": 0.0},
                    "response": {"rows": 0, "share": 0.0},
                },
                "created_at": dataset.created_at.isoformat(),
            }
        ],
        "edges": sorted(
            [
                [f"base:{base.pk}", f"version:{v1.pk}", "base model"],
                [f"base:{base.pk}", f"version:{v2.pk}", "base model"],
                [f"dataset:{dataset.pk}", f"snapshot:{snapshot.pk}", "items"],
                [f"job:{sft.pk}", f"version:{v1.pk}", "produced"],
                [f"job:{dpo.pk}", f"version:{v2.pk}", "produced"],
                [f"snapshot:{snapshot.pk}", f"job:{sft.pk}", "training data"],
                [f"snapshot:{snapshot.pk}", f"job:{dpo.pk}", "training data"],
                [f"version:{v1.pk}", f"job:{dpo.pk}", "trained from"],
                [f"version:{v1.pk}", f"version:{v2.pk}", "parent"],
            ]
        ),
    }


def test_the_audit_excerpt_covers_every_apps_part_and_nothing_else(chain, engineer):
    upload = DatasetUpload.objects.create(
        project=chain.version.project,
        file_name="rows.jsonl",
        dataset=chain.dataset,
        created_by=engineer,
    )
    parent_gate = gate_passed(chain.version, engineer)
    other_project = ProjectFactory()
    outsider = UserFactory()
    for target in (chain.snapshot, chain.dataset, upload, parent_gate, chain.child.job):
        audit_record(actor=engineer, action="test.touch", target=target)
    audit_record(actor=engineer, action="test.touch", target=other_project)
    audit_record(actor=engineer, action="test.touch", target=outsider)

    events = dossier_inputs(chain.child, signing_key_id="key")["audit"]["events"]

    touched = {(e["target_type"], e["target_id"]) for e in events if e["action"] == "test.touch"}
    assert touched == {
        ("annotation.snapshot", str(chain.snapshot.pk)),
        ("annotation.dataset", str(chain.dataset.pk)),
        ("annotation.datasetupload", str(upload.pk)),
        ("evaluation.gaterun", str(parent_gate.pk)),
        ("training.trainingjob", str(chain.child.job_id)),
    }
    assert ("training.modelversion", str(chain.version.pk)) in {
        (e["target_type"], e["target_id"]) for e in events
    }


def test_governance_reads_other_apps_only_through_their_selectors_and_services():
    graph = grimp.build_graph("governance", *DOMAIN_APPS, "core", "portal")
    reached = {
        (importer, imported)
        for importer in graph.find_descendants("governance")
        for imported in graph.find_modules_directly_imported_by(importer)
        if imported.split(".")[0] in DOMAIN_APPS
    }
    behind_interfaces = {
        (importer, imported)
        for importer, imported in reached
        if imported.split(".")[1:2] in (["selectors"], ["services"])
        # The stage-change service is the one writer of a version's stage.
        or (importer, imported) == ("governance.services.stages", "training.models")
    }

    assert reached
    assert reached == behind_interfaces
