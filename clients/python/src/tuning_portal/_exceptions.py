"""Errors raised by the client. An answer with an error status becomes an `APIStatusError`
subclass named after its status; its `body` is the API's error body as sent (a 400 is
`{field: [message, ...]}`, other errors `{"detail": message}`)."""

from typing import Any

import httpx


class TuningPortalError(Exception):
    """Base of every error this package raises."""


class APIError(TuningPortalError):
    def __init__(self, message: str, *, request: httpx.Request | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.request = request


class APIConnectionError(APIError):
    """The server could not be reached (refused, reset, DNS), after the retries."""


class APITimeoutError(APIConnectionError):
    """The request timed out, after the retries."""


class APIStatusError(APIError):
    status_code: int

    def __init__(self, message: str, *, response: httpx.Response, body: Any) -> None:
        super().__init__(message, request=response.request)
        self.response = response
        self.status_code = response.status_code
        self.body = body

    @property
    def errors(self) -> dict[str, list[str]]:
        """The body's messages by field name (messages that name no field under "detail")."""
        if not isinstance(self.body, dict):
            return {"detail": [str(self.body)]} if self.body else {}
        return {
            str(key): [str(m) for m in value] if isinstance(value, list) else [str(value)]
            for key, value in self.body.items()
        }


class BadRequestError(APIStatusError):
    """400: the request was refused; `errors` names each field and why."""


class AuthenticationError(APIStatusError):
    """401: no API key, or an unknown, expired or revoked one."""


class PermissionDeniedError(APIStatusError):
    """403: the key's owner lacks the role this call needs in the project."""


class NotFoundError(APIStatusError):
    """404: no such object, or a project the key's owner is no member of."""


class ConflictError(APIStatusError):
    """409."""


class RateLimitError(APIStatusError):
    """429: too many requests; retried with backoff before this is raised."""


class InternalServerError(APIStatusError):
    """5xx: retried (idempotent calls) before this is raised."""


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    429: RateLimitError,
}


def error_message(body: Any, status_code: int) -> str:
    if isinstance(body, dict):
        if set(body) == {"detail"} and not isinstance(body["detail"], list):
            return f"{status_code}: {body['detail']}"
        parts = []
        for key, value in body.items():
            text = " ".join(map(str, value)) if isinstance(value, list) else str(value)
            parts.append(text if key == "detail" else f"{key}: {text}")
        return f"{status_code}: " + "; ".join(parts)
    return f"{status_code}: {body}" if body else f"HTTP {status_code}"


def status_error(response: httpx.Response) -> APIStatusError:
    """The exception for an error answer; the caller has read its body."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text[:2000]
    code = response.status_code
    cls = _BY_STATUS.get(code) or (InternalServerError if code >= 500 else APIStatusError)
    return cls(error_message(body, code), response=response, body=body)
