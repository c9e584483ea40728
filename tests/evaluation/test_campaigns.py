from collections import Counter, defaultdict

import pytest
from django.core.exceptions import ValidationError

from annotation.models import Dataset, QualityCheck
from annotation.services.quality import quality_check_run
from core.models import AuditEvent
from evaluation import selectors, services
from evaluation.models import Battle, Campaign, CampaignRater, Judgment, PromptSet
from tests.evaluation.factories import build_campaign, writing_snapshot

pytestmark = pytest.mark.django_db


def _judge(campaign, reviewer, outcome_for):
    """Judge until nothing is left; outcome_for(judgment) gives the outcome to submit."""
    count = 0
    while (j := services.judgment_next(campaign=campaign, reviewer=reviewer)) is not None:
        services.judgment_submit(
            campaign=campaign, reviewer=reviewer, token=j.token, outcome=outcome_for(j)
        )
        count += 1
    return count


def test_campaign_has_one_battle_per_prompt_and_pair_and_skips_identical_outputs(project, engineer):
    campaign, _ = build_campaign(
        engineer, project, prompts=6, contestants=3, identical_on=(2,), attention_every=5
    )

    real = campaign.battles.filter(kind=Battle.Kind.REAL)
    assert real.count() == 5 * 3  # prompt 2: all three wrote the same thing
    assert not real.filter(prompt__position=2).exists()
    assert campaign.stats["identical_skipped"] == 3
    assert campaign.battles.filter(kind=Battle.Kind.ATTENTION).count() == 5
    assert AuditEvent.objects.filter(action="evaluation.campaign.create").count() == 1


def test_campaign_needs_two_contestants_with_outputs(project, engineer):
    campaign, made = build_campaign(engineer, project, contestants=2)

    with pytest.raises(ValidationError, match="at least two contestants"):
        services.campaign_create(
            actor=engineer,
            project=project,
            name="solo",
            prompt_set=campaign.prompt_set,
            contestants=[made[0]],
        )
    assert Campaign.objects.count() == 1


def test_each_battle_is_judged_by_raters_per_pair_distinct_reviewers(project, engineer, member_of):
    campaign, _ = build_campaign(engineer, project, prompts=3, contestants=2, raters_per_pair=2)
    first, second, third = (member_of("reviewer", f"r{i}") for i in range(3))

    done = [_judge(campaign, r, lambda j: "a") for r in (first, second, third)]

    assert done == [3, 3, 0]
    for battle in campaign.battles.all():
        reviewers = list(battle.judgments.values_list("reviewer_id", flat=True))
        assert len(reviewers) == len(set(reviewers)) == 2


def test_sides_are_randomised_roughly_evenly(project, engineer, member_of):
    campaign, _ = build_campaign(engineer, project, prompts=100, contestants=2, raters_per_pair=3)
    for i in range(3):
        _judge(campaign, member_of("reviewer", f"side{i}"), lambda j: "tie")

    shown = Counter(campaign.judgments.values_list("left_is_x", flat=True))

    assert shown[True] + shown[False] == 300
    assert 0.4 < shown[True] / 300 < 0.6  # p ≈ 0.0005 of falling outside by chance


def test_stored_sides_follow_what_was_shown(project, engineer, reviewer):
    campaign, _ = build_campaign(engineer, project, prompts=10, contestants=2)

    _judge(campaign, reviewer, lambda j: "a")

    for j in campaign.judgments.select_related("battle"):
        expected = j.battle.contestant_x_id if j.left_is_x else j.battle.contestant_y_id
        assert j.contestant_left_id == expected


def test_quota_stops_a_reviewer(project, engineer, reviewer):
    campaign, _ = build_campaign(engineer, project, prompts=10, contestants=2)
    Campaign.objects.filter(pk=campaign.pk).update(rater_quota=4)
    campaign.refresh_from_db()

    assert _judge(campaign, reviewer, lambda j: "b") == 4


def test_submitting_someone_elses_token_is_refused(project, engineer, member_of):
    campaign, _ = build_campaign(engineer, project)
    alice, bob = member_of("reviewer", "alice"), member_of("reviewer", "bob")
    mine = services.judgment_next(campaign=campaign, reviewer=alice)

    with pytest.raises(ValidationError, match="not assigned to you"):
        services.judgment_submit(campaign=campaign, reviewer=bob, token=mine.token, outcome="a")
    assert not Judgment.objects.filter(submitted_at__isnull=False).exists()


@pytest.mark.parametrize(
    ("criteria", "message"),
    [({"helpfulness": {"a": 9}}, "outside 1..5"), ({"charm": {"a": 1}}, "unknown criterion")],
)
def test_bad_criteria_ratings_are_refused(project, engineer, reviewer, criteria, message):
    campaign, _ = build_campaign(engineer, project)
    j = services.judgment_next(campaign=campaign, reviewer=reviewer)

    with pytest.raises(ValidationError, match=message):
        services.judgment_submit(
            campaign=campaign, reviewer=reviewer, token=j.token, outcome="a", criteria=criteria
        )
    j.refresh_from_db()
    assert j.submitted_at is None


def test_failed_attention_checks_flag_the_rater_and_drop_their_judgments(
    project, engineer, member_of
):
    campaign, _ = build_campaign(
        engineer, project, prompts=20, contestants=2, raters_per_pair=2, attention_every=3
    )
    careful, careless = member_of("reviewer", "careful"), member_of("reviewer", "careless")

    def right(j):  # picks the intact response of attention checks
        if j.is_attention:
            return _intact(j)
        return "a" if j.contestant_left.label.endswith("0") else "b"

    _judge(campaign, careful, right)
    _judge(campaign, careless, lambda j: "tie")  # never looks

    raters = {r.reviewer_id: r for r in CampaignRater.objects.filter(campaign=campaign)}
    assert raters[careful.pk].attention_checks >= 5
    assert raters[careful.pk].attention_failed == 0
    assert not raters[careful.pk].flagged
    assert raters[careless.pk].flagged
    results = selectors.campaign_results(campaign=campaign)
    assert results.judgments == 20  # only the careful rater's
    assert results.excluded_raters == 1
    assert results.rows[0].label == "Contender-Quokka-0"
    # Excluding by hand works too, and shows in the counts.
    services.rater_set_excluded(
        actor=engineer, campaign=campaign, reviewer_id=careful.pk, excluded=True
    )
    assert selectors.campaign_results(campaign=campaign).judgments == 0


def test_results_report_ratings_position_bias_agreement_and_categories(
    project, engineer, member_of
):
    campaign, made = build_campaign(engineer, project, prompts=30, contestants=3, raters_per_pair=2)
    strongest = made[2].pk

    def prefer_strongest(j):
        if j.contestant_left_id == strongest:
            return "a"
        if j.contestant_right_id == strongest:
            return "b"
        return "tie"

    for i in range(2):
        _judge(campaign, member_of("reviewer", f"agree{i}"), prefer_strongest)

    results = selectors.campaign_results(campaign=campaign)

    assert results.rows[0].contestant_id == strongest
    assert results.rows[0].rating > 1000 > results.rows[-1].rating
    assert results.agreement.groups == 90
    assert results.agreement.percent == 1.0
    assert 0 <= results.position_bias.share <= 1
    assert set(results.categories) == {"billing", "shipping"}
    data = results.as_dict()
    assert data["ratings"][0]["label"] == "Contender-Quokka-2"
    assert data["win_rate"]["labels"] == [c.label for c in made]


def test_adaptive_selection_serves_the_least_certain_pair_first(project, engineer, member_of):
    campaign, made = build_campaign(
        engineer, project, prompts=20, contestants=3, pair_selection="adaptive"
    )
    # Settle pair (0, 1) decisively and leave (1, 2) close: its order is least certain.
    for i in range(4):
        r = member_of("reviewer", f"warm{i}")
        for _ in range(6):
            j = services.judgment_next(campaign=campaign, reviewer=r)
            won = "a" if j.contestant_left_id < j.contestant_right_id else "b"
            services.judgment_submit(campaign=campaign, reviewer=r, token=j.token, outcome=won)
    uncertainty = selectors.battle_pair_uncertainty(campaign=campaign)
    most_uncertain = max(uncertainty, key=uncertainty.get)

    j = services.judgment_next(campaign=campaign, reviewer=member_of("reviewer", "next"))

    pair = tuple(sorted((j.contestant_left_id, j.contestant_right_id)))
    assert uncertainty[pair] == pytest.approx(uncertainty[most_uncertain])


def test_closing_queues_the_bootstrap_after_commit(
    project, engineer, reviewer, django_capture_on_commit_callbacks
):
    campaign, _ = build_campaign(engineer, project)
    _judge(campaign, reviewer, lambda j: "a")

    with django_capture_on_commit_callbacks() as callbacks:
        services.campaign_close(actor=engineer, campaign=campaign)

    assert len(callbacks) == 1
    assert campaign.bootstraps.get().status == "queued"
    assert (
        services.judgment_next(campaign=Campaign.objects.get(pk=campaign.pk), reviewer=reviewer)
        is None
    )


def _intact(j):
    return "a" if j.left_is_x else "b"


def _x_wins_mostly(j):
    x_wins = j.battle.prompt.position % 4 != 0
    return "a" if j.left_is_x == x_wins else "b"


def test_bootstrap_service_stores_intervals(project, engineer, member_of):
    campaign, made = build_campaign(engineer, project, prompts=20, contestants=2, raters_per_pair=3)
    for i in range(3):
        _judge(campaign, member_of("reviewer", f"b{i}"), _x_wins_mostly)
    bootstrap = services.ratings_bootstrap_start(actor=engineer, campaign=campaign)

    services.campaigns.ratings_bootstrap_run(bootstrap_id=bootstrap.pk)

    bootstrap.refresh_from_db()
    assert bootstrap.status == "succeeded"
    assert bootstrap.rounds == 1000
    assert bootstrap.judgments == 60
    low, high, _ = bootstrap.intervals[str(made[0].pk)]
    assert low < high
    results = selectors.campaign_results(campaign=campaign)
    assert not results.bootstrap_stale
    assert results.rows[0].boot_lower is not None


def test_preference_rows_leave_out_ties_and_attention_checks(project, engineer, reviewer):
    campaign, _ = build_campaign(engineer, project, prompts=6, contestants=2, attention_every=2)
    outcomes = iter(["a", "tie", "b", "both_bad"] * 10)
    _judge(campaign, reviewer, lambda j: _intact(j) if j.is_attention else next(outcomes))

    rows = services.campaigns.campaign_preference_rows(campaign=campaign)

    decisive = campaign.judgments.filter(is_attention=False, outcome__in=["a", "b"]).count()
    assert len(rows) == decisive
    for row in rows:
        assert set(row) == {"prompt", "chosen", "rejected", "source", "group"}
        assert row["chosen"] != row["rejected"]
        assert "lorem ipsum" not in row["chosen"] + row["rejected"]


def test_judgments_export_as_a_preference_snapshot(project, engineer, reviewer):
    campaign, _ = build_campaign(engineer, project, prompts=6, contestants=2)
    _judge(campaign, reviewer, _x_wins_mostly)

    snapshot = services.campaign_export_preferences(
        actor=engineer, campaign=campaign, name="round-1 judgments"
    )

    assert snapshot.member_count == 6
    assert snapshot.task_type == "preference"
    assert AuditEvent.objects.filter(action="evaluation.campaign.export_preferences").exists()


def test_judgments_snapshot_keeps_prompts_and_battles_in_one_split_and_does_not_leak(
    project, engineer, member_of
):
    # 8 prompts x 3 pairs of contestants, each pair judged by 3 reviewers: every prompt
    # is in 9 judgments and every battle in 3.
    campaign, _ = build_campaign(engineer, project, prompts=8, contestants=3, raters_per_pair=3)
    for i in range(3):
        _judge(campaign, member_of("reviewer", f"r{i}"), _x_wins_mostly)

    snapshot = services.campaign_export_preferences(actor=engineer, campaign=campaign, name="j")

    members = list(snapshot.members.select_related("item"))
    prompts = defaultdict(set)
    for member in members:
        prompts[member.item.payload["prompt"]].add(member.split)
    assert snapshot.member_count == 72
    assert len(prompts) == 8
    assert all(len(s) == 1 for s in prompts.values())
    assert {s for splits in prompts.values() for s in splits} >= {"train", "test"}
    battles = defaultdict(set)
    for member in members:
        battles[member.item.metadata.get("split_group")].add(member.split)
    assert len(battles) == 24
    assert all(len(s) == 1 for s in battles.values())
    check = QualityCheck.objects.get(snapshot=snapshot, kind="leakage")  # started with it
    quality_check_run(check_id=check.pk)
    check.refresh_from_db()
    assert check.status == "succeeded"
    assert check.result["leaks"] == 0
    assert check.result["shared_prompt"] == check.result["exact"] == []


@pytest.mark.parametrize(
    ("license", "synthetic"), [("CC-BY-4.0", False), ("MIT", True), ("", False)]
)
def test_judgments_dataset_takes_licence_and_synthetic_from_the_prompt_set(
    project, engineer, reviewer, license, synthetic
):
    campaign, _ = build_campaign(engineer, project, prompts=4, contestants=2)
    PromptSet.objects.filter(pk=campaign.prompt_set_id).update(
        license=license or "NOASSERTION", synthetic=synthetic
    )
    campaign.refresh_from_db()
    _judge(campaign, reviewer, _x_wins_mostly)

    snapshot = services.campaign_export_preferences(actor=engineer, campaign=campaign, name="j")

    dataset = Dataset.objects.get(derivation="evaluation", project=project)
    assert (dataset.license, dataset.synthetic) == (license or "NOASSERTION", synthetic)
    # Per field: the prompts as their set says, the responses are model outputs.
    assert (dataset.prompt_synthetic, dataset.response_synthetic) == (synthetic, True)
    assert snapshot.stats["datasets"][0]["license"] == dataset.license
    assert snapshot.stats["datasets"][0]["synthetic"] is synthetic


def test_prompt_sets_record_the_licence_of_their_prompts(project, engineer):
    uploaded = services.prompt_set_create(
        actor=engineer,
        project=project,
        name="up",
        rows=[{"prompt": "hi"}],
        license="CC-BY-SA-4.0",
        synthetic=True,
    )
    snapshot = writing_snapshot(project, engineer)  # its dataset: CC-BY-4.0, not synthetic
    from_snapshot = services.prompt_set_create_from_snapshot(
        actor=engineer, snapshot=snapshot, name="snap"
    )
    unstated = services.prompt_set_create(
        actor=engineer, project=project, name="plain", rows=[{"prompt": "hi"}]
    )

    assert (uploaded.license, uploaded.synthetic) == ("CC-BY-SA-4.0", True)
    assert (from_snapshot.license, from_snapshot.synthetic) == ("CC-BY-4.0", False)
    assert (unstated.license, unstated.synthetic) == ("NOASSERTION", False)


def test_export_without_decisive_judgments_is_refused(project, engineer, reviewer):
    campaign, _ = build_campaign(engineer, project, prompts=3, contestants=2)
    _judge(campaign, reviewer, lambda j: "tie")

    with pytest.raises(ValidationError, match="no decisive judgments"):
        services.campaign_export_preferences(actor=engineer, campaign=campaign, name="x")
