"""Two memory plans compared: will the change still fit?

Both sides are the JSON of ``modelviz memory`` (schema ``modelviz.memory/1``): read from files
written with ``-o``, or a model planned on the spot. Read as JSON only, without torch, so CI can
compare the plan stored for main with a pull request's in a job that never loads a model.
"""

from __future__ import annotations

import json
from typing import Any

from modelviz.core.formatting import count, shape_json_text
from modelviz.features.diff.compare import (
    Change,
    Fact,
    LayerChange,
    ModelDiff,
    finite_number,
)

SCHEMA_PREFIX = "modelviz.memory/"

#: The peaks, which decide whether a model fits (``--fail-on-increase`` watches them).
PEAKS = {"inference_peak_bytes": "Inference peak", "training_peak_bytes": "Training peak"}
#: What the training step holds, by kind.
TRAINING = {"parameters_bytes": "Parameters", "gradients_bytes": "Gradients",
            "optimizer_bytes": "Optimizer state",
            "activations_bytes": "Saved activations"}
#: Per device, with ``--shard N`` on both sides.
SHARDED = {"sharded_inference_peak_bytes": "Inference peak per device (sharded)",
           "sharded_training_peak_bytes": "Training peak per device (sharded)"}
#: A layer's figures, as the plan's ``layers`` rows give them.
LAYER = {"parameters_bytes": "parameters", "gradients_bytes": "gradients",
         "optimizer_bytes": "optimizer state", "activations_bytes": "activations"}
#: What the plan ran with: shown where the sides differ, since it explains a changed peak.
SETTINGS = {"device": "Device", "dtype": "Dtype", "batch_size": "Batch size", "inputs": "Inputs",
            "optimizer": "Optimizer", "amp": "Autocast", "checkpointing": "Checkpointing"}


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def memory_problem(data: dict[str, Any]) -> str | None:
    """What in a memory plan's JSON the comparison could not read, or None: a hand-edited or
    truncated file is then one line, not a traceback."""
    inference = data.get("inference")
    if not (isinstance(inference, dict) and _int(inference.get("peak_bytes"))):
        return "no \"inference.peak_bytes\""
    training = data.get("training")
    if training is not None:
        if not isinstance(training, dict) or not isinstance(training.get("peak_phase"), str):
            return "\"training\" is neither null nor an object with a peak_phase"
        for key in ("peak_bytes", *TRAINING):
            if not _int(training.get(key)):
                return f"training.{key} is not a whole number of bytes"
    layers = data.get("layers")
    if not isinstance(layers, list):
        return "no \"layers\" list"
    for index, layer in enumerate(layers):
        if not (isinstance(layer, dict) and isinstance(layer.get("name"), str)
                and isinstance(layer.get("type"), str)
                and all(_int(layer.get(key)) for key in LAYER)):
            return f"layers[{index}] lacks a name, type or byte counts"
    for part, keys in (("sharding", ("inference_peak_bytes",)), ("fit", ("max_batch_size",))):
        value = data.get(part)
        if value is not None and not (isinstance(value, dict)
                                      and all(_int(value.get(k)) for k in keys)):
            return f"\"{part}\" is neither null nor an object with {', '.join(keys)}"
    if not isinstance(data.get("model", ""), str):
        return "\"model\" is not a string"
    return None


def _text(key: str, value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key == "inputs":
        return shape_json_text(value)
    if _int(value):
        return count(value)
    return value if isinstance(value, str) else json.dumps(value)


def fact(key: str, label: str, a: Any, b: Any) -> Fact:
    """A setting or a phase of both sides, with the text each is shown as."""
    return Fact(key, label, a, b, _text(key, a), _text(key, b))


def peaks(a: dict[str, Any], b: dict[str, Any]) -> tuple[list[Change], list[Fact], list[str]]:
    """The inference peak, and the training peak and its phase where both sides trained; the
    notes say what could not be compared. ``diff --memory`` adds these to two summaries'."""
    totals = [Change("inference_peak_bytes", float(a["inference"]["peak_bytes"]),
                     float(b["inference"]["peak_bytes"]), PEAKS["inference_peak_bytes"])]
    facts: list[Fact] = []
    notes: list[str] = []
    train_a, train_b = a.get("training"), b.get("training")
    if train_a is not None and train_b is not None:
        totals.append(Change("training_peak_bytes", float(train_a["peak_bytes"]),
                             float(train_b["peak_bytes"]), PEAKS["training_peak_bytes"]))
        facts.append(fact("training_peak_phase", "Training peak phase", train_a["peak_phase"],
                          train_b["peak_phase"]))
    elif train_a is not None or train_b is not None:
        side = "A" if train_a is None else "B"
        notes.append(f"{side} was planned for inference only (optimizer none): "
                     "training figures are not compared")
    return totals, facts, notes


def add_peaks(diff: ModelDiff, a: dict[str, Any], b: dict[str, Any]) -> ModelDiff:
    """Two summaries' diff with the two models' memory peaks added (``diff --memory``), and the
    settings the plans ran with where they differ."""
    totals, facts, notes = peaks(a, b)
    diff.totals += totals
    diff.facts += facts + _settings(a, b)
    diff.notes += notes
    return diff


def _settings(a: dict[str, Any], b: dict[str, Any]) -> list[Fact]:
    return [fact(key, label, a.get(key), b.get(key)) for key, label in SETTINGS.items()
            if a.get(key) != b.get(key)]


def _layers(a: dict[str, Any], b: dict[str, Any]) -> list[LayerChange]:
    before = {layer["name"]: layer for layer in a["layers"]}
    after = {layer["name"]: layer for layer in b["layers"]}
    changes: list[LayerChange] = []
    for name, layer in after.items():
        old = before.get(name)
        values: dict[str, tuple[float | None, float | None]] = {
            key: (None if old is None else float(old[key]), float(layer[key])) for key in LAYER}
        if old is None:
            changes.append(LayerChange(name, "added", [
                f"{layer['type']}, {size_text(layer['parameters_bytes'])} of parameters"],
                layer["type"], values))
            continue
        details = [] if old["type"] == layer["type"] else [f"type {old['type']} → {layer['type']}"]
        details += [f"{label} {size_text(old[key])} → {size_text(layer[key])}"
                    for key, label in LAYER.items() if old[key] != layer[key]]
        if details:
            changes.append(LayerChange(name, "changed", details, layer["type"], values))
    for name, layer in before.items():
        if name not in after:
            changes.append(LayerChange(name, "removed", [
                f"{layer['type']}, {size_text(layer['parameters_bytes'])} of parameters"],
                layer["type"], {key: (float(layer[key]), None) for key in LAYER}))
    return changes


def size_text(nbytes: float) -> str:
    """Binary units, as ``modelviz memory`` and torch.cuda show them (1 MiB = 2**20 bytes)."""
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.2f} {unit}"
        value /= 1024
    return f"{value:,.2f} TiB"


def compare_memory(a: dict[str, Any], b: dict[str, Any], *, a_label: str | None = None,
                   b_label: str | None = None) -> ModelDiff:
    """Peaks, what the training step holds, the sharded peaks and the largest batch that fits
    (where both sides have them), the settings that differ, and the layers whose bytes changed."""
    totals, facts, notes = peaks(a, b)
    train_a, train_b = a.get("training"), b.get("training")
    if train_a is not None and train_b is not None:
        totals += [Change(key, float(train_a[key]), float(train_b[key]), label)
                   for key, label in TRAINING.items()]
    shard_a, shard_b = a.get("sharding"), b.get("sharding")
    if shard_a is not None and shard_b is not None:
        for key, label in SHARDED.items():
            field = key.removeprefix("sharded_")
            if finite_number(shard_a.get(field)) and finite_number(shard_b.get(field)):
                totals.append(Change(key, float(shard_a[field]), float(shard_b[field]), label))
        facts.append(fact("devices", "Sharded over", shard_a.get("devices"),
                          shard_b.get("devices")))
    fit_a, fit_b = a.get("fit"), b.get("fit")
    if fit_a is not None and fit_b is not None:
        totals.append(Change("max_batch_size", float(fit_a["max_batch_size"]),
                             float(fit_b["max_batch_size"]), "Largest batch that fits"))
        facts.append(fact("budget", "Fit budget", fit_a.get("budget"), fit_b.get("budget")))
    elif fit_a is not None or fit_b is not None:
        notes.append(f"only {'A' if fit_a is not None else 'B'} was planned with a fit budget: "
                     "the largest batch is not compared")
    facts += _settings(a, b)
    return ModelDiff(a_label or a["model"], b_label or b["model"], totals, _layers(a, b),
                     kind="memory", facts=facts, notes=notes)
