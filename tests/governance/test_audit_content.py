"""The audit log names content by id and sha256, never by the content itself: a test that
runs the services which take free text with a sentinel in every text and file, then looks
for the sentinel in every event's data."""

import io
import json
import uuid

import pytest

from annotation import services as annotation
from annotation.models import AnnotationSettings, DatasetUpload, LabelSchema
from annotation.schemas import normalize_config
from annotation.services.datasets import dataset_import_run, dataset_upload_create
from annotation.services.quality import pii_rule_add
from core import services as portal
from core.models import AuditEvent
from core.services.audit import content_hash
from evaluation import services as evaluation
from governance.services.approvals import signoff_record
from governance.services.stages import model_version_rollback, model_version_stage_change
from tests.annotation.factories import ItemFactory
from tests.annotation.test_datasets import PROVENANCE
from tests.evaluation.factories import contestant_with_outputs
from tests.governance.factories import gate_passed, lineage_fixture
from tests.portal.factories import MembershipFactory, ProjectFactory, UserFactory
from training import services as training
from training.models import ModelVersion

pytestmark = pytest.mark.django_db

SENTINEL = "Jane-Q-Sentinel-4711"


def _member(project, role, username):
    return MembershipFactory(project=project, role=role, user=UserFactory(username=username)).user


def _writing_project(project, engineer):
    AnnotationSettings.objects.update_or_create(
        project=project,
        defaults={"labels_per_item": 2, "agreement_rule": "unanimous", "majority_min": 2},
    )
    LabelSchema.objects.create(
        project=project,
        version=1,
        task_type="writing",
        config=normalize_config("writing", {"mode": "write", "prompt_field": "instruction"}),
        created_by=engineer,
    )
    for i in range(3):
        ItemFactory(project=project, dataset__project=project, payload={"instruction": f"q{i}"})


def _answer_all(project, user, text):
    while (offer := annotation.item_lease_next(project=project, annotator=user)) is not None:
        annotation.annotation_submit(
            project=project,
            lease_id=offer.lease.pk,
            annotator=user,
            value={"response": f"{text} {offer.item.pk}"},
            submission_id=uuid.uuid4(),
        )


def _run_every_free_text_service(project, engineer, member_of, admin):
    # Portal: a person's name, a project description.
    person = portal.user_create(
        username=f"{SENTINEL}-user", password="x", created_by=admin, validate=False
    )
    portal.membership_add(project=project, user=person, role="annotator", added_by=admin)
    portal.project_update(project=project, updated_by=admin, description=f"About {SENTINEL}")

    # Annotation (in a project of its own: governance's lineage below has its schema): an
    # upload (content and file name), a failed import, answers, a skip, an adjudication.
    labelled = ProjectFactory(name="labelling")
    uploader = _member(labelled, "engineer", "uploader")
    upload = dataset_upload_create(
        project=labelled,
        uploaded_by=uploader,
        file=io.BytesIO(json.dumps({"instruction": SENTINEL}).encode() + b"\n"),
        file_name=f"{SENTINEL}.jsonl",
        provenance=PROVENANCE,
        run_now=True,
    )
    dataset_import_run(upload_id=upload.pk)
    pii_rule_add(actor=uploader, project=labelled, name="PATIENT", pattern=SENTINEL)
    broken = dataset_upload_create(
        project=labelled,
        uploaded_by=uploader,
        file=io.BytesIO(b'{"text": "' + SENTINEL.encode() + b'"\n'),
        file_name="broken.jsonl",
        provenance=PROVENANCE,
        run_now=True,
    )
    dataset_import_run(upload_id=broken.pk)
    assert DatasetUpload.objects.get(pk=broken.pk).status == DatasetUpload.Status.FAILED
    _writing_project(labelled, uploader)
    skipper = _member(labelled, "annotator", "w0")
    offer = annotation.item_lease_next(project=labelled, annotator=skipper)
    annotation.item_skip(
        project=labelled, lease_id=offer.lease.pk, annotator=skipper, reason=f"{SENTINEL} skip"
    )
    _answer_all(labelled, _member(labelled, "annotator", "w1"), f"{SENTINEL} one")
    _answer_all(labelled, _member(labelled, "annotator", "w2"), f"{SENTINEL} two")
    adjudicator = _member(labelled, "adjudicator", "judge")
    lease = annotation.adjudication_lease_next(project=labelled, adjudicator=adjudicator)
    annotation.adjudication_resolve(
        project=labelled,
        item_id=lease.item_id,
        adjudicator=adjudicator,
        value={"response": f"{SENTINEL} gold"},
        reason=f"{SENTINEL} reason",
    )

    # Training: an uploaded training file (name and content).
    training.training_file_store(
        project=project,
        upload=io.BytesIO(SENTINEL.encode()),
        name=f"{SENTINEL}.jsonl",
        actor=engineer,
    )

    # Evaluation: prompts, outputs and a reviewer's rationale.
    prompt_set = evaluation.prompt_set_create(
        actor=engineer,
        project=project,
        name="held out",
        rows=[{"prompt": f"{SENTINEL} {i}", "reference": SENTINEL} for i in range(2)],
    )
    contestants = [
        contestant_with_outputs(
            engineer, project, prompt_set, f"c{c}", [f"{SENTINEL} {c}{i}" for i in range(2)]
        )
        for c in range(2)
    ]
    campaign = evaluation.campaign_create(
        actor=engineer,
        project=project,
        name="round",
        prompt_set=prompt_set,
        contestants=contestants,
        attention_every=0,
    )
    reviewer = member_of("reviewer", "rev")
    judgment = evaluation.judgment_next(campaign=campaign, reviewer=reviewer)
    evaluation.judgment_submit(
        campaign=campaign,
        reviewer=reviewer,
        token=judgment.token,
        outcome="a",
        rationale=f"{SENTINEL} rationale",
    )

    # Governance: sign-off comments, a promotion and a rollback with reasons.
    lead, compliance = member_of("engineer", "lead"), member_of("compliance", "officer")
    first_version = lineage_fixture(project, engineer, n_items=3).version
    second_version = ModelVersion.objects.create(
        project=project,
        name="v2",
        base_model=first_version.base_model,
        kind="adapter",
        path="/models/v2",
        base_weights_sha256=first_version.base_weights_sha256,
    )
    for version in (first_version, second_version):
        gate_passed(version, engineer)
        for actor, role in ((lead, "engineering_lead"), (compliance, "compliance")):
            signoff_record(
                actor=actor,
                version=version,
                role=role,
                decision="approve",
                comment=f"{SENTINEL} checked",
            )
        model_version_stage_change(actor=engineer, version=version, to_stage="canary")
        model_version_stage_change(actor=engineer, version=version, to_stage="production")
    model_version_rollback(actor=engineer, project=project, reason=f"{SENTINEL} rollback")


def test_no_service_writes_free_text_into_the_audit_log(project, engineer, member_of, admin):
    _run_every_free_text_service(project, engineer, member_of, admin)

    leaked = [
        (e.action, e.data)
        for e in AuditEvent.objects.order_by("seq")
        if SENTINEL in json.dumps(e.data, ensure_ascii=False)
    ]
    assert leaked == []
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {
        "user.create",
        "membership.add",
        "project.update",
        "dataset.upload",
        "dataset.import.failed",
        "annotation.submit",
        "annotation.skip",
        "annotation.gold.adjudicate",
        "pii_rule.add",
        "training.file.upload",
        "evaluation.judgment.submit",
        "governance.signoff.record",
        "governance.version.rollback",
    } <= actions


def test_events_name_free_text_by_its_sha256(project, engineer, member_of, admin):
    _run_every_free_text_service(project, engineer, member_of, admin)

    adjudicated = AuditEvent.objects.get(action="annotation.gold.adjudicate").data
    assert adjudicated["reason_sha256"] == content_hash(f"{SENTINEL} reason")
    assert adjudicated["value_sha256"] == content_hash({"response": f"{SENTINEL} gold"})
    rollback = AuditEvent.objects.get(action="governance.version.rollback").data
    assert rollback["reason_sha256"] == content_hash(f"{SENTINEL} rollback")
