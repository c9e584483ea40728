"""The lineage drawn as SVG: datasets -> snapshots -> jobs -> model versions, with base
models and parent versions feeding the jobs. Columns are each node's longest distance from
a source, so every edge points right. Pure and deterministic: same input, same bytes."""

import textwrap
from collections import defaultdict
from xml.sax.saxutils import escape

BOX_W, COL_GAP, ROW_GAP, PAD = 168, 56, 14, 12
# Characters per line that fit the box at each font size (DejaVu Sans is about 0.6 em wide
# on average; bold a little wider). Labels wrap onto as many lines as they need: a name cut
# short could name a different dataset or job.
TITLE_CHARS, SUBTITLE_CHARS = 21, 27
TITLE_LINE, SUBTITLE_LINE, BOX_PAD = 14, 12, 8
FILL = {
    "dataset": "#e8f1fb",
    "snapshot": "#e9f6ec",
    "base": "#fdf1e3",
    "job": "#f1ecf9",
    "version": "#fbe9ec",
}


def _ranks(nodes: list[str], edges: list[tuple[str, str, str]]) -> dict[str, int]:
    incoming: dict[str, list[str]] = defaultdict(list)
    for source, target, _ in edges:
        incoming[target].append(source)
    rank: dict[str, int] = {}

    def visit(node: str, depth: int = 0) -> int:
        if node in rank:
            return rank[node]
        if depth > len(nodes):  # a cycle cannot happen in a lineage; refuse to loop on one
            return 0
        rank[node] = max((visit(p, depth + 1) + 1 for p in incoming[node]), default=0)
        return rank[node]

    for node in nodes:
        visit(node)
    return rank


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width, break_on_hyphens=False) or [""]


def _box(labels: tuple[str, str]) -> tuple[list[str], list[str], float]:
    """A node's title and subtitle lines and the height of the box that holds them."""
    title, subtitle = _wrap(labels[0], TITLE_CHARS), _wrap(labels[1], SUBTITLE_CHARS)
    height = BOX_PAD * 2 + len(title) * TITLE_LINE + len(subtitle) * SUBTITLE_LINE
    return title, subtitle, height


def lineage_svg(labels: dict[str, tuple[str, str]], edges: list[tuple[str, str, str]]) -> str:
    """`labels` maps node id ("kind:pk") to (title, subtitle)."""
    nodes = sorted(labels)
    rank = _ranks(nodes, [e for e in edges if e[0] in labels and e[1] in labels])
    columns: dict[int, list[str]] = defaultdict(list)
    for node in nodes:
        columns[rank[node]].append(node)
    boxes = {node: _box(labels[node]) for node in nodes}
    position: dict[str, tuple[float, float]] = {}
    height = 0.0
    for col, members in sorted(columns.items()):
        y = float(PAD)
        for node in sorted(members, key=lambda n: (n.split(":")[0], n)):
            position[node] = (PAD + col * (BOX_W + COL_GAP), y)
            y += boxes[node][2] + ROW_GAP
        height = max(height, y - ROW_GAP + PAD)
    width = PAD * 2 + (max(columns, default=0) + 1) * (BOX_W + COL_GAP) - COL_GAP
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="lineage" width="{width:.0f}" '
        f'height="{max(height, 60):.0f}" viewBox="0 0 {width:.0f} {max(height, 60):.0f}" '
        'role="img" aria-label="Model lineage">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0L10,5L0,10z" fill="#555"/></marker></defs>',
    ]
    for source, target, relation in edges:
        if source not in position or target not in position:
            continue
        x1, y1 = position[source][0] + BOX_W, position[source][1] + boxes[source][2] / 2
        x2, y2 = position[target][0], position[target][1] + boxes[target][2] / 2
        mid = (x1 + x2) / 2
        parts.append(
            f'<path d="M{x1:.1f},{y1:.1f} C{mid:.1f},{y1:.1f} {mid:.1f},{y2:.1f} '
            f'{x2:.1f},{y2:.1f}" '
            f'fill="none" stroke="#555" stroke-width="1.2" marker-end="url(#arrow)">'
            f"<title>{escape(relation)}</title></path>"
        )
    for node in nodes:
        x, y = position[node]
        title, subtitle, box_h = boxes[node]
        kind = node.split(":")[0]
        parts.append(
            f"<g><title>{escape(labels[node][0])}: {escape(labels[node][1])}</title>"
            f'<rect x="{x:.0f}" y="{y:.0f}" width="{BOX_W}" height="{box_h:.0f}" rx="6" '
            f'fill="{FILL.get(kind, "#eeeeee")}" stroke="#444" stroke-width="1"/>'
        )
        baseline = y + BOX_PAD
        for line in title:
            baseline += TITLE_LINE
            parts.append(
                f'<text x="{x + 8:.0f}" y="{baseline - 3:.0f}" font-size="11" '
                f'font-weight="bold">{escape(line)}</text>'
            )
        for line in subtitle:
            baseline += SUBTITLE_LINE
            parts.append(
                f'<text x="{x + 8:.0f}" y="{baseline - 2:.0f}" font-size="9.5" fill="#333">'
                f"{escape(line)}</text>"
            )
        parts.append("</g>")
    if not nodes:
        parts.append('<text x="12" y="30" font-size="12">No lineage recorded.</text>')
    parts.append("</svg>")
    return "".join(parts)
