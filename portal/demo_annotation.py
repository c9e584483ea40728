"""The demo's annotation stage: a dataset with provenance, a schema and guideline, primary
labels from three demo annotators (with real disagreements), some items adjudicated and some
still waiting in the queues.

Every write goes through the annotation services, as a person's clicks would, so the audit
log and the dashboards show the same history they would after real work."""

import random
import uuid
from datetime import date
from pathlib import Path

from django.db import transaction

from annotation.models import Dataset, Item
from annotation.services import configuration, datasets, queue, resolution
from core.models import Project, Role, User
from portal.demo import demo_member, extra_demo_logins

DATASET_FILE = Path(__file__).resolve().parent / "demo_data" / "support_instructions.jsonl"
DATASET_NAME = "Inkwell help-desk answers"
GUIDELINE = """\
# Improving help-desk answers

You see a customer's message and a **draft answer**. Make the answer one we would send:

1. **Correct**: the steps must exist in Inkwell (Settings paths, plan limits, time frames).
2. **Complete**: answer every question in the message; say what happens next.
3. **Kind and brief**: acknowledge a problem once, no blame, no filler, at most ~80 words.

Keep a good draft as it is: press Enter without editing. Rewrite a draft that only says
"contact support" or "check the settings": those are never acceptable answers.
"""
EXAMPLES = [
    {
        "title": "Keep a good draft",
        "payload": {"instruction": "How do I export all my notes?"},
        "answer": {"response": "Go to Settings > Export and choose a format..."},
        "why": "Correct, complete and brief: submit unchanged.",
    },
    {
        "title": "Rewrite a non-answer",
        "payload": {"instruction": "I forgot my password.", "response": "Contact support."},
        "answer": {"response": "Click 'Forgot password' on the sign-in page..."},
        "why": "The customer can fix this alone; tell them how.",
    },
]


def _reference(items_by_intent: dict[str, list[Item]], item: Item) -> str:
    """The intent's full answer: the longest draft any row of that intent carries."""
    return max((i.payload["response"] for i in items_by_intent[item.metadata["intent"]]), key=len)


def _answer_for(annotator_index: int, item: Item, reference: str, rng: random.Random) -> str:
    """What a careful-but-human annotator writes: good drafts kept; weak ones rewritten,
    each annotator in their own words now and then, which is where disagreement comes from."""
    draft = item.payload["response"]
    if draft == reference:
        # One annotator in ten trims a sentence they find too long.
        if rng.random() < 0.1:
            return reference.rsplit(". ", 1)[0] + "."
        return draft
    if annotator_index == 1 and rng.random() < 0.5:
        return reference.replace("Sorry", "I'm sorry").replace("I'm sorry that", "Sorry that")
    return reference


@transaction.atomic
def demo_seed_annotation(*, project: Project, admin: User) -> Dataset:
    """Idempotent: a project that already holds the demo dataset is left as it is."""
    existing = Dataset.objects.filter(project=project, name=DATASET_NAME).first()
    if existing:
        return existing
    engineer = User.objects.get(username="engineer")
    adjudicator = User.objects.get(username="adjudicator")
    annotators = [User.objects.get(username="annotator")] + [
        demo_member(project=project, admin=admin, login=login)
        for login in extra_demo_logins(Role.ANNOTATOR)
    ]
    configuration.annotation_settings_update(
        project=project, changed_by=engineer, labels_per_item=2, order="sequential"
    )
    configuration.label_schema_publish(
        project=project,
        task_type="writing",
        config={"mode": "edit", "prompt_field": "instruction", "response_field": "response"},
        published_by=engineer,
    )
    configuration.guideline_publish(
        project=project, markdown=GUIDELINE, examples=EXAMPLES, published_by=engineer
    )
    with open(DATASET_FILE, "rb") as f:
        upload = datasets.dataset_upload_create(
            project=project,
            uploaded_by=engineer,
            file=f,
            file_name=DATASET_FILE.name,
            name=DATASET_NAME,
            provenance=datasets.Provenance(
                source_description=(
                    "Written for the Tuning Portal demo: customer questions to a fictional "
                    "note-taking app and draft answers, some deliberately weak."
                ),
                license="CC0-1.0",
                consent_basis="No personal data: every message was written for the demo.",
                collection_date=date(2026, 11, 1),
                synthetic=False,
            ),
            required_fields=["instruction", "response"],
            metadata_fields=["domain", "intent", "customer_tier", "channel", "language"],
            run_now=True,
        )
    dataset = datasets.dataset_import_run(upload_id=upload.pk).dataset
    items = list(Item.objects.filter(dataset=dataset).order_by("row_number"))
    by_intent: dict[str, list[Item]] = {}
    for item in items:
        by_intent.setdefault(item.metadata["intent"], []).append(item)

    # Pairs of annotators take turns through the queue; 130 rounds label ~130 items twice.
    rng = random.Random(7)  # noqa: S311 - reproducible demo data, not secrets
    plan = [(0, 1), (1, 2), (0, 2)]
    for round_no in range(130):
        for a, b in (plan[round_no % 3],):
            for index in (a, b):
                offer = queue.item_lease_next(project=project, annotator=annotators[index])
                if offer is None:
                    continue
                reference = _reference(by_intent, offer.item)
                queue.annotation_submit(
                    project=project,
                    lease_id=offer.lease.pk,
                    annotator=annotators[index],
                    value={"response": _answer_for(index, offer.item, reference, rng)},
                    submission_id=uuid.uuid4(),
                    seconds_spent=rng.uniform(12, 70),
                )
    # The adjudicator settles half of the disputes; the rest wait in the queue.
    disputed = Item.objects.filter(project=project, state=Item.State.DISPUTED).count()
    for _ in range(disputed // 2):
        lease = resolution.adjudication_lease_next(project=project, adjudicator=adjudicator)
        if lease is None:
            break
        resolution.adjudication_resolve(
            project=project,
            item_id=lease.item_id,
            adjudicator=adjudicator,
            value={"response": _reference(by_intent, lease.item)},
            reason="The fuller answer names the exact Settings path and the time frame.",
        )
    return dataset
