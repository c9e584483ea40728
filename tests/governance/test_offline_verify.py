import base64
import http.server
import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from core import keys
from core.chain import GENESIS_HASH, canonical_json, event_hash
from core.models import AuditEvent
from core.signing import key_fingerprint, public_key_pem
from governance.dossier.bundle import ENVELOPE, bundle_build, zip_bytes
from governance.models import PublishedKey
from governance.services.dossiers import dossier_verify
from governance.services.keys import published_key_record_use
from tests.governance.test_dossier_build import _build, lineage  # noqa: F401
from tests.governance.test_dossier_bundle import KEY, _bundle, _entries, _events
from tests.support.servers import ROOT

DOSSIER = PublishedKey.Purpose.DOSSIER


def _clean_env():
    # What a shell on a machine without the portal's configuration has.
    return {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "")}


def _verify(cli, *args):
    return subprocess.run(  # noqa: S603
        [str(cli), *map(str, args)],
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _manage(*args):
    return subprocess.run(  # noqa: S603
        [sys.executable, "manage.py", *map(str, args)],
        cwd=ROOT,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _pem(tmp_path, key=KEY):
    path = tmp_path / f"{key_fingerprint(key.public_key())[:8]}.pem"
    path.write_bytes(public_key_pem(key.public_key()))
    return path


def _with_events(events):
    head = {"seq": events[-1]["seq"], "hash": events[-1]["hash"]}
    excerpt = b"".join(canonical_json(e) + b"\n" for e in events)
    return {"audit/events.jsonl": excerpt}, {"audit_chain_head": head}


def _tampered_file():
    entries = _entries(_bundle())
    entries["dossier.html"] = b"<h1>edited report</h1>"
    return zip_bytes(entries)


def _tampered_signature():
    entries = _entries(_bundle())
    envelope = json.loads(entries[ENVELOPE])
    sig = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    sig[0] ^= 1
    envelope["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    entries[ENVELOPE] = json.dumps(envelope).encode()
    return zip_bytes(entries)


def _tampered_excerpt():
    events = _events(3)
    head = {"seq": 3, "hash": events[-1]["hash"]}
    events[1]["data"]["n"] = 99
    files = {"audit/events.jsonl": b"".join(canonical_json(e) + b"\n" for e in events)}
    return bundle_build(files, {"audit_chain_head": head}, KEY)


def _wrong_key():
    return bundle_build(*_with_events(_events(2)), Ed25519PrivateKey.generate())


def test_the_standalone_verifier_runs_without_django(clean_verifier):
    python = clean_verifier.parent / "python"
    result = subprocess.run(  # noqa: S603
        [str(python), "-c", "import django"], capture_output=True, text=True, check=False
    )

    assert "No module named 'django'" in result.stderr


def test_the_standalone_verifier_passes_a_good_bundle(clean_verifier, tmp_path):
    good = tmp_path / "good.zip"
    good.write_bytes(_bundle())

    result = _verify(clean_verifier, good, "--public-key", _pem(tmp_path))

    assert result.returncode == 0, result.stderr
    assert "  ok  3 audit events hash and link" in result.stdout
    assert f"verified: 6 files, 3 audit events, key {key_fingerprint(KEY.public_key())}" in (
        result.stdout
    )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_tampered_file, "dossier.html: sha256 is "),
        (_tampered_signature, "manifest.dsse.json: the manifest's signature is not valid"),
        (_tampered_excerpt, "line 2 (event #2): content does not match its hash"),
        (_wrong_key, "which is not a trusted dossier key"),
    ],
    ids=["file", "signature", "audit-excerpt", "wrong-key"],
)
def test_the_standalone_verifier_and_verify_dossier_refuse_a_tampered_bundle_alike(
    clean_verifier, tmp_path, capsys, make, message
):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(make())
    pem = _pem(tmp_path)

    standalone = _verify(clean_verifier, bad, "--public-key", pem)
    with pytest.raises(CommandError) as portal:
        call_command("verify_dossier", str(bad), "--public-key", str(pem))

    assert standalone.returncode == 1
    assert standalone.stderr.strip() == str(portal.value)
    assert message in standalone.stderr
    assert portal.value.returncode == 1
    assert standalone.stdout == capsys.readouterr().out  # the same steps passed, same words


def test_verify_dossier_runs_without_debug_secret_key_or_database(tmp_path):
    good = tmp_path / "good.zip"
    good.write_bytes(_bundle())

    result = _manage("verify_dossier", good, "--public-key", _pem(tmp_path))

    assert result.returncode == 0, result.stderr
    assert "good.zip: verified: 6 files" in result.stdout


def test_verifying_without_a_key_to_trust_is_a_usage_error(clean_verifier, tmp_path):
    good = tmp_path / "good.zip"
    good.write_bytes(_bundle())

    refused = _verify(clean_verifier, good)
    integrity_only = _verify(clean_verifier, good, "--trust-bundle-key")
    missing = _verify(clean_verifier, tmp_path / "missing.zip", "--public-key", _pem(tmp_path))

    assert refused.returncode == 2
    assert "name the keys to trust" in refused.stderr
    assert integrity_only.returncode == 0
    assert "the key inside the bundle: not checked against a trusted key" in (integrity_only.stdout)
    assert missing.returncode == 2
    assert "missing.zip: cannot read" in missing.stderr


@pytest.mark.parametrize(
    ("command", "check"),
    [
        (["dossier_keygen"], lambda out: "BEGIN PRIVATE KEY" in out),
        (["rotate_encryption_key", "--generate"], lambda out: len(out.strip()) == 44),
    ],
)
def test_key_generation_needs_no_configuration(command, check):
    result = _manage(*command)

    assert result.returncode == 0, result.stderr
    assert check(result.stdout)


# The published keys (the well-known URL), against the database.


def _retired_key_list(tmp_path, retired_at):
    document = {
        "format": "tuning-portal/dossier-keys/v1",
        "keys": [
            {
                "key_id": key_fingerprint(KEY.public_key()),
                "algorithm": "ed25519",
                "purpose": "dossier",
                "status": "retired",
                "valid_from": "2025-01-01T00:00:00+00:00",
                "valid_until": retired_at,
                "public_key": public_key_pem(KEY.public_key()).decode(),
            }
        ],
    }
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(document))
    return path


def test_a_retired_key_verifies_only_what_it_signed_before_it_was_retired(clean_verifier, tmp_path):
    keys_file = _retired_key_list(tmp_path, "2026-01-02T12:00:00+00:00")
    before, after = tmp_path / "before.zip", tmp_path / "after.zip"
    before.write_bytes(bundle_build(*_with_events(_events(2)), KEY))  # events on Jan 1 and 2
    after.write_bytes(bundle_build(*_with_events(_events(3)), KEY))  # ... and Jan 3

    ok = _verify(clean_verifier, before, "--keys", keys_file)
    late = _verify(clean_verifier, after, "--keys", keys_file)
    with pytest.raises(CommandError) as portal_late:
        call_command("verify_dossier", str(after), "--keys", str(keys_file))

    assert ok.returncode == 0, ok.stderr
    assert "(retired since 2025-01-01T00:00:00+00:00, valid until 2026-01-02" in ok.stdout
    assert late.returncode == 1
    assert "holds audit records up to 2026-01-03T00:00:00+00:00" in late.stderr
    assert late.stderr.strip() == str(portal_late.value)


def test_a_key_list_whose_key_id_lies_is_refused(clean_verifier, tmp_path):
    keys_file = _retired_key_list(tmp_path, "2026-01-02T12:00:00+00:00")
    document = json.loads(keys_file.read_text())
    document["keys"][0]["key_id"] = "0" * 64
    keys_file.write_text(json.dumps(document))
    good = tmp_path / "good.zip"
    good.write_bytes(_bundle())

    result = _verify(clean_verifier, good, "--keys", keys_file)

    assert result.returncode == 2
    assert "its key_id is not the fingerprint of its public key" in result.stderr


@pytest.mark.django_db
def test_the_well_known_key_list_needs_no_log_in_and_lists_retired_keys(client):
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    published_key_record_use(purpose=DOSSIER, public_key=old.public_key())
    published_key_record_use(purpose=DOSSIER, public_key=new.public_key())

    response = client.get("/.well-known/dossier-keys.json")

    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "*"
    document = response.json()
    assert document["format"] == "tuning-portal/dossier-keys/v1"
    dossier_keys = {k["key_id"]: k for k in document["keys"] if k["purpose"] == "dossier"}
    current = dossier_keys[keys.signing_key_id()]
    assert current["status"] == "current"
    assert current["valid_until"] is None
    old_entry = dossier_keys[key_fingerprint(old.public_key())]
    new_entry = dossier_keys[key_fingerprint(new.public_key())]
    assert old_entry["status"] == new_entry["status"] == "retired"
    # old was retired when new was first used; new, no longer configured, by now at the latest
    assert old_entry["valid_until"] == new_entry["valid_from"]
    assert old_entry["public_key"] == public_key_pem(old.public_key()).decode()
    checkpoint_ids = {k["key_id"] for k in document["keys"] if k["purpose"] == "audit-checkpoint"}
    assert key_fingerprint(keys.audit_checkpoint_key().public_key()) in checkpoint_ids
    pem = client.get(old_entry["pem_url"])
    assert pem.status_code == 200
    assert pem.content == public_key_pem(old.public_key())
    assert client.get(f"/.well-known/dossier-keys/{'0' * 64}.pem").status_code == 404


@pytest.mark.django_db
def test_recording_a_new_key_retires_the_old_one_in_the_audit_log():
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    published_key_record_use(purpose=DOSSIER, public_key=old.public_key())
    published_key_record_use(purpose=DOSSIER, public_key=old.public_key())  # no change
    published_key_record_use(purpose=DOSSIER, public_key=new.public_key())

    rows = {row.key_id: row for row in PublishedKey.objects.filter(purpose=DOSSIER)}
    assert len(rows) == 2
    assert rows[key_fingerprint(old.public_key())].valid_until is not None
    assert rows[key_fingerprint(new.public_key())].valid_until is None
    actions = list(
        AuditEvent.objects.filter(target_type="governance.publishedkey")
        .order_by("seq")
        .values_list("action", flat=True)
    )
    assert actions == ["governance.key.publish", "governance.key.retire", "governance.key.publish"]


@pytest.mark.django_db
def test_the_portal_trusts_its_retired_keys_within_their_validity():
    published_key_record_use(purpose=DOSSIER, public_key=KEY.public_key())
    published_key_record_use(purpose=DOSSIER, public_key=keys.signing_key().public_key())
    signed_before = bundle_build(*_with_events(_events(2)), KEY)
    late = _events(2)
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    late[-1]["created_at"] = future
    signed_after = _resign_events(late)

    assert dossier_verify(data=signed_before, check_chain=False).ok
    report = dossier_verify(data=signed_after, check_chain=False)
    assert not report.ok
    assert f"holds audit records up to {future}" in report.problem


def _resign_events(events):
    prev = GENESIS_HASH
    for event in events:
        payload = {k: v for k, v in event.items() if k not in ("prev_hash", "hash")}
        event.update(prev_hash=prev, hash=event_hash(prev, payload))
        prev = event["hash"]
    return bundle_build(*_with_events(events), KEY)


@pytest.mark.django_db
def test_a_real_dossier_verifies_offline_with_the_published_key_list(
    lineage,  # noqa: F811
    compliance,
    client,
    clean_verifier,
    tmp_path,
):
    dossier, data = _build(lineage.version, compliance)
    bundle = tmp_path / "dossier.zip"
    bundle.write_bytes(data)
    keys_file = tmp_path / "keys.json"
    keys_file.write_bytes(client.get(reverse("published_keys")).content)

    result = _verify(clean_verifier, bundle, "--keys", keys_file)

    assert result.returncode == 0, result.stderr
    assert f"key {keys.signing_key_id()}" in result.stdout
    recorded = PublishedKey.objects.get(purpose=DOSSIER, key_id=keys.signing_key_id())
    assert recorded.valid_until is None
    assert "(current since " in result.stdout


def test_the_key_list_can_be_fetched_by_url(clean_verifier, tmp_path):
    listed = json.loads(_retired_key_list(tmp_path, "2026-01-02T12:00:00+00:00").read_text())
    document = json.dumps(listed).encode()

    class Keys(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Keys)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    good = tmp_path / "good.zip"
    good.write_bytes(bundle_build(*_with_events(_events(2)), KEY))
    try:
        result = _verify(
            clean_verifier,
            good,
            "--keys-url",
            f"http://127.0.0.1:{server.server_port}/.well-known/dossier-keys.json",
        )
    finally:
        server.shutdown()

    assert result.returncode == 0, result.stderr
    assert "good.zip: verified" in result.stdout
