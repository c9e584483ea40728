"""One shape for every API error: a 400 is `{field: [message, ...]}` (messages that name no
field under "detail"), whoever raised it; other errors keep DRF's `{"detail": message}`."""

import difflib
from typing import Any

import psycopg
from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from rest_framework import serializers
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler

# How long a client is told to wait when the database is out of reach. A restart takes a
# few seconds; the pool opens new connections as soon as the server is back.
RETRY_AFTER_SECONDS = 3

# SQLSTATEs that mean "the server is not there for now", not "this request is wrong":
# connection exceptions (class 08), the server shutting down or starting up (57P01-57P03)
# and too many connections (53300).
_UNAVAILABLE_STATES = ("57P01", "57P02", "57P03", "53300")


class DatabaseUnavailable(APIException):
    status_code = 503
    default_detail = "The database is unavailable for a moment; try again."
    default_code = "database_unavailable"
    # DRF's handler turns `wait` into a Retry-After header (as for throttling).
    wait = RETRY_AFTER_SECONDS


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the database cannot be reached now (stopped, restarting, its
    connection cut, or no pool connection free in time), so the same request may succeed
    when sent again. Errors about the request itself (constraints, bad SQL) are not."""
    if isinstance(exc, InterfaceError):
        return True  # Django's "connection already closed"
    if not isinstance(exc, OperationalError):
        return False
    cause = exc.__cause__
    if not isinstance(cause, psycopg.Error):
        return False
    # Errors raised by the client library (refused, reset, closed, pool timeout) carry no
    # SQLSTATE; a server's answers always do.
    state = cause.sqlstate
    return state is None or state.startswith("08") or state in _UNAVAILABLE_STATES


# Keys that name no field, from Django (`__all__`) and DRF (`non_field_errors`).
_NO_FIELD = {NON_FIELD_ERRORS, api_settings.NON_FIELD_ERRORS_KEY, "detail"}


def field_lists(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """Any error detail DRF or a service produces (a message, a list, a dict of either,
    nested for nested fields) as `{field: [message, ...]}`. Nested fields are named by
    path (`hyperparameters.lr`, `items.2.text`); messages that name no field go under
    "detail"."""
    out: dict[str, list[str]] = {}

    def add(key: str, message: Any) -> None:
        out.setdefault(key or "detail", []).append(str(message))

    def walk(value: Any, key: str) -> None:
        if isinstance(value, dict):
            for name, inner in value.items():
                name = "" if name in _NO_FIELD else str(name)
                walk(inner, f"{key}.{name}" if key and name else key or name)
        elif isinstance(value, list | tuple):
            if all(not isinstance(item, dict | list | tuple) for item in value):
                for item in value:
                    add(key, item)
            else:  # one entry per item of a list field: name each by its index
                for index, inner in enumerate(value):
                    if inner:
                        walk(inner, f"{key}.{index}" if key else str(index))
        else:
            add(key, value)

    walk(detail, prefix)
    return out


class StrictInput(serializers.Serializer):
    """An input serializer that refuses keys it does not read, naming each, together with
    the errors of the fields it does read: a setting that is silently dropped (a typo, an
    option this API does not have) looks to the client like one that took effect."""

    def to_internal_value(self, data: Any) -> Any:
        unknown = sorted(set(data) - set(self.fields)) if isinstance(data, dict) else []
        errors: dict[str, Any] = {
            name: [unknown_field_message(name, self.fields)] for name in unknown
        }
        try:
            value = super().to_internal_value(data)
        except ValidationError as error:
            raise ValidationError({**field_lists(error.detail), **errors}) from None
        if errors:
            raise ValidationError(errors)
        return value


def unknown_field_message(name: str, known: Any) -> str:
    close = difflib.get_close_matches(str(name), list(known), n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    return f"Unknown field: nothing here reads it.{hint}"


def portal_exception_handler(exc, context):
    """Services raise Django's ValidationError; the API answers it as a 400 naming the field.
    Every 400, whoever raised it, has the one shape of `field_lists`. A database out of
    reach is a 503 with Retry-After: the client sends the same request again (queue
    submissions carry an idempotency key, so a retry is never counted twice)."""
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        exc = ValidationError(detail=detail)
    elif database_unavailable(exc):
        exc = DatabaseUnavailable()
    response = exception_handler(exc, context)
    if response is not None and response.status_code == 400:
        response.data = field_lists(response.data)
    return response
