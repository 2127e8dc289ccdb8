"""Two profiles compared: what got slower, module by module, biggest changes first.

Both sides are the JSON of ``modelviz profile`` (schema ``modelviz.profile/1``), read from files
without torch: timing a model is for the machine it will run on, so the profiles are written
there (``modelviz profile MODEL --format json -o FILE.json``) and compared anywhere.
"""

from __future__ import annotations

import json
from typing import Any

from modelviz.core.formatting import inputs_label
from modelviz.features.diff.compare import (
    Change,
    Fact,
    LayerChange,
    ModelDiff,
    finite_number,
)

SCHEMA_PREFIX = "modelviz.profile/"

#: The whole pass; ``total_ms`` (and the FLOPs) are what ``--fail-on-increase`` watches.
TOTALS = {"total_ms": "Forward (ms)", "bare_forward_ms": "Bare forward (ms)",
          "backward_ms": "Backward (ms)", "flops": "FLOPs"}
#: Per module.
MODULE = {"total_ms": "total ms", "self_ms": "self ms", "share": "share"}
#: How the profile was taken: shown where the sides differ, since it explains a changed time.
SETTINGS = {"device": "Device", "dtype": "Dtype", "inputs": "Inputs", "method": "Timing",
            "runs": "Runs", "compiled": "Compiled"}


def profile_problem(data: dict[str, Any]) -> str | None:
    """What in a profile's JSON the comparison could not read, or None."""
    for key in ("total_ms", "flops"):
        if not finite_number(data.get(key)):
            return f"\"{key}\" is not a number"
    for key in ("bare_forward_ms", "backward_ms"):
        if data.get(key) is not None and not finite_number(data[key]):
            return f"\"{key}\" is neither null nor a number"
    modules = data.get("modules")
    if not isinstance(modules, list):
        return "no \"modules\" list"
    for index, module in enumerate(modules):
        if not (isinstance(module, dict) and isinstance(module.get("name"), str)
                and isinstance(module.get("type"), str)
                and all(finite_number(module.get(key)) for key in MODULE)):
            return f"modules[{index}] lacks a name, type, total_ms, self_ms or share"
    if not isinstance(data.get("model", ""), str):
        return "\"model\" is not a string"
    return None


def _text(key: str, value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key == "inputs":
        try:
            return inputs_label(value)
        except (TypeError, KeyError, AttributeError):
            return json.dumps(value)
    return str(value)


def _modules(a: dict[str, Any], b: dict[str, Any]) -> list[LayerChange]:
    """Every module timed on either side, the largest change of total time first (a module on
    one side only: its own time)."""
    before = {m["name"]: m for m in a["modules"] if m.get("timed", True)}
    after = {m["name"]: m for m in b["modules"] if m.get("timed", True)}
    rows: list[LayerChange] = []
    for name in [*after, *(n for n in before if n not in after)]:
        old, new = before.get(name), after.get(name)
        values = {key: (None if old is None else float(old[key]),
                        None if new is None else float(new[key])) for key in MODULE}
        kind = ("added" if old is None else "removed" if new is None
                else "changed" if any(x != y for x, y in values.values()) else "unchanged")
        type_ = (new or old or {}).get("type", "")
        details = ([f"type {old['type']} → {new['type']}"]
                   if old is not None and new is not None and old["type"] != new["type"]
                   else [])
        rows.append(LayerChange(name, kind, details, type_, values))

    def size(row: LayerChange) -> float:
        a_ms, b_ms = row.values["total_ms"]
        return abs((b_ms or 0.0) - (a_ms or 0.0))

    return sorted(rows, key=size, reverse=True)


def compare_profiles(a: dict[str, Any], b: dict[str, Any], *, a_label: str | None = None,
                     b_label: str | None = None) -> ModelDiff:
    """The forward's total time (and backward's, where both timed it), FLOPs, the settings
    that differ, and every module's total and self time and share, biggest change first."""
    totals = [Change(key, float(a[key]), float(b[key]), label) for key, label in TOTALS.items()
              if a.get(key) is not None and b.get(key) is not None]
    facts = [Fact(key, label, a.get(key), b.get(key), _text(key, a.get(key)),
                  _text(key, b.get(key)))
             for key, label in SETTINGS.items() if a.get(key) != b.get(key)]
    notes = []
    if a.get("device") != b.get("device"):
        notes.append("the profiles ran on different devices: their times are not comparable")
    return ModelDiff(a_label or a["model"], b_label or b["model"], totals, _modules(a, b),
                     kind="profile", facts=facts, notes=notes)
