"""Which axes of an ONNX file's inputs may vary: asked for with ``dynamic``, given to the
exporter, checked in the file it wrote, and named there.

torch.export keeps an axis dynamic only where the model lets it, and when it cannot it may
quietly fix the axis at the example's size (raft_small's batch came out as 2), so every axis
asked for is looked up again in the written file. The exporter names the axes it keeps after
its own symbols (``s72``); the file gets the names asked for (``batch``, ``seq``), and an output
axis computed from them is written in those names (``past_seq + seq``).

``dynamic`` is a list of words: ``auto`` (the default: a dynamic batch where the file allows
one, else a fixed batch and a note), ``batch`` (a dynamic batch, or a failure), ``seq`` (the
batch and the length of every token input: integer inputs of two or more dimensions),
``none`` (everything fixed), and ``INPUT:AXIS=NAME`` for one axis of one input (AXIS counts
the batch as 0). This module imports no torch at load: the CLI parses ``dynamic`` before
loading anything.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelviz.errors import SpecError

if TYPE_CHECKING:
    import torch

WORDS = ("auto", "batch", "seq", "none")
_AXIS = re.compile(r"^(?P<input>[A-Za-z_][\w.]*):(?P<axis>-?\d+)(?:=(?P<name>[A-Za-z_]\w*))?$")
#: The name of the batch axis in every file modelviz writes.
BATCH = "batch"
#: torchvision's detection outputs: their rows are the same detections.
DETECTION_KEYS = frozenset({"boxes", "scores", "labels", "masks", "keypoints", "keypoints_scores"})


@dataclass(frozen=True)
class NamedAxis:
    """``input_ids:1=seq``: one axis of one input, asked for by name."""

    input: str
    axis: int
    name: str


@dataclass
class DynamicSpec:
    """``dynamic`` parsed. ``batch``: "auto" (dynamic where the file allows it, else fixed
    with a note), "on" (dynamic or a failure) or "off"."""

    batch: str = "auto"
    seq: bool = False
    axes: tuple[NamedAxis, ...] = ()


def parse_dynamic(values: str | Iterable[str] | None, *, static: bool = False) -> DynamicSpec:
    """``["batch", "input_ids:1=seq"]`` or ``"batch,seq"``; ``static`` is ``--static``, which
    fixes the batch (and is the same as ``none`` when nothing else is asked)."""
    words: list[str] = []
    for value in [values] if isinstance(values, str) else (values or []):
        words += [w.strip() for w in str(value).split(",") if w.strip()]
    spec = DynamicSpec(batch="off" if static else "auto")
    axes: list[NamedAxis] = []
    for word in words:
        lowered = word.lower()
        if lowered == "auto":
            continue
        if lowered in ("none", "static"):
            spec.batch = "off"
        elif lowered == "batch":
            if static:
                raise SpecError("`static` fixes the batch that `dynamic=batch` asks to vary.",
                                "Give one of them.")
            spec.batch = "on"
        elif lowered == "seq":
            spec.seq = True
        else:
            match = _AXIS.match(word)
            if match is None:
                raise SpecError(f"bad `dynamic` value {word!r}.",
                                "Use auto, batch, seq, none, or INPUT:AXIS=NAME such as "
                                "input_ids:1=seq (AXIS counts the batch as 0).")
            axis = int(match.group("axis"))
            name = match.group("name") or f"{match.group('input')}_{axis}".replace(".", "_")
            axes.append(NamedAxis(match.group("input"), axis, name))
    if spec.batch == "off" and (spec.seq or axes) and "none" in [w.lower() for w in words]:
        raise SpecError("`dynamic` says none and names dynamic axes too.",
                        "Give either none or the axes that vary.")
    spec.axes = tuple(axes)
    return spec


# ----------------------------------------------------------------------------------------------
# The plan: which axis of which file input is dynamic, under which name.


@dataclass(frozen=True)
class Axis:
    """One dynamic axis of one input of the file. ``required``: asked for explicitly, so a
    file that fixes it is a failure rather than a note."""

    input: str
    axis: int
    name: str
    required: bool


@dataclass
class AxisPlan:
    """Every dynamic axis asked of one export, and what the written file made of them."""

    axes: list[Axis] = field(default_factory=list)
    fixed: list[tuple[Axis, int]] = field(default_factory=list)  # asked, but fixed in the file

    @property
    def batch(self) -> bool:
        return any(a.name == BATCH and a.axis == 0 for a in self.axes)

    @property
    def names(self) -> list[str]:
        return list(dict.fromkeys(a.name for a in self.axes))

    def by_input(self) -> dict[str, dict[int, str]]:
        found: dict[str, dict[int, str]] = {}
        for a in self.axes:
            found.setdefault(a.input, {})[a.axis] = a.name
        return found

    def without_batch(self) -> AxisPlan:
        return AxisPlan([a for a in self.axes if not (a.name == BATCH and a.axis == 0)])

    def to_dict(self) -> dict[str, dict[str, str]]:
        return {name: {str(k): v for k, v in axes.items()}
                for name, axes in self.by_input().items()}


def _token_like(tensor: torch.Tensor) -> bool:
    return (tensor.dim() >= 2 and not tensor.dtype.is_floating_point
            and not tensor.dtype.is_complex)


def plan_axes(spec: DynamicSpec, names: Sequence[str], tensors: Sequence[torch.Tensor],
              batch: int | None) -> AxisPlan:
    """The axes to export as dynamic. ``batch`` is the inputs' shared leading size (None: they
    share none, and the batch cannot vary)."""
    by_name = dict(zip(names, tensors, strict=True))
    axes: list[Axis] = []
    if spec.batch != "off":
        if batch is None:
            if spec.batch == "on":
                raise SpecError("`dynamic=batch`: the inputs share no leading (batch) dimension.",
                                "Name the axes that vary instead, e.g. INPUT:0=batch.")
        else:
            axes += [Axis(n, 0, BATCH, spec.batch == "on") for n in names]
    if spec.seq:
        tokens = [n for n in names if _token_like(by_name[n])]
        if not tokens:
            raise SpecError("`dynamic=seq`: no input holds tokens (integers of shape [batch, "
                            "length]).", "Name the axis instead: INPUT:AXIS=NAME, e.g. "
                            "pixel_values:2=height.")
        axes += [Axis(n, 1, "decoder_seq" if n.startswith("decoder_") else "seq", True)
                 for n in tokens]
    for named in spec.axes:
        if named.input not in by_name:
            raise SpecError(f"`dynamic` names input {named.input!r}, which the model does not "
                            "take.", f"Inputs: {', '.join(names)}.")
        rank = by_name[named.input].dim()
        axis = named.axis + rank if named.axis < 0 else named.axis
        if not 0 <= axis < rank:
            raise SpecError(f"`dynamic` names axis {named.axis} of {named.input}, which has "
                            f"{rank} (the batch is axis 0).", f"Give an axis from 0 to "
                            f"{rank - 1}.")
        axes = [a for a in axes if (a.input, a.axis) != (named.input, axis)]
        axes.append(Axis(named.input, axis, named.name, True))
    return AxisPlan(axes)


def widen(tensors: dict[str, torch.Tensor], plan: AxisPlan, grow: dict[str, int],
          *, minimum: int = 0) -> dict[str, torch.Tensor]:
    """The inputs with each named axis made ``grow[name]`` longer, by repeating the first
    positions along it (so token ids stay in the vocabulary, masks stay ones); an axis shorter
    than ``minimum`` is brought to it. torch.export fixes an axis whose example size is 0 or 1,
    hence ``minimum=2`` for the export's example."""
    import torch

    out = dict(tensors)
    for name, axes in plan.by_input().items():
        tensor = out[name]
        for axis, dim_name in sorted(axes.items()):
            size = tensor.shape[axis]
            extra = max(grow.get(dim_name, 0), minimum - size)
            if extra <= 0 or size == 0:
                continue
            reps = -(-extra // size)
            pieces = [tensor] + [tensor] * reps
            tensor = torch.cat(pieces, dim=axis).narrow(axis, 0, size + extra)
        out[name] = tensor
    return out


def dim_sizes(tensors: dict[str, torch.Tensor], plan: AxisPlan) -> dict[str, int]:
    """Each dynamic axis's size in ``tensors``, by name."""
    sizes: dict[str, int] = {}
    for a in plan.axes:
        if a.input in tensors:
            sizes.setdefault(a.name, int(tensors[a.input].shape[a.axis]))
    return sizes


def torch_dynamic_shapes(structure: Any, names: Sequence[str], plan: AxisPlan) -> Any:
    """``dynamic_shapes`` for torch.export, shaped like ``structure`` (the args tuple or a dict
    of keyword inputs, holding tensors): ``Dim.DYNAMIC`` on each planned axis. Dynamic, not
    named dims: named ones fail the whole export on a constraint (a length capped by the
    position table), where a dynamic one lets torch.export keep what it can, and this module
    checks the file for what it fixed."""
    import torch
    from torch.utils import _pytree as pytree

    by_input = plan.by_input()
    leaves = iter(names)

    def spec(value: Any) -> Any:
        if not isinstance(value, torch.Tensor):
            return None
        axes = by_input.get(next(leaves), {})
        return {axis: torch.export.Dim.DYNAMIC for axis in axes} or None

    return pytree.tree_map(spec, structure)


# ----------------------------------------------------------------------------------------------
# The written file: which asked axes survived, and naming them.

_SYMBOL = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")


def rename_symbols(text: str, mapping: dict[str, str]) -> str:
    """``s70 + s43`` -> ``past_seq + seq``: each symbol of a dimension expression renamed, and
    the terms of a plain sum in alphabetical order, so that one length is spelled one way."""
    renamed = _SYMBOL.sub(lambda m: mapping.get(m.group(0), m.group(0)), text)
    terms = [t.strip() for t in renamed.split("+")]
    if len(terms) > 1 and all(_SYMBOL.fullmatch(t) for t in terms):
        return " + ".join(sorted(terms))
    return renamed


def survey(plan: AxisPlan, shapes: dict[str, list[int | str]]) -> dict[str, str]:
    """Record in ``plan.fixed`` the asked axes the file fixed, and return the renaming of the
    exporter's symbols to the names asked for. A symbol that two names claim keeps the first."""
    mapping: dict[str, str] = {}
    plan.fixed = []
    for a in plan.axes:
        dims = shapes.get(a.input)
        if dims is None or a.axis >= len(dims):
            continue
        dim = dims[a.axis]
        if isinstance(dim, int):
            plan.fixed.append((a, dim))
        elif dim != a.name and dim not in mapping:
            mapping[dim] = a.name
    return mapping


def output_mapping(outputs: list[tuple[str, list[int | str]]], mapping: dict[str, str],
                   known: set[str]) -> dict[str, str]:
    """Names for the symbols left in the outputs' shapes after ``mapping``: a size the model
    computed from its data (a number of detections) is called after the first output that has
    it (``num_boxes`` for axis 0, ``boxes_dim2`` for another axis)."""
    extra: dict[str, str] = {}
    for name, dims in outputs:
        for axis, dim in enumerate(dims):
            if not isinstance(dim, str):
                continue
            for symbol in _SYMBOL.findall(dim):
                if symbol in mapping or symbol in extra or symbol in known:
                    continue
                base = re.sub(r"\W+", "_", name).strip("_") or "output"
                key, _, index = base.rpartition("_")
                if axis == 0 and (base in DETECTION_KEYS
                                  or (index.isdigit() and key in DETECTION_KEYS)):
                    # boxes, scores and labels of one image: one count, however many symbols
                    extra[symbol] = "num_detections" + (f"_{index}" if index.isdigit() else "")
                else:
                    extra[symbol] = f"num_{base}" if axis == 0 else f"{base}_dim{axis}"
    return extra


def fixed_text(fixed: list[tuple[Axis, int]]) -> str:
    """``input_ids axis 1 (seq) is fixed at 16``, for every fixed axis."""
    return "; ".join(f"{a.input} axis {a.axis} ({a.name}) is fixed at {size}"
                     for a, size in fixed)
