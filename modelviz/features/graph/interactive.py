"""``modelviz graph MODEL -o model.html``: an offline, interactive model viewer in one HTML file.

The page holds the model's module tree and its data-flow graph at full depth (folded and
unfolded) as JSON, and Graphviz compiled to WebAssembly (viz.js, vendored in ``assets/``). Its
script collapses the full graph to the modules the user has opened, writes DOT for that state,
lays it out in the browser and shows the SVG; nothing is fetched, so it works from ``file://``.

Names and types are the user's text: the JSON goes into a ``<script type="application/json">``
with ``<``, ``>``, ``&`` and U+2028/2029 escaped, and the page's script inserts names with
``textContent`` only; the DOT it writes escapes them as HTML-like label text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelviz.core import session
from modelviz.core.formatting import human, shape_text
from modelviz.core.hierarchy import fold_label, fold_runs, numbered, ordered_children
from modelviz.core.records import Tree, iter_metas
from modelviz.escape import html_text
from modelviz.features.graph import overlay
from modelviz.features.graph.build import FOLD_MIN, ModuleGraph, build_graph
from modelviz.features.graph.dot import COLOURS
from modelviz.features.graph.draw import graph_probe
from modelviz.features.graph.overlay import Overlay
from modelviz.features.graph.probe import KINDS, DataflowProbe

if TYPE_CHECKING:
    from modelviz.core.records import Trace
    from modelviz.core.session import Prepared

__all__ = ["Viewer", "interactive_html", "page", "viewer", "viewer_data"]

_GEOMETRY = ("kernel_size", "stride", "padding", "dilation", "groups")


def _node_id(module: str, ordinal: int) -> str:
    """The id ``build_graph`` gives a module's node: ``layer1.0``, ``pool@2``."""
    return (module or "model") + (f"@{ordinal + 1}" if ordinal else "")


def _folds(trace: Trace) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Runs of identical numbered blocks, as ``build_graph`` folds them: first -> members,
    and every later member -> its run's first member."""
    runs: dict[str, list[str]] = {}
    member_of: dict[str, str] = {}
    memo: dict[str, tuple[Any, ...]] = {}

    def walk(name: str) -> None:
        for run in fold_runs(trace, ordered_children(trace, name), memo):
            names = [r.name for r in run]
            folded = len(run) >= FOLD_MIN and numbered(names)
            if folded:
                runs[names[0]] = names
                member_of.update((m, names[0]) for m in names[1:])
            for member in names[:1] if folded else names:
                walk(member)

    walk("")
    return runs, member_of


def _plain(value: Any) -> Any:
    """A module attribute (``stride=(2, 2)``) as JSON."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return str(value)


def _module_lines(trace: Trace, name: str, runs: dict[str, list[str]]) -> tuple[str, list[Any]]:
    """Title and per-call lines of a module drawn closed, as the static graph labels it."""
    record = trace.modules[name]
    run = runs.get(name)
    text = record.type + (f" ×{len(run)}" if run else "")
    if record.params_total:
        text += f" · {human(record.params_total).replace(' ', '')} params" + (
            " each" if run else "")
    source = trace.modules[run[-1]] if run else record
    per_call = []
    for i, _ in enumerate(record.calls or [None]):
        line = text + (f" · call {i + 1} of {len(record.calls)}" if len(record.calls) > 1
                       else "")
        lines = [line]
        if source.calls:
            lines.append(shape_text(source.calls[min(i, len(source.calls) - 1)].output))
        per_call.append(lines)
    title = fold_label(run) if run else (name or trace.model_type)
    return title, per_call


def _modules(trace: Trace, prepared: Prepared, kinds: dict[str, str]) -> dict[str, Any]:
    runs, member_of = _folds(trace)
    live = dict(prepared.model.named_modules())
    out: dict[str, Any] = {}
    for name, record in trace.modules.items():
        first = record.first_call
        title, lines = _module_lines(trace, name, runs)
        plain_title, plain_lines = _module_lines(trace, name, {})
        geometry: dict[str, Any] = {}
        module = live.get(name)
        for attr in _GEOMETRY:
            value = record.extra.get(attr) if attr in record.extra else getattr(
                module, attr, None)
            if isinstance(value, (int, str, tuple, list)) and not isinstance(value, bool):
                geometry[attr] = _plain(value)  # conv and pooling geometry, not other objects
        inputs: list[Tree] = first.inputs if first is not None else []
        out[name] = {
            "type": record.type,
            "kind": kinds.get(name, "other"),
            "depth": record.depth,
            "parent": record.parent,
            "children": list(record.children),
            "params": record.params_total,
            "own_params": record.params,
            "trainable": record.trainable_total,
            "flops": record.flops,
            "calls": len(record.calls),
            "inputs": [shape_text(t) for t in inputs],
            "input_dtypes": sorted({m.dtype for t in inputs for m in iter_metas(t)}),
            "output": shape_text(first.output) if first is not None else "",
            "output_dtypes": sorted({m.dtype for m in iter_metas(
                first.output if first is not None else None)}),
            "output_bytes": record.output_bytes,
            "geometry": geometry,
            "run": runs.get(name),
            "member_of": member_of.get(name),
            "title": title,  # drawn closed, with repeats folded
            "lines": lines,  # per call
            "plain_title": plain_title,  # drawn closed, repeats unfolded
            "plain_lines": plain_lines,
        }
    return out


def _graph_json(trace: Trace, built: ModuleGraph) -> dict[str, Any]:
    """The full-depth graph; each node with the (module, call) frames it sits in, outermost
    first, so that the page can fold it into whichever of them are closed."""
    ordinal: dict[int, int] = {}
    for record in trace.modules.values():
        for i, call in enumerate(record.calls):
            ordinal[call.index] = i
    owners: dict[str, tuple[str, int]] = {}
    for name, record in trace.modules.items():
        for i, _ in enumerate(record.calls):
            owners.setdefault(_node_id(name, i), (name, i))

    def chain(module: str, which: int) -> list[list[Any]]:
        calls = trace.modules[module].calls
        index: int | None = calls[which].index if which < len(calls) else None
        path: list[list[Any]] = []
        while index is not None:
            call = trace.calls[index]
            if call.module:
                path.append([call.module, ordinal[call.index]])
            index = call.parent
        return path[::-1]

    nodes = []
    for node in built.nodes:
        path: list[list[Any]] = []
        if node.kind == "module" and node.id in owners:
            path = chain(*owners[node.id])
        elif node.kind == "op":
            owner = node.id.rpartition(":")[0]
            while owner and owner not in owners:
                owner = owner.rpartition(":")[0]
            if owner:
                path = chain(*owners[owner])
        nodes.append({"id": node.id, "kind": node.kind, "title": node.title,
                      "lines": node.lines, "layer": node.layer, "repeat": node.repeat,
                      "path": path})
    edges = [[e.src, e.dst, e.label] for e in built.edges]
    return {"nodes": nodes, "edges": edges}


def viewer_data(prepared: Prepared, trace: Trace, probe: DataflowProbe, *,
                rankdir: str = "TB", expand: tuple[str, ...] = (),
                fold: bool = True, overlays: tuple[Overlay, ...] = ()) -> dict[str, Any]:
    """What the page embeds: the module tree and the full-depth graphs, folded and not;
    ``expand`` and ``fold`` are the state the page opens in when its URL has no fragment;
    ``overlays``, a profile's times and a memory plan's bytes per module (``overlay``)."""
    flow = trace.probes[probe.name]
    full = max((r.depth for r in trace.modules.values()), default=0) + 1
    title = prepared.loaded.name
    graphs = {
        # expand= changes nothing at full depth; build_graph checks the names, with hints.
        # Everything, however large: the page lays out only what is open.
        key: _graph_json(trace, build_graph(trace, flow, depth=full, fold=folding,
                                            expand=expand, title=title, budget=0))
        for key, folding in (("fold", True), ("nofold", False))
    }
    return {
        "title": title,
        "model_type": trace.model_type,
        "rankdir": rankdir,
        "initial": {"expand": list(expand), "fold": fold},
        "params": trace.params,
        "flops": trace.flops,
        "colours": COLOURS,
        "kinds": dict(KINDS),
        "modules": _modules(trace, prepared, flow.kinds),
        "graphs": graphs,
        **{o.kind: o.to_json() for o in overlays},
    }


def script_json(data: Any) -> str:
    """JSON that can sit inside ``<script>``: no ``</script>``, ``<!--`` or line separators."""
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _asset(name: str) -> str:
    folder = resources.files("modelviz.features.graph") / "assets"
    return (folder / name).read_text(encoding="utf-8")


def page(data: dict[str, Any]) -> str:
    """The whole self-contained page."""
    viz = _asset("viz-standalone.js")
    if "</script" in viz.lower() or "<!--" in viz:
        raise RuntimeError("the vendored viz.js cannot be inlined in <script>")
    parts = {"TITLE": html_text(f"{data['title']} · modelviz"), "DATA": script_json(data),
             "APP": _asset("viewer.js"), "CSS": _asset("viewer.css"), "VIZ": viz}
    # one pass over the template: text put in is never searched for placeholders again
    return re.sub(r"@@([A-Z]+)@@", lambda match: parts[match.group(1)], _PAGE)


@dataclass
class Viewer:
    """The page, and what the user should know about the figures laid over it."""

    page: str
    notes: list[str] = field(default_factory=list)


def viewer(prepared: Prepared, *, rankdir: str = "TB", train: bool = False,
           expand: tuple[str, ...] = (), fold: bool = True,
           profile: tuple[dict[str, Any], str | Path] | None = None,
           memory: tuple[dict[str, Any], str | Path] | None = None) -> Viewer:
    """Run the model once and make the viewer page; ``profile`` and ``memory`` are the JSON of
    ``modelviz profile`` and ``modelviz memory`` with the file each came from (read and checked
    by ``overlay.load``), matched here with the model that ran."""
    probe = graph_probe(prepared)
    trace = session.run(prepared, train=train, probes=(probe,))
    overlays: list[Overlay] = []
    if profile is not None:
        overlays.append(overlay.from_profile(profile[0], trace, prepared,
                                             source=Path(profile[1]).name, path=profile[1]))
    if memory is not None:
        overlays.append(overlay.from_memory(memory[0], trace, source=Path(memory[1]).name,
                                            path=memory[1]))
    notes = [line for o in overlays for line in o.messages]
    data = viewer_data(prepared, trace, probe, rankdir=rankdir, expand=expand, fold=fold,
                       overlays=tuple(overlays))
    return Viewer(page(data), notes)


def interactive_html(prepared: Prepared, *, rankdir: str = "TB", train: bool = False,
                     expand: tuple[str, ...] = (), fold: bool = True) -> str:
    """Run the model once and return the viewer page."""
    return viewer(prepared, rankdir=rankdir, train=train, expand=expand, fold=fold).page


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; \
script-src 'unsafe-inline' 'unsafe-eval' 'wasm-unsafe-eval'; style-src 'unsafe-inline'; \
img-src data:; connect-src data:; worker-src blob:">
<title>@@TITLE@@</title>
<style>@@CSS@@</style>
</head>
<body>
<header id="bar">
<strong id="model-title"></strong>
<input id="search" type="search" placeholder="search name or type" autocomplete="off">
<button id="open-kind" type="button" disabled>open all of this kind</button>
<label><input id="fold" type="checkbox" checked> fold repeats</label>
<label>colour by <select id="metric"></select></label>
<button id="fit" type="button">fit</button>
<button id="actual" type="button">100%</button>
<span id="status">laying out…</span>
</header>
<main>
<div id="canvas"><div id="stage"></div></div>
<aside id="panel"><h2 id="panel-title">Details</h2><dl id="details"></dl>
<div id="legend"></div><div id="notes"></div></aside>
</main>
<script type="application/json" id="modelviz-data">@@DATA@@</script>
<script>@@VIZ@@</script>
<script>@@APP@@</script>
</body>
</html>
"""
