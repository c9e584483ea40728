"""Every section of a dossier rendered from a full lineage says what the data holds: no
"not available" where the data exists, and each shows its own facts."""

import io
import json
import re
import zipfile

import pytest
import yaml
from lxml import html as lxml_html

from governance.dossier.render import SECTIONS
from governance.models import Dossier
from governance.services.dossiers import dossier_request, dossier_verify
from tests.governance.factories import LONG_JOB_NAME, full_lineage

pytestmark = pytest.mark.django_db

# Words a section uses when it has nothing to show. In a full lineage none may appear.
PLACEHOLDER = re.compile(
    r"not available|not yet|not recorded|none recorded|no \w+ (?:recorded|declared)|"
    r"cannot be traced|has not been|have been recorded|not linked|no [\w ]+ is linked|"
    r"lorem|todo|tbd|n/a",
    re.IGNORECASE,
)
# More than six digits after a decimal point: a float printed as Python stores it.
RAW_FLOAT = re.compile(r"\d\.\d{7,}")


@pytest.fixture
def full(project, engineer, compliance, reviewer):
    return full_lineage(project, engineer, compliance, reviewer)


@pytest.fixture
def files(full, compliance):
    dossier = dossier_request(actor=compliance, version=full.lineage.version, run_now=True)
    assert dossier.status == Dossier.Status.SUCCEEDED, dossier.error
    with open(dossier.file_path, "rb") as handle:
        data = handle.read()
    assert dossier_verify(data=data).ok
    archive = zipfile.ZipFile(io.BytesIO(data))
    return {name: archive.read(name) for name in archive.namelist()}


def _sections(files):
    document = lxml_html.fromstring(files["dossier.html"].decode())
    found = {}
    for anchor, _ in SECTIONS:
        nodes = document.xpath(f'//section[@id="{anchor}"]')
        assert len(nodes) == 1, anchor
        found[anchor] = nodes[0]
    return found


def _text(node):
    return " ".join(" ".join(node.itertext()).split())


def test_every_section_of_a_full_lineage_shows_its_data_and_no_placeholder(full, files):
    sections = _sections(files)
    lineage = full.lineage

    for anchor, node in sections.items():
        text = _text(node)
        assert not node.xpath('.//*[contains(@class, "missing")]'), (anchor, text[:300])
        assert not PLACEHOLDER.search(text), (anchor, PLACEHOLDER.search(text).group(0))
        assert not RAW_FLOAT.search(text), (anchor, RAW_FLOAT.search(text).group(0))
    text = {anchor: _text(node) for anchor, node in sections.items()}
    assert "Drafting replies to customer support tickets" in text["intended-use"]
    assert "Legal or medical advice." in text["intended-use"]
    assert "Apache-2.0" in text["licenses"]
    assert lineage.snapshot.manifest_sha256 in text["lineage"]
    assert "support-v1 v1" in text["lineage"]
    assert lineage.dataset.file_sha256 in text["datasheets"]
    assert lineage.dataset.name in text["datasheets"]
    assert "20 items; 40 answers by 3 annotators" in text["annotation"]
    assert "8 labels given to the 4 items" in text["annotation"]
    assert LONG_JOB_NAME in text["training"]
    assert "learning_rate: 0.0002" in text["training"]
    assert "lora_r: 16" in text["training"]
    assert "tickets duel" in text["evaluation"]
    assert "held-out tickets" in text["evaluation"]
    assert "release gate" in text["evaluation"]
    assert "95% interval [" in text["evaluation"]
    assert "Rule: Paired bootstrap" in text["evaluation"]
    assert "Datasheets and licenses reviewed." in text["approvals"]
    assert "Loss curve and gate reviewed." in text["approvals"]
    assert "candidate canary" in text["approvals"]
    assert "comp 192.0.2.7" in text["access-log"]
    assert "governance.signoff.record" in text["audit"]


def test_the_model_card_has_no_placeholder_and_no_counts_among_metrics(full, files):
    card = files["model_card.md"].decode()
    meta = yaml.safe_load(card.split("---\n")[1])
    body = card.split("---\n", 2)[2]

    assert not PLACEHOLDER.search(body), PLACEHOLDER.search(body).group(0)
    assert not RAW_FLOAT.search(card), RAW_FLOAT.search(card).group(0)
    names = {m["type"] for r in meta["model-index"][0]["results"] for m in r["metrics"]}
    assert {"token_f1", "chrf", "bleu", "exact_match"} <= names
    assert "scored" not in names
    assert "scored" not in meta["metrics"]
    assert "scored 12" in body  # a count, said as a count
    assert full.lineage.dataset.name in body


def test_offline_metrics_list_scores_at_four_significant_digits_and_counts_apart(files):
    section = _sections(files)["evaluation"]
    metric_rows = [
        [_text(cell) for cell in row.xpath("./td")] for row in section.xpath(".//table[1]//tr")
    ]
    metric_rows = [row for row in metric_rows if row]
    stored = json.loads(files["evaluation/offline_metrics.json"])[0]["results"]

    names = [name for name, _ in metric_rows]
    assert "scored" not in names
    assert dict(metric_rows)["chrf"] == f"{stored['chrf']:#.4g}"
    assert "scored: 12" in _text(section)


def test_a_lora_jobs_configuration_shows_only_the_settings_it_reads(full, files):
    training = _text(_sections(files)["training"])
    config = yaml.safe_load(files["training/config.yaml"])[LONG_JOB_NAME]["config"]
    stored = json.loads(files["lineage.json"])["jobs"][0]["config"]

    for name in ("dpo_beta", "grpo_beta", "grpo_num_generations", "num_virtual_tokens"):
        assert name not in training, name
        assert name not in config, name
        assert name in stored, name  # the full record stays machine-readable
    for name in ("lora_r", "lora_alpha", "learning_rate", "packing"):
        assert name in config, name
    assert files["training/config.yaml"].startswith(b"# Each job's settings that apply")


def test_lineage_graph_labels_are_whole(files):
    svg = _sections(files)["lineage"].xpath(".//*[local-name()='svg']")[0]
    texts = [_text(t) for t in svg.xpath(".//*[local-name()='text']")]

    assert not any("…" in t for t in texts)
    assert LONG_JOB_NAME in " ".join(texts)


def test_the_pdf_date_is_the_state_it_describes_after_every_signoff(full, files):
    as_of = re.search(rb'name="dcterms.created" content="([^"]+)"', files["dossier.html"])
    stamp = as_of.group(1).decode()
    shown = re.search(rb"/CreationDate \(D:(\d{14})", _inflated(files["dossier.pdf"]))

    assert shown.group(1).decode() == re.sub(r"\D", "", stamp)[:14]
    for signoff in full.signoffs:
        assert signoff.created_at.isoformat() <= stamp
    assert stamp in _text(lxml_html.fromstring(files["dossier.html"].decode()))
    assert "not the moment the file was typeset" in files["dossier.html"].decode()


def _inflated(pdf: bytes) -> bytes:
    """The PDF with its compressed streams opened, so the info dictionary can be read."""
    import zlib

    out = [pdf]
    for match in re.finditer(rb"stream\r?\n", pdf):
        try:
            out.append(zlib.decompressobj().decompress(pdf[match.end() :]))
        except zlib.error:
            continue
    return b"".join(out)


def test_loss_figures_are_static_svg_without_empty_series(files):
    training = _sections(files)["training"]
    figures = training.xpath(".//*[local-name()='svg']")
    markup = lxml_html.tostring(figures[0]).decode()

    assert figures
    assert not training.xpath(".//script")
    assert "<!-- loss -->" in markup  # matplotlib names each drawn text in a comment
    assert "eval loss" not in markup  # no eval points were logged: no eval entry
