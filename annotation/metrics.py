"""Agreement and throughput figures for a project, read from the database and computed
with annotation.agreement; the dashboard and the API share them."""

import statistics
from collections import defaultdict
from datetime import timedelta
from typing import Any

import numpy as np
from django.db.models import Count
from django.utils import timezone

from annotation import agreement
from annotation.models import Annotation, Item, LabelSchema, TaskType, answer_join
from annotation.schemas import abstains, agreement_key, metric_level, unsure_treatment
from annotation.selectors import (
    current_schema,
    gold_accuracy_by_annotator,
    leases_active,
    pseudonym,
    settings_for,
    stage_counts,
    throughput_by_hour,
)
from core import charts, time_spent
from core.models import Project, User


def _rows(project: Project, schema: LabelSchema) -> list[tuple[int, int, Any, Any]]:
    """(item, annotator, value, submitted_at) for every live answer on a regular item."""
    # Choice-only answers (every measured task type) have no free text to decrypt.
    return [
        (item_id, annotator_id, answer_join(choice, free_text), submitted_at)
        for item_id, annotator_id, choice, free_text, submitted_at in Annotation.objects.filter(
            project=project, undone=False, item__is_gold=False, schema__task_type=schema.task_type
        ).values_list("item_id", "annotator_id", "choice", "free_text", "submitted_at")
    ]


def _tables(rows, task_type: str, config: dict) -> dict[str, agreement.LabelTable]:
    """One LabelTable per measured question: the whole answer for nominal tasks, one per
    criterion for ratings. Items and annotators are renumbered densely."""
    item_index: dict[int, int] = {}
    annotator_index: dict[int, int] = {}
    items, annotators = [], []
    for item_id, annotator_id, _, _ in rows:
        items.append(item_index.setdefault(item_id, len(item_index)))
        annotators.append(annotator_index.setdefault(annotator_id, len(annotator_index)))
    item_arr = np.asarray(items, dtype=np.int64)
    annotator_arr = np.asarray(annotators, dtype=np.int64)
    if task_type == TaskType.RATING:
        return {
            criterion: agreement.LabelTable(
                item=item_arr,
                annotator=annotator_arr,
                value=np.asarray([float(v["ratings"][criterion]) for _, _, v, _ in rows]),
            )
            for criterion in config.get("criteria", [])
        }
    codes: dict[Any, int] = {}
    values = [codes.setdefault(agreement_key(task_type, v), len(codes)) for _, _, v, _ in rows]
    table = agreement.LabelTable(
        item=item_arr,
        annotator=annotator_arr,
        value=np.asarray(values, dtype=np.int64),
        n_categories=max(len(codes), 1),
    )
    return {"answer": table}


def _category_names(rows, task_type: str) -> list[str]:
    names: dict[Any, str] = {}
    for _, _, value, _ in rows:
        key = agreement_key(task_type, value)
        if key not in names:
            names[key] = " + ".join(map(str, key)) if isinstance(key, tuple) else str(key)
    return list(names.values())


def _measured(rows, schema: LabelSchema) -> list:
    """The rows agreement is measured on: abstentions (an "unsure" the schema treats as
    no judgment) are missing values, left out as Krippendorff's alpha leaves them."""
    return [r for r in rows if not abstains(schema.task_type, schema.config, r[2])]


def unsure_statement(schema: LabelSchema, abstentions: int) -> dict[str, Any] | None:
    """How this schema's "unsure" answers were counted, for the page and the API."""
    treatment = unsure_treatment(schema.task_type, schema.config)
    if treatment is None:
        return None
    if treatment == "abstain":
        sentence = (
            f'"Unsure" is treated as an abstention: {abstentions} such answers are left out '
            "as missing values."
        )
    else:
        sentence = '"Unsure" is counted as a third category, like match and no match.'
    return {"treated_as": treatment, "abstentions": abstentions, "sentence": sentence}


def project_agreement(*, project: Project) -> dict[str, Any]:
    """Krippendorff's alpha, Fleiss' kappa, Cohen's kappa per pair and label confusion.
    `unsure` says how entity matching's "unsure" was counted (the schema decides)."""
    schema = current_schema(project)
    if schema is None:
        return {"level": None, "questions": {}, "labels": 0}
    level = metric_level(schema.task_type, schema.config)
    answered = _rows(project, schema)
    rows = _measured(answered, schema)
    result: dict[str, Any] = {
        "level": level,
        "labels": len(rows),
        "questions": {},
        "unsure": unsure_statement(schema, len(answered) - len(rows)),
    }
    if level is None or not rows:
        return result
    settings = settings_for(project)
    annotator_ids = list(dict.fromkeys(r[1] for r in rows))
    names = [pseudonym(settings, a) for a in annotator_ids]
    for question, table in _tables(rows, schema.task_type, schema.config).items():
        summary = agreement.agreement_summary(table, level)
        summary["pairs"] = [
            {
                **pair,
                "annotator_a": names[pair["annotator_a"]],
                "annotator_b": names[pair["annotator_b"]],
            }
            for pair in summary.get("pairs", [])
        ]
        result["questions"][question] = summary
    if level == "nominal":
        result["categories"] = _category_names(rows, schema.task_type)
    return result


def _agreement_over_time(rows, schema: LabelSchema, level: agreement.Level, days: int = 14):
    """Alpha per day, over the items whose labelling finished that day."""
    finished: dict[int, Any] = {}
    for item_id, _, _, submitted_at in rows:
        if item_id not in finished or submitted_at > finished[item_id]:
            finished[item_id] = submitted_at
    by_day: dict[Any, list] = defaultdict(list)
    for row in _measured(rows, schema):
        by_day[finished[row[0]].date()].append(row)
    today = timezone.now().date()
    points = []
    for offset in range(days - 1, -1, -1):
        day = today - timedelta(days=offset)
        if not by_day.get(day):
            continue
        tables = _tables(by_day[day], schema.task_type, schema.config)
        alphas = [agreement.krippendorff_alpha(t, level) for t in tables.values()]
        measured = [a for a in alphas if a is not None]
        if measured:
            points.append((float(-offset), float(statistics.fmean(measured))))
    return points


def annotator_table(*, project: Project, rows, show_names: bool) -> list[dict[str, Any]]:
    settings = settings_for(project)
    accuracy = gold_accuracy_by_annotator(project=project)
    seconds: dict[int, list[float]] = defaultdict(list)
    too_fast: dict[int, int] = defaultdict(int)
    for annotator_id, seconds_spent, fast in Annotation.objects.filter(
        project=project, undone=False
    ).values_list("annotator_id", "seconds_spent", "too_fast"):
        seconds[annotator_id].append(seconds_spent)
        too_fast[annotator_id] += fast
    usernames = dict(User.objects.filter(pk__in=seconds).values_list("pk", "username"))
    result = []
    for annotator_id, spent in sorted(seconds.items(), key=lambda kv: -len(kv[1])):
        busy_hours = sum(spent) / 3600
        result.append(
            {
                "pseudonym": pseudonym(settings, annotator_id),
                "username": usernames.get(annotator_id, "") if show_names else "",
                "labels": len(spent),
                "per_hour": len(spent) / busy_hours if busy_hours > 0 else None,
                "median_seconds": statistics.median(spent),
                "too_fast": too_fast[annotator_id],
                "gold": accuracy.get(annotator_id),
                "reliability": None,
            }
        )
    return result


def _reliability(project: Project, schema: LabelSchema, rows, table_rows: list[dict]) -> None:
    """Dawid-Skene reliability per annotator, for classification and entity matching."""
    if schema.task_type not in (TaskType.CLASSIFICATION, TaskType.ENTITY_MATCHING) or not rows:
        return
    rows = _measured(rows, schema)
    if not rows:
        return
    table = _tables(rows, schema.task_type, schema.config)["answer"]
    if len(set(table.annotator.tolist())) < 2:
        return
    model = agreement.dawid_skene(table)
    settings = settings_for(project)
    annotator_ids = list(dict.fromkeys(r[1] for r in rows))
    by_name = {pseudonym(settings, a): model.reliability[i] for i, a in enumerate(annotator_ids)}
    for row in table_rows:
        row["reliability"] = by_name.get(row["pseudonym"])


def project_dashboard(*, project: Project, show_names: bool = True) -> dict[str, Any]:
    schema = current_schema(project)
    stages = stage_counts(project=project)
    labels_total = Annotation.objects.filter(project=project, undone=False).count()
    context: dict[str, Any] = {
        "schema": schema,
        "stages": stages,
        "stage_chart": charts.bar_chart(
            categories=[Item.State(s).label for s in stages],
            values=list(stages.values()),
            title="Items per stage",
            y_label="items",
        ),
        "totals": {
            "items": sum(stages.values()),
            "labels": labels_total,
            "leases": leases_active(project=project),
            "gold_items": Item.objects.filter(project=project, is_gold=True).count(),
            "annotators": Annotation.objects.filter(project=project).aggregate(
                n=Count("annotator", distinct=True)
            )["n"],
        },
        "throughput_chart": charts.line_chart(
            series={"answers per hour": throughput_by_hour(project=project)},
            title="Throughput, last 24 hours",
            x_label="hours ago",
            y_label="answers",
        ),
    }
    if schema is None:
        return context
    rows = _rows(project, schema)
    level = metric_level(schema.task_type, schema.config)
    context["agreement"] = project_agreement(project=project)
    context["annotators"] = annotator_table(project=project, rows=rows, show_names=show_names)
    context["time_rule"] = time_spent.RULE
    context["too_fast_total"] = sum(a["too_fast"] for a in context["annotators"])
    _reliability(project, schema, rows, context["annotators"])
    if level is not None and rows:
        context["agreement_chart"] = charts.line_chart(
            series={"Krippendorff's alpha": _agreement_over_time(rows, schema, level)},
            title="Agreement by day (last 14 days)",
            x_label="days ago",
            y_label="alpha",
        )
        answer = context["agreement"]["questions"].get("answer")
        if answer and answer.get("confusion"):
            names = context["agreement"]["categories"]
            context["confusion_chart"] = charts.heatmap(
                row_labels=names,
                col_labels=names,
                values=answer["confusion"],
                title="Label pairs given to the same item",
                fmt="{:.0f}",
            )
    return context
