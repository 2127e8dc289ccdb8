"""ONNX export that can be trusted: one self-contained file, checked, and numerically verified.

``torch.onnx.export`` alone leaves the user to find out that the weights went to a separate
``.onnx.data`` file, that the batch dimension was frozen at 1, that outputs are called
``linear_2``, or that the numbers differ from torch's. Here the file is written whole (weights
inside under 2 GB), named after ``forward``'s parameters and the output's dict keys, passed
through ``onnx.checker`` with shape inference, and run in ONNX Runtime against the output of the
engine's own pass. A failure leaves nothing behind and names the operator and module at fault.
"""

from __future__ import annotations

import inspect
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from modelviz.core import engine
from modelviz.core.inputs import input_names
from modelviz.core.specs import check_tolerance
from modelviz.core.stages import Stage, quiet
from modelviz.core.tensors import flat, leading_batch
from modelviz.errors import ExportError, SpecError, chain
from modelviz.features.onnx.diagnose import captured, explain, failure, unsupported_op
from modelviz.features.onnx.result import ExportResult, check_output
from modelviz.features.onnx.verify import (
    check_file,
    default_atol,
    facts_from_file,
    facts_from_program,
    leaves,
    verify_parity,
)
from modelviz.output import commit_files, resolve_target, staging_dir

if TYPE_CHECKING:
    from modelviz.core.session import Prepared

EXPORTERS = ("auto", "dynamo", "torchscript")
#: Protobuf cannot serialise a message of 2 GiB or more; leave room for the graph itself.
INLINE_LIMIT = 2**31 - 2**26

# ----------------------------------------------------------------------------------------------
# Names and shapes of what goes in and comes out.


def leaf_names(value: Any, base: str) -> list[str]:
    """One name per tensor in ``value``: ``base`` for a lone tensor, the keys for a dict
    (``logits``, ``hidden.0``), ``base`` with indices for a tuple (``output0``, ``output1``)."""
    paths = [path for path, _ in flat(value)]
    if isinstance(value, dict):
        return paths
    if len(paths) == 1:
        return [base]
    return [base + path for path in paths]


def _input_names(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for name, value in zip(input_names(model, len(args)), args, strict=True):
        names += leaf_names(value, name)
    for key, value in kwargs.items():
        names += leaf_names(value, key)
    return names


def _widen(value: Any) -> Any:
    """Inputs with a batch of 2 made from a batch of 1: torch.export specialises a dimension
    whose example size is 1, and the batch would stay fixed at 1."""
    from torch.utils import _pytree as pytree

    return pytree.tree_map(
        lambda t: torch.cat([t, t]) if isinstance(t, torch.Tensor) else t, value)


def _dynamic_shapes(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    from torch.utils import _pytree as pytree

    batch = torch.export.Dim("batch")

    def spec(value: Any) -> Any:
        return pytree.tree_map(lambda t: {0: batch} if isinstance(t, torch.Tensor) else None,
                               value)

    if not kwargs:
        return tuple(spec(a) for a in args)
    names = input_names(model, len(args))
    return {**{n: spec(a) for n, a in zip(names, args, strict=True)},
            **{k: spec(v) for k, v in kwargs.items()}}


def _has_dynamo() -> bool:
    return "dynamo" in inspect.signature(torch.onnx.export).parameters


# ----------------------------------------------------------------------------------------------
# The export itself.


@dataclass
class _Exported:
    exporter: str
    dynamic: bool
    notes: list[str]
    program: Any = None  # the dynamo exporter's in-memory model, as saved


def _export_dynamo(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
                   target: Path, *, names_in: list[str], names_out: list[str] | None,
                   dynamic: bool, opset: int | None, external: bool) -> Any:
    example_args, example_kwargs = args, kwargs
    if dynamic and leading_batch(args, kwargs) == 1:
        example_args, example_kwargs = _widen(args), _widen(kwargs)
    options: dict[str, Any] = {"kwargs": example_kwargs or None, "dynamo": True,
                               "input_names": names_in, "verbose": False}
    if names_out is not None:
        options["output_names"] = names_out
    if opset is not None:
        options["opset_version"] = opset
    if dynamic:
        options["dynamic_shapes"] = _dynamic_shapes(model, example_args, example_kwargs)
    program = torch.onnx.export(model, example_args, None, **options)
    if program is None:  # pragma: no cover - torch versions whose export returns nothing
        raise ExportError("this torch's dynamo exporter returned no program.",
                          "Use `exporter=torchscript`, or upgrade torch.")
    if names_out is None:
        _name_outputs(program)
    program.save(str(target), external_data=external)
    return program


def _name_outputs(program: Any) -> None:
    """Output names from the model's own structure (dict keys) when no reference output is at
    hand: the exported program knows it."""
    from torch.utils import _pytree as pytree

    spec = getattr(getattr(program, "exported_program", None), "call_spec", None)
    outputs = list(program.model.graph.outputs)
    if spec is None or spec.out_spec is None or spec.out_spec.num_leaves != len(outputs):
        return
    structure = pytree.tree_unflatten([torch.empty(0)] * len(outputs), spec.out_spec)
    for value, name in zip(outputs, leaf_names(structure, "output"), strict=True):
        value.name = name


def _export_torchscript(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
                        target: Path, *, names_in: list[str], names_out: list[str] | None,
                        dynamic: bool, opset: int | None) -> None:
    options: dict[str, Any] = {"input_names": names_in, "do_constant_folding": True}
    if kwargs and "kwargs" in inspect.signature(torch.onnx.export).parameters:
        options["kwargs"] = kwargs
    elif kwargs:  # torch before 2.5 takes keyword inputs as a trailing dict
        args = (*args, kwargs)
    if names_out is not None:
        options["output_names"] = names_out
    if opset is not None:
        options["opset_version"] = opset
    if dynamic:  # outputs get their symbolic dimensions from the exporter's shape inference
        options["dynamic_axes"] = {name: {0: "batch"} for name in names_in}
    if _has_dynamo():
        options["dynamo"] = False
    torch.onnx.export(model, args, str(target), **options)


def _weight_bytes(model: nn.Module) -> int:
    seen: set[int] = set()
    total = 0
    for tensor in [*model.parameters(), *model.buffers()]:
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += tensor.numel() * tensor.element_size()
    return total


def needs_external_data(model: nn.Module) -> bool:
    """Weights too large for one protobuf message must live in a separate file."""
    return _weight_bytes(model) >= INLINE_LIMIT


def _run_exporters(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
                   target: Path, *, exporter: str, names_in: list[str],
                   names_out: list[str] | None, dynamic: bool, opset: int | None,
                   external: bool, device: torch.device) -> _Exported:
    """The chosen exporter, with the dynamo exporter's fallbacks: a static batch, then the
    TorchScript exporter (``auto`` only). Every failure is explained, none leaks a traceback."""
    notes: list[str] = []
    failures: list[tuple[str, BaseException, str]] = []
    use_dynamo = exporter in ("auto", "dynamo") and _has_dynamo()
    if exporter == "dynamo" and not _has_dynamo():
        raise ExportError(f"torch {torch.__version__} has no dynamo-based ONNX exporter.",
                          "Use `exporter=torchscript`, or upgrade torch to 2.5 or newer.")
    if use_dynamo:
        for batch_dynamic in ((True, False) if dynamic else (False,)):
            try:
                with captured() as seen:
                    program = _export_dynamo(model, args, kwargs, target, names_in=names_in,
                                             names_out=names_out, dynamic=batch_dynamic,
                                             opset=opset, external=external)
            except ExportError:
                raise
            except Exception as exc:
                failures.append(("dynamo", exc, seen.text))
                text = "\n".join(str(e) for e in chain(exc))
                if unsupported_op(text) or "data-dependent" in text:
                    break  # a static batch would not help
                continue
            if dynamic and not batch_dynamic:
                notes.append("the batch dimension is fixed: with a dynamic batch the export "
                             f"failed ({explain(failures[-1][1], failures[-1][2])})")
            return _Exported("dynamo", batch_dynamic, notes, program)
        if exporter == "dynamo":
            raise failure(model, failures, args, kwargs, device)
    try:
        with captured(every_warning=True) as seen:
            _export_torchscript(model, args, kwargs, target, names_in=names_in,
                                names_out=names_out, dynamic=dynamic, opset=opset)
    except Exception as exc:
        failures.append(("torchscript", exc, seen.text))
        raise failure(model, failures, args, kwargs, device) from None
    if failures:
        notes.append("the dynamo exporter failed (" + explain(failures[0][1], failures[0][2])
                     + "); the TorchScript exporter was used instead")
    tracer = [f"{Path(w.filename).name}:{w.lineno}" for w in seen.warnings
              if w.category.__name__ == "TracerWarning"]
    if tracer:
        notes.append("the TorchScript exporter recorded Python values as constants (at "
                     + ", ".join(dict.fromkeys(tracer)) + "): the file follows the branches "
                     "these inputs took, and may be wrong for inputs that take others")
    return _Exported("torchscript", dynamic, notes)


# ----------------------------------------------------------------------------------------------


def export(prepared: Prepared, output: str | Path, *, exporter: str = "auto",
           opset: int | None = None, dynamic_batch: bool = True, verify: bool = True,
           atol: float | None = None, external_data: bool | None = None, train: bool = False,
           reference: Any = None, stage: Stage = quiet) -> ExportResult:
    """Export a prepared model (``core.session.prepare``) to ``output``, check it and verify it.

    ``reference`` is the model's output on the prepared inputs from a pass already run (the
    report's); without it, verification runs the engine once more. ``atol``: None means 1e-4,
    or 1e-2 for a float16 model, whose own rounding is that large. ``external_data``: None
    decides by size (weights of 2 GB or more go to ``output.data``). A parity error beyond
    ``atol`` is reported in the result (``.ok``), not raised: the file is still written.
    """
    target = check_output(output)
    if exporter not in EXPORTERS:
        raise SpecError(f"unknown exporter {exporter!r}.", "Use auto, dynamo or torchscript.")
    if opset is not None and not 7 <= opset <= 30:
        raise SpecError(f"bad `opset={opset}`.", "Use an ONNX opset such as 18 or 20.")
    check_tolerance(atol)
    prepared.require_values("an ONNX file holds the weights, and the meta device has none.",
                            "Export on `device=cpu` (or cuda).")
    model: nn.Module = prepared.model
    args, kwargs = prepared.inputs.args, prepared.inputs.kwargs
    if atol is None:
        atol = default_atol(model)
    external = needs_external_data(model) if external_data is None else external_data
    dynamic = dynamic_batch and leading_batch(args, kwargs) is not None
    notes = [] if dynamic or not dynamic_batch else [
        "the batch dimension is fixed: the inputs share no leading dimension"]
    names_in = _input_names(model, args, kwargs)
    seconds: dict[str, float] = {}
    if verify and reference is None:
        started = time.perf_counter()
        with stage("Running torch for the reference output"):
            reference = engine.run(model, args, kwargs, device=prepared.device, train=train,
                                   count_flops=False, keep_output=True).output_value
        seconds["reference"] = time.perf_counter() - started
    names = leaf_names(reference, "output") if reference is not None else None

    final = resolve_target(target)  # a symbolic link's destination; never over an input
    folder = final.parent if str(final.parent) else Path()
    staging = staging_dir(final)
    try:
        staged = staging / final.name
        started = time.perf_counter()
        with stage(f"Exporting {prepared.loaded.name} to ONNX"), \
                engine.as_run(model, prepared.device, train=train) as placed:
            made = _run_exporters(placed, args, kwargs, staged, exporter=exporter,
                                  names_in=names_in, names_out=names, dynamic=dynamic,
                                  opset=opset, external=external, device=prepared.device)
        seconds["export"] = time.perf_counter() - started
        started = time.perf_counter()
        with stage("Checking the file (onnx.checker, shape inference)"):
            check_file(staged)
            facts = (facts_from_program(made.program) if made.program is not None else None) \
                or facts_from_file(staged)
        seconds["check"] = time.perf_counter() - started
        extra = sorted(p for p in staging.iterdir() if p != staged)
        result = ExportResult(
            path=target, exporter=made.exporter, opset=facts.opset, inputs=facts.inputs,
            outputs=facts.outputs, op_counts=dict(facts.op_counts.most_common()),
            node_count=sum(facts.op_counts.values()),
            file_bytes=sum(p.stat().st_size for p in staging.iterdir()),
            data_files=[folder / p.name for p in extra], dynamic_batch=made.dynamic,
            atol=atol, notes=notes + made.notes, seconds=seconds)
        if extra:
            result.notes.append(f"the weights are in {', '.join(p.name for p in extra)}: keep "
                                f"{'them' if len(extra) > 1 else 'it'} beside {target.name}"
                                + (" (an ONNX file cannot hold 2 GB or more)"
                                   if external_data is None else ""))
        if verify:
            started = time.perf_counter()
            with stage("Comparing ONNX Runtime with torch"):
                verify_parity(staged, leaves((args, kwargs)), leaves(reference), names_in, atol,
                        result, model=model, device=prepared.device, train=train, args=args,
                        kwargs=kwargs)
            seconds["verify"] = time.perf_counter() - started
        # the weights first, so the model never points at nothing
        commit_files(staging, folder, [p.name for p in [*extra, staged]])
        return result
    finally:
        shutil.rmtree(staging, ignore_errors=True)
