"""Who may call what: every page and API endpoint under /projects/<project_id>/, by role.

One row per URL name and method; an `x` under a role lets that role through the access
check, a `.` gets 403. A member of another project gets 404 everywhere (the project is not
theirs to know of). tests/test_role_matrix.py calls every row as every role, and fails
when a project-scoped URL has no row here.

The roles are spelled out rather than named after `RoleSet`, so that changing a role set
shows here as the change of behaviour it is.
"""

from dataclasses import dataclass

from core.models import Role

COLUMNS = (
    Role.ANNOTATOR,
    Role.ADJUDICATOR,
    Role.REVIEWER,
    Role.ENGINEER,
    Role.COMPLIANCE,
    Role.ADMIN,
)

_TABLE = """
# URL name                                      method  ann adj rev eng com adm
# --- pages: portal, governance ------------------------------------------------
project_detail                                  GET      x   x   x   x   x   x
project_members                                 GET      .   .   .   .   .   x
project_members                                 POST     .   .   .   .   .   x
membership_remove                               POST     .   .   .   .   .   x
governance:rollback                             POST     .   .   .   x   .   x
# --- pages: annotation --------------------------------------------------------
annotation:annotate                             GET      x   .   .   .   .   .
annotation:submit                               POST     x   .   .   .   .   .
annotation:undo                                 POST     x   .   .   .   .   .
annotation:adjudicate                           GET      .   x   .   .   .   .
annotation:adjudicate                           POST     .   x   .   .   .   .
annotation:adjudicate_undo                      POST     .   x   .   .   .   .
annotation:datasets                             GET      .   .   .   x   x   x
annotation:datasets                             POST     .   .   .   x   .   .
annotation:dataset                              GET      .   .   .   x   x   x
annotation:upload                               GET      .   .   .   x   x   x
annotation:setup                                GET      .   .   .   x   .   x
annotation:setup                                POST     .   .   .   x   .   x
annotation:dashboard                            GET      .   .   .   x   x   x
annotation:disagreements                        GET      .   x   .   x   x   x
annotation:curation                             GET      .   .   .   x   x   x
annotation:curation                             POST     .   .   .   x   .   .
annotation:check                                GET      .   .   .   x   x   x
annotation:check                                POST     .   .   .   x   .   .
annotation:snapshot                             GET      .   .   .   x   x   x
annotation:snapshot                             POST     .   .   .   x   .   .
annotation:snapshot-export                      GET      .   .   .   x   .   .
annotation:export-annotations                   GET      .   .   .   x   .   .
annotation:export-items                         GET      .   .   .   x   .   .
# --- pages: evaluation --------------------------------------------------------
evaluation:review_home                          GET      .   .   x   .   .   .
evaluation:version_compare                      GET      .   .   .   x   x   x
evaluation:review                               GET      .   .   x   .   .   .
evaluation:review_submit                        POST     .   .   x   .   .   .
evaluation:overview                             GET      .   .   .   x   x   x
evaluation:overview                             POST     .   .   .   x   .   .
evaluation:prompt_set_from_snapshot             POST     .   .   .   x   .   .
evaluation:contestant_create                    POST     .   .   .   x   .   .
evaluation:generation_start                     POST     .   .   .   x   .   .
evaluation:metric_runs_start                    POST     .   .   .   x   .   .
evaluation:generation_jobs                      GET      .   .   .   x   x   x
evaluation:gate_create                          POST     .   .   .   x   .   .
evaluation:gate_run                             POST     .   .   .   x   .   .
evaluation:results                              GET      .   .   .   x   x   x
evaluation:campaign_action                      POST     .   .   .   x   .   .
evaluation:outputs                              GET      .   .   .   x   x   x
# --- pages: training ----------------------------------------------------------
training:jobs                                   GET      .   .   .   x   x   x
training:job_compare                            GET      .   .   .   x   x   x
training:job_new                                GET      .   .   .   x   .   .
training:job_new                                POST     .   .   .   x   .   .
training:job                                    GET      .   .   .   x   x   x
training:job_cancel                             POST     .   .   .   x   .   .
training:job_resume                             POST     .   .   .   x   .   .
training:versions                               GET      .   .   .   x   x   x
training:version                                GET      .   .   .   x   x   x
training:version_compression                    GET      .   .   .   x   x   x
training:version_compression                    POST     .   .   .   x   .   .
training:base_models                            GET      .   .   .   x   x   x
training:base_models                            POST     .   .   .   x   .   .
training:registration                           GET      .   .   .   x   x   x
training:sweeps                                 GET      .   .   .   x   x   x
training:sweeps                                 POST     .   .   .   x   .   .
training:sweep                                  GET      .   .   .   x   x   x
training:sweep_cancel                           POST     .   .   .   x   .   .
training:sweep_register_best                    POST     .   .   .   x   .   .
training:playground                             GET      .   .   .   x   .   .
training:playground                             POST     .   .   .   x   .   .
training:playground_result                      GET      .   .   .   x   .   .
# --- pages: serving -----------------------------------------------------------
serving:deployments                             GET      .   .   .   x   x   x
serving:deployment_create                       GET      .   .   .   x   .   x
serving:deployment_create                       POST     .   .   .   x   .   x
serving:deployment                              GET      .   .   .   x   x   x
serving:deployment_place                        POST     .   .   .   x   .   x
serving:deployment_reweight                     POST     .   .   .   x   .   x
serving:deployment_rollout                      POST     .   .   .   x   .   x
serving:deployment_settings                     POST     .   .   .   x   .   x
serving:deployment_key_create                   POST     .   .   .   x   .   x
serving:deployment_key_revoke                   POST     .   .   .   x   .   x
# --- API: projects, members, audit --------------------------------------------
api-project                                     GET      x   x   x   x   x   x
api-project                                     PATCH    .   .   .   .   .   x
api-memberships                                 GET      .   .   .   x   x   x
api-memberships                                 POST     .   .   .   .   .   x
api-membership                                  GET      .   .   .   .   .   x
api-membership                                  PATCH    .   .   .   .   .   x
api-membership                                  DELETE   .   .   .   .   .   x
api-audit-events                                GET      .   .   .   .   x   x
api-dossiers                                    GET      .   .   .   x   x   x
api-dossiers                                    POST     .   .   .   x   x   x
api-dossier                                     GET      .   .   .   x   x   x
api-dossier-download                            GET      .   .   .   x   x   x
api-signoffs                                    GET      .   .   .   x   x   x
api-signoffs                                    POST     .   .   .   x   x   .
api-stage-changes                               GET      .   .   .   x   x   x
api-stage-changes                               POST     .   .   .   x   .   x
api-use-declaration                             GET      .   .   .   x   x   x
api-use-declaration                             PUT      .   .   .   x   .   x
api-rollback                                    POST     .   .   .   x   .   x
# --- API: annotation ----------------------------------------------------------
annotation-api:api-datasets                     GET      .   .   .   x   x   x
annotation-api:api-datasets                     POST     .   .   .   x   .   .
annotation-api:api-dataset                      GET      .   .   .   x   x   x
annotation-api:api-upload                       GET      .   .   .   x   x   x
annotation-api:api-schemas                      GET      x   x   .   x   x   x
annotation-api:api-schemas                      POST     .   .   .   x   .   x
annotation-api:api-guidelines                   GET      x   x   .   x   x   x
annotation-api:api-guidelines                   POST     .   .   .   x   .   x
annotation-api:api-items                        GET      .   .   .   x   .   x
annotation-api:api-annotation-settings          GET      .   .   .   x   .   x
annotation-api:api-annotation-settings          PATCH    .   .   .   x   .   x
annotation-api:api-queue-next                   POST     x   .   .   .   .   .
annotation-api:api-queue-submit                 POST     x   .   .   .   .   .
annotation-api:api-queue-skip                   POST     x   .   .   .   .   .
annotation-api:api-queue-undo                   POST     x   .   .   .   .   .
annotation-api:api-adjudication-next            POST     .   x   .   .   .   .
annotation-api:api-adjudication-resolve         POST     .   x   .   .   .   .
annotation-api:api-agreement                    GET      .   .   .   x   x   x
annotation-api:api-disagreements                GET      .   x   .   x   x   x
annotation-api:api-snapshots                    GET      .   .   .   x   x   x
annotation-api:api-snapshots                    POST     .   .   .   x   .   .
annotation-api:api-snapshot                     GET      .   .   .   x   x   x
annotation-api:api-snapshot-export              GET      .   .   .   x   .   .
annotation-api:api-export-annotations           GET      .   .   .   x   .   .
annotation-api:api-export-items                 GET      .   .   .   x   .   .
annotation-api:api-checks                       GET      .   .   .   x   x   x
annotation-api:api-checks                       POST     .   .   .   x   .   .
annotation-api:api-check                        GET      .   .   .   x   x   x
# --- API: evaluation ----------------------------------------------------------
evaluation-api:api-review-next                  GET      .   .   x   .   .   .
evaluation-api:api-review-submit                POST     .   .   x   .   .   .
evaluation-api:api-prompt-sets                  GET      .   .   .   x   x   x
evaluation-api:api-prompt-sets                  POST     .   .   .   x   .   .
evaluation-api:api-prompt-set                   GET      .   .   .   x   x   x
evaluation-api:api-prompt-set-from-snapshot     POST     .   .   .   x   .   .
evaluation-api:api-contestants                  GET      .   .   .   x   x   x
evaluation-api:api-contestants                  POST     .   .   .   x   .   .
evaluation-api:api-contestant                   GET      .   .   .   x   x   x
evaluation-api:api-generation-jobs              GET      .   .   .   x   x   x
evaluation-api:api-generation-jobs              POST     .   .   .   x   .   .
evaluation-api:api-generation-job               GET      .   .   .   x   x   x
evaluation-api:api-generations                  POST     .   .   .   x   .   .
evaluation-api:api-generation-outputs           GET      .   .   .   x   x   x
evaluation-api:api-campaigns                    GET      .   .   .   x   x   x
evaluation-api:api-campaigns                    POST     .   .   .   x   .   .
evaluation-api:api-campaign                     GET      .   .   .   x   x   x
evaluation-api:api-campaign-close               POST     .   .   .   x   .   .
evaluation-api:api-campaign-bootstraps          POST     .   .   .   x   .   .
evaluation-api:api-campaign-bootstrap           GET      .   .   .   x   x   x
evaluation-api:api-campaign-rater-exclude       POST     .   .   .   x   .   .
evaluation-api:api-campaign-rater-include       POST     .   .   .   x   .   .
evaluation-api:api-campaign-export-preferences  POST     .   .   .   x   .   .
evaluation-api:api-campaign-ratings             GET      .   .   .   x   x   x
evaluation-api:api-metric-runs                  POST     .   .   .   x   .   .
evaluation-api:api-metric-run                   GET      .   .   .   x   x   x
evaluation-api:api-gates                        POST     .   .   .   x   .   .
evaluation-api:api-gate-runs                    POST     .   .   .   x   .   .
# --- API: training ------------------------------------------------------------
training-api:api-jobs                           GET      .   .   .   x   x   x
training-api:api-jobs                           POST     .   .   .   x   .   .
training-api:api-job                            GET      .   .   .   x   x   x
training-api:api-job-cancel                     POST     .   .   .   x   .   .
training-api:api-job-events                     GET      .   .   .   x   x   x
training-api:api-job-checkpoints                GET      .   .   .   x   x   x
training-api:api-files                          POST     .   .   .   x   .   .
training-api:api-sweeps                         GET      .   .   .   x   x   x
training-api:api-sweeps                         POST     .   .   .   x   .   .
training-api:api-sweep                          GET      .   .   .   x   x   x
training-api:api-sweep-register-best            POST     .   .   .   x   .   .
training-api:api-model-versions                 GET      .   .   .   x   x   x
training-api:api-model-version                  GET      .   .   .   x   x   x
training-api:api-model-version-compressions     GET      .   .   .   x   x   x
training-api:api-model-version-compressions     POST     .   .   .   x   .   .
training-api:api-base-models                    GET      .   .   .   x   x   x
training-api:api-base-model                     GET      .   .   .   x   x   x
training-api:api-base-model-registrations       GET      .   .   .   x   x   x
training-api:api-base-model-registrations       POST     .   .   .   x   .   .
training-api:api-base-model-registration        GET      .   .   .   x   x   x
# --- API: serving -------------------------------------------------------------
serving-api:api-deployments                     GET      .   .   .   x   x   x
serving-api:api-deployments                     POST     .   .   .   x   .   x
serving-api:api-deployment                      GET      .   .   .   x   x   x
serving-api:api-deployment                      PATCH    .   .   .   x   .   x
serving-api:api-deployment-place                POST     .   .   .   x   .   x
serving-api:api-deployment-reweight             POST     .   .   .   x   .   x
serving-api:api-deployment-rollout              POST     .   .   .   x   .   x
serving-api:api-deployment-keys                 GET      .   .   .   x   x   x
serving-api:api-deployment-keys                 POST     .   .   .   x   .   x
serving-api:api-deployment-key-revoke           POST     .   .   .   x   .   x
serving-api:api-deployment-decisions            GET      .   .   .   x   x   x
serving-api:api-deployment-series               GET      .   .   .   x   x   x
"""


@dataclass(frozen=True)
class Row:
    name: str  # the URL's name, with its namespace
    method: str
    allowed: frozenset[str]

    @property
    def id(self) -> str:
        return f"{self.name}-{self.method}"


def _parse(table: str) -> list[Row]:
    rows = []
    for line in table.strip().splitlines():
        if line.startswith("#"):
            continue
        name, method, *marks = line.split()
        if set(marks) - {"x", "."}:
            raise ValueError(f"role matrix row {line!r}: one x or . per role")
        pairs = zip(COLUMNS, marks, strict=True)  # a missing mark is an error, not a "."
        allowed = frozenset(role.value for role, mark in pairs if mark == "x")
        rows.append(Row(name, method, allowed))
    return rows


MATRIX: list[Row] = _parse(_TABLE)
