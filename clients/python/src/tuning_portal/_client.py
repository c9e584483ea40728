"""The client: configuration, the HTTP session, retries and error mapping. Resources
(`client.jobs`, `client.datasets`, ...) are thin classes over `_request`."""

import os
import random
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx

from tuning_portal._exceptions import (
    APIConnectionError,
    APITimeoutError,
    TuningPortalError,
    status_error,
)
from tuning_portal._version import __version__
from tuning_portal.resources.accounts import ApiKeys, Memberships, Users
from tuning_portal.resources.annotation import (
    Annotation,
    Checks,
    Datasets,
    Exports,
    Guidelines,
    Items,
    Schemas,
    Snapshots,
    Uploads,
)
from tuning_portal.resources.evaluation import (
    Campaigns,
    Contestants,
    Gates,
    GenerationJobs,
    GenerationOutputs,
    MetricRuns,
    PromptSets,
    Reviews,
)
from tuning_portal.resources.governance import (
    Approvals,
    AuditEvents,
    Declarations,
    Dossiers,
    Stages,
)
from tuning_portal.resources.projects import Projects
from tuning_portal.resources.training import BaseModels, Files, Jobs, ModelVersions

DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
DEFAULT_MAX_RETRIES = 2
# Answers that say "not now" rather than "no": worth sending the same request again.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# A Retry-After longer than this is not waited for: the error goes to the caller.
MAX_RETRY_AFTER_S = 60.0

ENV_BASE_URL = "TUNING_PORTAL_BASE_URL"
ENV_API_KEY = "TUNING_PORTAL_API_KEY"
ENV_PROJECT = "TUNING_PORTAL_PROJECT"


def _api_root(base_url: str) -> str:
    """`https://portal.example` or `https://portal.example/api/v1`, with or without a
    trailing slash: the API's root either way."""
    root = base_url.rstrip("/")
    return root if root.endswith("/api/v1") else root + "/api/v1"


class Client:
    """A Tuning Portal API client.

    `base_url`, `api_key` and `project` (the default project id for project-scoped calls)
    fall back to TUNING_PORTAL_BASE_URL, TUNING_PORTAL_API_KEY and TUNING_PORTAL_PROJECT.
    Idempotent calls (GET, and POSTs that are safe to repeat, such as cancel) are retried
    up to `max_retries` times on 408/429/5xx and on connection errors, with exponential
    backoff that honours Retry-After; other POSTs are retried on 429 only.
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        project: int | None = None,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        http_client: httpx.Client | None = None,
    ) -> None:
        base_url = base_url or os.environ.get(ENV_BASE_URL)
        if not base_url:
            raise TuningPortalError(f"Give base_url= or set {ENV_BASE_URL}.")
        api_key = api_key or os.environ.get(ENV_API_KEY)
        if not api_key:
            raise TuningPortalError(f"Give api_key= or set {ENV_API_KEY}.")
        if project is None and os.environ.get(ENV_PROJECT):
            try:
                project = int(os.environ[ENV_PROJECT])
            except ValueError:
                raise TuningPortalError(f"{ENV_PROJECT} must be a project id.") from None
        self.base_url = _api_root(base_url)
        self.project = project
        self.max_retries = max_retries
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=timeout)
        self._headers = {
            "Authorization": f"Token {api_key}",
            "Accept": "application/json",
            "User-Agent": f"tuning-portal-python/{__version__}",
        }
        self.users = Users(self)
        self.api_keys = ApiKeys(self)
        self.projects = Projects(self)
        self.memberships = Memberships(self)
        self.annotation = Annotation(self)
        self.checks = Checks(self)
        self.datasets = Datasets(self)
        self.uploads = Uploads(self)
        self.schemas = Schemas(self)
        self.guidelines = Guidelines(self)
        self.items = Items(self)
        self.snapshots = Snapshots(self)
        self.exports = Exports(self)
        self.files = Files(self)
        self.jobs = Jobs(self)
        self.model_versions = ModelVersions(self)
        self.base_models = BaseModels(self)
        self.prompt_sets = PromptSets(self)
        self.contestants = Contestants(self)
        self.generation_jobs = GenerationJobs(self)
        self.generation_outputs = GenerationOutputs(self)
        self.campaigns = Campaigns(self)
        self.reviews = Reviews(self)
        self.metric_runs = MetricRuns(self)
        self.gates = Gates(self)
        self.approvals = Approvals(self)
        self.stages = Stages(self)
        self.declarations = Declarations(self)
        self.dossiers = Dossiers(self)
        self.audit_events = AuditEvents(self)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def project_path(self, project: int | None, rest: str = "") -> str:
        """`projects/<id>/<rest>` for `project`, or for the client's default project."""
        chosen = self.project if project is None else project
        if chosen is None:
            raise TuningPortalError(
                f"This call needs a project: give project=, Client(project=...) or {ENV_PROJECT}."
            )
        return f"projects/{int(chosen)}/{rest}"

    # --- HTTP -------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        files: Mapping[str, Any] | None = None,
        idempotent: bool | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        """Send one request, retrying what may be retried, and return a successful answer
        (its body unread when `stream`; the caller closes it). Raises the APIStatusError
        subclass for an error answer, APIConnectionError/APITimeoutError when unreachable."""
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        request = self._http.build_request(
            method,
            f"{self.base_url}/{path.lstrip('/')}",
            params=params,
            json=json,
            data=data,
            files=files,
            headers=self._headers,
        )
        attempt = 0
        while True:
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TimeoutException as error:
                if idempotent and attempt < self.max_retries:
                    attempt += 1
                    time.sleep(self._backoff(attempt, None) or 0)
                    continue
                raise APITimeoutError(f"Timed out: {error}", request=request) from error
            except httpx.TransportError as error:
                if idempotent and attempt < self.max_retries:
                    attempt += 1
                    time.sleep(self._backoff(attempt, None) or 0)
                    continue
                raise APIConnectionError(
                    f"Could not reach {self.base_url}: {error}", request=request
                ) from error
            code = response.status_code
            retryable = code in RETRY_STATUSES and (idempotent or code == 429)
            wait = self._backoff(attempt + 1, response) if retryable else None
            if wait is not None and attempt < self.max_retries:
                attempt += 1
                response.close()
                time.sleep(wait)
                continue
            if response.is_error:
                response.read()
                response.close()
                raise status_error(response)
            return response

    @staticmethod
    def _backoff(attempt: int, response: httpx.Response | None) -> float | None:
        """Seconds to wait before try `attempt` + 1: the server's Retry-After where it sent
        one (None, do not retry, when that is longer than MAX_RETRY_AFTER_S), else
        exponential from half a second with jitter."""
        header = response.headers.get("Retry-After") if response is not None else None
        if header:
            try:
                asked = float(header)
            except ValueError:
                asked = -1.0
            if asked > MAX_RETRY_AFTER_S:
                return None
            if asked >= 0:
                return asked
        base = min(0.5 * 2 ** (attempt - 1), 8.0)
        return base * (1 - 0.25 * random.random())  # noqa: S311 - jitter, not a secret

    def _get(self, path: str, **kwargs: Any) -> Any:
        return self._request("GET", path, **kwargs).json()

    def _post(self, path: str, **kwargs: Any) -> Any:
        response = self._request("POST", path, **kwargs)
        return response.json() if response.content else None

    def _patch(self, path: str, **kwargs: Any) -> Any:
        return self._request("PATCH", path, **kwargs).json()

    @contextmanager
    def _stream(self, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        response = self._request("GET", path, stream=True, **kwargs)
        try:
            yield response
        finally:
            response.close()
