"""Iterating over the API's `limit`/`offset` pages (DRF's `{count, next, previous,
results}`) as one stream of objects."""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    data: list[T]
    count: int
    offset: int

    @property
    def has_more(self) -> bool:
        return self.offset + len(self.data) < self.count


class Paginator(Generic[T]):
    """Lazily fetches page after page as it is iterated; nothing is sent before that.
    Offsets are computed here rather than read from `next`, whose host is the one the
    server saw (wrong behind some proxies)."""

    def __init__(
        self,
        fetch: Callable[[dict[str, Any]], dict[str, Any]],
        parse: Callable[[dict[str, Any]], T],
        *,
        params: dict[str, Any],
        page_size: int,
    ) -> None:
        self._fetch = fetch
        self._parse = parse
        self._params = {k: v for k, v in params.items() if v is not None}
        self._page_size = page_size

    def pages(self) -> Iterator[Page[T]]:
        offset = 0
        while True:
            body = self._fetch({**self._params, "limit": self._page_size, "offset": offset})
            page = Page(
                data=[self._parse(row) for row in body.get("results", [])],
                count=int(body.get("count", 0)),
                offset=offset,
            )
            yield page
            if not page.data or not page.has_more or body.get("next") is None:
                return
            offset += len(page.data)

    def __iter__(self) -> Iterator[T]:
        for page in self.pages():
            yield from page.data

    def first_page(self) -> Page[T]:
        return next(iter(self.pages()))
