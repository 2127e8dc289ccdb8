"""What a change did to a model: totals and layers of two summaries, side by side.

Either side is a ``summary.json`` written by ``modelviz summary -o`` (or ``report``), or any
MODEL spec, summarised on the spot; both are compared in the documented JSON form, so a model
in a pull request can be compared with the summary CI stored for main. ``ModelDiff`` also
carries the comparisons of two memory plans (``diff.memory``) and two profiles
(``diff.profile``): one shape, so the views, the JSON and ``--fail-on-increase`` serve all three.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelviz.core.formatting import shape_json_text
from modelviz.errors import ModelFileError
from modelviz.output import mark_input

#: Totals compared, with their labels; MB figures use torchsummary's definitions.
METRICS: dict[str, str] = {
    "params": "Total params",
    "trainable_params": "Trainable params",
    "flops": "FLOPs",
    "forward_backward_size_mb": "Forward/backward pass size (MB)",
    "params_size_mb": "Params size (MB)",
    "estimated_total_size_mb": "Estimated Total Size (MB)",
}
#: The metrics ``--fail-on-increase`` watches: the summary's size and cost, the memory plan's
#: peaks (what decides whether a model still fits its card) and a profile's forward time.
BUDGETED = ("params", "flops", "estimated_total_size_mb", "inference_peak_bytes",
            "training_peak_bytes", "sharded_inference_peak_bytes",
            "sharded_training_peak_bytes", "total_ms")


def load_json(path: str | Path, what: str = "summary",
              fix: str = "Write one with `modelviz summary MODEL -o summary.json`.") -> Any:
    """The JSON in ``path``, or a one-line error naming ``what`` the file should have been.
    The caller marks it as an input (``mark_input``) once it knows what the file is."""
    file = Path(path)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelFileError(f"no such file: {path}.", f"Check the path to the {what}.") from exc
    except RecursionError as exc:
        raise ModelFileError(f"{path} nests JSON too deeply to be a modelviz {what}.",
                             fix) from exc
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelFileError(f"{path} is not a JSON file: {exc}.", fix) from exc
    return data


def read_summary(path: str | Path) -> dict[str, Any]:
    """A summary.json written by modelviz, checked for the parts of its schema ``compare``
    reads: a hand-edited or truncated file is a one-line error, not a traceback."""
    data = load_json(path)
    mark_input(path, "the summary")
    if not (isinstance(data, dict) and str(data.get("schema", "")).startswith("modelviz.summary/")):
        raise ModelFileError(f"{path} is JSON, but not a modelviz summary.",
                             "Write one with `modelviz summary MODEL -o summary.json`.")
    problem = summary_problem(data)
    if problem is not None:
        raise ModelFileError(f"{path} is a damaged modelviz summary: {problem}.",
                             "Write it again with `modelviz summary MODEL -o summary.json`.")
    return data


def finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def summary_problem(data: dict[str, Any]) -> str | None:
    """What in a summary's JSON ``compare`` could not read, or None."""
    totals, layers = data.get("totals"), data.get("layers")
    if not isinstance(totals, dict):
        return "no \"totals\" object"
    for metric in METRICS:
        if totals.get(metric) is not None and not finite_number(totals[metric]):
            return f"totals.{metric} is {json.dumps(totals[metric])[:40]}, not a number"
    if not isinstance(layers, list):
        return "no \"layers\" list"
    for index, layer in enumerate(layers):
        if not (isinstance(layer, dict) and isinstance(layer.get("name"), str)
                and isinstance(layer.get("type"), str) and isinstance(layer.get("params"), int)
                and not isinstance(layer.get("params"), bool) and "output_shapes" in layer):
            return (f"layers[{index}] lacks a name, type, params count or output_shapes")
    if not isinstance(data.get("model", ""), str):
        return "\"model\" is not a string"
    return None


@dataclass(frozen=True)
class Change:
    """One total of both sides; ``metric``'s suffix (``_mb``, ``_bytes``, ``_ms``) says its unit."""

    metric: str
    a: float
    b: float
    title: str | None = None  # the label of a metric that is not one of the summary's METRICS

    @property
    def label(self) -> str:
        return self.title or METRICS[self.metric]

    @property
    def delta(self) -> float:
        return self.b - self.a

    @property
    def percent(self) -> float | None:
        return None if self.a == 0 else 100.0 * (self.b - self.a) / self.a


@dataclass(frozen=True)
class Fact:
    """A figure that is not a number to subtract (the training peak's phase, the batch size a
    plan ran at), shown beside the totals so that a changed setting explains a changed peak."""

    key: str
    label: str
    a: Any  # as in the files' JSON
    b: Any
    a_text: str
    b_text: str

    @property
    def changed(self) -> bool:
        return bool(self.a != self.b)


@dataclass(frozen=True)
class LayerChange:
    name: str
    kind: str  # added, removed or changed (a profile's modules: also unchanged)
    details: list[str] = field(default_factory=list)  # "params 100 → 200"
    type: str = ""  # given where ``values`` are: a memory plan's layers, a profile's modules
    values: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)

    def delta(self, metric: str) -> float | None:
        """B less A, or None where one side lacks the layer."""
        a, b = self.values.get(metric, (None, None))
        return None if a is None or b is None else b - a


@dataclass
class ModelDiff:
    a: str
    b: str
    totals: list[Change]
    layers: list[LayerChange]
    kind: str = "summary"  # summary, memory or profile: what the sides were compared as
    facts: list[Fact] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def increases_over(self, percent: float) -> list[Change]:
        """Budgeted metrics that grew by more than ``percent`` (from zero: any growth)."""
        grown = []
        for change in self.totals:
            if change.metric not in BUDGETED or change.delta <= 0:
                continue
            if change.percent is None or change.percent > percent:
                grown.append(change)
        return grown

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "schema": "modelviz.diff/1",
            "kind": self.kind,
            "a": self.a,
            "b": self.b,
            "totals": {c.metric: {"a": c.a, "b": c.b, "delta": c.delta,
                                  "percent": None if c.percent is None else round(c.percent, 4)}
                       for c in self.totals},
            "layers": [_layer_dict(c) for c in self.layers],
        }
        if self.facts:
            data["facts"] = {f.key: {"a": f.a, "b": f.b} for f in self.facts}
        if self.notes:
            data["notes"] = self.notes
        return data


def _layer_dict(change: LayerChange) -> dict[str, Any]:
    data: dict[str, Any] = {"name": change.name, "change": change.kind,
                            "details": change.details}
    if change.type:
        data["type"] = change.type
    if change.values:
        data["values"] = {metric: {"a": a, "b": b, "delta": change.delta(metric)}
                          for metric, (a, b) in change.values.items()}
    return data


def compare(a: dict[str, Any], b: dict[str, Any], *, a_label: str | None = None,
            b_label: str | None = None) -> ModelDiff:
    """Totals side by side, and the layers added, removed or changed (type, output, params)."""
    totals = [Change(metric, float(a["totals"].get(metric) or 0), float(b["totals"].get(metric)
                                                                        or 0))
              for metric in METRICS]
    before = {layer["name"]: layer for layer in a["layers"]}
    after = {layer["name"]: layer for layer in b["layers"]}
    changes: list[LayerChange] = []
    for name, layer in after.items():
        old = before.get(name)
        if old is None:
            changes.append(LayerChange(name, "added", [
                f"{layer['type']}, {layer['params']:,} params, output "
                f"{shape_json_text(layer['output_shapes'])}"]))
            continue
        details = []
        if old["type"] != layer["type"]:
            details.append(f"type {old['type']} → {layer['type']}")
        if old["params"] != layer["params"]:
            details.append(f"params {old['params']:,} → {layer['params']:,}")
        if old["output_shapes"] != layer["output_shapes"]:
            details.append(f"output {shape_json_text(old['output_shapes'])} → "
                           f"{shape_json_text(layer['output_shapes'])}")
        if details:
            changes.append(LayerChange(name, "changed", details))
    for name, layer in before.items():
        if name not in after:
            changes.append(LayerChange(name, "removed", [
                f"{layer['type']}, {layer['params']:,} params"]))
    return ModelDiff(a_label or a["model"], b_label or b["model"], totals, changes)
