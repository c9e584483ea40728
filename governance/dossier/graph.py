"""The lineage drawn as SVG: datasets -> snapshots -> jobs -> model versions, with base
models and parent versions feeding the jobs. Columns are each node's longest distance from
a source, so every edge points right. Pure and deterministic: same input, same bytes."""

from collections import defaultdict
from xml.sax.saxutils import escape

BOX_W, BOX_H, COL_GAP, ROW_GAP, PAD = 168, 44, 56, 14, 12
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


def _clip(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def lineage_svg(labels: dict[str, tuple[str, str]], edges: list[tuple[str, str, str]]) -> str:
    """`labels` maps node id ("kind:pk") to (title, subtitle)."""
    nodes = sorted(labels)
    rank = _ranks(nodes, [e for e in edges if e[0] in labels and e[1] in labels])
    columns: dict[int, list[str]] = defaultdict(list)
    for node in nodes:
        columns[rank[node]].append(node)
    position: dict[str, tuple[float, float]] = {}
    height = 0.0
    for col, members in sorted(columns.items()):
        for row, node in enumerate(sorted(members, key=lambda n: (n.split(":")[0], n))):
            x = PAD + col * (BOX_W + COL_GAP)
            y = PAD + row * (BOX_H + ROW_GAP)
            position[node] = (x, y)
            height = max(height, y + BOX_H + PAD)
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
        x1, y1 = position[source][0] + BOX_W, position[source][1] + BOX_H / 2
        x2, y2 = position[target][0], position[target][1] + BOX_H / 2
        mid = (x1 + x2) / 2
        parts.append(
            f'<path d="M{x1:.1f},{y1:.1f} C{mid:.1f},{y1:.1f} {mid:.1f},{y2:.1f} '
            f'{x2:.1f},{y2:.1f}" '
            f'fill="none" stroke="#555" stroke-width="1.2" marker-end="url(#arrow)">'
            f"<title>{escape(relation)}</title></path>"
        )
    for node in nodes:
        x, y = position[node]
        title, subtitle = labels[node]
        kind = node.split(":")[0]
        parts.append(
            f'<g><rect x="{x:.0f}" y="{y:.0f}" width="{BOX_W}" height="{BOX_H}" rx="6" '
            f'fill="{FILL.get(kind, "#eeeeee")}" stroke="#444" stroke-width="1"/>'
            f'<text x="{x + 8:.0f}" y="{y + 18:.0f}" font-size="11" font-weight="bold">'
            f"{escape(_clip(title))}</text>"
            f'<text x="{x + 8:.0f}" y="{y + 34:.0f}" font-size="9.5" fill="#333">'
            f"{escape(_clip(subtitle, 30))}</text></g>"
        )
    if not nodes:
        parts.append('<text x="12" y="30" font-size="12">No lineage recorded.</text>')
    parts.append("</svg>")
    return "".join(parts)
