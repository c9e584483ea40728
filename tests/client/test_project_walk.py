"""A whole project walked through the API alone, with the Python client against the live
server and the session's Celery worker: accounts and members, data, two annotators and an
adjudicator, agreement, a snapshot, a tiny SFT job followed live, a generated evaluation with
blind judgments, a regression gate, both sign-offs, the promotion to canary, and the signed
dossier verified by the standalone verifier against the portal's published keys.

Only the setup writes through the ORM: the portal administrator who starts it, the global
tiny base model, and the API keys (a key cannot mint keys; the account page makes them)."""

import json
import zipfile

import pytest
from dossier_verify.keyset import keyset_from_url
from dossier_verify.verify import verify_bundle

from core.models import User
from tests.client.conftest import PROVENANCE
from tests.portal.factories import UserFactory, api_key_for
from tests.training.conftest import QUICK
from tuning_portal import BadRequestError, Client, PermissionDeniedError
from tuning_portal.types import JobStatusEvent

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.celery]

PASSWORD = "walk-through-Passw0rd!"
ROLES = {
    "eng": "engineer",
    "ann1": "annotator",
    "ann2": "annotator",
    "adj": "adjudicator",
    "rev": "reviewer",
    "com": "compliance",
}
TEXTS = ["refund please", "parcel lost", "great service", "app crashes"]
# What each annotator answers per text: they disagree on the third.
ANSWERS = {
    "ann1": ["neg", "neg", "pos", "neg"],
    "ann2": ["neg", "neg", "neg", "neg"],
}


def _label(value: str) -> dict:
    return {"labels": [value]}


def test_a_project_walks_from_upload_to_a_verified_dossier_through_the_api(
    celery_worker, asgi_server, tiny_base_model, tmp_path
):
    staff = UserFactory(username="walk-admin", is_staff=True)
    admin = Client(base_url=asgi_server, api_key=api_key_for(staff))

    # --- accounts, project, members ---------------------------------------------------
    for name in ROLES:
        admin.users.create(username=f"walk-{name}", password=PASSWORD)
    project = admin.projects.create(name="Walk", description="issue 20")
    for name, role in ROLES.items():
        admin.memberships.create(username=f"walk-{name}", role=role, project=project.id)
    members = admin.memberships.list(project=project.id, page_size=2)  # paged by cursor
    assert sorted((m.username, m.role) for m in members) == sorted(
        [("walk-admin", "admin"), ("walk-admin", "engineer")]
        + [(f"walk-{name}", role) for name, role in ROLES.items()]
    )
    as_ = {
        name: Client(
            base_url=asgi_server,
            api_key=api_key_for(User.objects.get(username=f"walk-{name}")),
            project=project.id,
        )
        for name in ROLES
    }
    eng, adj, rev, com = as_["eng"], as_["adj"], as_["rev"], as_["com"]

    # --- data and its annotation --------------------------------------------------------
    eng.schemas.create(
        task_type="classification", config={"choices": ["pos", "neg"], "text_field": "text"}
    )
    settings = eng.annotation.update_settings(labels_per_item=2, agreement_rule="unanimous")
    assert settings.labels_per_item == 2
    data = tmp_path / "tickets.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    upload = eng.datasets.upload(file=data, name="tickets", wait=True, timeout=60, **PROVENANCE)
    assert upload.status == "succeeded", upload.error

    for name, answers in ANSWERS.items():
        task = as_[name].annotation.next()
        while task is not None:
            answer = answers[TEXTS.index(task.payload["text"])]
            task = (
                as_[name].annotation.submit(lease=task.lease, value=_label(answer), next=True).next
            )
    disputed = adj.annotation.adjudication_next()
    assert disputed is not None
    assert disputed.payload["text"] == "great service"
    assert sorted(label["value"]["labels"][0] for label in disputed.labels) == ["neg", "pos"]
    adj.annotation.resolve(
        item=disputed.item, value=_label("pos"), reason="Praise, not a complaint."
    )
    assert adj.annotation.adjudication_next() is None

    [row] = list(eng.annotation.disagreements())
    assert (row.item, row.gold, row.method) == (disputed.item, _label("pos"), "adjudicated")
    agreement = eng.annotation.agreement()
    assert agreement["labels"] == 2 * len(TEXTS)
    assert [q["items"] for q in agreement["questions"].values()] == [len(TEXTS)]

    # --- snapshot and training ------------------------------------------------------------
    snapshot = eng.snapshots.create(
        name="gold", seed=1, split_ratios={"train": 1.0, "validation": 0.0, "test": 0.0}
    )
    assert snapshot.member_count == len(TEXTS)
    [leakage] = [c for c in eng.checks.list() if c.snapshot == snapshot.id]
    assert eng.checks.wait(leakage.id, timeout=60).status == "succeeded"
    job = eng.jobs.create(
        model=tiny_base_model.pk,
        snapshot=snapshot.id,
        name="walk-sft",
        hyperparameters={**QUICK, "max_steps": 2, "save_steps": 2},
    )
    events = list(eng.jobs.stream(job.id, poll_interval=0.2, timeout=120))
    assert [e.status for e in events if isinstance(e, JobStatusEvent)][-1] == "succeeded"
    version = eng.model_versions.retrieve(eng.jobs.retrieve(job.id).fine_tuned_model)
    assert (version.stage, version.job) == ("candidate", job.id)

    # --- evaluation: generated answers, offline metrics, blind judgments, the gate --------
    prompts = eng.prompt_sets.create(
        name="held-out",
        rows=[{"prompt": t, "reference": "neg"} for t in TEXTS[:3]],
    )
    tuned = eng.contestants.create(model_version=version.id)
    baseline = eng.contestants.create(label="canned replies")
    eng.contestants.import_generations(
        baseline.id, prompt_set=prompts.id, outputs=["I cannot say."] * 3
    )
    generation = eng.generation_jobs.create(
        prompt_set=prompts.id, contestant=tuned.id, max_new_tokens=4, batch_size=4
    )
    generation = eng.generation_jobs.wait(generation.id, timeout=120, poll_interval=0.2)
    assert generation.status == "succeeded", generation.error
    outputs = list(eng.generation_jobs.outputs(generation.id))
    assert len(outputs) == 3
    assert {o.contestant["id"] for o in outputs} == {tuned.id}

    runs = [
        eng.metric_runs.create(contestant=c.id, prompt_set=prompts.id) for c in (tuned, baseline)
    ]
    for run in runs:
        assert eng.metric_runs.wait(run.id, timeout=60, poll_interval=0.2).status == "succeeded"

    campaign = eng.campaigns.create(
        name="walk duel",
        prompt_set=prompts.id,
        contestants=[tuned.id, baseline.id],
        attention_every=0,
    )
    ours = {o.output for o in outputs}
    pair, judged = rev.reviews.next(campaign.id), 0
    while pair is not None:
        outcome = "a" if pair.response_a in ours else "b"
        pair = rev.reviews.judge(campaign.id, token=pair.token, outcome=outcome, seconds_spent=9)
        judged += 1
    assert judged == eng.campaigns.retrieve(campaign.id).judged > 0
    assert eng.campaigns.close(campaign.id).status == "closed"

    gate = eng.gates.create(
        name="release",
        checks=[
            {
                "kind": "metric_not_worse",
                "metric": "token_f1",
                "prompt_set": prompts.id,
                "tolerance": 1.0,
            }
        ],
    )
    gate_run = eng.gates.run(gate.id, candidate=tuned.id, baseline=baseline.id)
    assert (gate_run.passed, gate_run.model_version) == (True, version.id)

    # --- approval: sign-offs, declaration, promotion ----------------------------------------
    with pytest.raises(BadRequestError, match="sign-offs missing"):
        eng.stages.promote(version.id, stage="canary")
    eng.approvals.sign(version.id, role="engineering_lead", comment="Loss and gate read.")
    with pytest.raises(PermissionDeniedError):  # compliance signs, never promotes
        com.stages.promote(version.id, stage="canary")
    com.approvals.sign(version.id, role="compliance", comment="Data licenses checked.")
    approval = com.approvals.retrieve(version.id)
    assert (approval.satisfied, approval.missing) == (True, [])
    eng.declarations.set(
        version.id, intended_use="Triage of support tickets.", license="Apache-2.0"
    )
    promoted = eng.stages.promote(version.id, stage="canary", reason="Gate passed, signed off.")
    assert promoted.stage == "canary"
    [change] = list(com.stages.list(version.id))
    assert (change.from_stage, change.to_stage, change.gate_run_id) == (
        "candidate",
        "canary",
        gate_run.id,
    )

    # --- the dossier, downloaded by compliance and verified offline --------------------------
    saved = com.dossiers.download(version.id, tmp_path / "dossier.zip", timeout=120)
    keys = keyset_from_url(f"{asgi_server}/.well-known/dossier-keys.json")
    report = verify_bundle(saved.path.read_bytes(), trusted_keys=keys, trusted_checkpoint_keys=keys)
    assert report.ok, report.problem
    assert report.key is not None  # a published key signed it, not only the bundle's own
    with zipfile.ZipFile(saved.path) as bundle:
        names = bundle.namelist()
    assert any(name.endswith("lineage.json") for name in names)
    signed = {e.action for e in com.audit_events.list(target_type="governance.signoff")}
    assert signed == {"governance.signoff.record"}
