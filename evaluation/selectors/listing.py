"""The lists the API pages through and filters (prompt sets, contestants, campaigns, generated
outputs), and who may read which generated outputs. Every read is scoped by project; a
filter naming another project's object finds nothing."""

from django.db.models import QuerySet, Subquery
from django.http import Http404

from core.models import Project, Role
from core.selectors import ProjectAccess
from evaluation.models import Campaign, Contestant, Generation, PromptSet
from evaluation.selectors import (
    campaign_list_for_project,
    contestant_list_for_project,
    prompt_set_list_for_project,
)


def _narrowed(found: QuerySet, **lookups: object) -> QuerySet:
    """`found` filtered by each lookup whose value is given (None: not filtered)."""
    given = {lookup: value for lookup, value in lookups.items() if value is not None}
    return found.filter(**given) if given else found


def prompt_set_list_filtered(
    *,
    project: Project,
    name: str | None = None,
    source: str | None = None,
    adversarial: bool | None = None,
    general: bool | None = None,
) -> QuerySet[PromptSet]:
    """The project's prompt sets, narrowed by each filter given (None: not filtered)."""
    return _narrowed(
        prompt_set_list_for_project(project=project),
        name=name,
        source=source,
        adversarial=adversarial,
        general=general,
    )


def contestant_get(*, project: Project, contestant_id: int | str) -> Contestant:
    """A contestant of this project; Http404 for a missing id or one of another project."""
    try:
        return contestant_list_for_project(project=project).get(pk=int(contestant_id))
    except (Contestant.DoesNotExist, TypeError, ValueError):
        raise Http404("No such contestant.") from None


def contestant_list_filtered(
    *,
    project: Project,
    label: str | None = None,
    model_version: int | None = None,
    base_model: int | None = None,
) -> QuerySet[Contestant]:
    return _narrowed(
        contestant_list_for_project(project=project),
        label=label,
        model_version_id=model_version,
        base_model_id=base_model,
    )


def campaign_list_filtered(
    *,
    project: Project,
    name: str | None = None,
    status: str | None = None,
    prompt_set: int | None = None,
    contestant: int | None = None,
) -> QuerySet[Campaign]:
    found = _narrowed(
        campaign_list_for_project(project=project).prefetch_related("contestants"),
        name=name,
        status=status,
        prompt_set_id=prompt_set,
    )
    if contestant is not None:
        # A subquery, not a join: a join on the contestants would repeat each campaign.
        found = found.filter(
            pk__in=Campaign.contestants.through.objects.filter(contestant_id=contestant).values(
                "campaign_id"
            )
        )
    return found


def campaign_get_detailed(*, project: Project, campaign_id: int | str) -> Campaign:
    """A campaign of this project with its judged count and contestants; Http404 else."""
    try:
        return campaign_list_filtered(project=project).get(pk=int(campaign_id))
    except (Campaign.DoesNotExist, TypeError, ValueError):
        raise Http404("No such campaign.") from None


def contestant_ids_blind_for(*, access: ProjectAccess) -> set[int]:
    """Contestants whose outputs this caller may not read: for a holder of the reviewer
    role, those in one of the project's open campaigns. Their outputs are the texts of
    the reviewer's blind pairs, and beside their contestant they would say which model
    wrote which side (a reviewer learns it only once the campaign is closed)."""
    if not access.has(Role.REVIEWER):
        return set()
    return set(
        Campaign.contestants.through.objects.filter(
            campaign__project=access.project, campaign__status=Campaign.Status.OPEN
        ).values_list("contestant_id", flat=True)
    )


def generation_output_list_for_user(
    *,
    access: ProjectAccess,
    generation_job: int | None = None,
    contestant: int | None = None,
    prompt_set: int | None = None,
    campaign: int | None = None,
) -> QuerySet[Generation]:
    """Generated outputs of the project's generation jobs, in the order they were written,
    each with its prompt (and reference) and its job's contestant; narrowed by each filter
    given. `campaign` keeps the outputs of its contestants on its prompt set. Outputs the
    caller must not see (`contestant_ids_blind_for`) are left out. Caller has checked that
    the role may read generations."""
    found = (
        Generation.objects.filter(job__project=access.project)
        .select_related("prompt", "job__contestant")
        .order_by("pk")
    )
    found = _narrowed(
        found,
        job_id=generation_job,
        job__contestant_id=contestant,
        job__prompt_set_id=prompt_set,
    )
    if campaign is not None:
        chosen = Campaign.objects.filter(project=access.project, pk=campaign)
        found = found.filter(
            job__prompt_set_id=Subquery(chosen.values("prompt_set_id")[:1]),
            job__contestant_id__in=Campaign.contestants.through.objects.filter(
                campaign__in=chosen
            ).values("contestant_id"),
        )
    blind = contestant_ids_blind_for(access=access)
    if blind:
        found = found.exclude(job__contestant_id__in=blind)
    return found


def generation_outputs_withheld(*, access: ProjectAccess) -> int:
    """How many of the project's generated outputs `generation_output_list_for_user` leaves
    out for this caller, so a page can say that some are hidden and why."""
    blind = contestant_ids_blind_for(access=access)
    if not blind:
        return 0
    return Generation.objects.filter(
        job__project=access.project, job__contestant_id__in=blind
    ).count()
