"""A ``ModuleGraph`` as Graphviz DOT source: stable text, so that golden files stay golden.

Everything is written in the graph's own order (execution order), with no ids from memory
addresses, so the same model gives the same bytes on every machine. The source needs no Graphviz
to produce; ``modelviz.features.graph.drawing`` lays it out.

Names and types are the user's text: ids go through ``dot_id``, plain labels through
``dot_label`` and HTML-like labels through ``dot_html`` (``modelviz.escape``), so that any
name, control characters included, is drawn as written instead of breaking the layout.
"""

from __future__ import annotations

from modelviz.escape import dot_html, dot_id, dot_label
from modelviz.features.graph.build import Cluster, ModuleGraph, Node
from modelviz.features.graph.layout import rows
from modelviz.features.graph.probe import KINDS

__all__ = ["COLOURS", "RANKDIRS", "to_dot"]

RANKDIRS = ("TB", "LR")

#: Fill colours by layer kind: light enough for black text, distinct enough to tell apart.
COLOURS: dict[str, str] = {
    "conv": "#bfdbfe",  # blue
    "linear": "#bbf7d0",  # green
    "norm": "#fef08a",  # yellow
    "activation": "#fed7aa",  # orange
    "pooling": "#fbcfe8",  # pink
    "attention": "#ddd6fe",  # violet
    "embedding": "#a5f3fc",  # cyan
    "recurrent": "#fecaca",  # red
    "dropout": "#d9f99d",  # lime: not the grey of "other", which it used to share
    "other": "#e5e7eb",  # grey
    "op": "#ffffff",
    "input": "#d1fae5",
    "output": "#fee2e2",
}

_FONT = "Helvetica"


def _label(node: Node) -> str:
    parts = [f"<B>{dot_html(node.title)}</B>"]
    parts += [f'<FONT POINT-SIZE="9">{dot_html(line)}</FONT>' for line in node.lines]
    return "<" + "<BR/>".join(parts) + ">"


def _node(node: Node, indent: str) -> str:
    fill = COLOURS.get(node.layer, COLOURS["other"])
    if node.kind == "op":
        attrs = (f'label={dot_label(node.title)}, shape=ellipse, style=filled, fillcolor="{fill}", '
                 'fontsize=9, height=0.3, margin="0.04,0.02"')
    elif node.kind == "input":
        attrs = f'label={_label(node)}, shape=invhouse, style=filled, fillcolor="{fill}"'
    elif node.kind == "output":
        attrs = f'label={_label(node)}, shape=house, style=filled, fillcolor="{fill}"'
    else:
        attrs = f'label={_label(node)}, fillcolor="{fill}"'
        if node.repeat > 1:  # a folded run: a double border, as if stacked
            attrs += ", peripheries=2"
    return f"{indent}{dot_id(node.id)} [{attrs}];"


def _legend(graph: ModuleGraph, rankdir: str) -> list[str]:
    kinds = graph.kinds
    if not kinds:
        return []
    cells = [f'<TD BGCOLOR="{COLOURS[k]}">{dot_html(KINDS[k])}</TD>' for k in kinds]
    rows = ("<TR>" + "".join(cells) + "</TR>" if rankdir == "TB"
            else "".join(f"<TR>{c}</TR>" for c in cells))
    table = ('<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="4">'
             f"{rows}</TABLE>>")
    return [f'  "legend" [label={table}, shape=plaintext, style="", fontsize=9];']


def to_dot(graph: ModuleGraph, *, rankdir: str = "TB", legend: bool = True,
           wrap: bool = True) -> str:
    """DOT source for ``graph``; ``rankdir`` TB draws top to bottom, LR left to right, and
    with ``wrap`` a long left-to-right graph wraps into rows (``rows``)."""
    if rankdir not in RANKDIRS:
        raise ValueError(f"rankdir must be one of {RANKDIRS}, not {rankdir!r}")
    row_of = rows(graph, rankdir) if wrap else {}
    lines = [
        f"digraph {dot_id(graph.title)} {{",
        f'  graph [rankdir={rankdir}, fontname="{_FONT}", fontsize=11, labelloc=t, '
        f"label={dot_label(graph.caption)}, nodesep=0.3, ranksep=0.35];",
        f'  node [shape=box, style="rounded,filled", fontname="{_FONT}", fontsize=10, '
        'margin="0.1,0.05", penwidth=0.8, color="#4b5563"];',
        f'  edge [fontname="{_FONT}", fontsize=8, fontcolor="#374151", color="#6b7280", '
        "arrowsize=0.6];",
    ]
    clusters: dict[str, Cluster] = {c.id: c for c in graph.clusters}
    children: dict[str | None, list[str]] = {}
    for cluster in graph.clusters:
        children.setdefault(cluster.parent, []).append(cluster.id)
    nodes_in: dict[str | None, list[Node]] = {}
    for node in graph.nodes:
        nodes_in.setdefault(node.cluster, []).append(node)

    # Items of a frame, in the order their first node appears: nodes and sub-frames interleaved.
    # On a wrapped graph a frame is drawn once in each row its nodes lie in.
    first_node: dict[tuple[str, int], int] = {}
    positions = {node.id: i for i, node in enumerate(graph.nodes)}
    for position, node in enumerate(graph.nodes):
        cluster_id = node.cluster
        while cluster_id is not None:
            first_node.setdefault((cluster_id, row_of.get(node.id, 0)), position)
            cluster_id = clusters[cluster_id].parent
    first_row: dict[str, int] = {}
    for cluster_id, row in sorted(first_node, key=lambda key: key[1]):
        first_row.setdefault(cluster_id, row)

    def write(cluster_id: str | None, indent: str, row: int) -> None:
        items: list[tuple[int, str, Node | None]] = [
            (positions[n.id], n.id, n) for n in nodes_in.get(cluster_id, [])
            if row_of.get(n.id, 0) == row]
        items += [(first_node[(c, row)], c, None) for c in children.get(cluster_id, [])
                  if (c, row) in first_node]
        for _, item, node in sorted(items, key=lambda entry: entry[0]):
            if node is not None:
                lines.append(_node(node, indent))
                continue
            cluster = clusters[item]
            label = cluster.label
            frame = item
            if row != first_row[item]:  # the frame goes on from the row above
                frame, label = f"cluster~{row}~{item}", f"{label} (continued)"
            lines.append(f"{indent}subgraph {dot_id(frame)} {{")
            lines.append(f"{indent}  graph [label={dot_label(label)}, "
                         'style="rounded,dashed", color="#9ca3af", fontsize=9, labeljust=l];')
            write(item, indent + "  ", row)
            lines.append(f"{indent}}}")

    edges = [(e.src, e.dst, e.label, False) for e in graph.edges]
    if not row_of:
        write(None, "  ", 0)
    else:
        # Each row is a frame with no border, so that rows stack and do not interleave; an
        # edge into a later row does not rank its head, so each row starts at the left again.
        # A tensor that feeds several nodes of a later row goes there as one line, to a
        # junction point at the start of that row, which fans out.
        crossing: dict[tuple[str, int], list[int]] = {}
        for i, (src, dst, _, _) in enumerate(edges):
            if row_of.get(src, 0) != row_of.get(dst, 0):
                crossing.setdefault((src, row_of.get(dst, 0)), []).append(i)
        taken = set(positions)
        junctions: dict[int, list[str]] = {}
        for (src, row), indices in crossing.items():
            if len(indices) < 2:
                continue
            junction = next(f"wrap{n}" for n in range(len(taken) + 1) if f"wrap{n}" not in taken)
            taken.add(junction)
            row_of[junction] = row
            junctions.setdefault(row, []).append(junction)
            labels = {edges[i][2] for i in indices}
            shared = labels.pop() if len(labels) == 1 else ""
            for i in indices:
                edges[i] = (junction, edges[i][1], "" if shared else edges[i][2], False)
            edges.append((src, junction, shared, True))
        for row in range(max(row_of.values()) + 1):
            lines.append(f"  subgraph {dot_id(f'cluster~row{row}')} {{")
            lines.append('    graph [label="", peripheries=0, margin=4];')
            lines += [f'    {dot_id(j)} [shape=point, width=0.05, color="#6b7280"];'
                      for j in junctions.get(row, [])]
            write(None, "    ", row)
            lines.append("  }")
    for src, dst, label, wraps in edges:
        attrs = [f"label={dot_label(' ' + label)}"] if label else []
        if wraps or row_of.get(src, 0) != row_of.get(dst, 0):
            attrs.append("constraint=false")
        lines.append(f"  {dot_id(src)} -> {dot_id(dst)}"
                     + (f" [{', '.join(attrs)}];" if attrs else ";"))
    if legend:
        lines += _legend(graph, rankdir)
    lines.append("}")
    return "\n".join(lines) + "\n"
