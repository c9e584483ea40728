"""A model version with its whole lineage, built through the ORM: a dataset with items,
two annotators' labels (some disagreeing, adjudicated), a base model, a finished job with
logged losses, the version, and a passed regression gate."""

import datetime
import hashlib
import uuid
from dataclasses import dataclass, field

from django.utils import timezone

from annotation.models import (
    Annotation,
    GoldLabel,
    Item,
    LabelSchema,
    Lease,
    Snapshot,
    SnapshotMember,
)
from core.services.audit import audit_record
from evaluation.models import Contestant, Gate, GateRun
from tests.annotation.factories import DatasetFactory, classification_setup
from tests.portal.factories import UserFactory
from training.models import BaseModel, ModelVersion, TrainingJob, TrainingMetric

T0 = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)


@dataclass
class LineageFixture:
    version: ModelVersion
    job: TrainingJob
    base_model: BaseModel
    dataset: object
    items: list[Item]
    annotators: list = field(default_factory=list)
    snapshot: object = None
    gate_run: GateRun | None = None


def annotated_items(project, *, n_items, annotators, disagree_every=5, schema=None, per_item=2):
    """Each item labelled by `per_item` annotators; on every `disagree_every`-th item the
    second disagrees and the item is adjudicated. Bulk-created, for benchmarks too."""
    schema = schema or classification_setup(project)
    dataset = DatasetFactory(project=project, created_by=project.created_by, row_count=n_items)
    items = Item.objects.bulk_create(
        Item(
            project=project,
            dataset=dataset,
            row_number=i + 1,
            external_id=f"row-{i + 1}",
            payload={"text": f"ticket {i}"},
            content_hash=hashlib.sha256(f"ticket {i}".encode()).hexdigest(),
            state=Item.State.RESOLVED,
            label_count=per_item,
            assigned_count=per_item,
        )
        for i in range(n_items)
    )
    leases, answers, golds = [], [], []
    for i, item in enumerate(items):
        pair = [annotators[(i + k) % len(annotators)] for k in range(per_item)]
        disagree = i % disagree_every == 0
        for j, user in enumerate(pair):
            label = "neg" if disagree and j == 1 else "pos"
            lease = Lease(
                project=project,
                item=item,
                annotator=user,
                state=Lease.State.SUBMITTED,
                schema=schema,
                created_at=T0,
                expires_at=T0,
            )
            leases.append(lease)
            answers.append(
                Annotation(
                    project=project,
                    item=item,
                    annotator=user,
                    value={"labels": [label]},
                    schema=schema,
                    submission_id=uuid.uuid4(),
                    lease=lease,
                    started_at=T0,
                    submitted_at=T0,
                    seconds_spent=3.0,
                )
            )
        golds.append(
            GoldLabel(
                project=project,
                item=item,
                value={"labels": ["pos"]},
                method=GoldLabel.Method.ADJUDICATED if disagree else GoldLabel.Method.UNANIMOUS,
                decided_by=annotators[0] if disagree else None,
                reason="matches the guideline's example 2" if disagree else "",
            )
        )
    Lease.objects.bulk_create(leases, batch_size=5000)
    Annotation.objects.bulk_create(answers, batch_size=5000)
    GoldLabel.objects.bulk_create(golds, batch_size=5000)
    return dataset, items, schema


def snapshot_of(project, items, *, actor, schema: LabelSchema):
    golds = dict(GoldLabel.objects.filter(item__in=items).values_list("item_id", "method"))
    manifest = hashlib.sha256("".join(i.content_hash for i in items).encode()).hexdigest()
    snapshot = Snapshot.objects.create(
        project=project,
        name="support-v1",
        version=1,
        task_type=schema.task_type,
        seed=0,
        split_ratios={"train": 0.8, "validation": 0.1, "test": 0.1},
        filter={},
        member_count=len(items),
        manifest_sha256=manifest,
        stats={},
        created_by=actor,
        created_at=timezone.now(),
    )
    SnapshotMember.objects.bulk_create(
        (
            SnapshotMember(
                snapshot=snapshot,
                position=n,
                item=item,
                content_hash=item.content_hash,
                label={"labels": ["pos"]},
                method=golds.get(item.pk, "unanimous"),
                split="train" if n % 10 < 8 else ("validation" if n % 10 == 8 else "test"),
            )
            for n, item in enumerate(items)
        ),
        batch_size=5000,
    )
    return snapshot


def lineage_fixture(project, engineer, *, n_items=20, n_annotators=3, per_item=2) -> LineageFixture:
    annotators = [UserFactory(username=f"annotator-{n}") for n in range(n_annotators)]
    dataset, items, schema = annotated_items(
        project, n_items=n_items, annotators=annotators, per_item=per_item
    )
    snapshot = snapshot_of(project, items, actor=engineer, schema=schema)
    base = BaseModel.objects.create(
        project=project,
        name="tiny-llama",
        source=BaseModel.Source.LOCAL,
        path="/models/tiny",
        architecture="LlamaForCausalLM",
        parameter_count=1_000_000,
        tokenizer="tiny",
        license="Apache-2.0",
        weights_sha256="b" * 64,
    )
    job = TrainingJob.objects.create(
        project=project,
        name="sft support",
        kind="sft",
        method="lora",
        base_model=base,
        snapshot=snapshot,
        manifest_sha256=snapshot.manifest_sha256,
        config={"learning_rate": 0.0002, "epochs": 2, "lora": {"r": 8}},
        seed=1234,
        status="succeeded",
        environment={"torch": "2.13.0", "device": "cpu"},
        checkpoint_sha256={"adapter_model.safetensors": "c" * 64},
        created_by=engineer,
        finished_at=T0,
    )
    TrainingMetric.objects.bulk_create(
        TrainingMetric(job=job, step=step, values={"loss": 2.0 / step, "learning_rate": 2e-4})
        for step in range(1, 11)
    )
    version = ModelVersion.objects.create(
        project=project,
        name="support-bot v1",
        base_model=base,
        job=job,
        kind="adapter",
        path="/models/out",
        base_weights_sha256=base.weights_sha256,
        checkpoint_sha256={"adapter_model.safetensors": "c" * 64, "adapter_config.json": "d" * 64},
        metrics={"final_train_loss": 0.2},
    )
    # What training's registry records for a new version.
    audit_record(
        actor=None,
        action="training.model_version.create",
        target=version,
        data={"job": job.pk, "files": version.checkpoint_sha256},
    )
    return LineageFixture(
        version=version,
        job=job,
        base_model=base,
        dataset=dataset,
        items=items,
        annotators=annotators,
        snapshot=snapshot,
    )


def gate_passed(version: ModelVersion, actor, *, passed=True) -> GateRun:
    gate, _ = Gate.objects.get_or_create(
        project=version.project,
        name="no regression",
        defaults={"checks": [{"kind": "no_fairness_flag", "prompt_set": 1}], "created_by": actor},
    )
    candidate, _ = Contestant.objects.get_or_create(
        project=version.project,
        label=version.name,
        defaults={"model_version": version, "created_by": actor},
    )
    baseline, _ = Contestant.objects.get_or_create(
        project=version.project, label="base", defaults={"created_by": actor}
    )
    return GateRun.objects.create(
        gate=gate,
        candidate=candidate,
        baseline=baseline,
        model_version_id=version.pk,
        passed=passed,
        results=[
            {
                "name": "no fairness flag",
                "kind": "no_fairness_flag",
                "passed": passed,
                "numbers": {},
                "reason": "no flags" if passed else "flagged groups: es",
            }
        ],
        created_by=actor,
        created_at=timezone.now(),
    )


@dataclass
class FullLineage:
    lineage: LineageFixture
    tuned: Contestant
    baseline: Contestant
    campaign: object
    gate_run: GateRun
    signoffs: list = field(default_factory=list)


LONG_JOB_NAME = "LoRA fine-tune on the customer help desk tickets, second round"


def full_lineage(project, engineer, compliance, reviewer) -> FullLineage:
    """Everything a dossier reports, made through the services where they exist: dataset ->
    snapshot -> job (a real resolved LoRA config, a long name) -> version -> offline
    metrics, a judged pairwise campaign and a passed gate -> declaration, both sign-offs,
    a download of an earlier build, and the promotion to canary."""
    from evaluation import services as evaluation
    from evaluation.services.offline import metric_run_execute
    from governance.services.approvals import signoff_record, use_declaration_set
    from governance.services.dossiers import dossier_download_record, dossier_request
    from governance.services.stages import model_version_stage_change
    from tests.evaluation.factories import contestant_with_outputs, prompt_rows
    from training.presets import resolve_config

    fixture = lineage_fixture(project, engineer)
    TrainingJob.objects.filter(pk=fixture.job.pk).update(
        name=LONG_JOB_NAME,
        config=resolve_config(
            kind="sft", method="lora", values={"learning_rate": 2e-4, "seed": 1234}
        ),
    )
    fixture.job.refresh_from_db()
    rows = prompt_rows(12)
    prompt_set = evaluation.prompt_set_create(
        actor=engineer, project=project, name="held-out tickets", rows=rows
    )
    refs = [r["reference"] for r in rows]
    tuned = contestant_with_outputs(
        engineer, project, prompt_set, fixture.version.name, refs, fixture.version
    )
    baseline = contestant_with_outputs(
        engineer,
        project,
        prompt_set,
        "tiny-llama (base)",
        [f"Parcel {i} is somewhere, I think." for i in range(len(rows))],
    )
    for contestant in (tuned, baseline):
        run = evaluation.metric_run_start(
            actor=engineer, contestant=contestant, prompt_set=prompt_set
        )
        metric_run_execute(run_id=run.pk)
    campaign = evaluation.campaign_create(
        actor=engineer,
        project=project,
        name="tickets duel",
        prompt_set=prompt_set,
        contestants=[tuned, baseline],
        attention_every=0,
    )
    while (j := evaluation.judgment_next(campaign=campaign, reviewer=reviewer)) is not None:
        evaluation.judgment_submit(
            campaign=campaign,
            reviewer=reviewer,
            token=j.token,
            outcome="a" if j.contestant_left_id == tuned.pk else "b",
            seconds_spent=20.0,
        )
    gate = evaluation.gate_create(
        actor=engineer,
        project=project,
        name="release gate",
        checks=[
            {"kind": "metric_not_worse", "metric": "token_f1", "prompt_set": prompt_set.pk},
            {"kind": "rating_above_baseline", "campaign": campaign.pk, "min_judgments": 5},
        ],
    )
    gate_run = evaluation.gate_run(actor=engineer, gate=gate, candidate=tuned, baseline=baseline)
    use_declaration_set(
        actor=engineer,
        version=fixture.version,
        intended_use="Drafting replies to customer support tickets, reviewed by staff.",
        limitations="English only.",
        out_of_scope="Legal or medical advice.",
        license="Apache-2.0",
        commercial_use=True,
    )
    signoffs = [
        signoff_record(
            actor=engineer,
            version=fixture.version,
            role="engineering_lead",
            decision="approve",
            comment="Loss curve and gate reviewed.",
        ),
        signoff_record(
            actor=compliance,
            version=fixture.version,
            role="compliance",
            decision="approve",
            comment="Datasheets and licenses reviewed.",
        ),
    ]
    earlier = dossier_request(actor=compliance, version=fixture.version, run_now=True)
    dossier_download_record(
        actor=compliance, dossier=earlier, ip_address="192.0.2.7", user_agent="pytest"
    )
    model_version_stage_change(
        actor=engineer, version=fixture.version, to_stage="canary", reason="Gate and sign-offs in."
    )
    fixture.version.refresh_from_db()
    return FullLineage(fixture, tuned, baseline, campaign, gate_run, signoffs)


def dpo_version(fixture: LineageFixture, actor) -> ModelVersion:
    """A second version, trained (as DPO) from the fixture's version on the same snapshot,
    so its lineage holds two versions and two jobs."""
    job = TrainingJob.objects.create(
        project=fixture.version.project,
        name="dpo support",
        kind="dpo",
        method="lora",
        base_model=fixture.base_model,
        parent_version=fixture.version,
        snapshot=fixture.snapshot,
        manifest_sha256=fixture.snapshot.manifest_sha256,
        config={"beta": 0.1, "lora": {"r": 4}},
        seed=7,
        status="succeeded",
        created_by=actor,
    )
    # A logged flag and a note are not curves; only the loss is.
    TrainingMetric.objects.create(job=job, step=1, values={"loss": 0.5, "done": True, "n": "x"})
    return ModelVersion.objects.create(
        project=fixture.version.project,
        name="support-bot v2",
        base_model=fixture.base_model,
        job=job,
        parent=fixture.version,
        kind="adapter",
        task="dpo",
        path="/models/dpo",
        base_weights_sha256=fixture.base_model.weights_sha256,
        checkpoint_sha256={"b.bin": "2" * 64, "a.bin": "1" * 64},
    )
