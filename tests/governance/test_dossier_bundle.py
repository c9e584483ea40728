import io
import json
import tracemalloc
import zipfile

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from dossier_verify import verify as verify_module

from core.chain import GENESIS_HASH, canonical_json, event_hash
from governance.dossier.bundle import (
    ENVELOPE,
    MANIFEST,
    PUBLIC_KEY,
    BundleError,
    bundle_build,
    zip_bytes,
)
from governance.dossier.verify import verify_bundle

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def _events(n):
    events, prev = [], GENESIS_HASH
    for seq in range(1, n + 1):
        payload = {
            "seq": seq,
            "created_at": f"2026-01-0{seq}T00:00:00+00:00",
            "actor_id": 1,
            "actor_username": "eng",
            "project_id": 1,
            "action": "test.step",
            "target_type": "training.modelversion",
            "target_id": "7",
            "data": {"n": seq},
        }
        digest = event_hash(prev, payload)
        events.append({**payload, "prev_hash": prev, "hash": digest})
        prev = digest
    return events


def _bundle(events=None, files=None):
    events = _events(3) if events is None else events
    head = {"seq": events[-1]["seq"], "hash": events[-1]["hash"]} if events else {"seq": 0}
    contents = {
        "dossier.html": b"<h1>report</h1>",
        "datasheets/1-support.json": b'{"license": "MIT"}\n',
        "audit/events.jsonl": b"".join(canonical_json(e) + b"\n" for e in events),
        **(files or {}),
    }
    return bundle_build(contents, {"audit_chain_head": head}, KEY)


def _entries(data):
    archive = zipfile.ZipFile(io.BytesIO(data))
    return {name: archive.read(name) for name in archive.namelist()}


def test_same_inputs_give_byte_identical_bundles():
    assert _bundle() == _bundle()


def test_bundle_holds_signed_in_toto_manifest_and_public_key():
    entries = _entries(_bundle())

    manifest = json.loads(entries[MANIFEST])
    assert manifest["_type"] == "https://in-toto.io/Statement/v1"
    names = [s["name"] for s in manifest["subject"]]
    assert names == sorted(set(entries) - {MANIFEST, ENVELOPE})
    assert PUBLIC_KEY in names
    assert json.loads(entries[ENVELOPE])["payloadType"] == "application/vnd.in-toto+json"


def test_zip_entries_are_sorted_stored_and_timestamped_alike():
    infos = zipfile.ZipFile(io.BytesIO(_bundle())).infolist()

    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.compress_type for i in infos} == {zipfile.ZIP_STORED}
    assert {i.external_attr >> 16 for i in infos} == {0o100644}
    assert all(i.extra == b"" for i in infos)


def test_untouched_bundle_verifies_with_the_signing_key():
    report = verify_bundle(_bundle(), trusted_keys=[KEY.public_key()])

    assert report.ok, report.problem
    assert report.events == 3


def test_every_single_changed_byte_fails_verification():
    data = _bundle()
    failures = set()
    for index in range(len(data)):
        tampered = bytearray(data)
        tampered[index] ^= 0x01
        report = verify_bundle(bytes(tampered), trusted_keys=[KEY.public_key()])
        assert not report.ok, f"byte {index} changed and the bundle still verified"
        failures.add(report.problem.split(":")[0])
    assert "dossier.html" in failures  # content changes name the file


def test_changed_file_is_named_with_its_hashes():
    entries = _entries(_bundle())
    entries["dossier.html"] = b"<h1>edited report</h1>"

    report = verify_bundle(zip_bytes(entries), trusted_keys=[KEY.public_key()])

    assert report.problem.startswith("dossier.html: sha256 is ")


def test_bundle_resigned_with_another_key_is_refused():
    other = Ed25519PrivateKey.generate()
    forged = bundle_build({"dossier.html": b"forged"}, {"audit_chain_head": {"seq": 0}}, other)

    report = verify_bundle(forged, trusted_keys=[KEY.public_key()])

    assert not report.ok
    assert "not a trusted dossier key" in report.problem


def test_added_file_is_refused():
    entries = _entries(_bundle())
    entries["extra.txt"] = b"slipped in"

    report = verify_bundle(zip_bytes(entries), trusted_keys=[KEY.public_key()])

    assert report.problem == "extra.txt: in the bundle but not in the manifest"


def test_removed_file_is_refused():
    entries = _entries(_bundle())
    del entries["dossier.html"]

    report = verify_bundle(zip_bytes(entries), trusted_keys=[KEY.public_key()])

    assert report.problem == "dossier.html: listed in the manifest but missing from the bundle"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda ev: ev[1]["data"].update(n=99), "line 2 (event #2): content does not match"),
        (lambda ev: ev.pop(), "ends at event #2"),
        (lambda ev: ev[2].update(prev_hash="f" * 64), "line 3 (event #3)"),
    ],
)
def test_audit_excerpt_inconsistent_with_its_head_is_refused_even_when_signed(edit, message):
    events = _events(3)
    head = {"seq": 3, "hash": events[-1]["hash"]}
    edit(events)
    signed = bundle_build(
        {"audit/events.jsonl": b"".join(canonical_json(e) + b"\n" for e in events)},
        {"audit_chain_head": head},
        KEY,
    )

    report = verify_bundle(signed, trusted_keys=[KEY.public_key()])

    assert not report.ok
    assert message in report.problem


def test_not_a_zip_is_refused_with_a_reason():
    report = verify_bundle(b"hello", trusted_keys=[KEY.public_key()])

    assert report.problem.startswith("the file is not a readable zip")


@pytest.mark.parametrize("name", ["../escape", "/abs", "a//b", "a\\b", ""])
def test_unsafe_entry_names_are_refused(name):
    with pytest.raises(BundleError):
        zip_bytes({name: b"x"})


def test_a_large_bundle_on_disk_is_verified_without_reading_it_whole(tmp_path):
    path = tmp_path / "dossier.zip"
    path.write_bytes(_bundle(files={"weights/model.safetensors": bytes(48 * 1024**2)}))

    tracemalloc.start()
    try:
        with path.open("rb") as handle:
            report = verify_bundle(handle, trusted_keys=[KEY.public_key()])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert report.ok, report.problem
    assert peak < 8 * 1024**2  # chunks of 1 MiB, not the 48 MiB file


def test_a_bundle_whose_manifest_is_oversized_is_refused_unread(monkeypatch):
    monkeypatch.setattr(verify_module, "MAX_SMALL_ENTRY_BYTES", 500)

    report = verify_bundle(_bundle(), trusted_keys=[KEY.public_key()])

    assert not report.ok
    assert report.problem.startswith("manifest.json: ")
    assert "more than 500 allowed" in report.problem
