"""Blind pairwise campaigns: building battles, handing pairs to reviewers, taking judgments,
attention checks, rater flags and the background bootstrap.

Concurrency: a battle's `assigned` counts open and submitted judgments; the next pair is
claimed with SELECT ... FOR UPDATE SKIP LOCKED so two reviewers asking at once get different
battles without waiting on each other.
"""

import hashlib
import hmac
import math
import random
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from annotation.services import snapshot_create_from_pairs
from core.jobs import runs_under_job_lock
from core.models import Project, User
from core.services.audit import audit_record
from core.services.jobs import job_claim, job_fail, job_finish
from core.time_spent import time_spent_decide
from evaluation import ratings as R
from evaluation import selectors, tasks
from evaluation.identity import self_identification
from evaluation.models import (
    Battle,
    Campaign,
    CampaignRater,
    Contestant,
    Judgment,
    PromptSet,
    RatingsBootstrap,
)
from evaluation.services.prompts import (
    GeneratedOutput,
    contestant_model_names,
    generation_records,
)

# Sides come from the OS entropy pool: a seeded PRNG would let someone who knows the seed
# and the order of requests work out which side is which.
_sides = random.SystemRandom()
OPEN_JUDGMENT_TTL = timedelta(hours=2)
DEFAULT_CRITERIA = [
    {"key": "helpfulness", "label": "Helpfulness", "scale": 5},
    {"key": "accuracy", "label": "Accuracy", "scale": 5},
    {"key": "safety", "label": "Safety", "scale": 5},
]


def _same_output(x: str, y: str) -> bool:
    return " ".join(x.split()) == " ".join(y.split())


def _attention_battles(
    *,
    campaign: Campaign,
    prompts: list,
    records: dict[int, dict[int, GeneratedOutput]],
    count: int,
    rng: random.Random,
) -> list[Battle]:
    """Attention checks that read like any other pair: x is a contestant's answer to the
    prompt, y a contestant's real answer to a different prompt. Only a reviewer who reads
    the prompt can tell which one is off-topic; no text is made up, so nothing marks them."""
    texts = {p.pk: " ".join(_prompt_words(p.text)) for p in prompts}
    answered = [
        (prompt, output)
        for prompt in prompts
        for by_prompt in records.values()
        if (output := by_prompt.get(prompt.pk)) is not None and output.text.strip()
    ]
    battles: list[Battle] = []
    seen: set[tuple[int, str, str]] = set()
    for _ in range(count * 20):  # bounded: small or repetitive sets may offer fewer
        if len(battles) >= count or len(answered) < 2:
            break
        (prompt, good), (other, bad) = rng.sample(answered, 2)
        key = (prompt.pk, good.text, bad.text)
        if (
            other.pk == prompt.pk
            or texts[other.pk] == texts[prompt.pk]
            or _same_output(good.text, bad.text)
            or key in seen
        ):
            continue
        seen.add(key)
        battles.append(
            Battle(
                campaign=campaign,
                prompt=prompt,
                kind=Battle.Kind.ATTENTION,
                text_x=good.text,
                text_y=bad.text,
                truncated_x=good.truncated,
                truncated_y=bad.truncated,
                shuffle=rng.randrange(1 << 30),
            )
        )
    return battles


def _prompt_words(text: Any) -> list[str]:
    return str(text).lower().split()


def attention_slot(*, campaign_id: int, reviewer_id: int, block: int, every: int) -> int:
    """Where in block `block` (0-based) of `every` real judgments a reviewer's attention
    check comes: after this many of the block's real judgments, 0 ≤ slot < every.

    Random-looking but fixed for a reviewer, campaign and block (so a reload or a retry
    serves the same schedule), and keyed with the server's secret so a reviewer cannot
    work out when the next check comes."""
    message = f"attention:{campaign_id}:{reviewer_id}:{block}".encode()
    digest = hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") % every


def _validate_criteria(criteria: Any) -> list[dict]:
    if not isinstance(criteria, list):
        raise ValidationError({"criteria": "must be a list of {key, label, scale}"})
    seen, out = set(), []
    for n, c in enumerate(criteria):
        if not isinstance(c, Mapping) or not str(c.get("key", "")).strip():
            raise ValidationError({"criteria": f"item {n + 1} needs a 'key'"})
        key = str(c["key"]).strip()
        scale = c.get("scale", 5)
        if not isinstance(scale, int) or not 2 <= scale <= 10:
            raise ValidationError({"criteria": f"{key}: scale must be an integer from 2 to 10"})
        if key in seen:
            raise ValidationError({"criteria": f"{key} appears twice"})
        seen.add(key)
        out.append({"key": key, "label": str(c.get("label") or key), "scale": scale})
    return out


@transaction.atomic
def campaign_create(
    *,
    actor: User,
    project: Project,
    name: str,
    prompt_set: PromptSet,
    contestants: Sequence[Contestant],
    question: str = "Which response is better?",
    criteria: list[dict] | None = None,
    raters_per_pair: int = 1,
    rater_quota: int = 0,
    pair_selection: str = Campaign.PairSelection.ALL,
    attention_every: int = 10,
    attention_fail_share: float = 0.2,
    seed: int = 0,
) -> Campaign:
    """One battle per prompt per contestant pair where both have an output and the outputs
    differ (identical outputs would only teach reviewers to press T), plus attention checks."""
    name, unique = _campaign_input_validated(
        name=name,
        project=project,
        prompt_set=prompt_set,
        contestants=contestants,
        pair_selection=pair_selection,
        raters_per_pair=raters_per_pair,
        attention_fail_share=attention_fail_share,
    )
    outputs = _generation_records_of_all(contestants=unique, prompt_set=prompt_set)
    campaign = Campaign.objects.create(
        project=project,
        name=name,
        prompt_set=prompt_set,
        question=(question or "").strip() or "Which response is better?",
        criteria=_validate_criteria(DEFAULT_CRITERIA if criteria is None else criteria),
        raters_per_pair=raters_per_pair,
        rater_quota=rater_quota,
        pair_selection=pair_selection,
        attention_every=attention_every,
        attention_fail_share=attention_fail_share,
        created_by=actor,
    )
    campaign.contestants.set(unique)
    campaign.stats = _battles_create(
        campaign=campaign, contestants=unique, outputs=outputs, seed=seed
    )
    campaign.save(update_fields=["stats"])
    _campaign_create_audit(actor=actor, campaign=campaign, contestants=unique)
    return campaign


def _campaign_input_validated(
    *,
    name: str,
    project: Project,
    prompt_set: PromptSet,
    contestants: Sequence[Contestant],
    pair_selection: str,
    raters_per_pair: int,
    attention_fail_share: float,
) -> tuple[str, list[Contestant]]:
    """The campaign's name, stripped, and its contestants without repeats; raises on the
    first thing wrong."""
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "A campaign needs a name."})
    unique = list({c.pk: c for c in contestants}.values())
    if len(unique) < 2:
        raise ValidationError({"contestants": "A campaign needs at least two contestants."})
    if prompt_set.project_id != project.pk or any(c.project_id != project.pk for c in unique):
        raise ValidationError("The prompt set and contestants must belong to this project.")
    if pair_selection not in Campaign.PairSelection.values:
        raise ValidationError({"pair_selection": f"must be one of {Campaign.PairSelection.values}"})
    if raters_per_pair < 1:
        raise ValidationError({"raters_per_pair": "must be at least 1"})
    if not 0 <= attention_fail_share < 1:
        raise ValidationError({"attention_fail_share": "must be in [0, 1)"})
    return name, unique


def _generation_records_of_all(
    *, contestants: list[Contestant], prompt_set: PromptSet
) -> dict[int, dict[int, GeneratedOutput]]:
    """{contestant id: {prompt id: output}}; raises naming each contestant with none yet."""
    outputs = {c.pk: generation_records(contestant=c, prompt_set=prompt_set) for c in contestants}
    missing = [c.label for c in contestants if not outputs[c.pk]]
    if missing:
        raise ValidationError(
            {"contestants": f"No generations on {prompt_set.name!r} yet for: {', '.join(missing)}"}
        )
    return outputs


def _battles_create(
    *,
    campaign: Campaign,
    contestants: list[Contestant],
    outputs: dict[int, dict[int, GeneratedOutput]],
    seed: int,
) -> dict[str, int]:
    """Insert the campaign's real battles and attention checks, served in an order drawn
    from `seed`; returns the campaign's stats."""
    rng = random.Random(seed)  # noqa: S311 - serving order only
    ordered = sorted(contestants, key=lambda c: c.pk)
    prompts = list(campaign.prompt_set.prompts.order_by("position"))
    battles, identical = _real_battles(
        campaign=campaign, prompts=prompts, ordered=ordered, outputs=outputs, rng=rng
    )
    real = len(battles)
    if campaign.attention_every:
        # One check per `attention_every` real judgments, and a reviewer may judge every
        # real battle: enough distinct checks for that, and never fewer than five.
        battles += _attention_battles(
            campaign=campaign,
            prompts=prompts,
            records=outputs,
            count=max(5, math.ceil(real / campaign.attention_every)),
            rng=rng,
        )
    Battle.objects.bulk_create(battles, batch_size=2000)
    return {
        "battles": real,
        "attention_checks": len(battles) - real,
        "identical_skipped": identical,
        "self_identified": sum(1 for b in battles[:real] if b.self_identification),
    }


def _real_battles(
    *,
    campaign: Campaign,
    prompts: list,
    ordered: list[Contestant],
    outputs: dict[int, dict[int, GeneratedOutput]],
    rng: random.Random,
) -> tuple[list[Battle], int]:
    """The unsaved battles of every prompt and contestant pair (lower id on side x), and how
    many pairs were left out because both outputs were the same."""
    # Every contestant's registry names: an answer naming any model in the campaign gives
    # the game away, not only one naming its own.
    names = [name for c in ordered for name in contestant_model_names(c)]
    battles, identical = [], 0
    for prompt in prompts:
        for i, cx in enumerate(ordered):
            for cy in ordered[i + 1 :]:
                x, y = outputs[cx.pk].get(prompt.pk), outputs[cy.pk].get(prompt.pk)
                if x is None or y is None:
                    continue
                if _same_output(x.text, y.text):
                    identical += 1
                    continue
                battles.append(
                    Battle(
                        campaign=campaign,
                        prompt=prompt,
                        contestant_x=cx,
                        contestant_y=cy,
                        text_x=x.text,
                        text_y=y.text,
                        truncated_x=x.truncated,
                        truncated_y=y.truncated,
                        self_identification=x.self_identification
                        or y.self_identification
                        or self_identification(x.text, prompt=prompt.text, names=names)
                        or self_identification(y.text, prompt=prompt.text, names=names),
                        shuffle=rng.randrange(1 << 30),
                    )
                )
    return battles, identical


def _campaign_create_audit(
    *, actor: User, campaign: Campaign, contestants: list[Contestant]
) -> None:
    audit_record(
        actor=actor,
        action="evaluation.campaign.create",
        target=campaign,
        data={
            "name": campaign.name,
            "contestants": sorted(c.pk for c in contestants),
            "prompt_set": campaign.prompt_set_id,
            **campaign.stats,
        },
        project_id=campaign.project_id,
    )


def _release_stale(campaign: Campaign) -> int:
    """Open judgments nobody answered for OPEN_JUDGMENT_TTL give their slot back, and their
    pair may go to the same reviewer again; returns how many. Caller holds a transaction."""
    stale = list(
        Judgment.objects.filter(
            campaign=campaign,
            submitted_at__isnull=True,
            shown_at__lte=timezone.now() - OPEN_JUDGMENT_TTL,
        )
        .select_for_update(skip_locked=True)
        .values_list("pk", "battle_id")
    )
    if not stale:
        return 0
    for _, battle_id in sorted(stale, key=lambda row: row[1]):  # a fixed lock order
        Battle.objects.filter(pk=battle_id).update(assigned=F("assigned") - 1)
    Judgment.objects.filter(pk__in=[pk for pk, _ in stale]).delete()
    audit_record(
        actor=None,
        action="evaluation.judgment.release",
        target=campaign,
        project_id=campaign.project_id,
        data={
            "judgments": sorted(pk for pk, _ in stale),
            "battles": sorted({battle_id for _, battle_id in stale}),
        },
    )
    return len(stale)


def judgments_release_stale() -> int:
    """Release the stale open judgments of every open campaign, one transaction per
    campaign (the beat sweep); returns how many."""
    released = 0
    for campaign in Campaign.objects.filter(status=Campaign.Status.OPEN):
        with transaction.atomic():
            released += _release_stale(campaign)
    return released


def _claim(battles: QuerySet[Battle], reviewer: User) -> Battle | None:
    return (
        battles.exclude(judgments__reviewer=reviewer)
        .select_for_update(skip_locked=True, of=("self",))
        .first()
    )


@transaction.atomic
def judgment_next(*, campaign: Campaign, reviewer: User) -> Judgment | None:
    """The reviewer's open judgment, or a newly claimed battle shown in random order.
    None when the campaign is closed, the reviewer's quota is met or nothing is left."""
    if campaign.status != Campaign.Status.OPEN:
        return None
    current = (
        Judgment.objects.filter(
            campaign=campaign,
            reviewer=reviewer,
            submitted_at__isnull=True,
            shown_at__gt=timezone.now() - OPEN_JUDGMENT_TTL,  # a stale one is released below
        )
        .select_related("battle__prompt")
        .first()
    )
    if current is not None:
        return current
    _release_stale(campaign)
    done = selectors.review_progress(campaign=campaign, reviewer=reviewer).done
    if campaign.rater_quota and done >= campaign.rater_quota:
        return None
    battle = None
    if _attention_due(campaign, reviewer, done):
        battle = _claim(
            campaign.battles.filter(kind=Battle.Kind.ATTENTION).order_by("assigned", "shuffle"),
            reviewer,
        )
    if battle is None:
        battle = _next_real_battle(campaign, reviewer)
    if battle is None:
        return None
    Battle.objects.filter(pk=battle.pk).update(assigned=F("assigned") + 1)
    left_is_x = _sides.random() < 0.5
    judgment = Judgment.objects.create(
        campaign=campaign,
        battle=battle,
        reviewer=reviewer,
        is_attention=battle.kind == Battle.Kind.ATTENTION,
        left_is_x=left_is_x,
        contestant_left_id=battle.contestant_x_id if left_is_x else battle.contestant_y_id,
        contestant_right_id=battle.contestant_y_id if left_is_x else battle.contestant_x_id,
    )
    CampaignRater.objects.get_or_create(campaign=campaign, reviewer=reviewer)
    return Judgment.objects.select_related("battle__prompt").get(pk=judgment.pk)


def _attention_due(campaign: Campaign, reviewer: User, done: int) -> bool:
    """Real judgments come in blocks of `attention_every`; each block holds one attention
    check, after `attention_slot` of its real judgments. A check missed (none free at that
    moment) is served later, but never straight after another check."""
    every = campaign.attention_every
    if not every:
        return False
    block = done // every
    mine = Judgment.objects.filter(campaign=campaign, reviewer=reviewer)
    if mine.filter(is_attention=True).count() > block:
        return False
    slot = attention_slot(
        campaign_id=campaign.pk, reviewer_id=reviewer.pk, block=block, every=every
    )
    if done - block * every < slot:
        return False
    last = mine.order_by("-shown_at", "-pk").values_list("is_attention", flat=True).first()
    if last:
        return False
    # A check after the reviewer's last real pair would only hold them up.
    return _open_real_battles(campaign).exclude(judgments__reviewer=reviewer).exists()


def _open_real_battles(campaign: Campaign) -> QuerySet[Battle]:
    return campaign.battles.filter(kind=Battle.Kind.REAL, assigned__lt=campaign.raters_per_pair)


def _next_real_battle(campaign: Campaign, reviewer: User) -> Battle | None:
    open_battles = _open_real_battles(campaign)
    if campaign.pair_selection != Campaign.PairSelection.ADAPTIVE:
        return _claim(open_battles.order_by("assigned", "shuffle"), reviewer)
    # Adaptive: the pair whose order the current fit is least sure of goes first.
    uncertainty = selectors.battle_pair_uncertainty(campaign=campaign)
    ranked = sorted(uncertainty, key=lambda pair: -uncertainty[pair])
    for cx, cy in ranked:
        battle = _claim(
            open_battles.filter(contestant_x_id=cx, contestant_y_id=cy).order_by(
                "assigned", "shuffle"
            ),
            reviewer,
        )
        if battle is not None:
            return battle
    return None


def _parse_criteria(campaign: Campaign, raw: Any) -> dict[str, dict[str, int]]:
    if raw in (None, ""):
        return {}
    if not isinstance(raw, Mapping):
        raise ValidationError({"criteria": "must be an object {criterion: {a: n, b: n}}"})
    scales = {c["key"]: c["scale"] for c in campaign.criteria}
    out: dict[str, dict[str, int]] = {}
    for key, sides in raw.items():
        if key not in scales:
            raise ValidationError({"criteria": f"unknown criterion {key!r}"})
        if not isinstance(sides, Mapping):
            raise ValidationError({"criteria": f"{key}: expected {{a: n, b: n}}"})
        for side, value in sides.items():
            if side not in ("a", "b"):
                raise ValidationError({"criteria": f"{key}: side must be 'a' or 'b'"})
            if value in (None, ""):
                continue
            try:
                number = int(value)
            except (TypeError, ValueError):
                raise ValidationError({"criteria": f"{key}.{side}: not a number"}) from None
            if not 1 <= number <= scales[key]:
                raise ValidationError(
                    {"criteria": f"{key}.{side}: {number} is outside 1..{scales[key]}"}
                )
            out.setdefault(key, {})[side] = number
    return out


@transaction.atomic
def judgment_submit(
    *,
    campaign: Campaign,
    reviewer: User,
    token: str,
    outcome: str,
    criteria: Mapping[str, Any] | None = None,
    rationale: str = "",
    seconds_spent: float | None = None,
    unsafe_a: bool = False,
    unsafe_b: bool = False,
) -> Judgment:
    """Record the reviewer's verdict on their open judgment `token` (outcome relative to the
    sides shown). Attention checks update the rater's record and flag. The time recorded
    follows core.time_spent, the annotation queue's rule: the client's `seconds_spent`
    when plausible against the time since the pair was handed out."""
    judgment = (
        # The prompt comes along for its words (reading time) but is not locked: other
        # reviewers' battles share it.
        Judgment.objects.select_for_update(of=("self", "battle"))
        .select_related("battle__prompt")
        .filter(campaign=campaign, reviewer=reviewer, token=token)
        .first()
    )
    if judgment is None:
        raise ValidationError({"token": "This pair is not assigned to you (or has expired)."})
    if judgment.submitted_at is not None:
        raise ValidationError({"token": "This pair has already been judged."})
    if campaign.status != Campaign.Status.OPEN:
        raise ValidationError("This campaign is closed.")
    if outcome not in Judgment.Outcome.values:
        raise ValidationError({"outcome": f"must be one of {', '.join(Judgment.Outcome.values)}"})
    now = timezone.now()
    battle = judgment.battle
    spent = time_spent_decide(
        claimed=seconds_spent,
        handed_out_at=judgment.shown_at,
        answered_at=now,
        shown=[battle.prompt.text, battle.text_x, battle.text_y],
    )
    judgment.outcome = outcome
    judgment.criteria = _parse_criteria(campaign, criteria)
    judgment.rationale = (rationale or "")[:5000]
    judgment.seconds_spent = spent.seconds
    judgment.seconds_source = spent.source
    judgment.too_fast = spent.too_fast
    judgment.unsafe_left, judgment.unsafe_right = bool(unsafe_a), bool(unsafe_b)
    judgment.submitted_at = now
    if judgment.is_attention:
        # x is the intact response: the reviewer passes by picking the side it was shown on.
        judgment.attention_passed = outcome == ("a" if judgment.left_is_x else "b")
        _rater_record_attention(campaign, reviewer, judgment.attention_passed)
    judgment.save()
    audit_record(
        actor=reviewer,
        action="evaluation.judgment.submit",
        target=judgment,
        data={
            "campaign": campaign.pk,
            "outcome": outcome,
            "attention": judgment.is_attention,
            "seconds_source": spent.source,
            "too_fast": spent.too_fast,
        },
        project_id=campaign.project_id,
    )
    return judgment


def _rater_record_attention(campaign: Campaign, reviewer: User, passed: bool) -> None:
    rater, _ = CampaignRater.objects.select_for_update().get_or_create(
        campaign=campaign, reviewer=reviewer
    )
    rater.attention_checks += 1
    rater.attention_failed += 0 if passed else 1
    was = rater.flagged
    rater.flagged = (
        rater.attention_failed > 0
        and rater.attention_failed / rater.attention_checks > campaign.attention_fail_share
    )
    rater.save()
    if rater.flagged != was:
        audit_record(
            actor=None,
            action="evaluation.rater.flag" if rater.flagged else "evaluation.rater.unflag",
            target=rater,
            data={"checks": rater.attention_checks, "failed": rater.attention_failed},
            project_id=campaign.project_id,
        )


@transaction.atomic
def rater_set_excluded(
    *, actor: User, campaign: Campaign, reviewer_id: int, excluded: bool
) -> CampaignRater:
    rater = (
        CampaignRater.objects.select_for_update()
        .filter(campaign=campaign, reviewer_id=reviewer_id)
        .first()
    )
    if rater is None:
        raise ValidationError({"reviewer": "This reviewer has not judged in this campaign."})
    rater.excluded = excluded
    rater.save(update_fields=["excluded"])
    audit_record(
        actor=actor,
        action="evaluation.rater.exclude" if excluded else "evaluation.rater.include",
        target=rater,
        data={"campaign": campaign.pk, "reviewer": reviewer_id},
        project_id=campaign.project_id,
    )
    return rater


@transaction.atomic
def campaign_close(*, actor: User, campaign: Campaign) -> Campaign:
    campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
    if campaign.status == Campaign.Status.CLOSED:
        raise ValidationError("This campaign is already closed.")
    campaign.status = Campaign.Status.CLOSED
    campaign.closed_at = timezone.now()
    campaign.save(update_fields=["status", "closed_at"])
    Judgment.objects.filter(campaign=campaign, submitted_at__isnull=True).delete()
    audit_record(actor=actor, action="evaluation.campaign.close", target=campaign)
    ratings_bootstrap_start(actor=actor, campaign=campaign)
    return campaign


@transaction.atomic
def ratings_bootstrap_start(
    *, actor: User, campaign: Campaign, rounds: int = 1000
) -> RatingsBootstrap:
    if rounds < 1000:
        raise ValidationError({"rounds": "A bootstrap needs at least 1000 rounds."})
    bootstrap = RatingsBootstrap.objects.create(campaign=campaign, rounds=rounds, created_by=actor)
    audit_record(
        actor=actor,
        action="evaluation.ratings.bootstrap",
        target=bootstrap,
        data={"campaign": campaign.pk, "rounds": rounds},
        project_id=campaign.project_id,
    )
    transaction.on_commit(lambda: tasks.ratings_bootstrap_task.delay(bootstrap.pk))
    return bootstrap


@runs_under_job_lock(RatingsBootstrap, "bootstrap_id")
def ratings_bootstrap_run(*, bootstrap_id: int) -> None:
    """Runs on a worker; duplicate deliveries exit at the claim."""
    if not job_claim(RatingsBootstrap, pk=bootstrap_id):
        return
    bootstrap = RatingsBootstrap.objects.select_related("campaign").get(pk=bootstrap_id)
    started = time.perf_counter()
    try:
        ids, counts, _ = selectors.campaign_fit(campaign=bootstrap.campaign)
        result = R.bootstrap_ratings(counts, rounds=bootstrap.rounds, seed=bootstrap_id)
        # A contestant that wins (or loses) every resampled battle has an unbounded
        # rating: JSON has no infinity, so the bound is stored as null (unbounded).
        intervals = {
            str(pk): [
                selectors.finite_or_none(result.lower[n]),
                selectors.finite_or_none(result.upper[n]),
                selectors.finite_or_none(result.median[n]),
            ]
            for n, pk in enumerate(ids)
        }
    except Exception as error:  # the row must say why it stopped, whatever broke
        job_fail(RatingsBootstrap, pk=bootstrap_id, error=str(error)[:2000])
        raise
    job_finish(
        RatingsBootstrap,
        pk=bootstrap_id,
        intervals=intervals,
        judgments=counts.total,
        seconds=time.perf_counter() - started,
    )


def campaign_preference_rows(*, campaign: Campaign) -> list[dict]:
    """Decisive judgments as preference rows (ties and both-bad left out) from included
    raters; attention checks never."""
    excluded = selectors.excluded_reviewer_ids(campaign=campaign)
    rows = []
    judged = (
        Judgment.objects.filter(campaign=campaign, is_attention=False, outcome__in=["a", "b"])
        .exclude(reviewer_id__in=excluded)
        .select_related("battle__prompt")
        .order_by("pk")
    )
    for j in judged.iterator(chunk_size=2000):
        b = j.battle
        left, right = (b.text_x, b.text_y) if j.left_is_x else (b.text_y, b.text_x)
        chosen, rejected = (left, right) if j.outcome == "a" else (right, left)
        digest = hashlib.sha256(f"{campaign.pk}:{j.pk}".encode()).hexdigest()[:16]
        rows.append(
            {
                "prompt": b.prompt.text,
                "chosen": chosen,
                "rejected": rejected,
                "source": f"evaluation-campaign-{campaign.pk}-{digest}",
                # Verdicts on one battle (and on one prompt) must share a split.
                "group": f"campaign-{campaign.pk}-battle-{b.pk}",
            }
        )
    return rows


@transaction.atomic
def campaign_export_preferences(*, actor: User, campaign: Campaign, name: str) -> Any:
    """Judgments as a preference snapshot for the next reward-model or DPO round. The
    dataset of judgments takes its licence and synthetic flag from the campaign's prompt
    set; its split keeps each prompt (and battle) in one split."""
    rows = campaign_preference_rows(campaign=campaign)
    if not rows:
        raise ValidationError("There are no decisive judgments to export.")
    prompt_set = campaign.prompt_set
    snapshot = snapshot_create_from_pairs(
        actor=actor,
        project=campaign.project,
        name=name,
        rows=rows,
        seed=0,
        license=prompt_set.license,
        synthetic=prompt_set.synthetic,
        source_description=(
            f"Blind pairwise evaluation judgments made in this portal (campaign "
            f"{campaign.pk}) on prompt set {prompt_set.name!r}"
        ),
    )
    audit_record(
        actor=actor,
        action="evaluation.campaign.export_preferences",
        target=campaign,
        data={"rows": len(rows), "snapshot": getattr(snapshot, "pk", None)},
    )
    return snapshot
