"""The module-level graph from a ``Trace`` and the probe's ``Flow``: nodes, edges and frames for
one choice of depth, opened modules and folding, decided after the pass from the records alone.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelviz.core.formatting import dims_text, human, shape_text
from modelviz.core.hierarchy import (
    MAX_REACH,
    blocks_depth,
    fold_label,
    fold_runs,
    ordered_children,
)
from modelviz.core.records import Trace
from modelviz.errors import SpecError
from modelviz.features.graph.layout import LAYOUT_BUDGET
from modelviz.features.graph.layout import cost as layout_cost
from modelviz.features.graph.layout import ranks as layout_ranks
from modelviz.features.graph.probe import KINDS, Flow, FlowEvent, Ref

__all__ = ["DEFAULT_DEPTH", "FOLD_MIN", "MAX_NODES", "MAX_OPS", "MAX_REACH", "Cluster", "Edge",
           "ModuleGraph", "Node", "blocks_depth", "build_graph", "default_depth"]

#: Depth 2 shows the blocks of most models (ResNet's BasicBlocks, a transformer's decoder
#: layers) with their stages as frames around them; depth 1 shows only the stages, and full depth
#: turns resnet152 into 500 nodes. The default goes deeper where the repeated blocks are deeper
#: (ViT's ``encoder.layers.encoder_layer_N`` at 3), as summary's does: see ``default_depth``.
DEFAULT_DEPTH = 2
#: The default graph's size limit: past it, the opened modules busiest with functional
#: operations are drawn closed, one at a time, until the graph fits (a note says which).
MAX_NODES = 150
#: ... and, whatever the size, an opened module whose code draws more operation nodes than this
#: (fasterrcnn's ``roi_heads``: 93 ``getitem``, ``mul``, ``reshape``...) is drawn closed.
MAX_OPS = 20
#: Runs of at least this many identical numbered siblings fold into one node (``×N``). Two in a
#: row are still drawn: folding them saves one node and hides the chain.
FOLD_MIN = 3

@dataclass
class Node:
    id: str
    kind: str  # "input", "output", "module" or "op"
    title: str
    lines: list[str] = field(default_factory=list)  # type, parameters, output shape
    layer: str = "other"  # the colour family: a key of KINDS, or "input"/"output"
    cluster: str | None = None  # id of the innermost frame it sits in
    repeat: int = 1  # >1: a folded run of this many identical blocks
    module: str = ""  # the module it is, or whose code ran the operation; "" for the root's


@dataclass
class Edge:
    src: str
    dst: str
    label: str  # the tensor's shape where the source node does not show it, else empty


@dataclass
class Cluster:
    """A frame around the nodes of a module that is drawn opened."""

    id: str
    label: str
    parent: str | None


@dataclass
class ModuleGraph:
    """The module-level data-flow graph, ready to be written as DOT."""

    title: str
    nodes: list[Node]
    edges: list[Edge]
    clusters: list[Cluster]
    depth: int
    folded: list[str] = field(default_factory=list)  # labels of folded runs ("layers.0–31")
    params: int = 0  # of the whole model
    closed: list[str] = field(default_factory=list)  # modules drawn closed to fit MAX_NODES
    notes: list[str] = field(default_factory=list)  # what the user should know: the closing

    def node(self, node_id: str) -> Node:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    @property
    def caption(self) -> str:
        """``resnet18 · 11.69M params · depth 2``."""
        return f"{self.title} · {_compact(self.params)} params · depth {self.depth}"

    @property
    def kinds(self) -> list[str]:
        """The colour families present, in legend order."""
        present = {n.layer for n in self.nodes}
        return [k for k in KINDS if k in present]


def _compact(value: int) -> str:
    """2359296 -> '2.36M'."""
    return human(value).replace(" ", "")


def _numbered(names: list[str]) -> bool:
    """``layers.0``, ``layers.1``...: one prefix, then a number."""
    prefixes = set()
    for name in names:
        match = re.match(r"^(.*?)(\d+)$", name)
        if match is None:
            return False
        prefixes.add(match.group(1))
    return len(prefixes) == 1


@dataclass
class _Fold:
    label: str
    members: list[str]


class _Builder:
    """Maps events to nodes for one choice of depth, expansions and folding."""

    def __init__(self, trace: Trace, flow: Flow, depth: int, expand: tuple[str, ...],
                 fold: bool, closed: tuple[str, ...] = ()) -> None:
        self.trace = trace
        self.flow = flow
        self.depth = depth
        self.closed = set(closed)  # canonical modules drawn as one node although above depth
        self.fold_map: dict[str, str] = {}  # member name -> first member's name
        self.member_of: dict[str, tuple[str, int]] = {}  # member -> (first member, position)
        self.folds: dict[str, _Fold] = {}  # first member -> the run
        if fold:
            self._find_folds("", {})
        self._canon: dict[str, str] = {"": ""}
        self._fold_path: dict[str, tuple[tuple[str, int], ...]] = {"": ()}
        self.expanded = self._expansions(expand)
        self._display: dict[str, str | None] = {}
        self.ordinal: dict[int, int] = {}  # call index -> its position among its module's calls
        for record in trace.modules.values():
            for i, call in enumerate(record.calls):
                self.ordinal[call.index] = i

    def _find_folds(self, name: str, memo: dict[str, tuple[Any, ...]]) -> None:
        for run in fold_runs(self.trace, ordered_children(self.trace, name), memo):
            names = [r.name for r in run]
            if len(run) >= FOLD_MIN and _numbered(names):
                self.folds[names[0]] = _Fold(fold_label(names), names)
                for position, member in enumerate(names):
                    self.member_of[member] = (names[0], position)
                    if position:
                        self.fold_map[member] = names[0]
            self._find_folds(names[0], memo)
            if len(run) < FOLD_MIN or not _numbered(names):
                for other in names[1:]:
                    self._find_folds(other, memo)

    def canon(self, name: str) -> str:
        """The name that stands for ``name``: folded members become their run's first member."""
        known = self._canon.get(name)
        if known is None:
            parent, _, leaf = name.rpartition(".")
            base = f"{self.canon(parent)}.{leaf}" if parent else leaf
            known = self._canon[name] = self.fold_map.get(base, base)
        return known

    def fold_path(self, name: str) -> tuple[tuple[str, int], ...]:
        """The folded runs ``name`` lies in, with its member position in each."""
        known = self._fold_path.get(name)
        if known is None:
            parent, _, leaf = name.rpartition(".")
            base = f"{self.canon(parent)}.{leaf}" if parent else leaf
            known = self.fold_path(parent)
            if base in self.member_of:
                known = (*known, self.member_of[base])
            self._fold_path[name] = known
        return known

    def _expansions(self, names: tuple[str, ...]) -> set[str]:
        modules = self.trace.modules
        opened: set[str] = set()
        for name in names:
            if name not in modules or not name:
                close = difflib.get_close_matches(name, [m for m in modules if m], n=3,
                                                  cutoff=0.6)
                fix = (f"Close names: {', '.join(close)}." if close else
                       "Use a module name as modelviz summary shows it.")
                raise SpecError(f"`expand={name!r}`: the model has no module of that name.", fix)
            if not modules[name].children:
                raise SpecError(f"`expand={name!r}`: {name} ({modules[name].type}) has no "
                                "submodules to open.", "Expand a module that has submodules.")
            canonical = self.canon(name)
            while canonical:
                opened.add(canonical)
                canonical = canonical.rpartition(".")[0]
        return opened

    def opened(self, name: str) -> bool:
        record = self.trace.modules[name]
        if not record.children:
            return False
        if not name or not record.calls:  # the root, and never-called ModuleLists: see-through
            return True
        if name in self.expanded:
            return True
        return record.depth < self.depth and name not in self.closed

    def display(self, name: str) -> str | None:
        """The node a (canonical) module is drawn as; None if it is drawn opened."""
        if name in self._display:
            return self._display[name]
        parent = self.trace.modules[name].parent
        above = self.display(parent) if parent is not None else None
        result = above if above is not None else (None if self.opened(name) else name)
        self._display[name] = result
        return result

    def enclosing(self, call: int, module: str) -> int | None:
        """The call of (canonical) ``module`` that ``call`` ran inside, or is."""
        calls = self.trace.calls
        index: int | None = call
        while index is not None:
            if self.canon(calls[index].module) == module:
                return index
            index = calls[index].parent
        return None


def _node_id(module: str, ordinal: int) -> str:
    """``layer1.0``; a module's second call is ``pool@2``; a root without submodules ``model``."""
    return (module or "model") + (f"@{ordinal + 1}" if ordinal else "")


@dataclass
class _Drawn:
    """What one node stands for, found while events are assigned to nodes."""

    kind: str  # "input", "output", "module" or "op"
    module: str = ""  # module nodes: the module; op nodes: the module whose code ran it
    ordinal: int = 0  # which call of that module
    call: int | None = None  # the first call (or owner call) behind it, for its frames
    name: str = ""  # op name, or the input or output path
    shape: tuple[int, ...] = ()
    dtype: str = ""


class _Graph:
    """Nodes and edges collected in execution order, before pruning and labelling."""

    def __init__(self, builder: _Builder) -> None:
        self.b = builder
        self.flow = builder.flow
        self.events = builder.flow.events
        self.drawn: dict[str, _Drawn] = {}  # node id -> what it stands for, in first-seen order
        self.keys: dict[int, str | None] = {}  # event -> its node; None for see-through calls
        self.edges: dict[tuple[str, str, str], set[str]] = {}  # (src, dst, shape) -> tensors

    # -- events to nodes -----------------------------------------------------------------------

    def assign(self) -> None:
        calls = self.b.trace.calls
        op_counts: dict[tuple[int, str], int] = {}
        for event in self.events:
            if event.kind == "input":
                self.keys[event.seq] = None
                for path in event.outputs:
                    self.input_node(path)
                continue
            module = self.b.canon(calls[event.call].module)
            shown = self.b.display(module)
            node_id: str | None = None
            if shown is not None:
                enclosing = self.b.enclosing(event.call, shown)
                ordinal = self.b.ordinal[enclosing] if enclosing is not None else 0
                node_id = _node_id(shown, ordinal)
                self.drawn.setdefault(node_id, _Drawn("module", shown, ordinal, event.call))
            elif event.kind == "op":
                count = op_counts.get((event.call, event.name), 0)
                op_counts[(event.call, event.name)] = count + 1
                ordinal = self.b.ordinal[event.call]
                owner = _node_id(module, ordinal) + ":" if module else ""
                node_id = f"{owner}{event.name}#{count}"
                self.drawn.setdefault(node_id, _Drawn("op", module, ordinal, event.call,
                                                      event.name))
            self.keys[event.seq] = node_id

    def input_node(self, path: str) -> str:
        first, _, rest = path.partition(".")
        name = self.flow.input_names.get(first, first) + (f"[{rest}]" if rest else "")
        node_id = f"input:{name}"
        if node_id not in self.drawn:
            shape, dtype = self.events[0].outputs[path]
            self.drawn[node_id] = _Drawn("input", name=name, shape=shape, dtype=dtype)
        return node_id

    # -- edges -----------------------------------------------------------------------------------

    def resolve(self, ref: Ref | None) -> tuple[str, FlowEvent, str] | None:
        """Follow see-through calls back to the node that made the tensor."""
        while ref is not None:
            event = self.events[ref[0]]
            if event.kind == "input":
                return self.input_node(ref[1]), event, ref[1]
            key = self.keys[event.seq]
            if key is not None:
                return key, event, ref[1]
            ref = event.origins.get(ref[1])
        return None

    def _fold_path(self, event: FlowEvent) -> tuple[tuple[str, int], ...]:
        if event.kind == "input":
            return ()
        return self.b.fold_path(self.b.trace.calls[event.call].module)

    def crosses_members(self, producer: FlowEvent, consumer: FlowEvent) -> bool:
        """From one member of a folded run to another: the run's inner chain, not drawn."""
        inner = dict(self._fold_path(producer))
        return any(inner.get(run, position) != position
                   for run, position in self._fold_path(consumer))

    def add_edge(self, src: str, dst: str, shape: tuple[int, ...], tensor: str) -> None:
        self.edges.setdefault((src, dst, dims_text(shape)), set()).add(tensor)

    def connect(self) -> None:
        for event in self.events:
            target = self.keys.get(event.seq)
            if target is None:
                continue
            for ref in event.inputs:
                found = self.resolve(ref)
                if found is None:
                    continue
                source, producer, path = found
                if source != target and not self.crosses_members(producer, event):
                    self.add_edge(source, target, producer.outputs[path][0], f"{source}/{path}")

    def outputs(self) -> None:
        """One node per tensor the model returned, fed by whatever made it."""
        seq = self.flow.call_events.get(0)
        if seq is None:
            return
        root = self.events[seq]
        for path, (shape, dtype) in root.outputs.items():
            node_id = f"output:{path}"
            self.drawn[node_id] = _Drawn("output", name=path, shape=shape, dtype=dtype)
            own = self.keys[root.seq]  # a root without submodules is a node itself
            found = ((own, root, path) if own is not None
                     else self.resolve(root.origins.get(path)))
            if found is not None:
                self.add_edge(found[0], node_id, shape, f"{found[0]}/{found[2]}")

    def alive(self) -> set[str]:
        """Every node but operations whose results lead nowhere (size arithmetic, masks)."""
        alive = set(self.drawn)
        while True:
            feeding = {src for (src, dst, _) in self.edges if dst in alive}
            dead = {n for n in alive if self.drawn[n].kind == "op" and n not in feeding}
            if not dead:
                return alive
            alive -= dead


class _Frames:
    """The dashed frames around opened modules, made on demand and nested."""

    def __init__(self, builder: _Builder) -> None:
        self.b = builder
        self.clusters: dict[str, Cluster] = {}
        self.items: dict[str, list[str]] = {}  # frame -> its direct nodes and frames

    def frame(self, module: str, call: int | None) -> str | None:
        """The frame of opened (canonical) ``module`` for the call that ``call`` ran in."""
        trace = self.b.trace
        chain: list[tuple[str, int]] = []
        name = module
        while name:
            record = trace.modules[name]
            if record.calls:  # a never-called ModuleList gets no frame of its own
                enclosing = self.b.enclosing(call, name) if call is not None else None
                chain.append((name, self.b.ordinal[enclosing] if enclosing is not None else 0))
            name = record.parent or ""
        parent: str | None = None
        for name, ordinal in reversed(chain):
            cluster_id = "cluster_" + _node_id(name, ordinal)
            if cluster_id not in self.clusters:
                record = trace.modules[name]
                run = self.b.folds.get(name)
                label = (f"{run.label} · {record.type} ×{len(run.members)}" if run
                         else f"{name} · {record.type}")
                self.clusters[cluster_id] = Cluster(cluster_id, label, parent)
                self.items[cluster_id] = []
                if parent is not None:
                    self.items[parent].append(cluster_id)
            parent = cluster_id
        return parent

    def settle(self, nodes: list[Node]) -> list[Cluster]:
        """Place the nodes; a frame around a single item says nothing, so it dissolves."""
        by_id = {n.id: n for n in nodes}
        for node in nodes:
            if node.cluster is not None:
                self.items[node.cluster].append(node.id)
        for cluster_id in reversed(list(self.clusters)):
            items = self.items[cluster_id]
            if len(items) > 1:
                continue
            parent = self.clusters[cluster_id].parent
            for item in items:
                if item in self.clusters:
                    self.clusters[item].parent = parent
                else:
                    by_id[item].cluster = parent
                if parent is not None:
                    self.items[parent].append(item)
            if parent is not None:
                self.items[parent].remove(cluster_id)
            del self.clusters[cluster_id]
        return list(self.clusters.values())


def _label(drawn: _Drawn, builder: _Builder) -> tuple[str, list[str]]:
    """Title and lines of text of a node."""
    if drawn.kind == "op":
        return drawn.name, []
    if drawn.kind == "input":
        return drawn.name, [dims_text(drawn.shape)] + ([drawn.dtype] if drawn.dtype != "float32"
                                                       else [])
    if drawn.kind == "output":
        path = drawn.name
        if not path:
            title = "output"
        elif path.split(".")[0].isdigit():
            title = "output[" + path.replace(".", "][") + "]"
        else:
            title = path
        return title, [dims_text(drawn.shape)]
    trace = builder.trace
    record = trace.modules[drawn.module]
    run = builder.folds.get(drawn.module)
    text = record.type + (f" ×{len(run.members)}" if run else "")
    if len(record.calls) > 1:
        text += f" · call {drawn.ordinal + 1} of {len(record.calls)}"
    if record.params_total:
        text += f" · {_compact(record.params_total)} params" + (" each" if run else "")
    lines = [text]
    if record.calls:
        call = record.calls[min(drawn.ordinal, len(record.calls) - 1)]
        if run is not None:  # what comes out of the run is what its last member returned
            last = trace.modules[run.members[-1]]
            call = last.calls[min(drawn.ordinal, len(last.calls) - 1)]
        lines.append(shape_text(call.output))
    title = run.label if run else (drawn.module or trace.model_type)
    return title, lines


def default_depth(trace: Trace) -> int:
    """``DEFAULT_DEPTH``, or deeper to show the repeated blocks (folded) as nodes."""
    return max(DEFAULT_DEPTH, blocks_depth(trace))


def build_graph(trace: Trace, flow: Flow, *, depth: int | None = None,
                expand: tuple[str, ...] = (), fold: bool = True, title: str = "",
                max_nodes: int | None = None, budget: int | None = None) -> ModuleGraph:
    """The module graph at ``depth``, with ``expand`` opened one level further.

    Without ``depth``, the depth is ``default_depth`` and the graph is kept to ``max_nodes``
    (``MAX_NODES`` unless given; 0: no limit) by drawing closed, one at a time, the opened
    module whose code ran the most functional operations (then the one holding most nodes),
    never one in ``expand``; a module with more than ``MAX_OPS`` operation nodes inside is
    drawn closed even in a graph that fits. With ``depth``, nothing is closed for its size
    unless ``max_nodes`` is given. Whatever the depth, a graph that Graphviz would take more
    than a few seconds to lay out (``layout.cost`` over ``budget``, ``LAYOUT_BUDGET`` unless
    given; 0: no limit) has modules drawn closed in the same way until it fits.
    """
    if depth is not None and depth < 1:
        raise SpecError(f"`depth={depth}`: the depth must be 1 or more.", "Use `depth=1` or more.")
    chosen = default_depth(trace) if depth is None else depth
    limit = (MAX_NODES if depth is None else 0) if max_nodes is None else max_nodes
    budget = LAYOUT_BUDGET if budget is None else budget

    def fits(graph: ModuleGraph) -> bool:
        return ((not limit or len(graph.nodes) <= limit)
                and (not budget or layout_cost(graph) <= budget))

    closed: list[str] = []
    graph, builder = _build(trace, flow, chosen, expand, fold, title, ())
    before = graph
    while limit or budget:
        busiest = _busiest(graph, builder)
        if busiest is None:
            break
        if limit and (len(graph.nodes) > limit or busiest[1] > MAX_OPS):
            closed.append(busiest[0])  # for the reader: the module busiest with operations
        elif budget and (cost := layout_cost(graph)) > budget:
            trial = copy.deepcopy(graph)
            if _collapse_ops(trial, fits)[0] and fits(trial):
                break  # runs of operations drawn as one node each are enough: below
            costliest = _costliest(graph, builder, cost - budget)
            if costliest is None:
                break
            closed.append(costliest)  # for Graphviz: what costs its layout most
        else:
            break
        graph, builder = _build(trace, flow, chosen, expand, fold, title, tuple(closed))
    notes: list[str] = []
    slow = bool(budget) and layout_cost(before) > budget
    why = ("so that Graphviz lays the graph out in seconds" if slow and (
        not limit or len(before.nodes) <= limit) else "to keep the graph readable")
    if closed:
        hidden = sum(1 for n in before.nodes if n.kind == "op"
                     and any(_inside(n.module, name) for name in closed))
        names = ", ".join(closed)
        inside = f", with the {hidden:,} functional operations inside," if hidden else ""
        notes.append(
            f"{names} {'is' if len(closed) == 1 else 'are'} drawn closed{inside} {why}: "
            f"{len(graph.nodes):,} nodes instead of {len(before.nodes):,}. Open one "
            f"with `expand={closed[0]}`"
            + (f", or draw everything with `depth={chosen}`." if depth is None and not slow
               else "."))
    if not fits(graph):
        # What is left over the limit are operations that closing cannot hide: the root's own
        # code (ssd300's box decoding, raft's refinement loop) or an expanded module's.
        count = len(graph.nodes)
        merged, into, owners = _collapse_ops(graph, fits)
        if merged:
            where = ", ".join(o or "the model's own forward" for o in owners)
            notes.append(
                f"{merged:,} functional operations in {where} are drawn as {into:,} "
                f"{'node,' if into == 1 else 'nodes, each'} a run of consecutive operations, "
                f"{why}: {len(graph.nodes):,} nodes instead of {count:,}."
                + (f" Draw each operation with `depth={chosen}`." if depth is None and not slow
                   else ""))
    graph.notes.extend(notes)
    graph.closed = closed
    return graph


def _collapse_ops(graph: ModuleGraph, fits: Callable[[ModuleGraph], bool]) -> (
        tuple[int, int, list[str]]):
    """Merge runs of consecutive operation nodes of one module's code (one call of it) into
    one node each, the busiest code first, until the graph ``fits``.

    Nodes are in execution order, so a run is a stretch of that order with nothing else in
    it: edges into and out of the run are kept, those inside it dropped, and no cycle is made.
    Returns the operation nodes merged, the nodes they became, and the modules whose code
    they ran ("" for the root's), in the order they were collapsed.
    """
    def owner(node: Node) -> tuple[str, str | None]:
        return node.module, node.cluster

    counts: dict[tuple[str, str | None], int] = {}
    for node in graph.nodes:
        if node.kind == "op":
            counts[owner(node)] = counts.get(owner(node), 0) + 1
    merged = into = 0
    owners: list[str] = []
    for key in sorted(counts, key=lambda k: -counts[k]):
        if fits(graph):
            break
        runs: list[list[Node]] = []
        previous: Node | None = None
        for node in graph.nodes:
            if node.kind == "op" and owner(node) == key:
                if previous is not None and runs:
                    runs[-1].append(node)
                else:
                    runs.append([node])
                previous = node
            else:
                previous = None
        runs = [run for run in runs if len(run) > 1]
        if not runs:
            continue
        rename: dict[str, str] = {}
        for run in runs:
            head = run[0]
            names: dict[str, int] = {}
            for node in run:
                name = node.title
                names[name] = names.get(name, 0) + 1
            parts = [f"{name} ×{n}" if n > 1 else name
                     for name, n in sorted(names.items(), key=lambda item: -item[1])]
            shown = ", ".join(parts[:3]) + (", …" if len(parts) > 3 else "")
            head.title = f"{len(run)} ops ({shown})"
            for node in run:
                rename[node.id] = head.id
            merged += len(run)
            into += 1
        gone = {node_id for node_id, head_id in rename.items() if node_id != head_id}
        graph.nodes = [n for n in graph.nodes if n.id not in gone]
        labels: dict[tuple[str, str], list[str]] = {}
        for edge in graph.edges:
            src, dst = rename.get(edge.src, edge.src), rename.get(edge.dst, edge.dst)
            if src == dst:
                continue
            seen = labels.setdefault((src, dst), [])
            if edge.label not in seen:
                seen.append(edge.label)
        graph.edges = [Edge(src, dst, ", ".join(texts) if len(texts) <= 2
                            else f"{len(texts)} shapes")
                       for (src, dst), texts in labels.items()]
        if key[0] not in owners:
            owners.append(key[0])
    return merged, into, owners


def _inside(module: str, name: str) -> bool:
    """``module`` is ``name`` or lies inside it."""
    return module == name or module.startswith(name + ".")


def _busiest(graph: ModuleGraph, builder: _Builder) -> tuple[str, int] | None:
    """The opened module to draw closed next: the most operation nodes inside, then the most
    nodes; of equals, the innermost, which hides least. With its count of operation nodes."""
    modules = builder.trace.modules
    scores: dict[str, tuple[int, int, int]] = {}
    for node in graph.nodes:
        name = node.module
        while name:
            record = modules[name]
            if record.calls and builder.opened(name) and name not in builder.expanded:
                ops, count, _ = scores.get(name, (0, 0, 0))
                scores[name] = (ops + (node.kind == "op"), count + 1, record.depth)
            name = record.parent or ""
    candidates = [(score, name) for name, score in scores.items() if score[1] > 1]
    if not candidates:
        return None
    score, name = max(candidates)
    return name, score[0]


def _costliest(graph: ModuleGraph, builder: _Builder, excess: int) -> str | None:
    """The opened module to draw closed to cut ``excess`` off the layout's cost (its nodes, and
    the edges inside it with their virtual nodes): the costliest that cuts no more than the
    excess, if it cuts a quarter of it, else the cheapest that cuts it all, which hides least.
    None when no module can be closed."""
    modules = builder.trace.modules
    rank = layout_ranks(graph)
    module_of = {node.id: node.module for node in graph.nodes}
    share: dict[str, int] = {}

    def closable(name: str) -> list[str]:
        """``name`` and the modules around it that may be drawn closed, innermost first."""
        found = []
        while name:
            record = modules[name]
            if record.calls and builder.opened(name) and name not in builder.expanded:
                found.append(name)
            name = record.parent or ""
        return found

    for node in graph.nodes:
        for name in closable(node.module):
            share[name] = share.get(name, 0) + 1
    for edge in graph.edges:
        span = abs(rank.get(edge.dst, 0) - rank.get(edge.src, 0)) - 1
        if span > 0:
            inside = set(closable(module_of.get(edge.src, "")))
            for name in closable(module_of.get(edge.dst, "")):
                if name in inside:  # the edge lies inside it: closing it removes the edge
                    share[name] = share.get(name, 0) + span
    costs = [(cost, name) for name, cost in share.items() if cost > 1]
    if not costs:
        return None
    # A large part of the excess first (DenseNet's blocks, one at a time, not the whole of
    # `features`), then the cheapest module that cuts what is left.
    part = max((c for c in costs if c[0] <= excess), default=None)
    enough = [c for c in costs if c[0] >= excess]
    if part is not None and (part[0] * 4 >= excess or not enough):
        return part[1]
    return min(enough)[1]


def _build(trace: Trace, flow: Flow, depth: int, expand: tuple[str, ...], fold: bool,
           title: str, closed: tuple[str, ...]) -> tuple[ModuleGraph, _Builder]:
    builder = _Builder(trace, flow, depth, expand, fold, closed)
    graph = _Graph(builder)
    graph.assign()
    graph.connect()
    graph.outputs()
    alive = graph.alive()

    frames = _Frames(builder)
    nodes: list[Node] = []
    for node_id, drawn in graph.drawn.items():
        if node_id not in alive:
            continue
        heading, lines = _label(drawn, builder)
        cluster = None
        if drawn.kind == "module":
            parent = trace.modules[drawn.module].parent
            cluster = frames.frame(parent, drawn.call) if parent else None
        elif drawn.kind == "op" and drawn.module:
            cluster = frames.frame(drawn.module, drawn.call)
        layer = (flow.kinds.get(drawn.module, "other") if drawn.kind == "module"
                 else drawn.kind)
        run = builder.folds.get(drawn.module) if drawn.kind == "module" else None
        nodes.append(Node(node_id, drawn.kind, heading, lines, layer, cluster,
                          len(run.members) if run else 1, drawn.module))
    clusters = frames.settle(nodes)

    # Each shape is written once: on the node, where it is the node's output, so an edge says
    # its shape only where its source does not (operations, a tuple's parts, several tensors).
    # Nodes keep them because a node has one place to read, and its edges may be many.
    on_node = {n.id: set(n.lines) for n in nodes}
    edges = [Edge(src, dst, "" if len(tensors) == 1 and shape in on_node[src]
                  else shape if len(tensors) == 1 else f"{len(tensors)} × {shape}")
             for (src, dst, shape), tensors in graph.edges.items()
             if src in alive and dst in alive]
    shown = {d.module for d in graph.drawn.values() if d.kind == "module"}
    opened = {c.id.removeprefix("cluster_") for c in clusters}
    folded = [run.label for first, run in builder.folds.items()
              if first in shown or first in opened]
    return ModuleGraph(title or trace.model_type, nodes, edges, clusters, depth, folded,
                       trace.params), builder
