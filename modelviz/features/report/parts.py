"""What a report made, typed: one part per section, each holding its feature's own result.

The page and the CLI read these objects directly; only ``to_dict`` turns them into the
``modelviz.report/1`` JSON of report.json, with paths relative to the report's folder (it is
built aside, moved, and read on other machines). Nothing here imports the page or the builder,
so neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from modelviz.features.activations.stats import ActivationReport
    from modelviz.features.memory.plan import MemoryPlan
    from modelviz.features.onnx.result import ExportResult
    from modelviz.features.profile.measure import Profile
    from modelviz.features.summary.summary import Summary, Totals

SCHEMA = "modelviz.report/1"
PARTS = ("summary", "graph", "activations", "onnx", "memory", "profile")


def relative(path: Path, folder: Path | None) -> str:
    """``path`` as report.json names it: relative to ``folder`` where it lies inside it."""
    if folder is not None and path.is_relative_to(folder):
        return str(path.relative_to(folder))
    return str(path)


def _moved(path: Path, old: Path, new: Path) -> Path:
    """Where ``path`` is once the folder ``old`` has become ``new``."""
    return new / path.relative_to(old) if path.is_relative_to(old) else path


@dataclass(kw_only=True)
class Part:
    """One section of the report: the files written, or why it could not be made.

    Subclasses add what their feature found; a failed part keeps whatever it got before failing.
    """

    name: ClassVar[str] = "part"
    files: list[Path] = field(default_factory=list)
    error: str | None = None  # the part could not be made
    problem: str | None = None  # made, but a check failed (ONNX parity beyond atol)
    skipped: str | None = None  # not attempted, and not a failure: asked off, or cannot apply

    @property
    def status(self) -> str:
        if self.error:
            return "failed"
        return "check failed" if self.problem else "skipped" if self.skipped else "ok"

    @property
    def passed(self) -> bool:
        """Nothing went wrong: made and checked, or skipped on purpose (``--no-profile``, or a
        profile on the meta device, which has no kernels to time)."""
        return self.status in ("ok", "skipped")

    def to_dict(self, folder: Path) -> dict[str, Any]:
        """This part in report.json: the common keys, then the section's own."""
        return {"status": self.status, "error": self.error, "problem": self.problem,
                "skipped": self.skipped, "files": [relative(f, folder) for f in self.files],
                **self._details(folder)}

    def _details(self, folder: Path | None) -> dict[str, Any]:
        """The section's own keys in report.json; none for a part that found nothing."""
        return {}

    def relocate(self, old: Path, new: Path) -> None:
        """Point every path at ``new`` once the folder built at ``old`` has been moved there."""
        self.files = [_moved(f, old, new) for f in self.files]


@dataclass(kw_only=True)
class SummaryPart(Part):
    """summary.json and summary.md; the summary itself, which the page's tables show."""

    name: ClassVar[str] = "summary"
    summary: Summary

    @property
    def totals(self) -> Totals:
        return self.summary.totals

    def _details(self, folder: Path | None) -> dict[str, Any]:
        return {"params": self.totals.params, "flops": self.totals.flops}


@dataclass(kw_only=True)
class GraphPart(Part):
    """graph.svg; ``nodes`` is None when the graph could not even be built."""

    name: ClassVar[str] = "graph"
    nodes: int | None = None
    warnings: list[str] = field(default_factory=list)  # Graphviz's, on a drawing it made
    viewer: Path | None = None  # graph.html, the interactive page

    def relocate(self, old: Path, new: Path) -> None:
        super().relocate(old, new)
        if self.viewer is not None:
            self.viewer = _moved(self.viewer, old, new)

    def _details(self, folder: Path | None) -> dict[str, Any]:
        details: dict[str, Any] = {}
        if self.nodes is not None:
            details["nodes"] = self.nodes
        if self.warnings:
            details["warnings"] = list(self.warnings)
        return details


@dataclass(kw_only=True)
class ActivationsPart(Part):
    """The activation grids; ``result`` is None unless its statistics and images were made."""

    name: ClassVar[str] = "activations"
    result: ActivationReport | None = None

    def _details(self, folder: Path | None) -> dict[str, Any]:
        if self.result is None:
            return {}
        layers = []
        for layer in self.result.layers:
            written = layer.to_dict()
            if layer.image is not None:
                written["image"] = relative(layer.image, folder)
            layers.append(written)
        return {"layers": layers}

    def relocate(self, old: Path, new: Path) -> None:
        super().relocate(old, new)
        for layer in self.result.layers if self.result is not None else ():
            if layer.image is not None:
                layer.image = _moved(layer.image, old, new)


@dataclass(kw_only=True)
class OnnxPart(Part):
    """model.onnx and its checks; ``result`` is None when it was skipped or the export failed."""

    name: ClassVar[str] = "onnx"
    result: ExportResult | None = None

    def record(self, result: ExportResult) -> None:
        """Take an export's result: its files, and a failed check as this part's problem."""
        self.result = result
        self.files += [result.path, *result.data_files]
        self.problem = None if result.ok else _verdict(result)

    def _details(self, folder: Path | None) -> dict[str, Any]:
        if self.result is None:
            return {}
        return {**self.result.to_dict(), "path": relative(self.result.path, folder),
                "data_files": [relative(f, folder) for f in self.result.data_files]}

    def relocate(self, old: Path, new: Path) -> None:
        super().relocate(old, new)
        if self.result is not None:
            self.result.path = _moved(self.result.path, old, new)
            self.result.data_files = [_moved(f, old, new) for f in self.result.data_files]


def _verdict(result: ExportResult) -> str:
    """One line for a failed export check: the worst output at the export's batch, or, where
    that batch passed, the problems (they name the cause, such as a batch size frozen in the
    file at batch + 1)."""
    worst = result.worst
    if worst is not None:
        return (f"ONNX Runtime and torch disagree: {worst.output} differs by "
                f"{worst.max_abs_error:.3g} (`atol` {result.atol:g}).")
    # batch + 1's values, or a file ONNX Runtime cannot run: say which
    return "the ONNX checks failed: " + "; ".join(result.problems) + "."


@dataclass(kw_only=True)
class MemoryPart(Part):
    """memory.json: the memory plan of inference and of a training step at the report's batch;
    ``plan`` is None when it was skipped or failed."""

    name: ClassVar[str] = "memory"
    plan: MemoryPlan | None = None

    def _details(self, folder: Path | None) -> dict[str, Any]:
        if self.plan is None:
            return {}
        training = self.plan.training
        return {"optimizer": self.plan.optimizer, "batch_size": self.plan.batch_size,
                "inference_peak_bytes": self.plan.inference.peak_bytes,
                "training_peak_bytes": training.peak_bytes if training is not None else None,
                "training_peak_phase": training.peak_phase if training is not None else None}


@dataclass(kw_only=True)
class ProfilePart(Part):
    """profile.json: time per module; ``profile`` is None when it was skipped or failed."""

    name: ClassVar[str] = "profile"
    profile: Profile | None = None

    def _details(self, folder: Path | None) -> dict[str, Any]:
        if self.profile is None:
            return {}
        return {"total_ms": round(self.profile.total_ms, 4), "runs": self.profile.runs,
                "method": self.profile.method,
                "slowest": [{"name": m.name, "type": m.type, "self_ms": round(m.self_ms, 4),
                             "share": round(m.self_ms / self.profile.total_ms, 5)
                             if self.profile.total_ms else 0.0}
                            for m in self.profile.slowest()]}


@dataclass(kw_only=True)
class Report:
    """Every part of one report, and where it lies; ``to_dict`` is report.json."""

    folder: Path
    model: str
    inputs: list[dict[str, Any]]
    summary: SummaryPart
    graph: GraphPart
    activations: ActivationsPart
    onnx: OnnxPart
    memory: MemoryPart = field(default_factory=MemoryPart)
    profile: ProfilePart = field(default_factory=ProfilePart)
    index: Path | None = None  # index.html, once written

    @property
    def parts(self) -> dict[str, Part]:
        """The parts by name, in the page's and report.json's order."""
        return {part.name: part for part in (self.summary, self.graph, self.activations,
                                             self.onnx, self.memory, self.profile)}

    @property
    def ok(self) -> bool:
        return all(part.passed for part in self.parts.values())

    @property
    def failed(self) -> list[Part]:
        return [part for part in self.parts.values() if not part.passed]

    def relocate(self, new: Path) -> None:
        """Point the report and every part at ``new``, where its folder was moved."""
        old = self.folder
        for part in self.parts.values():
            part.relocate(old, new)
        if self.index is not None:
            self.index = _moved(self.index, old, new)
        self.folder = new

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "model": self.model, "inputs": self.inputs,
                "folder": str(self.folder), "ok": self.ok,
                "index": relative(self.index, self.folder) if self.index else None,
                "parts": {name: part.to_dict(self.folder) for name, part in self.parts.items()}}
