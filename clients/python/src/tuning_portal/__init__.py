"""Python client for the Tuning Portal API.

from tuning_portal import Client

client = Client(base_url="https://portal.example", api_key="...", project=3)
for item in client.items.list(dataset=7):
    ...
"""

from tuning_portal._client import Client
from tuning_portal._exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    TuningPortalError,
)
from tuning_portal._version import __version__
from tuning_portal.pagination import Page, Paginator

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "ConflictError",
    "InternalServerError",
    "NotFoundError",
    "Page",
    "Paginator",
    "PermissionDeniedError",
    "RateLimitError",
    "TuningPortalError",
    "__version__",
]
