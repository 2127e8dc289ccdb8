"""Every artifact of one model in one folder, for CI and for review.

One instrumented pass feeds the summary, the module graph and the activation grids (their
probes ride along together), keeps the output as the ONNX parity reference, and gives the
profile its FLOPs and module tree (only the few timed runs are added). The memory plan simulates
its own steps. Each part is attempted on its own: one that fails (an operator ONNX cannot
express, no Graphviz) is recorded with its reason, and the others are still written.
``index.html`` shows them all, offline.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelviz.core.specs import check_tolerance
from modelviz.core.stages import Stage, quiet
from modelviz.errors import failure_line
from modelviz.features.report.parts import (
    PARTS,
    ActivationsPart,
    GraphPart,
    MemoryPart,
    OnnxPart,
    Part,
    ProfilePart,
    Report,
    SummaryPart,
)
from modelviz.output import atomic_folder, check_replaceable, write_text

if TYPE_CHECKING:
    from modelviz.core.records import Trace
    from modelviz.core.session import Prepared
    from modelviz.features.graph.build import ModuleGraph
    from modelviz.features.summary.summary import Summary

__all__ = ["PARTS", "REPORT_FILES", "ActivationsPart", "GraphPart", "MemoryPart", "OnnxPart",
           "Part", "ProfilePart", "Report", "Stage", "SummaryPart", "build", "check_folder"]

#: The memory part plans a training step with this optimizer (``modelviz memory``'s default).
MEMORY_OPTIMIZER = "adam"
#: The profile part's timed runs: few, so a report stays quick (``modelviz profile`` takes
#: about 1.5 s of runs); the medians are rougher, the slowest layers the same.
PROFILE_RUNS = 5
PROFILE_WARMUP = 1
#: Activation pictures a report shows without ``--layer``, and the candidates they are picked
#: from once the graph is drawn.
SHOWN_LAYERS = 4
CANDIDATES = 8


@contextlib.contextmanager
def _attempt(part: Part) -> Iterator[None]:
    """Record a part's failure instead of ending the report: the other parts still matter."""
    try:
        yield
    except Exception as exc:  # whatever failed, it is this part alone that did
        part.error = failure_line(exc)


#: Everything a report writes; a folder holding anything else is not replaced.
REPORT_FILES = frozenset({"index.html", "report.json", "summary.json", "summary.md", "graph.svg",
                          "graph.html",
                          "model.onnx", "model.onnx.data", "activations", "memory.json",
                          "profile.json"})


def _not_a_report(folder: Path) -> str | None:
    """Why ``folder`` may not be replaced by a new report: it is not one, or it holds files a
    report does not write (a report replaces its folder whole)."""
    try:
        written = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        written = None
    if not (isinstance(written, dict) and "parts" in written):
        return "it holds no modelviz report (report.json)"
    strays = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        top = relative.parts[0]
        if top not in REPORT_FILES or path.is_symlink() or (
                top == "activations" and len(relative.parts) > 1
                and (len(relative.parts) > 2 or path.suffix != ".png")):
            strays.append(str(relative))
    if strays:
        shown = ", ".join(strays[:3]) + (f" and {len(strays) - 3} more" if len(strays) > 3
                                         else "")
        return f"it holds files a report does not write: {shown}"
    return None


def check_folder(folder: str | Path) -> Path:
    """Fail before any work if ``folder`` cannot take the report."""
    check_replaceable(folder, _not_a_report)
    return Path(folder)


def build(prepared: Prepared, folder: str | Path, *, layers: tuple[str, ...] = (),
          depth: int | None = None, onnx: bool = True, exporter: str = "auto",
          opset: int | None = None, atol: float | None = None, static: bool = False,
          max_channels: int = 16, train: bool = False, dot: str | Path | None = None,
          memory: bool = True, profile: bool = True,
          stage: Stage = quiet, terms: Callable[[str], str] = str) -> Report:
    """Write the report's files into ``folder``; a forward pass that fails ends it (nothing
    can be shown), any other failure is recorded in its part. ``terms`` rewords the parts'
    messages for the page and report.json (the CLI passes its flags for parameter names)."""
    from modelviz.core.session import run
    from modelviz.features.activations.measure import activation_probe as make_activation_probe
    from modelviz.features.activations.select import representative_modules
    from modelviz.features.graph.draw import graph_probe as make_graph_probe
    from modelviz.features.summary.summary import summarize

    directory = check_folder(folder)
    check_tolerance(atol)  # here, not inside the ONNX part: a typo is not a failed export
    # Without --layer: more candidates than are shown, so that the four pictures can be of
    # modules that the graph draws (a folded block's later members are not), picked after it.
    chosen = layers or tuple(dict.fromkeys(representative_modules(prepared.model)
                                           + representative_modules(prepared.model,
                                                                    CANDIDATES)))
    graph_probe = make_graph_probe(prepared)
    probes: list[Any] = [graph_probe]
    acts = ActivationsPart()
    activation_probe = None
    if not prepared.has_values:
        acts.error = "the meta device has only shapes: no activations to draw."
    else:
        with _attempt(acts):
            activation_probe = make_activation_probe(prepared, layers=chosen, images=True,
                                                    max_channels=max_channels)
            probes.append(activation_probe)
    with stage("Running the forward pass"):
        trace = run(prepared, train=train, keep_output=onnx, probes=tuple(probes))
    summary = summarize(prepared, trace)
    # Built beside the folder and swapped in whole: a reader never sees half a report, and
    # nothing of an earlier one stays behind.
    with atomic_folder(directory, _not_a_report) as staging:
        report = _write(prepared, trace, summary, staging, directory, graph_probe,
                        activation_probe, acts, chosen=chosen, picked=bool(layers),
                        depth=depth, onnx=onnx, exporter=exporter, opset=opset, atol=atol,
                        static=static, train=train,
                        dot=dot, memory=memory, profile=profile, stage=stage, terms=terms)
    report.relocate(directory)
    return report


def _write(prepared: Prepared, trace: Trace, summary: Summary, directory: Path, final: Path,
           graph_probe: Any, activation_probe: Any, acts: ActivationsPart, *,
           chosen: tuple[str, ...], picked: bool, depth: int | None, onnx: bool,
           exporter: str, opset: int | None, atol: float | None, static: bool, train: bool,
           dot: str | Path | None, memory: bool, profile: bool, stage: Stage,
           terms: Callable[[str], str]) -> Report:
    """Every part into ``directory``, then the page and report.json that list them (report.json
    names ``final``, where the folder will be)."""
    summary_part = _summary_part(summary, directory)
    with stage("Drawing the graph"):
        graph, drawn = _graph_part(prepared, trace, graph_probe, directory, depth, dot)
    if activation_probe is not None:
        with stage("Drawing the activations"), _attempt(acts):
            shown = None if picked else _shown_in(drawn, chosen, trace)
            _activations(prepared, trace, activation_probe, shown or chosen, directory, acts,
                         keep=shown)
    onnx_part = OnnxPart()
    if not onnx:
        onnx_part.error = "skipped (`onnx=False`)."
    else:
        with stage("Exporting to ONNX and checking parity"), _attempt(onnx_part):
            _onnx(prepared, trace, directory, onnx_part, exporter=exporter, opset=opset,
                  atol=atol, static=static, train=train)
    # After ONNX: both run the model again, and its parity reference is the pass's output.
    memory_part = MemoryPart()
    if not memory:
        memory_part.skipped = "skipped (`memory=False`)."
    else:
        with stage("Planning memory"), _attempt(memory_part):
            _memory(prepared, directory, memory_part)
    profile_part = ProfilePart()
    if not profile:
        profile_part.skipped = "skipped (`profile=False`)."
    elif not prepared.has_values:
        profile_part.skipped = ("skipped: the meta device has only shapes, no kernels to time "
                                "(FLOPs are in the summary).")
    else:
        with stage("Timing the layers"), _attempt(profile_part):
            _profile(prepared, trace, directory, profile_part, train=train)
    with stage("Writing the interactive graph"):
        _viewer(prepared, trace, graph_probe, directory, graph, memory_part, profile_part)
    report = Report(folder=directory, model=prepared.loaded.name, inputs=summary.inputs,
                    summary=summary_part, graph=graph, activations=acts, onnx=onnx_part,
                    memory=memory_part, profile=profile_part)

    from modelviz.features.report.html import render_index

    for part in report.parts.values():
        part.error = terms(part.error) if part.error else None
        part.problem = terms(part.problem) if part.problem else None
        part.skipped = terms(part.skipped) if part.skipped else None

    report.index = write_text(directory / "index.html", render_index(report))
    written = {**report.to_dict(), "folder": str(final)}
    write_text(directory / "report.json", json.dumps(written, indent=2) + "\n")
    return report


def _summary_part(summary: Summary, directory: Path) -> SummaryPart:
    from modelviz.features.summary.data import render_json
    from modelviz.features.summary.markdown import render_markdown
    from modelviz.features.summary.options import SummaryColumns, TableOptions

    part = SummaryPart(summary=summary)
    options = TableOptions(columns=(SummaryColumns.flops, SummaryColumns.output_memory))
    part.files.append(write_text(directory / "summary.json", render_json(summary)))
    part.files.append(write_text(directory / "summary.md", render_markdown(summary, options)))
    return part


def _graph_part(prepared: Prepared, trace: Trace, probe: Any, directory: Path,
                depth: int | None, dot: str | Path | None) -> tuple[GraphPart, ModuleGraph | None]:
    """graph.svg, and the graph drawn in it (None if it could not be built)."""
    from modelviz.features.graph.draw import module_drawing
    from modelviz.output import write_bytes

    part = GraphPart()
    built = None
    with _attempt(part):
        drawing = module_drawing(prepared, trace, probe, depth=depth, dot=dot)
        built = drawing.graph
        part.nodes = len(built.nodes) if built is not None else 0
        rendered = drawing.render("svg")
        part.files.append(write_bytes(directory / "graph.svg", rendered.data))
        part.warnings = list(rendered.warnings)
    return part, built


def _shown_in(graph: ModuleGraph | None, candidates: tuple[str, ...], trace: Trace,
              count: int = SHOWN_LAYERS) -> tuple[str, ...]:
    """Of the candidate layers, ``count`` spread from input to output among those the graph
    draws as nodes (then as frames, when nodes are too few), in the order they ran."""
    ran = [c for c in candidates if c in trace.modules and trace.modules[c].calls]
    ran.sort(key=lambda name: trace.modules[name].calls[0].index)
    if graph is None:
        return tuple(ran[:count])
    nodes = {n.module for n in graph.nodes if n.kind == "module"}
    framed = {c.id.removeprefix("cluster_").split("@")[0] for c in graph.clusters}
    pool = [c for c in ran if c in nodes]
    if len(pool) < count:
        pool = [c for c in ran if c in nodes or c in framed]
    pool = pool or ran
    if len(pool) <= count:
        return tuple(pool)
    picks = sorted({round(i * (len(pool) - 1) / (count - 1)) for i in range(count)})
    return tuple(pool[i] for i in picks)


def _viewer(prepared: Prepared, trace: Trace, probe: Any, directory: Path, part: GraphPart,
            memory: MemoryPart, profile: ProfilePart) -> None:
    """graph.html, with the memory plan's and the profile's figures per module. The page lays
    out in the browser (Graphviz as WebAssembly), so it is written even where the dot program
    is missing; it comes from the same pass."""
    try:
        from modelviz.features.graph import overlay
        from modelviz.features.graph.interactive import page, viewer_data

        overlays = []
        if profile.profile is not None:
            overlays.append(overlay.profile_of(profile.profile, trace, prepared))
        if memory.plan is not None:
            overlays.append(overlay.from_plan(memory.plan, trace, source="the report's memory "
                                              "plan"))
        part.viewer = write_text(directory / "graph.html",
                                 page(viewer_data(prepared, trace, probe,
                                                  overlays=tuple(overlays))))
        part.files.append(part.viewer)
    except Exception as exc:  # the SVG may still be there: say why the page is not
        part.warnings.append(f"graph.html not written: {failure_line(exc)}")


def _activations(prepared: Prepared, trace: Trace, probe: Any, chosen: tuple[str, ...],
                 directory: Path, part: ActivationsPart,
                 keep: tuple[str, ...] | None = None) -> None:
    """The statistics and grids (of the layers in ``keep`` only, if given); the part holds
    them only once both are made."""
    from modelviz.features.activations.measure import activation_report
    from modelviz.features.activations.pictures import write_images

    result = activation_report(prepared, trace, probe, layers=chosen)
    if keep is not None:
        result.layers = [layer for layer in result.layers if layer.name in keep]
    part.files += write_images(result, directory / "activations")
    part.result = result


def _onnx(prepared: Prepared, trace: Trace, directory: Path, part: OnnxPart, *, exporter: str,
          opset: int | None, atol: float | None, static: bool, train: bool) -> None:
    from modelviz.features.onnx import export as onnx_export

    linked = onnx_export.report_links_weights(prepared.model)  # weights beside, in .data
    part.record(onnx_export.export(prepared, directory / "model.onnx", exporter=exporter,
                                   opset=opset, atol=atol, dynamic_batch=not static,
                                   external_data=True if linked else None,
                                   train=train, reference=trace.output_value))


def _memory(prepared: Prepared, directory: Path, part: MemoryPart) -> None:
    """One plan (inference, and a training step with Adam) at the report's batch, on its device:
    simulated on meta, run for real on the cpu or a GPU."""
    from modelviz.features.memory.plan import plan
    from modelviz.features.memory.view import render_json

    result = plan(prepared, optimizer=MEMORY_OPTIMIZER)
    part.files.append(write_text(directory / "memory.json", render_json(result) + "\n"))
    part.plan = result


def _profile(prepared: Prepared, trace: Trace, directory: Path, part: ProfilePart, *,
             train: bool) -> None:
    """A few timed runs joined with the report's own pass (its FLOPs and module tree), so the
    profile costs no second instrumented pass."""
    from modelviz.core import timing
    from modelviz.features.profile.measure import build_profile
    from modelviz.features.profile.peaks import peaks_for
    from modelviz.features.profile.view import render_json

    timings = timing.time_model(prepared.model, prepared.inputs.args, prepared.inputs.kwargs,
                                device=prepared.device, runs=PROFILE_RUNS,
                                warmup=PROFILE_WARMUP, train=train)
    result = build_profile(prepared, trace, timings, peaks_for(prepared.device, trace.dtype))
    part.files.append(write_text(directory / "profile.json", render_json(result)))
    part.profile = result
