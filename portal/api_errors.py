import psycopg
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from rest_framework.exceptions import APIException, ValidationError
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


def portal_exception_handler(exc, context):
    """Services raise Django's ValidationError; the API answers it as a 400 naming the field.
    A database out of reach is a 503 with Retry-After: the client sends the same request
    again (queue submissions carry an idempotency key, so a retry is never counted twice)."""
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        exc = ValidationError(detail=detail)
    elif database_unavailable(exc):
        exc = DatabaseUnavailable()
    return exception_handler(exc, context)
