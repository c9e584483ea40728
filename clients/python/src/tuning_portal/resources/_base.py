import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tuning_portal._client import Client

# A file to send: a path, an open binary file (its name is used), or (name, bytes or file).
FileInput = str | os.PathLike[str] | IO[bytes] | tuple[str, bytes | IO[bytes]]


class Resource:
    def __init__(self, client: "Client") -> None:
        self._client = client

    def _path(self, project: int | None, rest: str = "") -> str:
        return self._client.project_path(project, rest)


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
