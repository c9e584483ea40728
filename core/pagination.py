from typing import Any

from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination, LimitOffsetPagination
from rest_framework.request import Request

from core.api_errors import StrictInput

# PostgreSQL's LIMIT and OFFSET are bigints: a 30-digit value overflows them (a 500).
MAX_OFFSET = 2**62


class PortalPagination(LimitOffsetPagination):
    """`limit`/`offset` paging with ceilings, so any value a client sends is a valid page."""

    max_limit = 10_000

    def get_offset(self, request) -> int:
        return min(super().get_offset(request), MAX_OFFSET)


class PortalCursorPagination(CursorPagination):
    """Cursor paging by id (newest first unless `ordering` says "pk"): a page stays right
    while rows are added, and a script walks a whole list by following `next`. `limit`
    sets the page size. A cursor that is not one this API wrote is a 400 naming `cursor`
    (DRF answers 404, as if the list were gone)."""

    ordering = "-pk"
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 1000

    def __init__(self, ordering: str | None = None) -> None:
        if ordering is not None:
            self.ordering = ordering

    def decode_cursor(self, request: Request) -> Any:
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            cursor = None
            bad = True
        else:
            bad = cursor is not None and not _id_position(cursor.position)
        if bad:
            raise ValidationError({self.cursor_query_param: ["Not a cursor this API gave out."]})
        return cursor


def _id_position(position: object) -> bool:
    # Positions are ids (the ordering is by pk), so a cursor holds a bigint or none.
    text = str(position)
    return position is None or (text.isdigit() and int(text) <= MAX_OFFSET)


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
