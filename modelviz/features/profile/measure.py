"""A profile: the engine's records (FLOPs, shapes, bytes) joined with measured time per module.

FLOPs, shapes and parameter bytes come from the one instrumented pass (``core.session.run``),
never recomputed; time comes from ``core.timing``'s light pass. Per module: total and self time
(medians over the runs, with the interquartile range as the spread), share of the forward,
FLOPs, achieved FLOP/s, bytes moved (parameters and buffers read, inputs read, outputs written,
per call), arithmetic intensity and, against the device's peaks, compute- or memory-bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelviz.core import session, timing
from modelviz.core.formatting import inputs_label
from modelviz.core.hierarchy import ordered_children
from modelviz.core.records import tree_bytes
from modelviz.errors import SpecError
from modelviz.features.profile.peaks import Peaks, peaks_for

if TYPE_CHECKING:
    from modelviz.core.records import ModuleRecord, Trace
    from modelviz.core.session import Prepared

SORTS = ("time", "flops", "name")
#: The slowest layers marked in the table take together at least this share of the forward...
SLOWEST_SHARE = 0.5
#: ...and are at most this many.
SLOWEST_LIMIT = 10
#: Past this share of the bare forward, the hooks' cost gets a note that says how to cut it.
COSTLY_HOOKS = 0.2

SCHEMA = "modelviz.profile/1"


@dataclass(eq=False)
class ModuleProfile:
    """One module: what the engine counted and what the clock measured."""

    name: str
    type: str
    depth: int
    parent: str | None
    children: list[str]
    calls: int
    flops: int
    bytes: int
    timed: bool  # its hooks fired (False: never called, or fused away by torch.compile)
    total_ms: float = 0.0
    self_ms: float = 0.0
    spread_ms: float = 0.0  # interquartile range of the total over the runs
    share: float = 0.0  # of the whole forward
    bound: str | None = None

    @property
    def flops_per_s(self) -> float | None:
        return self.flops / (self.total_ms / 1000) if self.total_ms > 0 and self.flops else None

    @property
    def intensity(self) -> float:
        """FLOPs per byte moved."""
        return self.flops / self.bytes if self.bytes else 0.0

    @property
    def is_leaf(self) -> bool:
        return not self.children

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "depth": self.depth,
                "parent": self.parent, "calls": self.calls, "timed": self.timed,
                "total_ms": round(self.total_ms, 4), "self_ms": round(self.self_ms, 4),
                "spread_ms": round(self.spread_ms, 4), "share": round(self.share, 5),
                "flops": self.flops,
                "flops_per_s": (round(self.flops_per_s) if self.flops_per_s is not None
                                else None),
                "bytes": self.bytes, "intensity": round(self.intensity, 4),
                "bound": self.bound}


@dataclass(eq=False)
class Profile:
    """Where a model's forward pass spends its time, module by module."""

    model: str
    model_type: str
    device: str
    dtype: str
    inputs: list[dict[str, Any]]
    method: str
    runs: int
    warmup: int
    total_ms: float  # median forward under the timing hooks
    total_spread_ms: float
    bare_forward_ms: float  # median forward with no hook at all, same process
    flops: int
    modules: dict[str, ModuleProfile]  # definition order; "" is the root
    peaks: Peaks
    trace: Trace = field(repr=False)
    timings: timing.Timings = field(repr=False)
    backward_ms: float | None = None
    compiled: bool = False
    fused_away: list[str] = field(default_factory=list)
    time_depth: int | None = None  # only modules down to this depth were timed
    notes: list[str] = field(default_factory=list)

    @property
    def hook_overhead(self) -> float:
        """What the timing hooks add to a forward pass, as a fraction of the bare forward."""
        return self.total_ms / self.bare_forward_ms - 1 if self.bare_forward_ms > 0 else 0.0

    def rows(self, depth: int | None = None, sort: str = "time") -> list[ModuleProfile]:
        """The modules down to ``depth`` (all if None) as a tree, siblings ordered by ``sort``:
        total time (slowest first), FLOPs (most first), or name (the order they ran in)."""
        if sort not in SORTS:
            raise SpecError(f"unknown sort {sort!r}.", f"Use `sort` {', '.join(SORTS)}.")
        found: list[ModuleProfile] = []

        def visit(name: str) -> None:
            children = [self.modules[r.name] for r in ordered_children(self.trace, name)]
            if sort == "time":
                children.sort(key=lambda m: -m.total_ms)
            elif sort == "flops":
                children.sort(key=lambda m: -m.flops)
            for child in children:
                if depth is not None and child.depth > depth:
                    continue
                found.append(child)
                visit(child.name)

        visit("")
        return found

    def slowest(self, share: float = SLOWEST_SHARE, limit: int = SLOWEST_LIMIT) -> (
            list[ModuleProfile]):
        """The finest timed layers (leaves, or the deepest timed under ``time_depth``), by self
        time, that together take ``share`` of the forward."""
        leaves = sorted((m for m in self.modules.values() if m.timed and m.name and not any(
            self.modules[c].timed for c in m.children)), key=lambda m: -m.self_ms)
        chosen: list[ModuleProfile] = []
        taken = 0.0
        for module in leaves[:limit]:
            if taken >= share * self.total_ms:
                break
            chosen.append(module)
            taken += module.self_ms
        return chosen

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA, "model": self.model, "model_type": self.model_type,
            "device": self.device, "dtype": self.dtype, "inputs": self.inputs,
            "method": self.method, "runs": self.runs, "warmup": self.warmup,
            "total_ms": round(self.total_ms, 4), "total_spread_ms": round(self.total_spread_ms, 4),
            "bare_forward_ms": round(self.bare_forward_ms, 4),
            "hook_overhead": round(self.hook_overhead, 4),
            "backward_ms": round(self.backward_ms, 4) if self.backward_ms is not None else None,
            "flops": self.flops,
            "compiled": self.compiled, "fused_away": self.fused_away,
            "time_depth": self.time_depth,
            "peaks": self.peaks.to_dict(),
            "slowest": [m.name for m in self.slowest()],
            "modules": [m.to_dict() for m in self.modules.values() if m.name],
            "notes": self.notes,
        }


def _subtree_weights(trace: Trace) -> dict[str, int]:
    """Bytes of parameters and buffers under each module (shared ones with their first owner)."""
    weights: dict[str, int] = {}
    for name in reversed(list(trace.modules)):  # children come after their parent
        record = trace.modules[name]
        weights[name] = (record.param_bytes + record.buffer_bytes
                         + sum(weights[c] for c in record.children))
    return weights


def _moved(record: ModuleRecord, weights: dict[str, int]) -> int:
    """Bytes a module's calls move at the least: its weights read once per call, its inputs
    read and its outputs written (what happens in between, inside it, is not counted)."""
    if not record.calls:
        return 0
    return sum(weights[record.name] + sum(tree_bytes(t) for t in call.inputs)
               + call.output_bytes for call in record.calls)


def _ms(values: list[float]) -> float:
    return timing.median(values) * 1000


def build_profile(prepared: Prepared, trace: Trace, timings: timing.Timings,
                  peaks: Peaks) -> Profile:
    """Join the engine's ``trace`` with the measured ``timings`` of the same model."""
    weights = _subtree_weights(trace)
    total_ms = _ms(timings.forward_s)
    modules: dict[str, ModuleProfile] = {}
    for name, record in trace.modules.items():
        measured = timings.modules.get(name)
        modules[name] = ModuleProfile(
            name=name, type=record.type, depth=record.depth, parent=record.parent,
            children=list(record.children), calls=len(record.calls), flops=record.flops,
            bytes=_moved(record, weights), timed=measured is not None,
            total_ms=_ms(measured.total_s) if measured else 0.0,
            self_ms=_ms(measured.self_s) if measured else 0.0,
            spread_ms=timing.iqr(measured.total_s) * 1000 if measured else 0.0)
    for name in reversed(list(modules)):  # a ModuleList is never called: its children's sums
        module = modules[name]
        if not module.timed and module.children:
            kids = [modules[c] for c in module.children]
            if any(k.timed for k in kids):
                module.total_ms = sum(k.total_ms for k in kids)
                module.bytes = module.bytes or sum(k.bytes for k in kids)
                module.timed = True
    for module in modules.values():
        module.share = module.total_ms / total_ms if total_ms > 0 else 0.0
        if module.timed and module.bytes:
            module.bound = peaks.bound(module.intensity)
    fused = ([name for name, record in trace.modules.items()
              if name and record.calls and name not in timings.modules]
             if timings.compiled else [])
    profile = Profile(
        model=prepared.loaded.name, model_type=trace.model_type, device=trace.device,
        dtype=trace.dtype, inputs=prepared.inputs.describe(prepared.model),
        method=timings.method, runs=timings.runs, warmup=timings.warmup, total_ms=total_ms,
        total_spread_ms=timing.iqr(timings.forward_s) * 1000,
        bare_forward_ms=_ms(timings.bare_s), flops=trace.flops, modules=modules, peaks=peaks,
        trace=trace, timings=timings,
        backward_ms=_ms(timings.backward_s) if timings.backward_s is not None else None,
        compiled=timings.compiled, fused_away=fused, time_depth=timings.time_depth)
    if timings.time_depth is not None:
        profile.notes.append(f"only modules down to depth {timings.time_depth} are timed "
                             f"(`time_depth={timings.time_depth}`); deeper ones run without "
                             "hooks and show no time")
    elif profile.hook_overhead > COSTLY_HOOKS:
        profile.notes.append(
            f"the timing hooks added {profile.hook_overhead * 100:.0f}% to the forward pass "
            "(many short module calls at this size), so module times carry some of their "
            "cost; `time_depth=1` (or 2) hooks fewer modules")
    if peaks.ridge is None:
        profile.notes.append(f"no compute/memory bound: {peaks.source}")
    if timings.backward_s is not None:
        profile.notes.append(
            "backward timed as a whole: per-module backward hooks rewrite the autograd graph "
            "(and fail on in-place layers), so they would not time the real backward")
    if fused:
        whole = len(fused) == sum(1 for n, r in trace.modules.items() if n and r.calls)
        profile.notes.append(
            f"torch.compile fused {'every module' if whole else f'{len(fused)} module(s)'} "
            "into its graphs: they run no hooks, so only the whole forward is timed"
            + ("" if whole else f" for them ({', '.join(fused[:8])}"
               f"{' …' if len(fused) > 8 else ''})"))
    return profile


def profile_model(prepared: Prepared, *, runs: int | None = None, warmup: int = 2,
                  backward: bool = False, compile: bool = False,
                  train: bool = False, time_depth: int | None = None) -> Profile:
    """The engine's pass, then the timed runs, joined: ``modelviz profile``'s whole work."""
    prepared.require_values(
        "profile times real kernels, and the meta device has only shapes.",
        "Run on `device=cpu` or cuda; `modelviz summary --device meta` gives FLOPs and shapes.",
        error=SpecError)
    if runs is not None and runs < 1:
        raise SpecError(f"bad `runs={runs}`.", "Use 1 or more.")
    trace = session.run(prepared, train=train)
    timings = timing.time_model(prepared.model, prepared.inputs.args, prepared.inputs.kwargs,
                                device=prepared.device, runs=runs, warmup=warmup, train=train,
                                backward=backward, compile=compile, time_depth=time_depth)
    peaks = peaks_for(prepared.device, trace.dtype)
    return build_profile(prepared, trace, timings, peaks)


def inputs_text(profile: Profile) -> str:
    return inputs_label(profile.inputs)
