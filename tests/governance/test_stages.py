import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

import evaluation.services
import training.services
from core.models import AuditEvent
from core.services.audit import audit_chain_verify
from governance.dossier.collect import audit_excerpt, lineage_sections, lineage_targets
from governance.models import StageChange
from governance.services.approvals import signoff_record
from governance.services.stages import model_version_rollback, model_version_stage_change
from tests.governance.factories import gate_passed, lineage_fixture
from training.models import ModelVersion
from training.services import registry

pytestmark = pytest.mark.django_db


@pytest.fixture
def lead(member_of):
    return member_of("engineer", "lead")


@pytest.fixture
def first(project, engineer):
    return lineage_fixture(project, engineer, n_items=3).version


@pytest.fixture
def approve(engineer, lead, compliance):
    def signed(version, *, gate=True):
        if gate:
            gate_passed(version, engineer)
        for actor, role in ((lead, "engineering_lead"), (compliance, "compliance")):
            signoff_record(
                actor=actor, version=version, role=role, decision="approve", comment="ok"
            )
        return version

    return signed


def _another(first, name):
    return ModelVersion.objects.create(
        project=first.project,
        name=name,
        base_model=first.base_model,
        kind="adapter",
        path=f"/models/{name}",
        base_weights_sha256=first.base_weights_sha256,
    )


def _to_production(version, engineer):
    model_version_stage_change(actor=engineer, version=version, to_stage="canary")
    model_version_stage_change(actor=engineer, version=version, to_stage="production")


def _events_after(seq):
    return list(AuditEvent.objects.filter(seq__gt=seq))


def test_a_promotion_writes_one_audit_event_and_one_stage_change(first, approve, engineer):
    approve(first)
    seq = AuditEvent.objects.count()

    model_version_stage_change(actor=engineer, version=first, to_stage="canary", reason="ok")

    [event] = _events_after(seq)
    change = StageChange.objects.get()
    assert event.action == "governance.version.promote"
    assert event.target_id == str(first.pk)
    assert (change.from_stage, change.to_stage, change.kind) == ("candidate", "canary", "promote")
    assert change.audit_seq == event.seq
    assert ModelVersion.objects.get(pk=first.pk).stage == "canary"


def test_promotion_to_production_archives_the_holder_within_its_one_event(first, approve, engineer):
    second = approve(_another(approve(first), "v2"))
    _to_production(first, engineer)
    model_version_stage_change(actor=engineer, version=second, to_stage="canary")
    seq = AuditEvent.objects.count()

    model_version_stage_change(actor=engineer, version=second, to_stage="production")

    [event] = _events_after(seq)
    assert event.data["archived"] == [first.pk]
    changes = StageChange.objects.filter(audit_seq=event.seq).order_by("id")
    assert [(c.model_version_id, c.to_stage, c.kind) for c in changes] == [
        (second.pk, "production", "promote"),
        (first.pk, "archived", "archive"),
    ]
    assert ModelVersion.objects.get(pk=first.pk).stage == "archived"


def test_a_rollback_writes_one_audit_event_for_both_versions(first, approve, engineer, project):
    second = approve(_another(approve(first), "v2"))
    for v in (first, second):
        _to_production(v, engineer)
    seq = AuditEvent.objects.count()

    restored = model_version_rollback(actor=engineer, project=project, reason="v2 is worse")

    [event] = _events_after(seq)
    assert event.action == "governance.version.rollback"
    assert restored.pk == first.pk
    changes = StageChange.objects.filter(audit_seq=event.seq).order_by("id")
    assert [(c.model_version_id, c.from_stage, c.to_stage) for c in changes] == [
        (second.pk, "production", "archived"),
        (first.pk, "archived", "production"),
    ]


@pytest.mark.parametrize(
    "case", ["no gate run", "failed gate", "missing sign-off", "rejected", "skips canary"]
)
def test_a_refused_promotion_changes_nothing(case, first, approve, engineer, lead, compliance):
    to_stage = "canary"
    if case in ("no gate run", "failed gate"):
        approve(first, gate=False)
        if case == "failed gate":
            gate_passed(first, engineer, passed=False)
    elif case == "skips canary":
        approve(first)
        to_stage = "production"
    else:
        gate_passed(first, engineer)
        signer, role, decision = (
            (lead, "engineering_lead", "approve")
            if case == "missing sign-off"
            else (compliance, "compliance", "reject")
        )
        signoff_record(actor=signer, version=first, role=role, decision=decision, comment="x")
    seq = AuditEvent.objects.count()

    with pytest.raises(ValidationError):
        model_version_stage_change(actor=engineer, version=first, to_stage=to_stage)

    assert _events_after(seq) == []
    assert not StageChange.objects.exists()
    assert ModelVersion.objects.get(pk=first.pk).stage == "candidate"


def test_only_the_version_that_held_production_last_can_be_restored(first, approve, engineer):
    second = approve(_another(approve(first), "v2"))
    third = approve(_another(first, "v3"))
    for v in (first, second, third):
        _to_production(v, engineer)
    seq = AuditEvent.objects.count()
    changes = StageChange.objects.count()

    with pytest.raises(ValidationError, match="only the version that held it before v3"):
        model_version_stage_change(
            actor=engineer, version=first, to_stage="production", reason="v3 is worse"
        )

    assert _events_after(seq) == []
    assert StageChange.objects.count() == changes
    assert ModelVersion.objects.get(pk=first.pk).stage == "archived"
    assert ModelVersion.objects.get(pk=third.pk).stage == "production"


def test_no_service_below_governance_sets_a_stage():
    assert not hasattr(registry, "model_version_set_stage")
    assert not hasattr(training.services, "model_version_set_stage")
    assert not hasattr(evaluation.services, "model_version_promote")


def test_an_archived_versions_dossier_excerpt_holds_the_event_that_archived_it(
    first, approve, engineer
):
    second = approve(_another(approve(first), "v2"))
    for v in (first, second):
        _to_production(v, engineer)
    archiving = AuditEvent.objects.filter(action="governance.version.promote").last()

    first.refresh_from_db()
    sections = lineage_sections(first)
    excerpt = audit_excerpt(lineage_targets(*sections), version_ids=sections[0].version_ids)

    assert archiving.target_id == str(second.pk)
    assert archiving.data["archived"] == [first.pk]
    assert archiving.seq in [e["seq"] for e in excerpt]


def _race(work, *args):
    barrier = threading.Barrier(len(args))
    outcomes = {}

    def run(arg):
        try:
            barrier.wait(timeout=30)
            outcomes[arg] = work(arg)
        except Exception as error:  # noqa: BLE001 - reported below
            outcomes[arg] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(a,)) for a in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


@pytest.mark.django_db(transaction=True)
def test_concurrent_promotions_of_one_version_move_it_once(first, approve, engineer):
    approve(first)
    seq = AuditEvent.objects.count()

    outcomes = _race(
        lambda n: model_version_stage_change(
            actor=engineer, version=first, to_stage="canary", reason=f"try {n}"
        ),
        1,
        2,
    )

    refused = [o for o in outcomes.values() if isinstance(o, Exception)]
    assert len(refused) == 1, outcomes
    assert isinstance(refused[0], ValidationError)
    assert "it can only move to production" in str(refused[0])
    assert ModelVersion.objects.get(pk=first.pk).stage == "canary"
    assert list(StageChange.objects.values_list("from_stage", "to_stage")) == [
        ("candidate", "canary")
    ]
    assert [e.action for e in _events_after(seq)] == ["governance.version.promote"]
    assert audit_chain_verify().ok


@pytest.mark.django_db(transaction=True)
def test_concurrent_promotions_to_production_leave_one_version_there(
    first, approve, engineer, project
):
    second = approve(_another(approve(first), "v2"))
    base = approve(_another(first, "v0"))
    _to_production(base, engineer)
    for v in (first, second):
        model_version_stage_change(actor=engineer, version=v, to_stage="canary")

    outcomes = _race(
        lambda v: model_version_stage_change(actor=engineer, version=v, to_stage="production"),
        first,
        second,
    )

    assert not [o for o in outcomes.values() if isinstance(o, Exception)], outcomes
    winner = ModelVersion.objects.get(project=project, stage="production")
    loser = first if winner.pk == second.pk else second
    archived = StageChange.objects.filter(kind="archive").order_by("id")
    assert [c.model_version_id for c in archived] == [base.pk, loser.pk]
    assert audit_chain_verify().ok
