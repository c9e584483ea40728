"""The dossier's container: a zip whose every byte follows from its files' names and
contents, so the verifier rebuilds it from the entries it read and compares bytes; a change
to metadata outside the signed files is caught too.

Entries sorted by name, stored (not deflated, so no zlib version can change a byte), one
fixed timestamp, fixed permissions, UTF-8 names, no extra fields and no comment. The portal
writes dossiers with this same layout (governance.dossier.bundle).
"""

import struct
from collections.abc import Iterator, Mapping

MANIFEST = "manifest.json"
ENVELOPE = "manifest.dsse.json"
PUBLIC_KEY = "public_key.pem"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "urn:tuning-portal:dossier:v1"

_VERSION = 20  # 2.0: the lowest version that allows folders in names
_FLAGS = 0x0800  # names are UTF-8
_DOS_DATE = (0 << 9) | (1 << 5) | 1  # 1980-01-01, the earliest date a zip can hold
_DOS_TIME = 0
_MODE = 0o100644 << 16  # a regular file, rw-r--r--
_UNIX = 3 << 8
_LIMIT = 0xFFFFFFFF  # no zip64: a dossier is far below 4 GiB


class BundleError(ValueError):
    pass


def check_name(name: str) -> None:
    """Entry names are relative POSIX paths without '.', '..' or empty parts."""
    parts = name.split("/")
    if not name or name.startswith("/") or "\\" in name or any(p in ("", ".", "..") for p in parts):
        raise BundleError(f"{name!r} is not a safe relative file name for a dossier entry")


def zip_layout(entries: Mapping[str, tuple[int, int]]) -> Iterator[bytes | str]:
    """The canonical container of entries given as name -> (size, crc32), in order: bytes
    are headers and directory, a str stands for that entry's contents. `zip_bytes` fills
    them in; the verifier compares a bundle on disk with them without reading it whole."""
    names = sorted(entries)
    if len(names) >= 0xFFFF:
        raise BundleError(f"{len(names)} entries is more than a zip without zip64 holds")
    central = bytearray()
    offset = 0
    for name in names:
        check_name(name)
        size, crc = entries[name]
        raw_name = name.encode("utf-8")
        if size >= _LIMIT or offset >= _LIMIT:
            raise BundleError(f"{name}: the dossier would pass 4 GiB, which needs zip64")
        header = struct.pack(
            "<4s5H3I2H",
            b"PK\x03\x04",
            _VERSION,
            _FLAGS,
            0,
            _DOS_TIME,
            _DOS_DATE,
            crc,
            size,
            size,
            len(raw_name),
            0,
        )
        yield header + raw_name
        yield name
        central += struct.pack(
            "<4s6H3I5H2I",
            b"PK\x01\x02",
            _UNIX | _VERSION,
            _VERSION,
            _FLAGS,
            0,
            _DOS_TIME,
            _DOS_DATE,
            crc,
            size,
            size,
            len(raw_name),
            0,
            0,
            0,
            0,
            _MODE,
            offset,
        )
        central += raw_name
        offset += len(header) + len(raw_name) + size
    yield bytes(central) + struct.pack(
        "<4s4H2IH", b"PK\x05\x06", 0, 0, len(names), len(names), len(central), offset, 0
    )
