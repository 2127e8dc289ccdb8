"""What a change did to a model: totals and layers of two summaries, side by side.

Either side is a ``summary.json`` written by ``modelviz summary -o`` (or ``report``), or any
MODEL spec, summarised on the spot; both are compared in the documented JSON form, so a model
in a pull request can be compared with the summary CI stored for main.
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
#: The metrics ``--fail-on-increase`` watches.
BUDGETED = ("params", "flops", "estimated_total_size_mb")


def read_summary(path: str | Path) -> dict[str, Any]:
    """A summary.json written by modelviz, checked for the parts of its schema ``compare``
    reads: a hand-edited or truncated file is a one-line error, not a traceback."""
    file = Path(path)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelFileError(f"no such file: {path}.", "Check the path to the summary.") from exc
    except RecursionError as exc:
        raise ModelFileError(f"{path} nests JSON too deeply to be a modelviz summary.",
                             "Write one with `modelviz summary MODEL -o summary.json`.") from exc
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelFileError(f"{path} is not a JSON file: {exc}.",
                             "Write one with `modelviz summary MODEL -o summary.json`.") from exc
    mark_input(file, "the summary")
    if not (isinstance(data, dict) and str(data.get("schema", "")).startswith("modelviz.summary/")):
        raise ModelFileError(f"{path} is JSON, but not a modelviz summary.",
                             "Write one with `modelviz summary MODEL -o summary.json`.")
    problem = _schema_problem(data)
    if problem is not None:
        raise ModelFileError(f"{path} is a damaged modelviz summary: {problem}.",
                             "Write it again with `modelviz summary MODEL -o summary.json`.")
    return data


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _schema_problem(data: dict[str, Any]) -> str | None:
    totals, layers = data.get("totals"), data.get("layers")
    if not isinstance(totals, dict):
        return "no \"totals\" object"
    for metric in METRICS:
        if totals.get(metric) is not None and not _number(totals[metric]):
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
    metric: str
    a: float
    b: float

    @property
    def label(self) -> str:
        return METRICS[self.metric]

    @property
    def delta(self) -> float:
        return self.b - self.a

    @property
    def percent(self) -> float | None:
        return None if self.a == 0 else 100.0 * (self.b - self.a) / self.a


@dataclass(frozen=True)
class LayerChange:
    name: str
    kind: str  # added, removed or changed
    details: list[str] = field(default_factory=list)  # "params 100 → 200"


@dataclass
class ModelDiff:
    a: str
    b: str
    totals: list[Change]
    layers: list[LayerChange]

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
        return {
            "schema": "modelviz.diff/1",
            "a": self.a,
            "b": self.b,
            "totals": {c.metric: {"a": c.a, "b": c.b, "delta": c.delta,
                                  "percent": None if c.percent is None else round(c.percent, 4)}
                       for c in self.totals},
            "layers": [{"name": c.name, "change": c.kind, "details": c.details}
                       for c in self.layers],
        }


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
