import os

import pytest
from cryptography.fernet import Fernet, MultiFernet

from core import at_rest


@pytest.fixture
def old_key():
    return Fernet(Fernet.generate_key())


@pytest.fixture
def new_key():
    return Fernet(Fernet.generate_key())


def _write(path, data, keys):
    with at_rest.open_write(path, keys) as out:
        out.write(data)


def test_stored_bytes_are_ciphertext_and_read_back_as_plaintext(tmp_path, old_key):
    path = tmp_path / "upload.jsonl"
    data = b'{"text": "secret customer message"}\n' * 50_000  # several frames

    _write(path, data, MultiFernet([old_key]))

    raw = path.read_bytes()
    assert raw.startswith(at_rest.MAGIC)
    assert b"secret customer message" not in raw
    assert at_rest.open_read(path, MultiFernet([old_key])).read() == data


def test_rotation_moves_files_to_the_new_key(tmp_path, old_key, new_key):
    path = tmp_path / "upload.jsonl"
    data = os.urandom(3 * at_rest.FRAME_BYTES + 5)
    _write(path, data, MultiFernet([old_key]))

    assert at_rest.reencrypt(path, MultiFernet([new_key, old_key])) == "rotated"

    assert at_rest.open_read(path, MultiFernet([new_key])).read() == data
    with pytest.raises(at_rest.DecryptionError, match="cannot be decrypted"):
        at_rest.open_read(path, MultiFernet([old_key])).read()


def test_plaintext_file_from_before_encryption_is_encrypted_by_rotation(tmp_path, new_key):
    path = tmp_path / "legacy.csv"
    path.write_bytes(b"text,label\nhello,greeting\n")

    assert at_rest.reencrypt(path, MultiFernet([new_key])) == "encrypted"

    assert at_rest.is_encrypted(path)
    assert at_rest.open_read(path, MultiFernet([new_key])).readline() == b"text,label\n"


def test_truncated_or_reordered_file_is_refused(tmp_path, old_key):
    keys = MultiFernet([old_key])
    path = tmp_path / "f.bin"
    _write(path, os.urandom(2 * at_rest.FRAME_BYTES + 1), keys)
    raw = path.read_bytes()
    first_length = int.from_bytes(raw[len(at_rest.MAGIC) : len(at_rest.MAGIC) + 4], "big")
    first_end = len(at_rest.MAGIC) + 4 + first_length
    path.write_bytes(raw[:first_end])  # only the first frame left, cut at a frame boundary

    with pytest.raises(at_rest.DecryptionError, match="ends before its last frame"):
        at_rest.open_read(path, keys).read()

    path.write_bytes(at_rest.MAGIC + raw[first_end:])  # the first frame dropped
    with pytest.raises(at_rest.DecryptionError, match="out of order"):
        at_rest.open_read(path, keys).read()
