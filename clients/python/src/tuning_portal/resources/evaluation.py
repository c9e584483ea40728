"""Evaluation: prompt sets, contestants, generation jobs and their outputs, blind pairwise
campaigns (and their actions), the reviewer's judgments, offline metric runs and
regression gates."""

import builtins
from typing import Any

from tuning_portal.pagination import CursorPaginator
from tuning_portal.resources._base import Resource, wait_until
from tuning_portal.types import (
    BlindPair,
    Bootstrap,
    Campaign,
    Contestant,
    Gate,
    GateRun,
    GenerationJob,
    GenerationOutput,
    MetricRun,
    PreferenceExport,
    PromptSet,
    Rater,
)


class PromptSets(Resource):
    """projects/<p>/prompt-sets/ (list, create), prompt-sets/<id>/, prompt-sets/from-snapshot/."""

    def list(
        self, *, project: int | None = None, page_size: int = 100, **filters: Any
    ) -> CursorPaginator[PromptSet]:
        """Filters: name, source, adversarial, general."""
        path = self._path(project, "prompt-sets/")
        return self._pages(path, PromptSet.from_dict, filters, page_size)

    def create(
        self,
        *,
        name: str,
        rows: builtins.list[dict[str, Any]],
        project: int | None = None,
        adversarial: bool = False,
        general: bool = False,
        license: str = "NOASSERTION",
        synthetic: bool = False,
    ) -> PromptSet:
        """Rows are {prompt, reference?, category?, metadata?}; a prompt is text or a list
        of {role, content} turns."""
        body = {
            "name": name,
            "rows": rows,
            "adversarial": adversarial,
            "general": general,
            "license": license,
            "synthetic": synthetic,
        }
        path = self._path(project, "prompt-sets/")
        return PromptSet.from_dict(self._client._post(path, json=body))

    def create_from_snapshot(
        self, *, snapshot: int, name: str, project: int | None = None, adversarial: bool = False
    ) -> PromptSet:
        body = {"snapshot": snapshot, "name": name, "adversarial": adversarial}
        path = self._path(project, "prompt-sets/from-snapshot/")
        return PromptSet.from_dict(self._client._post(path, json=body))

    def retrieve(self, prompt_set_id: int, *, project: int | None = None) -> PromptSet:
        path = self._path(project, f"prompt-sets/{int(prompt_set_id)}/")
        return PromptSet.from_dict(self._client._get(path))


class Contestants(Resource):
    """projects/<p>/contestants/ (list, create), contestants/<id>/ and
    contestants/<id>/generations/ (outputs made elsewhere, imported)."""

    def list(
        self, *, project: int | None = None, page_size: int = 100, **filters: Any
    ) -> CursorPaginator[Contestant]:
        """Filters: label, model_version, base_model."""
        path = self._path(project, "contestants/")
        return self._pages(path, Contestant.from_dict, filters, page_size)

    def create(
        self,
        *,
        project: int | None = None,
        label: str = "",
        model_version: int | None = None,
        base_model: int | None = None,
        prompt_template: str = "",
    ) -> Contestant:
        """A model version (named after it), a base model, or neither (imported outputs)."""
        body: dict[str, Any] = {"label": label, "prompt_template": prompt_template}
        if model_version is not None:
            body["model_version"] = model_version
        if base_model is not None:
            body["base_model"] = base_model
        path = self._path(project, "contestants/")
        return Contestant.from_dict(self._client._post(path, json=body))

    def retrieve(self, contestant_id: int, *, project: int | None = None) -> Contestant:
        path = self._path(project, f"contestants/{int(contestant_id)}/")
        return Contestant.from_dict(self._client._get(path))

    def import_generations(
        self,
        contestant_id: int,
        *,
        prompt_set: int,
        outputs: builtins.list[str],
        project: int | None = None,
    ) -> dict[str, Any]:
        """Outputs made outside the portal, one per prompt in order: {job, rows}."""
        path = self._path(project, f"contestants/{int(contestant_id)}/generations/")
        result: dict[str, Any] = self._client._post(
            path, json={"prompt_set": prompt_set, "outputs": outputs}
        )
        return result


class GenerationJobs(Resource):
    """projects/<p>/generation-jobs/ (list, create), generation-jobs/<id>/, and the
    outputs they wrote (generation-outputs/?generation_job=<id>)."""

    def list(
        self, *, project: int | None = None, page_size: int = 100
    ) -> CursorPaginator[GenerationJob]:
        path = self._path(project, "generation-jobs/")
        return self._pages(path, GenerationJob.from_dict, None, page_size)

    def create(
        self,
        *,
        prompt_set: int,
        contestant: int,
        project: int | None = None,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int = 0,
        batch_size: int = 8,
    ) -> GenerationJob:
        """Queue a job that runs the contestant's model over the prompt set."""
        body = {
            "prompt_set": prompt_set,
            "contestant": contestant,
            "max_new_tokens": max_new_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "seed": seed,
            "batch_size": batch_size,
        }
        path = self._path(project, "generation-jobs/")
        return GenerationJob.from_dict(self._client._post(path, json=body))

    def retrieve(self, job_id: int, *, project: int | None = None) -> GenerationJob:
        path = self._path(project, f"generation-jobs/{int(job_id)}/")
        return GenerationJob.from_dict(self._client._get(path))

    def wait(
        self,
        job_id: int,
        *,
        project: int | None = None,
        timeout: float | None = 600.0,
        poll_interval: float = 0.5,
    ) -> GenerationJob:
        return wait_until(
            lambda: self.retrieve(job_id, project=project),
            lambda job: job.finished,
            what=f"generation job {job_id}",
            timeout=timeout,
            poll_interval=poll_interval,
        )

    def outputs(
        self, job_id: int, *, project: int | None = None, page_size: int = 100
    ) -> CursorPaginator[GenerationOutput]:
        return self._client.generation_outputs.list(
            project=project, generation_job=job_id, page_size=page_size
        )


class GenerationOutputs(Resource):
    """GET projects/<p>/generation-outputs/: outputs beside their prompts and references."""

    def list(
        self, *, project: int | None = None, page_size: int = 100, **filters: Any
    ) -> CursorPaginator[GenerationOutput]:
        """Filters: generation_job, contestant, prompt_set, campaign."""
        path = self._path(project, "generation-outputs/")
        return self._pages(path, GenerationOutput.from_dict, filters, page_size)


class Campaigns(Resource):
    """projects/<p>/campaigns/ (list, create), campaigns/<id>/ and its actions: close/,
    bootstraps/, raters/exclude|include/, export-preferences/, ratings/."""

    def list(
        self, *, project: int | None = None, page_size: int = 100, **filters: Any
    ) -> CursorPaginator[Campaign]:
        """Filters: name, status, prompt_set, contestant."""
        path = self._path(project, "campaigns/")
        return self._pages(path, Campaign.from_dict, filters, page_size)

    def create(
        self,
        *,
        name: str,
        prompt_set: int,
        contestants: builtins.list[int],
        project: int | None = None,
        **options: Any,
    ) -> Campaign:
        """A blind pairwise campaign. Options: question, criteria, raters_per_pair,
        rater_quota, pair_selection, attention_every. Answers the campaign as retrieved."""
        body = {"name": name, "prompt_set": prompt_set, "contestants": contestants, **options}
        created = self._client._post(self._path(project, "campaigns/"), json=body)
        return self.retrieve(created["id"], project=project)

    def retrieve(self, campaign_id: int, *, project: int | None = None) -> Campaign:
        path = self._path(project, f"campaigns/{int(campaign_id)}/")
        return Campaign.from_dict(self._client._get(path))

    def close(self, campaign_id: int, *, project: int | None = None) -> Campaign:
        """Close it (open pairs withdrawn; the final bootstrap queued)."""
        path = self._path(project, f"campaigns/{int(campaign_id)}/close/")
        return Campaign.from_dict(self._client._post(path))

    def bootstrap(self, campaign_id: int, *, project: int | None = None) -> Bootstrap:
        path = self._path(project, f"campaigns/{int(campaign_id)}/bootstraps/")
        return Bootstrap.from_dict(self._client._post(path))

    def retrieve_bootstrap(
        self, campaign_id: int, bootstrap_id: int, *, project: int | None = None
    ) -> Bootstrap:
        path = self._path(project, f"campaigns/{int(campaign_id)}/bootstraps/{int(bootstrap_id)}/")
        return Bootstrap.from_dict(self._client._get(path))

    def exclude_rater(
        self, campaign_id: int, *, reviewer: int, project: int | None = None
    ) -> Rater:
        path = self._path(project, f"campaigns/{int(campaign_id)}/raters/exclude/")
        return Rater.from_dict(self._client._post(path, json={"reviewer": reviewer}))

    def include_rater(
        self, campaign_id: int, *, reviewer: int, project: int | None = None
    ) -> Rater:
        path = self._path(project, f"campaigns/{int(campaign_id)}/raters/include/")
        return Rater.from_dict(self._client._post(path, json={"reviewer": reviewer}))

    def export_preferences(
        self, campaign_id: int, *, name: str, project: int | None = None
    ) -> PreferenceExport:
        """The decisive judgments as a preference snapshot named `name`."""
        path = self._path(project, f"campaigns/{int(campaign_id)}/export-preferences/")
        return PreferenceExport.from_dict(self._client._post(path, json={"name": name}))

    def ratings(
        self,
        campaign_id: int,
        *,
        project: int | None = None,
        include_self_identified: bool = False,
    ) -> dict[str, Any]:
        """Ratings, win rates, position bias, agreement and raters."""
        path = self._path(project, f"campaigns/{int(campaign_id)}/ratings/")
        params = {"include_self_identified": "true" if include_self_identified else "false"}
        result: dict[str, Any] = self._client._get(path, params=params)
        return result


class Reviews(Resource):
    """The reviewer's side of a campaign: projects/<p>/review/<c>/next/ and submit/."""

    def next(self, campaign_id: int, *, project: int | None = None) -> BlindPair | None:
        """The next blind pair to judge; None when none is left for the caller."""
        path = self._path(project, f"review/{int(campaign_id)}/next/")
        response = self._client._request("GET", path)
        return BlindPair.from_dict(response.json()) if response.status_code != 204 else None

    def judge(
        self,
        campaign_id: int,
        *,
        token: str,
        outcome: str,
        project: int | None = None,
        criteria: dict[str, Any] | None = None,
        rationale: str = "",
        seconds_spent: float | None = None,
        unsafe_a: bool = False,
        unsafe_b: bool = False,
    ) -> BlindPair | None:
        """Record a verdict on the pair `token` names (outcome a, b, tie or both_bad) and
        get the next pair (None when none is left)."""
        body: dict[str, Any] = {
            "token": token,
            "outcome": outcome,
            "rationale": rationale,
            "unsafe_a": unsafe_a,
            "unsafe_b": unsafe_b,
        }
        if criteria is not None:
            body["criteria"] = criteria
        if seconds_spent is not None:
            body["seconds_spent"] = seconds_spent
        path = self._path(project, f"review/{int(campaign_id)}/submit/")
        response = self._client._request("POST", path, json=body)
        return BlindPair.from_dict(response.json()) if response.status_code != 204 else None


class MetricRuns(Resource):
    """projects/<p>/metric-runs/ (start) and metric-runs/<id>/: offline text metrics."""

    def create(
        self,
        *,
        contestant: int,
        prompt_set: int,
        project: int | None = None,
        kind: str = "text",
        slice_field: str = "",
        gap_threshold: float = 0.05,
    ) -> MetricRun:
        body = {
            "contestant": contestant,
            "prompt_set": prompt_set,
            "kind": kind,
            "slice_field": slice_field,
            "gap_threshold": gap_threshold,
        }
        path = self._path(project, "metric-runs/")
        return MetricRun.from_dict(self._client._post(path, json=body))

    def retrieve(self, run_id: int, *, project: int | None = None) -> MetricRun:
        path = self._path(project, f"metric-runs/{int(run_id)}/")
        return MetricRun.from_dict(self._client._get(path))

    def wait(
        self,
        run_id: int,
        *,
        project: int | None = None,
        timeout: float | None = 600.0,
        poll_interval: float = 0.5,
    ) -> MetricRun:
        return wait_until(
            lambda: self.retrieve(run_id, project=project),
            lambda run: run.done,
            what=f"metric run {run_id}",
            timeout=timeout,
            poll_interval=poll_interval,
        )


class Gates(Resource):
    """projects/<p>/gates/ (create) and gates/<id>/runs/ (run one)."""

    def create(
        self, *, name: str, checks: builtins.list[dict[str, Any]], project: int | None = None
    ) -> Gate:
        """Checks: {kind: metric_not_worse|general_not_worse, metric, prompt_set, tolerance?,
        alpha?}, {kind: rating_above_baseline, campaign, min_judgments?},
        {kind: no_fairness_flag, prompt_set}, {kind: unsafe_rate_below, campaign, max}."""
        path = self._path(project, "gates/")
        return Gate.from_dict(self._client._post(path, json={"name": name, "checks": checks}))

    def run(
        self, gate_id: int, *, candidate: int, baseline: int, project: int | None = None
    ) -> GateRun:
        """Run every check for contestant `candidate` against `baseline`; the run counts
        for the candidate's model version (its promotion reads the latest run)."""
        path = self._path(project, f"gates/{int(gate_id)}/runs/")
        body = {"candidate": candidate, "baseline": baseline}
        return GateRun.from_dict(self._client._post(path, json=body))
