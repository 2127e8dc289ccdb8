"""How ``dot`` will lay a module graph out, judged before it runs: the rank (column or row) of
each node, the rows a long left-to-right graph wraps into, and what the layout will cost.

Graphviz's ``dot`` spends its time on one network simplex over the nodes and a chain of
"virtual" nodes for each edge that spans several ranks, one per rank crossed: raft_large at full
depth has 1,438 nodes and about 19,000 virtual ones, and takes 87 s (Graphviz 2.43); a graph
of about 2,000 of both together takes 1.5-5 s. ``cost`` is that count, which ``build_graph``
keeps under ``LAYOUT_BUDGET``. (``newrank=true``, which modelviz once set, let ranks align
across frames but made that simplex run on tens of thousands more nodes: 38.5 of raft_small's
38.8 s. Without it the ordinary graphs are drawn the same, pixel for pixel.)
"""

from __future__ import annotations

import math
from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelviz.features.graph.build import ModuleGraph

__all__ = ["ASPECT", "LAYOUT_BUDGET", "WRAP_RANKS", "cost", "ranks", "rows"]

#: The largest ``cost`` a graph that modelviz lays out may have: at most about 2 s of ``dot``
#: on a loaded 2-core machine (Graphviz 2.43; newer releases are faster).
LAYOUT_BUDGET = 1_500


#: A left-to-right graph longer than this many ranks (columns of nodes) wraps into rows, read
#: like lines of text: resnet50 at depth 3 is 109 ranks, 16,700 pt wide on one line.
WRAP_RANKS = 24
#: The rows are as many as make the drawing about ``ASPECT`` times as wide as tall, judged from
#: what a rank takes across (a node and the gap to the next) and a row takes down (a node and
#: its gap for each node side by side in its busiest rank, and the row's margin).
ASPECT = 2.0
RANK_WIDTH = 150
NODE_HEIGHT = 60
ROW_MARGIN = 30


def ranks(graph: ModuleGraph) -> dict[str, int]:
    """Each node's column as ``dot`` ranks it, near enough: the longest path from a source,
    with a source that feeds later nodes only (a second input, a constant) pulled up to just
    before its first consumer, as dot's shortest-edges ranking does. Edges against execution
    order (a node drawn for a closed module that both feeds and follows an operation) do not
    rank."""
    order = {node.id: i for i, node in enumerate(graph.nodes)}
    preds: dict[str, list[str]] = {}
    succs: dict[str, list[str]] = {}
    for edge in graph.edges:
        if edge.src in order and edge.dst in order and order[edge.src] < order[edge.dst]:
            preds.setdefault(edge.dst, []).append(edge.src)
            succs.setdefault(edge.src, []).append(edge.dst)
    rank: dict[str, int] = {}
    for node in graph.nodes:
        rank[node.id] = max((rank[p] + 1 for p in preds.get(node.id, ())), default=0)
    for node in reversed(graph.nodes):
        if node.id not in preds and node.id in succs:
            rank[node.id] = max(min(rank[s] for s in succs[node.id]) - 1, 0)
    return rank


def rows(graph: ModuleGraph, rankdir: str = "LR", *, wrap: int = WRAP_RANKS) -> dict[str, int]:
    """The row of each node of a left-to-right graph longer than ``wrap`` ranks: rows of equal
    length as many as make the drawing about ``ASPECT`` times as wide as tall, each break moved
    (by up to a third of a row) to where the fewest tensors cross it. Empty when the graph is
    not wrapped (top to bottom, or short enough)."""
    if rankdir != "LR" or not graph.nodes:
        return {}
    rank = ranks(graph)
    total = max(rank.values()) + 1
    if total <= wrap:
        return {}
    breadth = max(Counter(rank.values()).values())
    row_height = ROW_MARGIN + NODE_HEIGHT * breadth
    count = max(2, min(round(math.sqrt(total * RANK_WIDTH / (ASPECT * row_height))),
                       total // 4))
    ideal = total / count
    spans = [(rank[e.src], rank[e.dst], e.src) for e in graph.edges
             if e.src in rank and e.dst in rank and rank[e.src] < rank[e.dst]]

    def crossing(cut: int) -> int:
        """The tensors a break at ``cut`` carries to the next row: one line each, however many
        nodes they feed there (see ``to_dot``'s junctions)."""
        return len({src for start, end, src in spans if start < cut <= end})

    cuts: list[int] = []
    slack = max(1, round(ideal / 3))
    for boundary in range(1, count):
        target = round(boundary * ideal)
        low = max(target - slack, (cuts[-1] if cuts else 0) + 2)
        high = min(target + slack, total - 2)
        if low > high:
            continue
        cuts.append(min(range(low, high + 1), key=lambda c: (crossing(c), abs(c - target))))
    return {node_id: sum(1 for cut in cuts if cut <= r) for node_id, r in rank.items()}




def cost(graph: ModuleGraph) -> int:
    """What laying ``graph`` out costs ``dot``, in nodes of its network simplex: the nodes, and
    one virtual node for each rank an edge crosses."""
    rank = ranks(graph)
    return len(graph.nodes) + sum(max(0, abs(rank[e.dst] - rank[e.src]) - 1)
                                  for e in graph.edges if e.src in rank and e.dst in rank)
