"""Time and memory per module, laid over the interactive graph: its side panel and its colours.

Both come in the documented JSON (``modelviz.profile/1`` and ``modelviz.memory/1``, see
docs/json.md), whatever made them: files given to ``graph --profile FILE --memory FILE``, which
are the user's and are read as JSON only, checked as ``diff`` checks them, and matched with the
model drawn; or the report's own results (``Profile.to_dict()``, and the memory plan's figures for
every module, which its ``memory.json`` keeps to depth 1). A file of another model is refused in
one line; a file naming modules this model lacks is used for the rest, and the page and the
command say which it lacked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelviz.errors import ModelFileError
from modelviz.escape import printable

if TYPE_CHECKING:
    from modelviz.core.records import Trace
    from modelviz.core.session import Prepared
    from modelviz.features.memory.plan import MemoryPlan
    from modelviz.features.profile.measure import Profile

__all__ = ["Overlay", "from_memory", "from_plan", "from_profile", "load", "profile_of"]

#: A memory row's figures, in the order the page keeps them.
MEMORY_FIELDS = ("parameters_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes")
#: How many unknown module names a message lists before it counts the rest.
SHOWN = 5


@dataclass
class Overlay:
    """One profile or memory plan, per module of the model drawn, for the page's JSON."""

    kind: str  # "profile" or "memory"
    source: str  # the file's name, or what made it ("the report")
    totals: dict[str, Any]  # shown when no module is selected
    modules: dict[str, list[float]]  # name -> figures (profile: total, self, share)
    unknown: list[str] = field(default_factory=list)  # "name (Type)" the model lacks
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "totals": self.totals, "modules": self.modules,
                "unknown": self.unknown, "notes": self.messages}

    @property
    def messages(self) -> list[str]:
        """What the command prints and the page's panel shows about these figures."""
        return ([self.unknown_note] if self.unknown_note else []) + self.notes

    @property
    def unknown_note(self) -> str | None:
        """One line naming what the file had that the model lacks, or None."""
        if not self.unknown:
            return None
        shown = ", ".join(self.unknown[:SHOWN]) + (
            f" and {len(self.unknown) - SHOWN} more" if len(self.unknown) > SHOWN else "")
        noun = "module" if len(self.unknown) == 1 else "modules"
        return (f"{self.source} has {len(self.unknown)} {noun} this model lacks (or of another "
                f"type), left out: {shown}")


def _noun(kind: str) -> str:
    return "profile" if kind == "profile" else "memory plan"


def _command(kind: str) -> str:
    return ("`modelviz profile MODEL --format json -o profile.json`" if kind == "profile"
            else "`modelviz memory MODEL --depth 9 -o memory.json`")


def load(path: str | Path, kind: str) -> dict[str, Any]:
    """``--profile FILE`` or ``--memory FILE`` (``kind``: profile or memory): the user's JSON,
    read as JSON only and checked for what the page reads, before any model is loaded; then
    ``from_profile`` or ``from_memory`` match it with the model drawn."""
    from modelviz.features.diff.compare import load_json
    from modelviz.features.diff.files import KINDS, kind_of
    from modelviz.features.diff.memory import memory_problem
    from modelviz.features.diff.profile import profile_problem
    from modelviz.output import mark_input

    noun, command = _noun(kind), _command(kind)
    data = load_json(path, noun, f"Write one with {command}.")
    found = kind_of(data)
    if found != kind:
        what = f"a modelviz {KINDS[found][1]}, not a {noun}" if found is not None else (
            f"not a modelviz {noun}")
        raise ModelFileError(f"{path} is JSON, but {what}.",
                             f"Give a {noun} written by {command}.")
    mark_input(path, f"the {noun}")  # so that -o cannot overwrite it
    checked: dict[str, Any] = data
    problem = (profile_problem if kind == "profile" else memory_problem)(checked)
    if problem is not None:
        raise ModelFileError(f"{path} is a damaged modelviz {noun}: {problem}.",
                             f"Write it again with {command}.")
    return checked


def _match(overlay: Overlay, rows: list[tuple[str, str, list[float]]], trace: Trace,
           path: str | Path | None, kind: str, model_type: str | None) -> Overlay:
    """Keep the rows of modules the model has (same name, same type); a file that names none of
    them, or profiled another class of model, is someone else's: refused."""
    modules = trace.modules
    if path is not None and model_type not in (None, trace.model_type):
        raise ModelFileError(
            f"{path} is a {_noun(kind)} of a {printable(str(model_type))}, not of this "
            f"{trace.model_type}.", f"Give the {_noun(kind)} of this model, written by "
            f"{_command(kind)}.")
    for name, type_, figures in rows:
        record = modules.get(name)
        if record is None or (name and record.type != type_):
            overlay.unknown.append(f"{printable(name)} ({printable(type_)})")
        else:
            overlay.modules[name] = figures
    named = [name for name, _, _ in rows if name]
    if path is not None and named and not any(name in overlay.modules for name in named):
        raise ModelFileError(
            f"{path} is a {_noun(kind)} of another model: none of its {len(named)} modules "
            f"({', '.join(overlay.unknown[:3])}...) is in {trace.model_type}.",
            f"Give the {_noun(kind)} of this model, written by {_command(kind)}.")
    return overlay


def from_profile(data: dict[str, Any], trace: Trace, prepared: Prepared, *,
                 source: str, path: str | Path | None = None) -> Overlay:
    """The page's time figures from a profile's JSON (checked by ``read_profile`` if a file)."""
    totals = {key: data.get(key) for key in ("total_ms", "total_spread_ms", "bare_forward_ms",
                                             "method", "runs", "warmup", "device")}
    overlay = Overlay("profile", source, totals, {})
    rows = [(m["name"], m["type"], [float(m["total_ms"]), float(m["self_ms"]),
                                    float(m["share"])])
            for m in data["modules"] if m.get("timed", True)]
    _match(overlay, rows, trace, path, "profile", data.get("model_type"))
    inputs = prepared.inputs.describe(prepared.model)
    if data.get("inputs") not in (None, inputs):
        from modelviz.core.formatting import inputs_label

        try:
            theirs = inputs_label(data["inputs"])
        except (TypeError, KeyError, AttributeError):
            theirs = "other inputs"
        overlay.notes.append(f"{source} was timed with {printable(theirs)}; this graph ran "
                             f"with {inputs_label(inputs)}")
    return overlay


def from_memory(data: dict[str, Any], trace: Trace, *, source: str,
                path: str | Path | None = None) -> Overlay:
    """The page's memory figures from a memory plan's JSON (its ``layers`` rows)."""
    training = data.get("training") or {}
    totals = {"batch_size": data.get("batch_size"), "optimizer": data.get("optimizer"),
              "device": data.get("device"), "dtype": data.get("dtype"),
              "inference_peak_bytes": (data.get("inference") or {}).get("peak_bytes"),
              "training_peak_bytes": training.get("peak_bytes"),
              "training_peak_phase": training.get("peak_phase")}
    overlay = Overlay("memory", source, totals, {})
    rows = [(layer["name"], layer["type"], [float(layer[key]) for key in MEMORY_FIELDS])
            for layer in data["layers"]]
    _match(overlay, rows, trace, path, "memory", None)
    return overlay


def from_plan(plan: MemoryPlan, trace: Trace, *, source: str) -> Overlay:
    """The page's memory figures from a plan made in this process: every module's, where its
    JSON keeps the layers down to the plan's depth."""
    per = plan.per_module
    data = plan.to_dict()
    data["layers"] = [{"name": name, "type": record.type,
                       "parameters_bytes": per.parameters.get(name, 0),
                       "gradients_bytes": per.gradients.get(name, 0),
                       "optimizer_bytes": per.optimizer.get(name, 0),
                       "activations_bytes": per.activations.get(name, 0)}
                      for name, record in trace.modules.items()]
    return from_memory(data, trace, source=source)


def profile_of(profile: Profile, trace: Trace, prepared: Prepared) -> Overlay:
    """The report's profile, made in this process from the same pass."""
    return from_profile(profile.to_dict(), trace, prepared, source="the report's profile")
