"""Untrusted text and Markdown. The markdown_* escapers place text into a Markdown file
(the dossier's model card): it reads as the words typed, never as a link, an image, a
heading or HTML, whatever a project, model or dataset was named; they return Markdown
source. markdown_html renders untrusted Markdown (a model's answer) to sanitised HTML."""

import re

import markdown as markdown_lib
import nh3

# Characters that start inline Markdown: emphasis, code, links and images, tables,
# strikethrough, escapes. < > & become entities, so no HTML tag or entity survives.
_INLINE = re.compile(r"([\\`*_\[\]!|~])")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
# What makes a line a heading, quote, list item, thematic break or setext underline.
_BLOCK_START = re.compile(r"^(#|>|-|\+|=|\d+[.)])")


def _inline(text: str) -> str:
    text = "".join(_ENTITIES.get(char, char) for char in text)
    return _INLINE.sub(r"\\\1", text)


def markdown_inline(value: object) -> str:
    """One line of plain text: line breaks become spaces, so no new block can start."""
    return _inline(" ".join(str(value).split()))


def markdown_block(value: object) -> str:
    """Paragraphs of plain text: line breaks kept, no line starts a block or code."""
    lines = []
    for line in str(value).splitlines():
        line = _inline(line.strip())
        match = _BLOCK_START.match(line)
        if match:
            marker = match.group(1)
            line = (
                marker[:-1] + "\\" + marker[-1] if marker[-1] in ".)" else "\\" + marker
            ) + line[len(marker) :]
        lines.append(line)
    return "\n".join(lines)


def markdown_code(value: object) -> str:
    """A code span around `value`, fenced by more backticks than it holds in a row."""
    text = " ".join(str(value).split())
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    if text.startswith("`") or text.endswith("`"):
        text = f" {text} "
    return f"{fence}{text}{fence}"


# What a rendered answer may hold: text structure, code and links; no images (they would
# load from wherever the text points), no raw HTML, no attributes beyond a link's target.
ANSWER_TAGS = {
    "p", "br", "ul", "ol", "li", "strong", "em", "code", "pre", "blockquote",
    "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "hr", "a",
}  # fmt: skip


def markdown_html(text: str) -> str:
    """Markdown to HTML for display. HTML written in the text shows as text (the parser's
    raw-HTML rules are removed), and nh3 then keeps only ANSWER_TAGS, as a second wall."""
    md = markdown_lib.Markdown(extensions=["tables", "fenced_code", "sane_lists"])
    md.preprocessors.deregister("html_block")
    md.inlinePatterns.deregister("html")
    return nh3.clean(
        md.convert(text),
        tags=ANSWER_TAGS,
        attributes={"a": {"href", "title"}},
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
