"""Encryption of stored files with Fernet, in frames so a 2 GiB upload streams through a
few MiB of memory.

File format: the magic line, then frames of (4-byte big-endian length, Fernet token). Each
token's plaintext starts with the frame's index and a last-frame flag, so frames cannot be
reordered, dropped or cut off at the end without the reader noticing. Fernet authenticates
each token (AES-128-CBC with HMAC-SHA256); MultiFernet gives key rotation.
"""

import io
import os
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Protocol

from cryptography.fernet import InvalidToken, MultiFernet

MAGIC = b"TPENC1\n"
FRAME_BYTES = 1 << 20
_HEADER = struct.Struct(">QB")  # frame index, 1 on the last frame
_LENGTH = struct.Struct(">I")


class DecryptionError(ValueError):
    pass


class _Sink(Protocol):
    """Where the writer's frames go: a file, or _Unclosable around one."""

    def write(self, data: bytes, /) -> int: ...

    def close(self) -> None: ...


class _EncryptingWriter(io.RawIOBase):
    def __init__(self, raw: _Sink, keys: MultiFernet):
        self._raw, self._keys = raw, keys
        self._pending = bytearray()
        self._index = 0

    def writable(self) -> bool:
        return True

    def _emit(self, data: bytes, *, last: bool) -> None:
        token = self._keys.encrypt(_HEADER.pack(self._index, int(last)) + data)
        self._raw.write(_LENGTH.pack(len(token)) + token)
        self._index += 1

    def write(self, data) -> int:
        self._pending += data
        while len(self._pending) > FRAME_BYTES:
            self._emit(bytes(self._pending[:FRAME_BYTES]), last=False)
            del self._pending[:FRAME_BYTES]
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._emit(bytes(self._pending), last=True)
            self._pending.clear()
            self._raw.close()
        super().close()


class _DecryptingReader(io.RawIOBase):
    def __init__(self, raw: BinaryIO, keys: MultiFernet, name: str):
        self._raw, self._keys, self._name = raw, keys, name
        self._buffer = b""
        self._index = 0
        self._done = False

    def readable(self) -> bool:
        return True

    def _next_frame(self) -> None:
        length = self._raw.read(_LENGTH.size)
        if len(length) < _LENGTH.size:
            raise DecryptionError(f"{self._name}: encrypted file ends before its last frame")
        token = self._raw.read(_LENGTH.unpack(length)[0])
        try:
            plain = self._keys.decrypt(token)
        except InvalidToken:
            raise DecryptionError(
                f"{self._name}: frame {self._index} cannot be decrypted with the configured "
                "PORTAL_ENCRYPTION_KEYS (wrong key, or the file was altered)"
            ) from None
        index, last = _HEADER.unpack_from(plain)
        if index != self._index:
            raise DecryptionError(f"{self._name}: frame {self._index} is out of order")
        self._index += 1
        self._done = bool(last)
        self._buffer = plain[_HEADER.size :]

    def readinto(self, target) -> int:
        while not self._buffer and not self._done:
            self._next_frame()
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


def is_encrypted(path: str | Path) -> bool:
    with open(path, "rb") as raw:
        return raw.read(len(MAGIC)) == MAGIC


def open_write(path: str | Path, keys: MultiFernet) -> BinaryIO:
    """A binary file to write plaintext into; it lands encrypted under the first key."""
    raw = open(path, "wb")  # noqa: SIM115 - closed by the writer's close()
    raw.write(MAGIC)
    return io.BufferedWriter(_EncryptingWriter(raw, keys), buffer_size=FRAME_BYTES)


def open_read(path: str | Path, keys: MultiFernet) -> BinaryIO:
    """The plaintext of a stored file. Files written before encryption was turned on have
    no magic line and are read as they are (rotate_encryption_key encrypts them)."""
    raw = open(path, "rb")  # noqa: SIM115 - closed by the reader's close()
    if raw.read(len(MAGIC)) != MAGIC:
        raw.seek(0)
        return raw
    return io.BufferedReader(_DecryptingReader(raw, keys, Path(path).name), FRAME_BYTES)


def _replace_atomically(path: Path, write: Callable[[BinaryIO], None]) -> None:
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=".rekey-")
    try:
        with os.fdopen(handle, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, path.stat().st_mode & 0o777)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def reencrypt(path: str | Path, keys: MultiFernet) -> str:
    """Put a stored file under the first key: 'rotated' re-encrypts each frame (MultiFernet
    .rotate), 'encrypted' encrypts a legacy plaintext file. The file is replaced atomically."""
    path = Path(path)
    if not is_encrypted(path):

        def encrypt_plain(out: BinaryIO) -> None:
            out.write(MAGIC)
            writer = _EncryptingWriter(out, keys)
            writer._raw = _Unclosable(out)  # the temp file is closed by the caller
            with open(path, "rb") as source:
                while chunk := source.read(FRAME_BYTES):
                    writer.write(chunk)
            writer.close()

        _replace_atomically(path, encrypt_plain)
        return "encrypted"

    def rotate(out: BinaryIO) -> None:
        out.write(MAGIC)
        with open(path, "rb") as source:
            source.read(len(MAGIC))
            while length := source.read(_LENGTH.size):
                token = source.read(_LENGTH.unpack(length)[0])
                try:
                    fresh = keys.rotate(token)
                except InvalidToken:
                    raise DecryptionError(
                        f"{path.name}: cannot be decrypted with any of PORTAL_ENCRYPTION_KEYS"
                    ) from None
                out.write(_LENGTH.pack(len(fresh)) + fresh)

    _replace_atomically(path, rotate)
    return "rotated"


class _Unclosable:
    def __init__(self, inner: BinaryIO):
        self._inner = inner

    def write(self, data: bytes) -> int:
        return self._inner.write(data)

    def close(self) -> None:
        pass
