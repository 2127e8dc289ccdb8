"""The report's ``index.html``: one self-contained page, readable offline and as a CI artifact.

Everything is inline: the graph as SVG (zoomable), the activation grids as data URIs, styles and
a few lines of script. Nothing is fetched, so the page works from a zip file or a file share.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelviz.core.formatting import human_bytes, inputs_label
from modelviz.escape import html_text
from modelviz.features.summary.cells import HEADERS, cells, column_keys, footer_lines
from modelviz.features.summary.options import SummaryColumns, TableOptions

if TYPE_CHECKING:
    from modelviz.features.onnx.result import ExportResult
    from modelviz.features.profile.measure import Profile
    from modelviz.features.report.parts import (
        ActivationsPart,
        GraphPart,
        MemoryPart,
        OnnxPart,
        Part,
        ProfilePart,
        Report,
        SummaryPart,
    )

COLUMNS = (SummaryColumns.flops, SummaryColumns.output_memory)

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1f2328;
background:#f6f8fa}
main{max-width:1200px;margin:auto;padding:16px 24px 48px}
h1{font-size:22px;margin:8px 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid
#d0d7de;padding-bottom:4px}
section{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:12px 16px;
margin:12px 0}
table{border-collapse:collapse;font-size:13px}td,th{padding:3px 10px;border-bottom:1px solid
#eaeef2;text-align:left;vertical-align:top}th{background:#f6f8fa}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12.5px}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;margin-right:6px}
.ok{background:#dafbe1;color:#116329}.failed,.check{background:#ffebe9;color:#a40e26}
.skipped{background:#eaeef2;color:#59636e}
.error{background:#ffebe9;border:1px solid #ff818266;border-radius:6px;padding:8px 12px}
.muted{color:#59636e}.scroll{overflow:auto}
.graph{overflow:auto;max-height:80vh;border:1px solid #eaeef2;background:#fff}
.graph svg{display:block}
.tools button{font:inherit;margin-right:4px;padding:1px 8px}
figure{margin:12px 0}figure img{max-width:100%;border:1px solid #eaeef2}
tr.dead td{background:#fff8c5}tr.bad td{background:#ffebe9}
nav.toc{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:6px 16px;margin:12px 0}
nav.toc a{margin-right:14px;white-space:nowrap}
h2 a.anchor{color:#8c959f;text-decoration:none;margin-left:6px;font-weight:normal;
visibility:hidden}h2:hover a.anchor{visibility:visible}
iframe.viewer{display:block;width:100%;height:80vh;border:1px solid #eaeef2;background:#fff}
details.static{margin-top:10px}details.static summary{cursor:pointer;color:#59636e}
"""

# Zoom by buttons or ctrl/cmd + wheel; the graph's own size is 100%. The SVG's size is read in
# px and written in px (writing pt made 100% 133%); fit fits the width and the box's 80vh, also
# when the static drawing is unfolded. A link that opens a node in the embedded viewer scrolls
# to it. Marks the page ready so a headless browser test can tell that the script ran to the end.
SCRIPT = """
(function(){
  var box=document.querySelector('.graph'), svg=box&&box.querySelector('svg');
  if(svg){
    var w=svg.width.baseVal.value, h=svg.height.baseVal.value, k=1;
    function fit(){return Math.min(1,box.clientWidth/w,window.innerHeight*0.8/h);}
    function zoom(f){k=f===0?fit():Math.max(0.1,Math.min(8,k*f));
      svg.setAttribute('width',w*k+'px');svg.setAttribute('height',h*k+'px');
      document.getElementById('zoom').textContent=Math.round(k*100)+'%';}
    document.querySelectorAll('[data-zoom]').forEach(function(b){
      b.addEventListener('click',function(){zoom(parseFloat(b.dataset.zoom));});});
    box.addEventListener('wheel',function(e){if(e.ctrlKey||e.metaKey){e.preventDefault();
      zoom(e.deltaY<0?1.15:1/1.15);}},{passive:false});
    var folded=box.closest('details');
    if(folded)folded.addEventListener('toggle',function(){if(folded.open)zoom(0);});
    zoom(box.clientWidth?0:1);
  }
  var viewer=document.getElementById('graph');
  document.querySelectorAll('a[target="graph-viewer"]').forEach(function(a){
    a.addEventListener('click',function(){if(viewer)viewer.scrollIntoView();});});
  document.body.dataset.ready='1';
})();
"""


def _e(value: Any) -> str:
    return html_text(value)


def _badge(part: Part) -> str:
    css = {"ok": "ok", "failed": "failed", "check failed": "check",
           "skipped": "skipped"}[part.status]
    return f'<span class="badge {css}">{_e(part.name)}: {_e(part.status)}</span>'


def _failure(part: Part) -> str:
    text = part.error or part.problem
    if text:
        return f'<p class="error">{_e(text)}</p>'
    return f'<p class="muted">{_e(part.skipped)}</p>' if part.skipped else ""


def _table(headers: list[str], rows: list[list[str]], numeric: set[int], css: str = "",
           row_classes: list[str] | None = None) -> str:
    head = "".join(f'<th class="num">{_e(h)}</th>' if i in numeric else f"<th>{_e(h)}</th>"
                   for i, h in enumerate(headers))
    body = []
    for r, row in enumerate(rows):
        cls = f' class="{row_classes[r]}"' if row_classes and row_classes[r] else ""
        tds = "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
                      for i, c in enumerate(row))
        body.append(f"<tr{cls}>{tds}</tr>")
    return (f'<div class="scroll"><table class="{css}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _summary(part: SummaryPart, profile: Profile | None = None, *,
             viewer: bool = False) -> tuple[str, str]:
    """The totals, shown first, and the layer table, shown last (it is long); with a profile
    (made from the same pass, so its modules are the table's), a time column too."""
    summary = part.summary
    options = TableOptions(columns=COLUMNS)
    keys = column_keys(options.columns)
    headers = [HEADERS["layer"]] + [HEADERS[k] for k in keys]
    if profile is not None:
        headers.append("Time (ms)")
    rows = []
    for row in summary.rows(depth=options.depth):
        c = cells(row, summary.totals.params, options.columns)
        indent = "&nbsp;" * 3 * (row.depth - 1)
        label = _in_viewer(c.name, row.record.name, viewer)
        rows.append([f'{indent}{label} <span class="muted">({_e(c.type)})'
                     "</span>"] + [_e(c.values[k]) for k in keys])
        if profile is not None:
            timed = profile.modules.get(row.record.name)
            rows[-1].append(f"{timed.total_ms:.3f}" if timed is not None and timed.timed
                            else "–")
    numeric = {i + 1 for i, k in enumerate(keys) if k != "output_shape"}
    if profile is not None:
        numeric.add(len(headers) - 1)
    totals = _table(["Total", ""], [[_e(a), _e(b)] for a, b in footer_lines(summary.totals)],
                    {1}, "totals")
    return (f'<section id="summary">{_heading("Summary", "summary")}{_failure(part)}{totals}'
            "</section>",
            f'<section id="layers">{_heading("Layers", "layers")}'
            f'{_table(headers, rows, numeric, "layers")}'
            '<p class="muted">Also in <a href="summary.md">summary.md</a> and '
            '<a href="summary.json">summary.json</a>.</p></section>')


def _inline_svg(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    start = text.find("<svg")
    return text[start:] if start >= 0 else ""


def _graph(part: GraphPart) -> str:
    """The interactive viewer (graph.html, beside the page) embedded, with the static drawing
    (graph.svg, inline so that the page alone still shows it) folded under it; a layer's link
    elsewhere on the page opens its node in the viewer (``target="graph-viewer"``)."""
    body = _failure(part) + "".join(f'<p class="muted">{_e(w)}</p>' for w in part.warnings)
    svg = next((f for f in part.files if f.suffix == ".svg"), None)
    nodes = part.nodes or 0
    if part.viewer is not None:
        body += ('<p class="muted">Click a module to open it, its frame to close it; search, '
                 'colour by FLOPs, parameters, memory or time; '
                 '<a href="graph.html" target="_blank">open in its own tab</a>.</p>'
                 '<iframe class="viewer" name="graph-viewer" src="graph.html" '
                 'title="interactive graph"></iframe>')
    if svg is not None:
        drawing = ('<p class="tools"><button data-zoom="1.25">+</button>'
                   '<button data-zoom="0.8">−</button><button data-zoom="0">fit</button>'
                   '<span id="zoom" class="muted"></span> <span class="muted">· ctrl + wheel '
                   f'zooms · {nodes} nodes · <a href="graph.svg">graph.svg</a></span></p>'
                   f'<div class="graph">{_inline_svg(svg)}</div>')
        body += (f'<details class="static"><summary>Static drawing ({nodes} nodes, graph.svg)'
                 f"</summary>{drawing}</details>" if part.viewer is not None else drawing)
    return f'<section id="graph">{_heading("Graph", "graph")}{body}</section>'


def _heading(title: str, anchor: str) -> str:
    return f'<h2>{_e(title)}<a class="anchor" href="#{anchor}" aria-label="link">#</a></h2>'


#: The page's sections in order: anchor and title, for the table of contents.
SECTIONS = (("summary", "Summary"), ("memory", "Memory"), ("profile", "Time"),
            ("graph", "Graph"), ("onnx", "ONNX"), ("activations", "Activations"),
            ("layers", "Layers"))


def _contents() -> str:
    return ('<nav class="toc" id="contents"><strong>Contents</strong> '
            + "".join(f'<a href="#{anchor}">{_e(title)}</a>' for anchor, title in SECTIONS)
            + "</nav>")


def _in_viewer(label: str, name: str, viewer: bool) -> str:
    """A layer's label, linked to module ``name``'s node in the interactive graph, if any."""
    code = f"<code>{_e(label)}</code>"
    if not viewer or not name:
        return code
    from urllib.parse import quote

    return (f'<a href="graph.html#node={_e(quote(name, safe=""))}" target="graph-viewer">'
            f"{code}</a>")


def _onnx(part: OnnxPart) -> str:
    body = _failure(part)
    result = part.result
    if result is not None and (result.parity is not None or result.inputs):
        name = result.path.name
        data = "".join(f' · weights in <a href="{_e(f.name)}">{_e(f.name)}</a>'
                       for f in result.data_files)
        facts = [["File", f'<a href="{_e(name)}">{_e(name)}</a> '
                  f"({_e(human_bytes(result.file_bytes - result.data_bytes))})"
                  + (f"{data} ({_e(human_bytes(result.data_bytes))})" if data else "")],
                 ["Exporter", _e(result.exporter)],
                 ["Opset", _e(result.opset)],
                 ["Nodes", _e(result.node_count)]]
        body += _table(["", ""], facts, set(), "facts")
        io_rows = [[_e(kind), f"<code>{_e(t.name)}</code>", _e(t.dtype), _e(t.shape)]
                   for kind, tensors in (("inputs", result.inputs), ("outputs", result.outputs))
                   for t in tensors]
        body += "<h3>Inputs and outputs</h3>" + _table(["", "Name", "Type", "Shape"], io_rows,
                                                       set())
        body += _onnx_parity(result)
        ops = sorted(result.op_counts.items(), key=lambda kv: (-kv[1], kv[0]))
        if ops:
            body += "<h3>Operators</h3><p class=\"mono\">" + ", ".join(
                f"{_e(op)} ×{n}" for op, n in ops) + "</p>"
    return f'<section id="onnx">{_heading("ONNX", "onnx")}{body}</section>'


def _onnx_parity(result: ExportResult) -> str:
    """Parity rows at the export's batch and, on a dynamic batch, at batch + 1; a pass on a
    constant output is marked apart from one that proves something."""
    parity = [*(result.parity or []), *(result.batch_parity or [])]
    if not parity:
        return ""
    batches = result.batch_parity is not None
    rows, classes = [], []
    for p in parity:
        rows.append(([_e(p.batch if p.batch is not None else "–")] if batches else [])
                    + [f"<code>{_e(p.output)}</code>", _e(f"{p.max_abs_error:.3g}"),
                       _e(f"{p.max_rel_error:.3g}"),
                       "<b>over</b>" if not p.ok else "ok" if p.informative
                       else "ok, uninformative"])
        classes.append("bad" if not p.ok else "" if p.informative else "dead")
    headers = (["Batch"] if batches else []) + ["Output", "Max abs error", "Max rel error", ""]
    shift = 1 if batches else 0
    reasons = dict.fromkeys(p.uninformative for p in parity if p.uninformative)
    return (f"<h3>Parity with torch (ONNX Runtime, atol {_e(result.atol)})</h3>"
            + _table(headers, rows, {shift + 1, shift + 2} | ({0} if batches else set()),
                     row_classes=classes)
            + "".join(f'<p class="muted">Uninformative: {_e(r)}, so this check proves next to '
                      "nothing about the file.</p>" for r in reasons))


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"


def _activations(part: ActivationsPart, viewer: bool = False) -> str:
    body = _failure(part)
    result = part.result
    if result is not None:
        rows, classes, figures = [], [], []
        for layer in result.layers:
            s = layer.stats
            rows.append([f"{_in_viewer(layer.name, layer.name, viewer)} <span class=\"muted\">"
                         f"({_e(layer.type)})</span>", _e(list(layer.shape)),
                         _number(s.mean), _number(s.std), _number(s.min), _number(s.max),
                         f"{s.zero_fraction * 100:.1f}", f"{s.nan_count:,}",
                         f"{s.inf_count:,}"])
            classes.append("bad" if layer.nonfinite else "dead" if layer.dead else "")
            if layer.image is not None:
                data = base64.b64encode(layer.image.read_bytes()).decode()
                figures.append(f'<figure id="act-{_e(layer.name)}"><img alt="{_e(layer.name)}" '
                               f'src="data:image/png;base64,{data}"><figcaption class="muted">'
                               f"{_in_viewer(layer.name, layer.name, viewer)}</figcaption>"
                               "</figure>")
        body += _table(["Layer (type)", "Shape", "Mean", "Std", "Min", "Max", "Zeros %", "NaN",
                        "Inf"], rows, {2, 3, 4, 5, 6, 7, 8}, "stats", classes)
        body += "".join(figures)
    return f'<section id="activations">{_heading("Activations", "activations")}{body}</section>'


def _memory(part: MemoryPart, viewer: bool = False) -> str:
    """The plan's headline figures and the top-level layers' bytes (memory.json has them all)."""
    from modelviz.core.formatting import binary_size as size

    body = _failure(part)
    plan = part.plan
    if plan is not None:
        facts = [["Inference peak (no grad)", _e(size(plan.inference.peak_bytes))]]
        training = plan.training
        if training is not None:
            facts += [[f"Training peak ({_e(plan.optimizer)})",
                       f"{_e(size(training.peak_bytes))}, in {_e(training.peak_phase)}"],
                      ["&nbsp;&nbsp;parameters", _e(size(training.parameters_bytes))],
                      ["&nbsp;&nbsp;gradients", _e(size(training.gradients_bytes))],
                      ["&nbsp;&nbsp;optimizer state", _e(size(training.optimizer_bytes))],
                      ["&nbsp;&nbsp;activations saved for backward",
                       _e(size(training.activations_bytes))]]
        body += (f'<p class="muted">batch {_e(plan.batch_size)} · {_e(plan.dtype)} · '
                 f"{_e(plan.device)}</p>" + _table(["", ""], facts, {1}, "memory"))
        per = plan.per_module
        rows = [[f"{_in_viewer(name or plan.model, name, viewer)} <span class=\"muted\">"
                 f"({_e(kind)})</span>", _e(size(per.parameters.get(name, 0))),
                 _e(size(per.gradients.get(name, 0))) if training else "–",
                 _e(size(per.optimizer.get(name, 0))) if training else "–",
                 _e(size(per.activations.get(name, 0))) if training else "–"]
                for name, kind in plan.module_types.items()]
        body += _table(["Layer (type)", "Parameters", "Gradients", "Optimizer state",
                        "Saved activations"], rows, {1, 2, 3, 4}, "memory-layers")
        body += ('<p class="muted">Counted: every tensor the step allocates, as CUDA\'s caching '
                 "allocator rounds it; not the CUDA context, kernels' workspaces or "
                 'fragmentation. All of it in <a href="memory.json">memory.json</a>.</p>')
    return f'<section id="memory">{_heading("Memory", "memory")}{body}</section>'


def _profile(part: ProfilePart, viewer: bool = False) -> str:
    """The forward's time and the slowest layers; every module's time is in the layer table."""
    body = _failure(part)
    profile = part.profile
    if profile is not None:
        body += (f"<p>forward {profile.total_ms:.3f} ms (IQR {profile.total_spread_ms:.3f}), "
                 f"median of {_e(profile.runs)} runs after {_e(profile.warmup)} warm-up, "
                 f"{_e(profile.method)}, on {_e(profile.device)}; the timing hooks cost "
                 f"{profile.hook_overhead * 100:+.1f}%.</p>")
        total = profile.total_ms
        rows = [[f"{_in_viewer(m.name, m.name, viewer)} <span class=\"muted\">({_e(m.type)})"
                 "</span>",
                 f"{m.self_ms:.3f}", f"{m.spread_ms:.3f}",
                 f"{m.self_ms / total * 100:.1f}%" if total else "–"]
                for m in profile.slowest()]
        if rows:
            body += ("<h3>Slowest layers</h3>"
                     + _table(["Layer (type)", "Self ms", "± IQR", "Share"], rows, {1, 2, 3},
                              "slowest"))
        body += ('<p class="muted">Every layer\'s time is in the Layers table below; all of it '
                 'in <a href="profile.json">profile.json</a>.</p>')
    return f'<section id="profile">{_heading("Time", "profile")}{body}</section>'


def render_index(report: Report) -> str:
    """The whole page, from the report's typed parts (each holds what its section shows)."""
    badges = "".join(_badge(p) for p in report.parts.values())
    trace = report.summary.summary.trace
    viewer = report.graph.viewer is not None
    totals, layers = _summary(report.summary, report.profile.profile, viewer=viewer)
    body = (f"<h1>{_e(report.model)}</h1><p class=\"muted\">{_e(trace.model_type)} · "
            f"{_e(inputs_label(report.inputs))} · {_e(trace.device)}</p><p>{badges}</p>"
            + _contents() + totals + _memory(report.memory, viewer)
            + _profile(report.profile, viewer) + _graph(report.graph) + _onnx(report.onnx)
            + _activations(report.activations, viewer) + layers)
    title = f"modelviz report: {report.model}"
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}'
            f'</title><meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<style>{STYLE}</style></head><body><main>{body}</main>"
            f"<script>{SCRIPT}</script></body></html>\n")
    return re.sub(r"\n\s*\n", "\n", page)
