import zipfile

import pytest
from markdown_it import MarkdownIt

from annotation.models import Dataset
from core.markdown_text import markdown_block, markdown_code, markdown_inline
from governance.models import Dossier
from governance.services.approvals import use_declaration_set
from governance.services.dossiers import dossier_request
from tests.governance.factories import lineage_fixture
from training.models import BaseModel, ModelVersion

pytestmark = pytest.mark.django_db

LINK = "[click here](https://evil.example/phish)"
IMAGE = "![x](https://evil.example/pixel.png)"
HTML = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
HEADING = "\n# Approved by compliance\n"


def _card(version, actor):
    dossier = dossier_request(actor=actor, version=version, run_now=True)
    assert dossier.status == Dossier.Status.SUCCEEDED, dossier.error
    with zipfile.ZipFile(dossier.file_path) as archive:
        return archive.read("model_card.md").decode()


# CommonMark with GitHub's tables and strikethrough, as model-card viewers render it.
RENDERER = MarkdownIt("commonmark").enable(["table", "strikethrough"])


def render(text: str) -> str:
    return RENDERER.render(text).strip()


def _as_html(card: str) -> str:
    return render(card.split("---\n", 2)[2])


def test_names_and_declarations_cannot_inject_markdown_or_html(project, engineer, compliance):
    lineage = lineage_fixture(project, engineer, n_items=5)
    project.name = f"Acme {LINK} {HTML}"
    project.save(update_fields=["name"])
    ModelVersion.objects.filter(pk=lineage.version.pk).update(name=f"bot {IMAGE}{HEADING}")
    BaseModel.objects.filter(pk=lineage.base_model.pk).update(name=f"base **{HTML}**")
    Dataset.objects.filter(project=project).update(name=f"tickets {LINK}")
    use_declaration_set(
        actor=engineer,
        version=lineage.version,
        intended_use=f"Replies.\n# Approved\n> quoted\n1. listed\n    code\n{LINK}\n{HTML}",
        limitations=f"`{IMAGE}`",
        license="Apache-2.0",
        commercial_use=True,
    )
    lineage.version.refresh_from_db()

    card = _card(lineage.version, compliance)
    html = _as_html(card)

    for tag in ("<a ", "<img", "<script", "<h2>Approved", "<blockquote", "<ol", "<pre"):
        assert tag not in html, (tag, html)
    assert html.count("<h1>") == 1
    assert "evil.example/phish" in html  # shown as text, not dropped
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (LINK, LINK),
        ("a *b* _c_ `d` ~e~ | f", "a *b* _c_ `d` ~e~ | f"),
        ("x\n# h", "x # h"),
        ("<b>&amp;</b>", "&lt;b&gt;&amp;amp;&lt;/b&gt;"),
    ],
)
def test_inline_text_renders_as_the_words_typed(text, shown):
    html = render(markdown_inline(text))

    assert html == f"<p>{shown}</p>"


def test_block_text_keeps_lines_but_starts_no_block():
    html = render(markdown_block("# h\n- a\n+ b\n> q\n10. n\n2) m\n===\n    code"))

    assert html.count("<p>") == 1
    for tag in ("<h1>", "<h2>", "<li>", "<pre>", "<blockquote>", "<hr"):
        assert tag not in html


def test_code_span_holds_backticks():
    assert render(markdown_code("a``b")) == "<p><code>a``b</code></p>"
