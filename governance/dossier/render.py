"""The dossier's files, rendered from the collected data: the report (HTML and PDF), the
model card and the machine-readable parts. Every file is a function of its input alone."""

import io
import math
from collections.abc import Callable
from typing import Any

import yaml
from django.template.loader import render_to_string
from django.utils.text import slugify

from core.chain import canonical_json
from core.spreadsheets import csv_writer
from governance.dossier.bundle import json_bytes
from governance.dossier.figures import loss_figure
from governance.dossier.graph import lineage_svg
from governance.dossier.pdf import html_to_pdf

DISAGREEMENT_HEADER = [
    "snapshot",
    "item",
    "external_id",
    "annotator",
    "label",
    "gold",
    "method",
    "decided_by",
    "reason",
]
SECTIONS = [
    ("intended-use", "Intended use and limitations"),
    ("licenses", "Licenses"),
    ("lineage", "Model lineage"),
    ("datasheets", "Datasheets"),
    ("annotation", "Annotation"),
    ("training", "Training"),
    ("evaluation", "Evaluation"),
    ("approvals", "Approvals"),
    ("access-log", "Access log"),
    ("audit", "Audit trail"),
]


def _node_labels(lineage: dict[str, Any]) -> dict[str, tuple[str, str]]:
    labels = {}
    for d in lineage["datasets"]:
        labels[f"dataset:{d['id']}"] = (d["name"], f"dataset · {d['license']}")
    for s in lineage["snapshots"]:
        labels[f"snapshot:{s['id']}"] = (
            f"{s['name']} v{s['version']}",
            f"snapshot · {s['member_count']} items",
        )
    for b in lineage["base_models"]:
        labels[f"base:{b['id']}"] = (b["name"], f"base model · {b['license'] or 'no license'}")
    for j in lineage["jobs"]:
        labels[f"job:{j['id']}"] = (j["name"], f"{j['kind']} · {j['method']} · {j['status']}")
    for v in lineage["versions"]:
        labels[f"version:{v['id']}"] = (v["name"], f"version · {v['stage']}")
    return labels


def _loss_charts(jobs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    out = []
    for job in jobs:
        curves = {k: v for k, v in job["curves"].items() if "loss" in k}
        figure = loss_figure(title=f"{job['name']}: loss", curves=curves)
        if figure:
            out.append((job["name"], figure))
    return out


def significant(value: float, digits: int = 4) -> float:
    """`value` rounded to `digits` significant digits, for figures a person reads; the
    evaluation files keep every digit."""
    if not math.isfinite(value) or value == 0:
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def split_results(results: dict[str, Any] | None) -> tuple[list, list]:
    """An offline metric run's results as (metrics, counts), each a sorted list of
    (name, value). Scores are floats; whole numbers (how many prompts were scored, the
    support of each label) are counts, not metrics. Per-label scores are named
    "precision (label)". Lists (labels, confusion matrix) stay in the JSON file."""
    metrics: list[tuple[str, Any]] = []
    counts: list[tuple[str, Any]] = []
    for name, value in sorted((results or {}).items()):
        items = (
            [(f"{name} ({k})", v) for k, v in sorted(value.items())]
            if isinstance(value, dict)
            else [(name, value)]
        )
        for label, v in items:
            if isinstance(v, bool) or not isinstance(v, int | float):
                continue
            (counts if isinstance(v, int) else metrics).append((label, v))
    return metrics, counts


def _offline_runs(evaluation: dict[str, Any]) -> list[dict[str, Any]]:
    runs = []
    for run in evaluation["offline_metrics"]:
        metrics, counts = split_results(run["results"])
        runs.append({**run, "metrics": metrics, "counts": counts})
    return runs


def model_card(inputs: dict[str, Any], figures: list[dict[str, Any]]) -> bytes:
    """Hugging Face model-card format: YAML metadata, then the sections of Mitchell et al."""
    version = inputs["version"]
    lineage = inputs["lineage"]
    declaration = inputs["declaration"] or {}
    base = next((b for b in lineage["base_models"] if b["id"] == version["base_model"]), None)
    metrics = []
    for run in inputs["evaluation"]["offline_metrics"]:
        for name, value in split_results(run["results"])[0]:
            metrics.append(
                {"name": name, "value": significant(value), "dataset": run["prompt_set"]}
            )
    meta = {
        "license": (declaration.get("license") or "unknown").lower(),
        "base_model": base["name"] if base else None,
        "datasets": [d["name"] for d in lineage["datasets"]],
        "metrics": sorted({m["name"] for m in metrics}),
        "tags": ["tuning-portal", version["task"], version["kind"]],
        "model-index": [
            {
                "name": version["name"],
                "results": [
                    {
                        "task": {"type": "text-generation"},
                        "dataset": {"name": m["dataset"], "type": m["dataset"]},
                        "metrics": [{"type": m["name"], "value": m["value"]}],
                    }
                    for m in metrics
                ],
            }
        ],
    }
    front = yaml.safe_dump(meta, sort_keys=True, allow_unicode=True, default_flow_style=False)
    body = render_to_string(
        "governance/model_card.md",
        {
            "inputs": inputs,
            "declaration": declaration,
            "base": base,
            "figures": figures,
            "offline_runs": _offline_runs(inputs["evaluation"]),
        },
    )
    return f"---\n{front}---\n\n{body.strip()}\n".encode()


TRAINING_YAML_NOTE = (
    "# Each job's settings that apply to its kind and method; settings it never read (DPO or\n"
    "# GRPO settings of an SFT job, LoRA settings of a full fine-tune...) are left out.\n"
    "# lineage.json holds every job's full stored record, under jobs[].config.\n"
)


def _training_yaml(jobs: list[dict[str, Any]]) -> bytes:
    doc = {
        job["name"]: {
            "id": job["id"],
            "kind": job["kind"],
            "method": job["method"],
            "seed": job["seed"],
            "config": job["settings"],
            # World size, strategy and the accelerate / DeepSpeed files the job ran with.
            "launch": job.get("launch") or {"world_size": 1},
            "data": job["data"],
            "environment": job["environment"],
            "checkpoint_sha256": job["checkpoint_sha256"],
        }
        for job in jobs
    }
    return (TRAINING_YAML_NOTE + yaml.safe_dump(doc, sort_keys=True, allow_unicode=True)).encode()


def _csv(header: list[str], rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv_writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def _disagreement_counts(rows: list[list[str]]) -> dict[int, dict[str, int]]:
    """Per snapshot: how many contested items and how many labels on them the CSV lists."""
    counts: dict[int, dict[str, Any]] = {}
    for row in rows:
        entry = counts.setdefault(int(row[0]), {"items": set(), "labels": 0})
        entry["items"].add(row[1])
        entry["labels"] += 1
    return {k: {"items": len(v["items"]), "labels": v["labels"]} for k, v in counts.items()}


def render_files(
    inputs: dict[str, Any],
    figures: list[dict[str, Any]],
    disagreements: list[list[str]],
    *,
    progress: Callable[[int, str], None] = lambda p, s: None,
) -> dict[str, bytes]:
    lineage = inputs["lineage"]
    files: dict[str, bytes] = {}
    files["lineage.json"] = json_bytes(lineage | {"licenses": inputs["licenses"]})
    for dataset in lineage["datasets"]:
        sheet = {
            "motivation": dataset["source_description"],
            "composition": {
                "rows": dataset["rows"],
                "format": dataset["file_format"],
                "synthetic": dataset["synthetic"],
                "synthetic_share": dataset["synthetic_share"],
            },
            "collection": {
                "date": dataset["collection_date"],
                "consent_basis": dataset["consent_basis"],
            },
            "license": dataset["license"],
            "file": {
                "name": dataset["file_name"],
                "sha256": dataset["file_sha256"],
                "bytes": dataset["file_bytes"],
            },
            "dataset": dataset,
        }
        files[f"datasheets/{dataset['id']}-{slugify(dataset['name']) or 'dataset'}.json"] = (
            json_bytes(sheet)
        )
    files["annotation/figures.json"] = json_bytes(figures)
    files["annotation/disagreements.csv"] = _csv(DISAGREEMENT_HEADER, disagreements)
    evaluation = inputs["evaluation"]
    files["evaluation/offline_metrics.json"] = json_bytes(evaluation["offline_metrics"])
    files["evaluation/ratings.json"] = json_bytes(evaluation["ratings"])
    files["evaluation/gates.json"] = json_bytes(evaluation["gates"])
    files["training/config.yaml"] = _training_yaml(lineage["jobs"])
    files["training/curves.json"] = json_bytes({j["name"]: j["curves"] for j in lineage["jobs"]})
    files["approvals.json"] = json_bytes(inputs["approvals"])
    files["access_log.json"] = json_bytes(inputs["access_log"])
    files["audit/events.jsonl"] = b"".join(
        canonical_json(event) + b"\n" for event in inputs["audit"]["events"]
    )
    files["model_card.md"] = model_card(inputs, figures)
    progress(60, "Rendering the report")
    html = render_to_string(
        "governance/dossier_report.html",
        {
            "inputs": inputs,
            "figures": figures,
            "sections": SECTIONS,
            "lineage_svg": lineage_svg(_node_labels(lineage), [tuple(e) for e in lineage["edges"]]),
            "loss_charts": _loss_charts(lineage["jobs"]),
            "offline_runs": _offline_runs(inputs["evaluation"]),
            "disagreement_counts": _disagreement_counts(disagreements),
            "conflicts": [f for f in inputs["licenses"] if f["severity"] != "ok"],
        },
    )
    files["dossier.html"] = html.encode()
    progress(75, "Typesetting the PDF")
    files["dossier.pdf"] = html_to_pdf(html, identifier=inputs["version"]["name"])
    return files
