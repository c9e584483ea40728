import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

from tuning_portal.pagination import CursorPaginator

if TYPE_CHECKING:
    from tuning_portal._client import Client

T = TypeVar("T")

# A file to send: a path, an open binary file (its name is used), or (name, bytes or file).
FileInput = str | os.PathLike[str] | IO[bytes] | tuple[str, bytes | IO[bytes]]


class Resource:
    def __init__(self, client: "Client") -> None:
        self._client = client

    def _path(self, project: int | None, rest: str = "") -> str:
        return self._client.project_path(project, rest)

    def _pages(
        self,
        path: str,
        parse: Callable[[dict[str, Any]], T],
        params: dict[str, Any] | None = None,
        page_size: int = 100,
    ) -> CursorPaginator[T]:
        """A cursor-paged list at `path`: iterate it for every row, fetched as you go."""
        return CursorPaginator(
            lambda query: self._client._request("GET", path, params=query),
            parse,
            params={k: query_value(v) for k, v in (params or {}).items()},
            page_size=page_size,
        )


def query_value(value: Any) -> Any:
    """A filter as the API reads it: booleans as true/false, None left out later."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def wait_until(
    fetch: Callable[[], T],
    done: Callable[[T], bool],
    *,
    what: str,
    timeout: float | None,
    poll_interval: float,
) -> T:
    """`fetch()` again every `poll_interval` s until `done` says so; TimeoutError after
    `timeout` s (None: no limit)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value):
            return value
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"{what} not finished after {timeout} s")
        time.sleep(poll_interval)


@contextmanager
def file_field(file: FileInput) -> Iterator[tuple[str, Any]]:
    """(file name, content) for a multipart field; a path is opened here and closed after."""
    if isinstance(file, tuple):
        yield file[0], file[1]
    elif isinstance(file, str | os.PathLike):
        path = Path(file)
        with path.open("rb") as handle:
            yield path.name, handle
    else:
        yield Path(getattr(file, "name", "upload")).name, file


def form_value(value: Any) -> Any:
    """A value as a multipart form field: booleans as DRF reads them, lists as repeats."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return [form_value(v) for v in value]
    return str(value)
