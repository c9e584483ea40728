"""How the API pages its collections.

Every list is paged by cursor: `?limit=` sets the page size (default 100, at most 10 000)
and each answer says where the next page starts. A cursor names the last row seen, so page
1 000 costs what page 1 costs (an offset makes the database walk every row before it) and a
row added meanwhile is neither skipped nor served twice. Cursors are opaque; send back the
URL as given.

Two shapes, so no existing client breaks:
- wrapped lists (the items, the audit log, and every list added since) answer
  `{"next": url|null, "previous": url|null, "results": [...]}`, the items and the audit log
  also `count` (as they always had);
- lists that have always answered a bare JSON array still do, and carry their next and
  previous page in a `Link` header (RFC 8288, as GitHub's API does):
  `Link: <https://.../?cursor=cD0xMjM%3D>; rel="next"`.
The items and the audit log still accept `offset` (deprecated): with it they page by
`limit`/`offset` as before.
"""

from collections.abc import Sequence
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination, LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api_errors import StrictInput

# PostgreSQL's LIMIT and OFFSET are bigints: a 30-digit value overflows them (a 500).
MAX_OFFSET = 2**62
MAX_PAGE_SIZE = 10_000
DEFAULT_PAGE_SIZE = 100


class PortalPagination(LimitOffsetPagination):
    """`limit`/`offset` paging with ceilings, so any value a client sends is a valid page.
    Deprecated for the item list and the audit log, which page by cursor."""

    max_limit = MAX_PAGE_SIZE

    def get_offset(self, request) -> int:
        return min(super().get_offset(request), MAX_OFFSET)

    def get_paginated_response_schema(self, schema: dict) -> dict:
        paginated = super().get_paginated_response_schema(schema)
        # Every page holds both links, null at the ends: not "maybe absent" in a client.
        paginated["required"] = ["count", "next", "previous", "results"]
        return paginated


class PortalCursorPagination(CursorPagination):
    """Cursor paging over an integer column that never changes (an id, a sequence number,
    a version), ascending or descending, so a cursor's position is always a valid integer.
    """

    page_size = DEFAULT_PAGE_SIZE
    page_size_query_param = "limit"
    max_page_size = MAX_PAGE_SIZE

    def __init__(self, ordering: str = "id") -> None:
        self.ordering = ordering

    def get_paginated_response_schema(self, schema: dict) -> dict:
        paginated = super().get_paginated_response_schema(schema)
        paginated["required"] = ["next", "previous", "results"]  # links null at the ends
        return paginated

    def decode_cursor(self, request: Request):
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            raise ValidationError(
                {self.cursor_query_param: ["Not a cursor this API gave."]}
            ) from None
        position = cursor.position if cursor else None
        if position is not None and not _bigint_text(str(position)):
            raise ValidationError({self.cursor_query_param: ["Not a cursor this API gave."]})
        return cursor


def _bigint_text(value: str) -> bool:
    text = value.removeprefix("-")
    return text.isascii() and text.isdigit() and int(text) < 2**63


def cursor_page(
    queryset: QuerySet,
    request: Request,
    view: APIView,
    serialize: Any,
    *,
    ordering: str = "id",
    count: bool = False,
) -> Response:
    """One wrapped page, `{count?, next, previous, results}`; `serialize(rows)` turns the
    page's rows into JSON-ready data. With a deprecated `offset` in the query, the page is
    taken by limit/offset as before."""
    if "offset" in request.query_params:
        legacy = PortalPagination()
        rows = legacy.paginate_queryset(queryset, request, view=view)
        return legacy.get_paginated_response(serialize(rows))
    paginator = PortalCursorPagination(ordering)
    rows = paginator.paginate_queryset(queryset, request, view=view) or []
    body: dict[str, Any] = {}
    if count:
        body["count"] = queryset.count()
    body |= {
        "next": paginator.get_next_link(),
        "previous": paginator.get_previous_link(),
        "results": serialize(rows),
    }
    return Response(body)


def array_page(
    queryset: QuerySet,
    request: Request,
    view: APIView,
    serialize: Any,
    *,
    ordering: str = "id",
) -> Response:
    """One page as a bare JSON array, the next and previous pages in a `Link` header."""
    paginator = PortalCursorPagination(ordering)
    rows = paginator.paginate_queryset(queryset, request, view=view) or []
    links = [
        f'<{url}>; rel="{rel}"'
        for url, rel in (
            (paginator.get_next_link(), "next"),
            (paginator.get_previous_link(), "prev"),
        )
        if url
    ]
    headers = {"Link": ", ".join(links)} if links else None
    return Response(serialize(rows), headers=headers)


# --- the schema --------------------------------------------------------------------------

CURSOR_PARAMETERS = [
    OpenApiParameter(
        "cursor", str, required=False, description="Where the page starts (from a next link)."
    ),
    OpenApiParameter(
        "limit",
        int,
        required=False,
        description=f"Page size, default {DEFAULT_PAGE_SIZE}, at most {MAX_PAGE_SIZE}.",
    ),
]
LINK_HEADER = OpenApiParameter(
    "Link",
    str,
    location=OpenApiParameter.HEADER,
    response=True,
    required=False,
    description='The next and previous pages: `<url>; rel="next", <url>; rel="prev"`.',
)
ARRAY_PAGE_PARAMETERS = [*CURSOR_PARAMETERS, LINK_HEADER]
OFFSET_PARAMETER = OpenApiParameter(
    "offset",
    int,
    required=False,
    deprecated=True,
    description="Deprecated: page by `cursor`. With it, pages are taken by limit/offset.",
)

_page_serializers: dict[str, type[serializers.Serializer]] = {}


def page_of(
    item: type[serializers.Serializer], *, count: bool = False, name: str | None = None
) -> type[serializers.Serializer]:
    """The schema of a wrapped page of `item` (what `cursor_page` answers)."""
    name = name or f"{item.__name__.removesuffix('Output')}Page"
    if name not in _page_serializers:
        fields: dict[str, Any] = {}
        if count:
            fields["count"] = serializers.IntegerField(help_text="Rows in the whole list.")
        fields |= {
            "next": serializers.URLField(allow_null=True, help_text="The next page, if any."),
            "previous": serializers.URLField(allow_null=True, help_text="The previous page."),
            "results": item(many=True),
        }
        _page_serializers[name] = type(name, (serializers.Serializer,), fields)
    return _page_serializers[name]


def strict_query(request: Request, known: Sequence[str]) -> dict[str, str]:
    """The query's filters, refusing (400, each named) parameters nothing here reads, so a
    misspelt filter is not silently a list of everything."""
    allowed = {*known, "cursor", "limit", "offset"}
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        hint = f"use one of {', '.join(known)}" if known else "this list takes no filters"
        raise ValidationError({name: [f"Unknown filter; {hint}."] for name in unknown})
    return {k: v for k, v in request.query_params.dict().items() if k in known}


class CursorListQuery(StrictInput):
    """The filters of a cursor-paged list, read from `request.query_params.dict()` (a
    plain dict, so an absent boolean stays absent). `cursor` and `limit` belong to the
    paginator: they pass here unread; any other unknown parameter is refused by name."""

    PAGING = ("cursor", "limit")

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            data = {key: value for key, value in data.items() if key not in self.PAGING}
        return super().to_internal_value(data)

    def filters(self) -> dict[str, Any]:
        """The validated filters that were given, as keyword arguments for a selector."""
        return {key: value for key, value in self.validated_data.items() if value is not None}
