import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils.html import escape

from core.models import AuditEvent
from evaluation import selectors, services
from evaluation.models import MetricRun
from evaluation.services.gates import metric_reason
from tests.evaluation.factories import contestant_with_outputs, model_version, prompt_rows

pytestmark = pytest.mark.django_db


@pytest.fixture
def prompt_set(project, engineer):
    return services.prompt_set_create(
        actor=engineer, project=project, name="held-out", rows=prompt_rows(40)
    )


def _run_metrics(engineer, contestant, prompt_set, **kw):
    run = services.metric_run_start(
        actor=engineer, contestant=contestant, prompt_set=prompt_set, **kw
    )
    services.offline.metric_run_execute(run_id=run.pk)
    run.refresh_from_db()
    return run


def _pair(engineer, project, prompt_set, candidate_outputs):
    refs = [r["reference"] for r in prompt_rows(40)]
    production = contestant_with_outputs(
        engineer, project, prompt_set, "production", refs, model_version(project, "production")
    )
    candidate = contestant_with_outputs(
        engineer,
        project,
        prompt_set,
        "candidate",
        candidate_outputs,
        model_version(project, "candidate"),
    )
    return production, candidate


def test_metric_run_scores_outputs_and_slices_by_metadata(project, engineer, prompt_set):
    refs = [r["reference"] for r in prompt_rows(40)]
    # German prompts (every third) get a wrong answer: the slice must show it.
    outputs = [ref if i % 3 else "no idea" for i, ref in enumerate(refs)]
    contestant = contestant_with_outputs(engineer, project, prompt_set, "c", outputs)

    run = _run_metrics(engineer, contestant, prompt_set, slice_field="language")

    assert run.status == MetricRun.Status.SUCCEEDED
    assert run.results["exact_match"] == pytest.approx(26 / 40)
    assert 0 < run.results["chrf"] < 100
    assert set(run.results) >= {"bleu", "chrf", "token_f1", "rouge1", "rouge2", "rougeL"}
    rows = {r["group"]: r for r in run.slices["rows"]}
    assert rows["de"]["error_rate"] == pytest.approx(1.0)
    assert rows["en"]["gap_to_best"] == 0
    assert run.slices["flagged"]


def test_metric_run_without_outputs_fails_with_the_reason(project, engineer, prompt_set):
    contestant = services.contestant_create(actor=engineer, project=project, label="nothing")
    run = services.metric_run_start(actor=engineer, contestant=contestant, prompt_set=prompt_set)

    with pytest.raises(ValueError, match="no generations"):
        services.offline.metric_run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == MetricRun.Status.FAILED
    assert "run a generation job first" in run.error


def test_a_failing_gate_blocks_promotion_and_says_why(project, engineer, prompt_set):
    production, candidate = _pair(engineer, project, prompt_set, ["whatever"] * 40)
    for c in (production, candidate):
        _run_metrics(engineer, c, prompt_set, slice_field="language")
    gate = services.gate_create(
        actor=engineer,
        project=project,
        name="release",
        checks=[
            {
                "kind": "metric_not_worse",
                "metric": "chrf",
                "prompt_set": prompt_set.pk,
                "tolerance": 0.5,
                "alpha": 0.05,
                "name": "chrF vs production",
            },
            {"kind": "no_fairness_flag", "prompt_set": prompt_set.pk},
        ],
    )

    run = services.gate_run(actor=engineer, gate=gate, candidate=candidate, baseline=production)

    assert not run.passed
    chrf = run.results[0]
    assert not chrf["passed"]
    assert chrf["numbers"]["delta"] < -0.5
    assert chrf["numbers"]["p_value"] < 0.05
    latest = selectors.gate_run_latest(model_version_id=candidate.model_version_id)
    refusal = selectors.gate_refusal(
        version=candidate.model_version, stage="production", run=latest
    )
    assert latest == run
    assert "its latest gate run (release) failed: chrF vs production" in refusal
    assert AuditEvent.objects.filter(action="evaluation.gate.run").count() == 1


def test_promotion_without_any_gate_run_is_refused(project):
    version = model_version(project, "ungated")

    refusal = selectors.gate_refusal(version=version, stage="canary", run=None)

    assert refusal == "ungated cannot go to canary: no regression gate has been run on it."


def test_a_passing_gate_lets_promotion_through(project, engineer, prompt_set):
    refs = [r["reference"] for r in prompt_rows(40)]
    production, candidate = _pair(engineer, project, prompt_set, refs)
    for c in (production, candidate):
        _run_metrics(engineer, c, prompt_set)
    gate = services.gate_create(
        actor=engineer,
        project=project,
        name="release",
        checks=[{"kind": "metric_not_worse", "metric": "token_f1", "prompt_set": prompt_set.pk}],
    )

    run = services.gate_run(actor=engineer, gate=gate, candidate=candidate, baseline=production)

    assert run.passed, run.results
    for stage in ("canary", "production"):
        assert selectors.gate_refusal(version=candidate.model_version, stage=stage, run=run) is None


def test_gate_checks_are_validated(project, engineer):
    with pytest.raises(ValidationError, match="check 1: missing prompt_set"):
        services.gate_create(
            actor=engineer,
            project=project,
            name="g",
            checks=[{"kind": "metric_not_worse", "metric": "chrf"}],
        )


def test_a_rating_check_needs_enough_head_to_head_judgments(project, engineer, member_of):
    from core.models import Role
    from tests.evaluation.factories import build_campaign

    campaign, (candidate, baseline) = build_campaign(engineer, project, prompts=3, contestants=2)
    reviewer = member_of(Role.REVIEWER, "judge")
    while (j := services.judgment_next(campaign=campaign, reviewer=reviewer)) is not None:
        outcome = "a" if j.contestant_left_id == candidate.pk else "b"
        services.judgment_submit(
            campaign=campaign, reviewer=reviewer, token=j.token, outcome=outcome
        )
    check = {"kind": "rating_above_baseline", "campaign": campaign.pk}
    strict = services.gate_create(actor=engineer, project=project, name="strict", checks=[check])

    run = services.gate_run(actor=engineer, gate=strict, candidate=candidate, baseline=baseline)

    # Three wins out of three: the fit's interval collapses, but three judgments prove little.
    assert not run.passed
    assert run.results[0]["reason"] == (
        f"only 3 judgment(s) between {candidate.label} and {baseline.label} in "
        f"{campaign.name}; the check needs 20"
    )
    lenient = services.gate_create(
        actor=engineer, project=project, name="lenient", checks=[{**check, "min_judgments": 3}]
    )
    assert services.gate_run(
        actor=engineer, gate=lenient, candidate=candidate, baseline=baseline
    ).passed
    with pytest.raises(ValidationError, match="min_judgments must be a whole number"):
        services.gate_create(
            actor=engineer, project=project, name="bad", checks=[{**check, "min_judgments": 0}]
        )


def test_a_metric_check_shows_the_difference_its_interval_and_the_rule_at_a_useful_precision(
    client, project, engineer, prompt_set
):
    # Both means are under 0.005: printed to two decimals they read "0.00 vs 0.00".
    junk = "zzz " * 100
    baseline_outputs = ["parcel " + junk[:200]] + ["no idea"] * 39
    candidate_outputs = ["parcel " + junk] + ["no idea"] * 39
    production, candidate = (
        contestant_with_outputs(
            engineer, project, prompt_set, name, outputs, model_version(project, name)
        )
        for name, outputs in (("production", baseline_outputs), ("candidate", candidate_outputs))
    )
    for c in (production, candidate):
        _run_metrics(engineer, c, prompt_set)
    gate = services.gate_create(
        actor=engineer,
        project=project,
        name="release",
        checks=[{"kind": "metric_not_worse", "metric": "token_f1", "prompt_set": prompt_set.pk}],
    )

    run = services.gate_run(actor=engineer, gate=gate, candidate=candidate, baseline=production)

    numbers, reason = run.results[0]["numbers"], run.results[0]["reason"]
    assert 0 < numbers["candidate"] < numbers["baseline"] < 0.005
    rounds, kept = numbers["rounds"], numbers["rounds_not_worse"]
    assert numbers["p_value"] == (kept + 1) / (rounds + 1)  # stored unrounded
    lower, upper = numbers["interval"]
    assert lower <= numbers["delta"] <= upper
    assert numbers["alpha"] == 0.05
    assert "0.00 vs 0.00" not in reason
    shown = reason.split(":")[0].split()
    assert shown[1] != shown[3], reason  # the two scores print differently
    assert "95% interval [" in reason
    assert f"p = {kept + 1}/{rounds + 1}" in reason
    assert "α = 0.05" in reason
    assert "fails when p < α = 0.05" in numbers["rule"]
    client.force_login(engineer)
    page = client.get(reverse("evaluation:overview", args=[project.pk])).content.decode()
    assert escape(reason) in page
    assert "Rule: " + escape(numbers["rule"]) in page


def test_a_p_value_just_under_alpha_reads_as_under_it():
    # 50/1001 = 0.04995 fails at α = 0.05; rounded to four decimals it printed as 0.05.
    numbers = {
        "metric": "token_f1",
        "candidate": 0.41230,
        "baseline": 0.41990,
        "delta": -0.00760,
        "interval": [-0.01530, 0.00010],
        "examples": 40,
        "rounds": 1000,
        "rounds_not_worse": 49,
        "p_value": 50 / 1001,
        "alpha": 0.05,
        "tolerance": 0.0,
    }

    reason = metric_reason(numbers, passed=numbers["p_value"] >= numbers["alpha"])

    assert "p = 50/1001 = 0.04995 < α = 0.05 → fail" in reason
    assert "token_f1 0.4123 vs 0.4199: difference -0.0076" in reason
    assert "95% interval [-0.0153, +0.0001]" in reason
