from rest_framework.pagination import LimitOffsetPagination

# PostgreSQL's LIMIT and OFFSET are bigints: a 30-digit value overflows them (a 500).
MAX_OFFSET = 2**62


class PortalPagination(LimitOffsetPagination):
    """`limit`/`offset` paging with ceilings, so any value a client sends is a valid page."""

    max_limit = 10_000

    def get_offset(self, request) -> int:
        return min(super().get_offset(request), MAX_OFFSET)
