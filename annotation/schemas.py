"""What each task type asks, what a valid answer is, and when two answers agree.

Pure functions over plain dicts; services call them before writing, views use them to
draw each task type's screen."""

from collections.abc import Mapping
from typing import Any, Literal

from django.core.exceptions import ValidationError

from annotation.importing import EMPTY_RESPONSE_POLICIES, PreferenceShape
from annotation.models import TaskType

MATCH_ANSWERS = ("match", "no_match", "unsure")
MAX_TEXT = 20_000
# How agreement figures count an entity-matching "unsure": as an abstention (a missing
# value: the annotator made no judgment on the pair, as Krippendorff treats "cannot code")
# or as a third category (two "unsure" agree; "unsure" against "match" disagrees). New
# schemas abstain; schemas published before the setting existed keep "category", the way
# their figures were computed (migration annotation 0006).
UNSURE_TREATMENTS = ("abstain", "category")
UNSURE_DEFAULT = "abstain"


def _err(field: str, message: str) -> ValidationError:
    return ValidationError({field: message})


def _string_list(config: Mapping, key: str, *, minimum: int = 1) -> list[str]:
    values = config.get(key)
    if not isinstance(values, list) or len(values) < minimum:
        raise _err(key, f"needs a list of at least {minimum} names")
    cleaned = [v.strip() for v in values if isinstance(v, str)]
    if len(cleaned) != len(values) or not all(cleaned):
        raise _err(key, "every entry must be a non-empty string")
    if len(set(cleaned)) != len(cleaned):
        raise _err(key, "entries must be unique")
    return cleaned


def normalize_config(task_type: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a schema's config and fill defaults; raise ValidationError naming the key."""
    if task_type == TaskType.CLASSIFICATION:
        return {
            "choices": _string_list(config, "choices", minimum=2),
            "multi": bool(config.get("multi", False)),
            "text_field": str(config.get("text_field") or "text"),
        }
    if task_type == TaskType.ENTITY_MATCHING:
        unsure = config.get("unsure") or UNSURE_DEFAULT
        if unsure not in UNSURE_TREATMENTS:
            raise _err(
                "unsure", "is 'abstain' (left out of agreement) or 'category' (a third answer)"
            )
        return {
            "left_field": str(config.get("left_field") or "left"),
            "right_field": str(config.get("right_field") or "right"),
            "unsure": unsure,
        }
    if task_type == TaskType.WRITING:
        mode = config.get("mode", "write")
        if mode not in ("write", "edit"):
            raise _err("mode", "is 'write' (from scratch) or 'edit' (improve a draft)")
        return {
            "mode": mode,
            "prompt_field": str(config.get("prompt_field") or "instruction"),
            "response_field": str(config.get("response_field") or "response"),
            "steps_field": str(config.get("steps_field") or "steps"),
        }
    if task_type == TaskType.PREFERENCE:
        mode = config.get("mode", "best")
        if mode not in ("best", "rank"):
            raise _err("mode", "is 'best' (pick one) or 'rank' (order all)")
        reason = config.get("reason", "optional")
        if reason not in ("off", "optional", "required"):
            raise _err("reason", "is 'off', 'optional' or 'required'")
        empty = config.get("empty_responses", "keep")
        if empty not in EMPTY_RESPONSE_POLICIES:
            raise _err(
                "empty_responses",
                "is 'keep' (import such rows and list them) or 'refuse' (refuse the file)",
            )
        return {
            "mode": mode,
            "reason": reason,
            "prompt_field": str(config.get("prompt_field") or "prompt"),
            "responses_field": str(config.get("responses_field") or "responses"),
            "empty_responses": empty,
        }
    if task_type == TaskType.RATING:
        return {
            "criteria": _string_list(config, "criteria"),
            "scale_min": 1,
            "scale_max": 5,
            "text_field": str(config.get("text_field") or "text"),
        }
    raise _err("task_type", f"{task_type!r} is not one of {', '.join(TaskType.values)}")


def preference_shape(
    task_type: str | None, config: Mapping[str, Any] | None, *, pairs: bool = False
) -> PreferenceShape | None:
    """How an import reads rows for a preference schema (None for another task type, or
    no schema yet unless the rows are preference pairs to map)."""
    if task_type == TaskType.PREFERENCE and config is not None:
        return PreferenceShape(
            prompt_field=config.get("prompt_field") or "prompt",
            responses_field=config.get("responses_field") or "responses",
            # Schemas published before the setting existed kept such rows.
            empty_responses=config.get("empty_responses", "keep"),
            pairs=pairs,
        )
    return PreferenceShape(pairs=True) if pairs else None


def _steps(payload: Mapping, config: Mapping) -> list | None:
    steps = payload.get(config["steps_field"])
    return steps if isinstance(steps, list) and steps else None


def _responses(payload: Mapping, config: Mapping) -> list:
    responses = payload.get(config["responses_field"])
    return responses if isinstance(responses, list) else []


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _err(field, "must be non-empty text")
    if len(value) > MAX_TEXT:
        raise _err(field, f"is longer than {MAX_TEXT} characters")
    return value


def validate_answer(
    task_type: str, config: Mapping[str, Any], payload: Mapping[str, Any], value: Any
) -> dict[str, Any]:
    """Return the answer in its stored form, or raise ValidationError naming the field."""
    if not isinstance(value, Mapping):
        raise _err("value", "must be a JSON object")
    if task_type == TaskType.CLASSIFICATION:
        labels = value.get("labels")
        if isinstance(labels, str):
            labels = [labels]
        if not isinstance(labels, list) or not labels:
            raise _err("labels", "choose at least one label")
        unknown = [label for label in labels if label not in config["choices"]]
        if unknown:
            raise _err("labels", f"{unknown[0]!r} is not one of the schema's choices")
        if len(set(labels)) != len(labels):
            raise _err("labels", "a label is chosen twice")
        if not config["multi"] and len(labels) != 1:
            raise _err("labels", "this schema takes exactly one label")
        order = {c: i for i, c in enumerate(config["choices"])}
        return {"labels": sorted(labels, key=order.__getitem__)}
    if task_type == TaskType.ENTITY_MATCHING:
        answer = value.get("match")
        if answer not in MATCH_ANSWERS:
            raise _err("match", f"is one of {', '.join(MATCH_ANSWERS)}")
        return {"match": answer}
    if task_type == TaskType.WRITING:
        steps = _steps(payload, config)
        if steps is not None:
            outputs = value.get("steps")
            if not isinstance(outputs, list) or len(outputs) != len(steps):
                raise _err("steps", f"write one output for each of the {len(steps)} steps")
            return {"steps": [_text(o, f"steps[{i}]") for i, o in enumerate(outputs)]}
        return {"response": _text(value.get("response"), "response")}
    if task_type == TaskType.PREFERENCE:
        n = len(_responses(payload, config))
        reason = value.get("reason", "") or ""
        if not isinstance(reason, str):
            raise _err("reason", "must be text")
        if config["reason"] == "required" and not reason.strip():
            raise _err("reason", "this schema asks for a reason")
        if config["reason"] == "off":
            reason = ""
        if config["mode"] == "best":
            best = value.get("best")
            if isinstance(best, bool) or not isinstance(best, int) or not 0 <= best < n:
                raise _err("best", f"is the index of one of the {n} responses")
            return {"best": best, "reason": reason.strip()}
        ranking = value.get("ranking")
        if not isinstance(ranking, list) or sorted(ranking) != list(range(n)):
            raise _err("ranking", f"orders all {n} responses, best first, each once")
        return {"ranking": ranking, "reason": reason.strip()}
    if task_type == TaskType.RATING:
        ratings = value.get("ratings")
        if not isinstance(ratings, Mapping):
            raise _err("ratings", "rate every criterion")
        cleaned = {}
        for criterion in config["criteria"]:
            score = ratings.get(criterion)
            if isinstance(score, str) and score.isdigit():
                score = int(score)
            if isinstance(score, bool) or not isinstance(score, int):
                raise _err(f"ratings.{criterion}", "needs a score")
            if not config["scale_min"] <= score <= config["scale_max"]:
                raise _err(
                    f"ratings.{criterion}",
                    f"is from {config['scale_min']} to {config['scale_max']}",
                )
            cleaned[criterion] = score
        extra = set(ratings) - set(config["criteria"])
        if extra:
            raise _err("ratings", f"{sorted(extra)[0]!r} is not a criterion of this schema")
        return {"ratings": cleaned}
    raise _err("task_type", f"unknown task type {task_type!r}")


def agreement_key(task_type: str, value: Mapping[str, Any] | None) -> Any:
    """Two answers agree when their keys are equal (reasons and whitespace aside). A missing
    answer (None) raises TypeError, as a malformed one does."""
    if value is None:
        raise TypeError("no answer")
    if task_type == TaskType.CLASSIFICATION:
        return tuple(value["labels"])
    if task_type == TaskType.ENTITY_MATCHING:
        return value["match"]
    if task_type == TaskType.WRITING:
        texts = value["steps"] if "steps" in value else [value["response"]]
        return tuple(" ".join(t.split()) for t in texts)
    if task_type == TaskType.PREFERENCE:
        return value["best"] if "best" in value else tuple(value["ranking"])
    if task_type == TaskType.RATING:
        return tuple(sorted(value["ratings"].items()))
    raise ValueError(task_type)


def unsure_treatment(task_type: str, config: Mapping[str, Any]) -> str | None:
    """'abstain' or 'category' for entity matching; None for tasks without "unsure"."""
    if task_type != TaskType.ENTITY_MATCHING:
        return None
    return config.get("unsure") or UNSURE_DEFAULT


def abstains(task_type: str, config: Mapping[str, Any], value: Mapping[str, Any]) -> bool:
    """Whether an answer is an abstention that agreement figures leave out."""
    return unsure_treatment(task_type, config) == "abstain" and value.get("match") == "unsure"


def metric_level(
    task_type: str, config: Mapping[str, Any]
) -> Literal["nominal", "interval"] | None:
    """Krippendorff's level of measurement for the task's answers; None: not measured."""
    if task_type in (TaskType.CLASSIFICATION, TaskType.ENTITY_MATCHING, TaskType.PREFERENCE):
        return "nominal"
    if task_type == TaskType.RATING:
        return "interval"
    return None


def shortcut_choices(task_type: str, config: Mapping, payload: Mapping) -> list[tuple[str, str]]:
    """(key, label) pairs the annotator's number keys select, in order."""
    if task_type == TaskType.CLASSIFICATION:
        return [(str(i + 1), c) for i, c in enumerate(config["choices"][:9])]
    if task_type == TaskType.ENTITY_MATCHING:
        return [("1", "match"), ("2", "no_match"), ("3", "unsure")]
    if task_type == TaskType.PREFERENCE and config["mode"] == "best":
        return [(str(i + 1), str(i)) for i in range(min(9, len(_responses(payload, config))))]
    return []
