"""Every artifact of one model in one folder, for CI and for review.

One instrumented pass feeds the summary, the module graph and the activation grids (their
probes ride along together), and keeps the output as the ONNX parity reference. Each part is
attempted on its own: one that fails (an operator ONNX cannot express, no Graphviz) is recorded
with its reason, and the others are still written. ``index.html`` shows them all, offline.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelviz.core.specs import check_tolerance
from modelviz.errors import ModelvizError, one_line
from modelviz.output import atomic_folder, check_replaceable, write_text

if TYPE_CHECKING:
    from modelviz.core.records import Trace
    from modelviz.core.session import Prepared
    from modelviz.features.activations.stats import ActivationReport
    from modelviz.features.summary.summary import Summary

PARTS = ("summary", "graph", "activations", "onnx")
Stage = Callable[[str], AbstractContextManager[None]]


@dataclass
class Part:
    """One artifact: the files written, or why it could not be made."""

    name: str
    files: list[Path] = field(default_factory=list)
    error: str | None = None  # the part could not be made
    problem: str | None = None  # made, but a check failed (ONNX parity beyond --atol)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return "failed" if self.error else "check failed" if self.problem else "ok"

    def to_dict(self, folder: Path) -> dict[str, Any]:
        return {"status": self.status, "error": self.error, "problem": self.problem,
                "files": [_relative(f, folder) for f in self.files], **self.data}


@dataclass
class Report:
    folder: Path
    model: str
    inputs: list[dict[str, Any]]
    parts: dict[str, Part]
    index: Path | None = None

    @property
    def ok(self) -> bool:
        return all(part.status == "ok" for part in self.parts.values())

    @property
    def failed(self) -> list[Part]:
        return [part for part in self.parts.values() if part.status != "ok"]

    def to_dict(self) -> dict[str, Any]:
        return {"schema": "modelviz.report/1", "model": self.model, "inputs": self.inputs,
                "folder": str(self.folder),
                "ok": self.ok, "index": _relative(self.index, self.folder) if self.index else None,
                "parts": {name: part.to_dict(self.folder) for name, part in self.parts.items()}}


def _relative(path: Path, folder: Path) -> str:
    try:
        return str(path.relative_to(folder))
    except ValueError:
        return str(path)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, ModelvizError):
        return str(exc)
    return f"{type(exc).__name__}: {one_line(exc)}"


@contextlib.contextmanager
def _attempt(part: Part) -> Iterator[None]:
    """Record a part's failure instead of ending the report: the other parts still matter."""
    try:
        yield
    except Exception as exc:  # whatever failed, it is this part alone that did
        part.error = _one_line(exc)


@contextlib.contextmanager
def _quiet(_: str) -> Iterator[None]:
    yield


#: Everything a report writes; a folder holding anything else is not replaced.
REPORT_FILES = frozenset({"index.html", "report.json", "summary.json", "summary.md", "graph.svg",
                          "model.onnx", "model.onnx.data", "activations"})


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
          stage: Stage = _quiet) -> Report:
    """Write the report's files into ``folder``; a forward pass that fails ends it (nothing
    can be shown), any other failure is recorded in its part."""
    from modelviz.core.session import run
    from modelviz.features.activations.measure import activation_probe as make_activation_probe
    from modelviz.features.activations.select import representative_modules
    from modelviz.features.graph.draw import graph_probe as make_graph_probe
    from modelviz.features.summary.summary import summarize

    directory = check_folder(folder)
    check_tolerance(atol)  # here, not inside the ONNX part: a typo is not a failed export
    chosen = layers or tuple(representative_modules(prepared.model))
    graph_probe = make_graph_probe(prepared)
    probes: list[Any] = [graph_probe]
    acts = Part("activations")
    activation_probe = None
    if prepared.device.type == "meta":
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
                        activation_probe, acts, chosen=chosen, depth=depth, onnx=onnx,
                        exporter=exporter, opset=opset, atol=atol, static=static, train=train,
                        dot=dot, stage=stage)
    report.folder = directory
    for part in report.parts.values():
        part.files = [directory / f.relative_to(staging) for f in part.files]
    report.index = directory / "index.html"
    return report


def _write(prepared: Prepared, trace: Trace, summary: Summary, directory: Path, final: Path,
           graph_probe: Any, activation_probe: Any, acts: Part, *, chosen: tuple[str, ...],
           depth: int | None, onnx: bool, exporter: str, opset: int | None,
           atol: float | None, static: bool, train: bool, dot: str | Path | None,
           stage: Stage) -> Report:
    """Every part into ``directory``, then the page and report.json that list them (report.json
    names ``final``, where the folder will be)."""
    report = Report(directory, prepared.loaded.name, summary.inputs, {})
    report.parts["summary"] = _summary_part(summary, directory)
    with stage("Drawing the graph"):
        report.parts["graph"] = _graph_part(prepared, trace, graph_probe, directory, depth, dot)
    activation_report: ActivationReport | None = None
    if activation_probe is not None:
        with stage("Drawing the activations"), _attempt(acts):
            activation_report = _activations(prepared, trace, activation_probe, chosen,
                                             directory, acts)
    report.parts["activations"] = acts
    onnx_part = Part("onnx")
    if not onnx:
        onnx_part.error = "skipped (--no-onnx)."
    else:
        with stage("Exporting to ONNX and checking parity"), _attempt(onnx_part):
            _onnx(prepared, trace, directory, onnx_part, exporter=exporter, opset=opset,
                  atol=atol, static=static, train=train)
    report.parts["onnx"] = onnx_part

    from modelviz.features.report.html import render_index

    page = render_index(report, summary, activation_report)
    report.index = write_text(directory / "index.html", page)
    written = {**report.to_dict(), "folder": str(final)}
    write_text(directory / "report.json", json.dumps(written, indent=2) + "\n")
    return report


def _summary_part(summary: Summary, directory: Path) -> Part:
    from modelviz.features.summary.data import render_json
    from modelviz.features.summary.markdown import render_markdown
    from modelviz.features.summary.options import SummaryColumns, TableOptions

    part = Part("summary")
    options = TableOptions(columns=(SummaryColumns.flops, SummaryColumns.output_memory))
    part.files.append(write_text(directory / "summary.json", render_json(summary)))
    part.files.append(write_text(directory / "summary.md", render_markdown(summary, options)))
    part.data = {"params": summary.totals.params, "flops": summary.totals.flops}
    return part


def _graph_part(prepared: Prepared, trace: Trace, probe: Any, directory: Path,
                depth: int | None, dot: str | Path | None) -> Part:
    from modelviz.features.graph.draw import module_drawing
    from modelviz.output import write_bytes

    part = Part("graph")
    with _attempt(part):
        drawing = module_drawing(prepared, trace, probe, depth=depth, dot=dot)
        part.data["nodes"] = len(drawing.graph.nodes) if drawing.graph is not None else 0
        rendered = drawing.render("svg")
        part.files.append(write_bytes(directory / "graph.svg", rendered.data))
        if rendered.warnings:
            part.data["warnings"] = list(rendered.warnings)
    return part


def _activations(prepared: Prepared, trace: Trace, probe: Any, chosen: tuple[str, ...],
                 directory: Path, part: Part) -> ActivationReport:
    from modelviz.features.activations.measure import activation_report
    from modelviz.features.activations.pictures import write_images

    result = activation_report(prepared, trace, probe, layers=chosen)
    part.files += write_images(result, directory / "activations")
    part.data["layers"] = [layer.to_dict() for layer in result.layers]
    for layer in part.data["layers"]:
        if layer["image"] is not None:
            layer["image"] = _relative(Path(layer["image"]), directory)
    return result


def _onnx(prepared: Prepared, trace: Trace, directory: Path, part: Part, *, exporter: str,
          opset: int | None, atol: float | None, static: bool, train: bool) -> None:
    from modelviz.features.onnx import export as onnx_export

    result = onnx_export.export(prepared, directory / "model.onnx", exporter=exporter,
                                opset=opset, atol=atol, dynamic_batch=not static, train=train,
                                reference=trace.output_value)
    part.files += [result.path, *result.data_files]
    # paths relative to the report: it is built aside and moved, and read on other machines
    part.data = {**result.to_dict(), "path": _relative(result.path, directory),
                 "data_files": [_relative(f, directory) for f in result.data_files]}
    if not result.ok:
        failed = [p for p in result.parity or [] if not p.ok]
        worst = max(failed, key=lambda p: p.max_abs_error, default=None)
        if worst is not None:
            part.problem = (f"ONNX Runtime and torch disagree: {worst.output} differs by "
                            f"{worst.max_abs_error:.3g} (--atol {result.atol:g}).")
        else:  # batch + 1's values, or a file ONNX Runtime cannot run: say which
            part.problem = "the ONNX checks failed: " + "; ".join(result.problems) + "."
