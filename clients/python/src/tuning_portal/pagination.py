"""Iterating over the API's pages as one stream of objects: `limit`/`offset` pages (DRF's
`{count, next, previous, results}`) with Paginator, cursor pages with CursorPaginator."""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qsl, urlsplit

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


def _next_query(response: Any) -> dict[str, str] | None:
    """The query of the page after `response`: from the body's `next` (a wrapped list) or
    its `Link: <url>; rel="next"` header (a bare array). Only the query is kept: the
    request goes to this client's own base URL, whatever host the server put in the link."""
    body = response.json()
    linked = response.links.get("next", {}).get("url")
    url = body.get("next") if isinstance(body, dict) else linked
    if not url:
        return None
    return dict(parse_qsl(urlsplit(url).query))


class CursorPaginator(Generic[T]):
    """Lazily follows an API list page after page, by the cursor each answer names; works
    for wrapped lists (`{next, previous, results}`) and bare arrays with a `Link` header.
    Nothing is sent before it is iterated."""

    def __init__(
        self,
        fetch: Callable[[dict[str, Any]], Any],
        parse: Callable[[dict[str, Any]], T],
        *,
        params: dict[str, Any],
        page_size: int,
    ) -> None:
        self._fetch = fetch  # query -> httpx.Response
        self._parse = parse
        self._params = {k: v for k, v in params.items() if v is not None}
        self._page_size = page_size

    def pages(self) -> Iterator[list[T]]:
        query: dict[str, Any] = {**self._params, "limit": self._page_size}
        while True:
            response = self._fetch(query)
            body = response.json()
            rows = body.get("results", []) if isinstance(body, dict) else body
            yield [self._parse(row) for row in rows]
            following = _next_query(response)
            if not rows or following is None:
                return
            query = {**self._params, **following}

    def __iter__(self) -> Iterator[T]:
        for page in self.pages():
            yield from page

    def to_list(self) -> list[T]:
        return list(self)
