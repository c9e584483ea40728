"""Worker processes for large JSON Lines imports.

Parsing, hashing and encrypting a row costs about 40 µs of Python; on one core a million
rows take most of a minute while the database's core waits. The importing process reads the
file, hands chunks of lines to `workers` child processes, and writes their rows to COPY in
file order; line numbers, refusals and the single transaction are as in a serial import.

The children are plain subprocesses (`python -m annotation.import_workers`), not
multiprocessing ones: a Celery prefork worker is a daemonic process, which multiprocessing
refuses to give children. They run no Django setup: the encryption key comes over the pipe.
Messages both ways are length-prefixed pickles between this process and its own children.
"""

import os
import pickle
import struct
import subprocess
import sys
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from cryptography.fernet import Fernet

from annotation.importing import ImportRefused, PreferenceShape, jsonl_rows
from annotation.item_rows import ItemRows

_HEADER = struct.Struct(">Q")


@dataclass(frozen=True)
class Job:
    """What every chunk of one file needs; sent once to each worker."""

    filename: str
    required: tuple[str, ...]
    metadata_fields: tuple[str, ...]
    project_id: int
    dataset_id: int
    sha256: str
    key: str  # the Fernet key that encrypts
    shape: PreferenceShape | None = None


# What a chunk's rows noted for the import report: (line, empty response fields, turns).
Note = tuple[int, tuple[str, ...], int]


def _send(stream: IO[bytes], message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)))
    stream.write(data)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError
    size = _HEADER.unpack(header)[0]
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)  # noqa: S301 - written by our own parent or child process


def chunk_rows(
    job: Job, rows: ItemRows, first_line: int, lines: list[bytes]
) -> tuple[list[tuple], list[Note]]:
    """COPY rows for `lines`, the first of which is line `first_line` of the file, and the
    notes of the rows that have any."""
    parsed = jsonl_rows(
        lines,
        job.filename,
        job.required,
        job.metadata_fields,
        first_line=first_line,
        shape=job.shape,
    )
    out, notes = [], []
    for row in parsed:
        out.append(rows.copy_row(row))
        if row.empty_responses or row.prompt_turns:
            notes.append((row.row_number, row.empty_responses, row.prompt_turns))
    return out, notes


def _serve(incoming: BinaryIO, outgoing: BinaryIO) -> None:
    """A worker's life: the job, then chunks until the parent closes the pipe."""
    job: Job = _receive(incoming)
    rows = ItemRows(job.project_id, job.dataset_id, job.sha256, Fernet(job.key))
    while True:
        try:
            first_line, lines = _receive(incoming)
        except EOFError:
            return
        try:
            answer: tuple[str, object] = ("rows", chunk_rows(job, rows, first_line, lines))
        except ImportRefused as refused:
            answer = ("refused", refused)
        except Exception:  # noqa: BLE001 - reported to the parent, which raises it
            answer = ("failed", traceback.format_exc())
        _send(outgoing, answer)


# The directory holding the `annotation` package, for children started from anywhere.
_ROOT = str(Path(__file__).resolve().parents[1])


class _Worker:
    def __init__(self, job: Job):
        path = os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))
        self.process = subprocess.Popen(  # noqa: S603 - our own module, fixed argv
            [sys.executable, "-m", "annotation.import_workers"],
            env={**os.environ, "PYTHONPATH": path},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        # All three are pipes (PIPE above); Popen's type leaves them optional.
        self.stdin = cast(IO[bytes], self.process.stdin)
        self.stdout = cast(IO[bytes], self.process.stdout)
        self.stderr = cast(IO[bytes], self.process.stderr)
        _send(self.stdin, job)

    def submit(self, chunk: tuple[int, list[bytes]]) -> None:
        _send(self.stdin, chunk)

    def result(self) -> tuple[list[tuple], list[Note]]:
        try:
            kind, value = _receive(self.stdout)
        except EOFError:
            self.process.wait(timeout=10)
            raise RuntimeError(
                f"an import worker stopped (exit status {self.process.returncode}): "
                + self.stderr.read().decode(errors="replace")[-2000:]
            ) from None
        if kind == "refused":
            raise value
        if kind == "failed":
            raise RuntimeError(f"an import worker failed:\n{value}")
        return value

    def stop(self) -> None:
        for stream in (self.stdin, self.stdout, self.stderr):
            stream.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _chunks(lines: Iterable[bytes], size: int) -> Iterator[tuple[int, list[bytes]]]:
    chunk: list[bytes] = []
    first = 1
    for raw in lines:
        chunk.append(raw)
        if len(chunk) == size:
            yield first, chunk
            first, chunk = first + size, []
    if chunk:
        yield first, chunk


def copy_rows(
    lines: Iterable[bytes],
    job: Job,
    *,
    workers: int,
    chunk_lines: int = 10_000,
    on_note: Callable[[int, tuple[str, ...], int], None] | None = None,
) -> Iterator[tuple]:
    """The COPY rows of a JSON Lines file's `lines`, in file order, made by `workers`
    child processes; `on_note` gets each row's note for the import report. Raises the
    first ImportRefused in file order, as a serial parse would; the children are stopped
    however the caller leaves."""
    chunks = _chunks(lines, chunk_lines)
    pool = [_Worker(job) for _ in range(workers)]
    try:
        # Each worker holds at most one chunk; they are collected in the order given.
        waiting: deque[_Worker] = deque()
        for worker in pool:
            chunk = next(chunks, None)
            if chunk is None:
                break
            worker.submit(chunk)
            waiting.append(worker)
        while waiting:
            worker = waiting.popleft()
            rows, notes = worker.result()
            chunk = next(chunks, None)
            if chunk is not None:
                worker.submit(chunk)
                waiting.append(worker)
            if on_note is not None:
                for note in notes:
                    on_note(*note)
            yield from rows
    finally:
        for worker in pool:
            worker.stop()


if __name__ == "__main__":
    _serve(sys.stdin.buffer, sys.stdout.buffer)
