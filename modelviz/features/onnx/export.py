"""ONNX export that can be trusted: one self-contained file, checked, and numerically verified.

``torch.onnx.export`` alone leaves the user to find out that the weights went to a separate
``.onnx.data`` file, that the batch dimension was frozen (raft_small's at 2), that the axes are
called ``s72``, that outputs are called ``linear_2``, that the file carries the author's paths,
or that the numbers differ from torch's. Here the file is written whole (weights inside under
2 GB), its inputs named after ``forward``'s parameters and its outputs after the returned dict's
keys, the dynamic axes asked for (``axes``) checked in the file and named, the metadata cleaned
(``metadata``), the file passed through ``onnx.checker`` with shape inference, and run in ONNX
Runtime against the engine's own pass: at the export's sizes, and again with every dynamic axis
longer (batch + 1). A failure leaves nothing behind and names the operator and module at fault;
a parity failure names the first module that diverges (``locate``). Under ``dynamic=auto`` a
batch the file cannot vary (a per-image output list, an axis the exporter fixed, a file that
fails at batch + 1) is fixed instead, with a note. A language model is exported without its KV
cache unless ``with_cache`` asks for the decoder step (``cache``).
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from modelviz.core import engine
from modelviz.core.inputs import input_names
from modelviz.core.specs import check_tolerance
from modelviz.core.stages import Stage, quiet
from modelviz.core.tensors import flat, leading_batch
from modelviz.errors import ExportError, SpecError, chain, one_line
from modelviz.features.onnx import axes as dyn
from modelviz.features.onnx import cache as kv
from modelviz.features.onnx.compare import compare_all
from modelviz.features.onnx.diagnose import captured, explain, failure, unsupported_op
from modelviz.features.onnx.metadata import scrub_ir, scrub_proto
from modelviz.features.onnx.result import ExportResult, check_output, sizes_text
from modelviz.features.onnx.verify import (
    check_file,
    default_atol,
    facts_from_file,
    facts_from_program,
    feeds,
    leaves,
    open_session,
    ort_error,
    run_options,
    session_options,
)
from modelviz.output import commit_files, resolve_target, staging_dir

if TYPE_CHECKING:
    from modelviz.core.session import Prepared

EXPORTERS = ("auto", "dynamo", "torchscript")
#: Protobuf cannot serialise a message of 2 GiB or more; leave room for the graph itself.
INLINE_LIMIT = 2**31 - 2**26
#: How much longer each dynamic axis is in the second run; the batch grows by one.
GROWTH = 3

# ----------------------------------------------------------------------------------------------
# Names of what goes in and comes out.


def leaf_names(value: Any, base: str) -> list[str]:
    """One name per tensor in ``value``, none of them shaped like a module path: ``base`` for a
    lone tensor, the keys for a dict (``logits``, ``hidden_0``), ``base`` with indices for a
    tuple (``output0``, ``output1``), and the keys for a list of one dict per image
    (``boxes``, ``scores``; ``boxes_0``, ``boxes_1`` for two images)."""
    paths = [path for path, _ in flat(value)]
    if isinstance(value, dict):
        names = [p.replace(".", "_") for p in paths]
    elif len(paths) == 1:
        return [base]
    elif isinstance(value, (list, tuple)) and value and all(isinstance(v, dict) for v in value):
        names = []
        for path in paths:
            index, _, rest = path.partition(".")
            rest = rest.replace(".", "_")
            names.append(rest if len(value) == 1 else f"{rest}_{index}")
    else:
        names = [base + p.replace(".", "_") for p in paths]
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}_{seen[name] - 1}")
    return unique


def _input_names(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for name, value in zip(input_names(model, len(args)), args, strict=True):
        names += leaf_names(value, name)
    for key, value in kwargs.items():
        names += leaf_names(value, key)
    return names


def _per_item(reference: Any, batch: int | None) -> bool:
    """One output per image (torchvision's detection models: a list of dicts as long as the
    batch): the number of the file's outputs would follow the batch, which ONNX cannot do."""
    return (batch is not None and isinstance(reference, (list, tuple)) and len(reference) == batch
            and len(reference) > 0 and all(isinstance(v, dict) for v in reference))


def _with_tensors(structure: Any, tensors: list[torch.Tensor]) -> Any:
    """``structure`` with its tensors replaced, in order, by ``tensors``."""
    from torch.utils import _pytree as pytree

    found, spec = pytree.tree_flatten(structure)
    replaced = iter(tensors)
    return pytree.tree_unflatten(
        [next(replaced) if isinstance(v, torch.Tensor) else v for v in found], spec)


# ----------------------------------------------------------------------------------------------
# What is exported: the model or its decoder step, with its inputs, names and axes.


@dataclass
class _Subject:
    model: nn.Module
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    names_in: list[str]
    plan: dyn.AxisPlan
    reference: Any = None
    #: The second run's inputs; None: grow every dynamic axis (batch + 1, others + GROWTH).
    other: Callable[[], tuple[tuple[Any, ...], dict[str, Any]]] | None = None
    names_out: list[str] | None = None

    @property
    def tensors(self) -> list[torch.Tensor]:
        return leaves((self.args, self.kwargs))

    def grown(self, plan: dyn.AxisPlan) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if self.other is not None:
            return self.other()
        growth = {name: 1 if name == dyn.BATCH else GROWTH for name in plan.names}
        wider = dyn.widen(dict(zip(self.names_in, self.tensors, strict=True)), plan, growth)
        args, kwargs = _with_tensors((self.args, self.kwargs),
                                     [wider[n] for n in self.names_in])
        return args, kwargs

    def example(self, plan: dyn.AxisPlan) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The export's example: each dynamic axis at least 2 long, since torch.export fixes an
        axis whose example size is 0 or 1."""
        wider = dyn.widen(dict(zip(self.names_in, self.tensors, strict=True)), plan, {},
                          minimum=2)
        args, kwargs = _with_tensors((self.args, self.kwargs),
                                     [wider[n] for n in self.names_in])
        return args, kwargs


def _cache_subject(model: nn.Module, args: tuple[Any, ...],
                   kwargs: dict[str, Any]) -> tuple[_Subject, list[str]]:
    """The decoder step around ``model``, at the user's input_ids, after a short past."""
    named = dict(zip(input_names(model, len(args)), args, strict=False)) | kwargs
    input_ids = named.get("input_ids")
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
        raise SpecError("`with_cache` needs the model's input_ids ([batch, length] token ids).",
                        "Give them as SIZES, e.g. input_ids=int64:16.")
    if input_ids.shape[1] < 2:  # the export's example needs 2 tokens (see _Subject.example)
        input_ids = input_ids.repeat(1, 2)
    layout = kv.probe(model, input_ids)
    step = kv.CacheStep(model, layout).eval()
    inputs = kv.step_inputs(layout, input_ids)
    positions = inputs[2] if layout.positions else None
    past = tuple(inputs[3:] if layout.positions else inputs[2:])
    step_args = (inputs[0], inputs[1], positions, past)

    def other() -> tuple[tuple[Any, ...], dict[str, Any]]:
        wider = kv.grown(layout, inputs)
        grown_positions = wider[2] if layout.positions else None
        grown_past = tuple(wider[3:] if layout.positions else wider[2:])
        return (wider[0], wider[1], grown_positions, grown_past), {}

    names = layout.input_names()
    plan = layout.plan()
    ignored = [k for k in named if k not in ("input_ids", "use_cache")]
    notes = [f"exported the decoder step with its KV cache: {layout.layers} layers of "
             "past_key_values.N.key/.value in, present.N.key/.value out (optimum's and ONNX "
             "Runtime GenAI's layout); checked after a past of "
             f"{kv.PAST} positions, and at batch + 1 for one new token after "
             f"{kv.PAST + input_ids.shape[1] + kv.PAST_GROWTH}"]
    if ignored:
        notes.append(f"`with_cache` makes its own attention_mask and position_ids: "
                     f"{', '.join(ignored)} not used")
    subject = _Subject(step, step_args, {}, names, plan, other=other,
                       names_out=layout.output_names())
    return subject, notes


def _uncached(model: nn.Module, kwargs: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """A language model's inputs with ``use_cache=False`` unless the user set it: the cache is
    an object no ONNX file can hold."""
    if "use_cache" in kwargs or not kv.takes_cache(model):
        return kwargs, None
    return {**kwargs, "use_cache": False}, (
        "exported without the KV cache (use_cache=False): the file runs the whole sequence "
        "in each call; `with_cache` exports the decoder step with past key/values as inputs "
        "and outputs")


# ----------------------------------------------------------------------------------------------
# The exporters.


def _has_dynamo() -> bool:
    import inspect

    return "dynamo" in inspect.signature(torch.onnx.export).parameters


@dataclass
class _Exported:
    exporter: str
    plan: dyn.AxisPlan
    notes: list[str] = field(default_factory=list)
    program: Any = None  # the dynamo exporter's in-memory model, as saved


def _export_dynamo(subject: _Subject, target: Path, plan: dyn.AxisPlan, *,
                   names_out: list[str] | None, opset: int | None, external: bool) -> Any:
    args, kwargs = subject.example(plan)
    options: dict[str, Any] = {"kwargs": kwargs or None, "dynamo": True,
                               "input_names": subject.names_in, "verbose": False}
    if names_out is not None:
        options["output_names"] = names_out
    if opset is not None:
        options["opset_version"] = opset
    if plan.axes:
        structure: Any = args
        if kwargs:
            structure = {**dict(zip(input_names(subject.model, len(args)), args, strict=True)),
                         **kwargs}
        options["dynamic_shapes"] = dyn.torch_dynamic_shapes(structure, subject.names_in, plan)
    program = torch.onnx.export(subject.model, args, None, **options)
    if program is None:  # pragma: no cover - torch versions whose export returns nothing
        raise ExportError("this torch's dynamo exporter returned no program.",
                          "Use `exporter=torchscript`, or upgrade torch.")
    if names_out is None:
        _name_outputs(program)
    _finish_ir(program.model, plan)
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


def _dims(shape: Any) -> list[int | str]:
    return [d if isinstance(d, int) else str(getattr(d, "value", d) or "?")
            for d in (shape or [])]


def _finish_ir(model: Any, plan: dyn.AxisPlan) -> None:
    """The dynamo exporter's model before it is saved: the asked axes looked up (``plan.fixed``)
    and named, the other symbols named after their outputs, the metadata cleaned."""
    try:
        import onnx_ir as ir
    except ImportError:  # onnxscript before onnx_ir was split out of it
        from onnxscript import ir  # type: ignore[no-redef]

    graph = model.graph
    mapping = dyn.survey(plan, {v.name: _dims(v.shape) for v in graph.inputs})
    mapping |= dyn.output_mapping(
        [(v.name, [dyn.rename_symbols(d, mapping) if isinstance(d, str) else d
                   for d in _dims(v.shape)]) for v in graph.outputs],
        mapping, set(plan.names))
    values = [*graph.inputs, *graph.outputs,
              *(out for node in ir.traversal.RecursiveGraphIterator(graph)
                for out in node.outputs)]
    for value in values:
        if value.shape is None:
            continue
        # An unknown dimension (None) stays unknown: naming it would tell ONNX Runtime that
        # all such dimensions are equal, and its memory planner would share their buffers.
        dims = [d if isinstance(d, int) or getattr(d, "value", None) is None
                else ir.SymbolicDim(dyn.rename_symbols(str(d.value), mapping))
                for d in value.shape]
        value.shape = ir.Shape(dims)
    scrub_ir(model)


def _export_torchscript(subject: _Subject, target: Path, plan: dyn.AxisPlan, *,
                        names_out: list[str] | None, opset: int | None) -> None:
    import inspect

    args, kwargs = subject.args, subject.kwargs
    options: dict[str, Any] = {"input_names": subject.names_in, "do_constant_folding": True}
    if kwargs and "kwargs" in inspect.signature(torch.onnx.export).parameters:
        options["kwargs"] = kwargs
    elif kwargs:  # torch before 2.5 takes keyword inputs as a trailing dict
        args = (*args, kwargs)
    if names_out is not None:
        options["output_names"] = names_out
    if opset is not None:
        options["opset_version"] = opset
    if plan.axes:
        options["dynamic_axes"] = plan.by_input()
    if _has_dynamo():
        options["dynamo"] = False
    torch.onnx.export(subject.model, args, str(target), **options)
    _finish_proto(target, plan)


def _finish_proto(target: Path, plan: dyn.AxisPlan) -> None:
    """The TorchScript exporter's file, read back without its weights: output axes the
    exporter named after its own nodes (``Concatoutput0.boxes_dim_0``) named after their
    outputs instead, and the metadata cleaned."""
    import onnx

    proto = onnx.load(str(target), load_external_data=False)
    known = set(plan.names)
    outputs = [(value.name, [d.dim_param if d.HasField("dim_param") else d.dim_value
                             for d in value.type.tensor_type.shape.dim])
               for value in proto.graph.output]
    # Each whole name is one symbol here (it may hold dots), so they are mapped whole.
    whole = {dim: f"sym{i}" for i, dim in enumerate(
        dict.fromkeys(d for _, dims in outputs for d in dims
                      if isinstance(d, str) and d and d not in known))}
    named = dyn.output_mapping([(n, [whole.get(d, d) if isinstance(d, str) else d
                                     for d in dims]) for n, dims in outputs], {}, known)
    for value in proto.graph.output:
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") and dim.dim_param in whole:
                dim.dim_param = named.get(whole[dim.dim_param], dim.dim_param)
    scrub_proto(proto)
    onnx.save(proto, str(target))


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


#: A report keeps weights of this size or more out of model.onnx, in model.onnx.data beside it,
#: which its page links: the graph stays small enough to open and upload, and a CI job can
#: leave the weights out of its artifact (resnet50's 98 MB stay inline, vit_b_16's 330 MB not).
REPORT_LINK_LIMIT = 100 * 2**20


def report_links_weights(model: nn.Module) -> bool:
    return _weight_bytes(model) >= REPORT_LINK_LIMIT


def _clear(staging: Path) -> None:
    for path in staging.iterdir():
        path.unlink()


def _run_exporters(subject: _Subject, target: Path, plan: dyn.AxisPlan, *, exporter: str,
                   names_out: list[str] | None, opset: int | None, external: bool,
                   device: torch.device) -> _Exported:
    """The chosen exporter, with the dynamo exporter's fallbacks: fixed axes where only the
    default batch was dynamic, then the TorchScript exporter (``auto`` only). Every failure
    is explained, none leaks a traceback."""
    notes: list[str] = []
    failures: list[tuple[str, BaseException, str]] = []
    use_dynamo = exporter in ("auto", "dynamo") and _has_dynamo()
    if exporter == "dynamo" and not _has_dynamo():
        raise ExportError(f"torch {torch.__version__} has no dynamo-based ONNX exporter.",
                          "Use `exporter=torchscript`, or upgrade torch to 2.5 or newer.")
    required = any(a.required for a in plan.axes)
    if use_dynamo:
        plans = [plan] if required or not plan.axes else [plan, plan.without_batch()]
        for tried in plans:
            try:
                with captured() as seen:
                    program = _export_dynamo(subject, target, tried, names_out=names_out,
                                             opset=opset, external=external)
            except ExportError:
                raise
            except Exception as exc:
                _clear(target.parent)
                failures.append(("dynamo", exc, seen.text))
                text = "\n".join(str(e) for e in chain(exc))
                if "Cache'> in output" in text:  # no exporter can write a cache object
                    raise failure(subject.model, failures, subject.args, subject.kwargs,
                                  device) from None
                if unsupported_op(text) or "data-dependent" in text:
                    break  # fixed axes would not help
                continue
            if tried is not plan:
                notes.append("the batch dimension is fixed: with a dynamic batch the export "
                             f"failed ({explain(failures[-1][1], failures[-1][2])})")
            return _Exported("dynamo", tried, notes, program)
        if exporter == "dynamo" or subject.other is not None:  # the step needs dynamo
            raise failure(subject.model, failures, subject.args, subject.kwargs, device)
    try:
        with captured(every_warning=True) as seen:
            _export_torchscript(subject, target, plan, names_out=names_out, opset=opset)
    except Exception as exc:
        _clear(target.parent)
        failures.append(("torchscript", exc, seen.text))
        raise failure(subject.model, failures, subject.args, subject.kwargs, device) from None
    if failures:
        notes.append("the dynamo exporter failed (" + explain(failures[0][1], failures[0][2])
                     + "); the TorchScript exporter was used instead")
    tracer = [f"{Path(w.filename).name}:{w.lineno}" for w in seen.warnings
              if w.category.__name__ == "TracerWarning"]
    if tracer:
        notes.append("the TorchScript exporter recorded Python values as constants (at "
                     + ", ".join(dict.fromkeys(tracer)) + "): the file follows the branches "
                     "these inputs took, and may be wrong for inputs that take others")
    return _Exported("torchscript", plan, notes)


# ----------------------------------------------------------------------------------------------
# Verification: ONNX Runtime against torch, at the export's sizes and with longer axes.


@dataclass
class _Verdict:
    second_failed: str | None = None  # why the run with longer axes failed, where it did
    #: The outputs' shapes in the two runs, and the dynamic axes' sizes there.
    shapes: list[tuple[int, ...]] = field(default_factory=list)
    second_shapes: list[tuple[int, ...]] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)


def _verify(staged: Path, subject: _Subject, plan: dyn.AxisPlan, result: ExportResult, *,
            device: torch.device, train: bool, stage: Stage) -> _Verdict:
    verdict = _Verdict()
    reference = leaves(subject.reference)
    paths = [p for p, _ in flat(subject.reference)]
    names = [t.name for t in result.outputs]
    tensors = subject.tensors
    if any(t.dtype == torch.bfloat16 for t in [*tensors, *reference]):
        result.notes.append("not verified: numpy, which ONNX Runtime's Python API speaks, has no "
                            "bfloat16")
        return verdict
    try:
        session = open_session(staged)
        got = session.run(None, feeds(session, subject.names_in, tensors), run_options())
    except Exception as exc:
        result.problems.append("ONNX Runtime could not run the file, " + ort_error(exc, 300))
        return verdict
    if len(got) != len(reference):
        result.problems.append(f"the file has {len(got)} outputs, torch's forward returns "
                               f"{len(reference)}")
        return verdict
    by_name = dict(zip(subject.names_in, tensors, strict=True))
    sizes = dyn.dim_sizes(by_name, plan) or None
    verdict.shapes = [tuple(g.shape) for g in got]
    verdict.sizes = sizes or {}
    batch = leading_batch(tuple(tensors), {})
    result.parity, problems = compare_all(names, paths, got, reference, result.atol, batch,
                                          sizes, result.notes)
    result.problems += problems
    for check in result.parity:
        if check.uninformative:
            result.notes.append(f"{check.uninformative}, so its parity check proves nothing")
    if plan.axes:
        with stage("Running ONNX Runtime and torch with longer dynamic axes"):
            verdict.second_failed = _second_run(session, subject, plan, result, names, paths,
                                                verdict, device=device, train=train)
    return verdict


def _second_run(session: Any, subject: _Subject, plan: dyn.AxisPlan, result: ExportResult,
                names: list[str], paths: list[str], verdict: _Verdict, *,
                device: torch.device, train: bool) -> str | None:
    """The file run with every dynamic axis longer, against torch on the same inputs: an axis
    that only works at the export's size (one the exporter froze into a constant) fails here,
    not in the user's serving code. Returns why it failed, if it did."""
    args, kwargs = subject.grown(plan)
    tensors = leaves((args, kwargs))
    sizes = dyn.dim_sizes(dict(zip(subject.names_in, tensors, strict=True)), plan)
    batch = leading_batch(tuple(tensors), {})
    where = sizes_text(sizes)
    declared = ", ".join(plan.names)
    try:
        got = session.run(None, feeds(session, subject.names_in, tensors), run_options())
    except Exception as exc:
        why = f"ONNX Runtime fails at {where}, {ort_error(exc)}"
        result.problems.append(f"{declared} {'is' if len(plan.names) == 1 else 'are'} "
                               f"declared dynamic, but {why}")
        return why
    for info, value in zip(result.outputs, got, strict=True):
        for axis, dim in enumerate(info.shape):
            if isinstance(dim, str) and dim in sizes and value.shape[axis] != sizes[dim]:
                why = (f"at {where}, {info.name} has {value.shape[axis]} along axis {axis}, "
                       f"though the file declares it as {dim}")
                result.problems.append(why)
                return why
    result.batch_checked = batch
    result.sizes_checked = sizes
    verdict.second_shapes = [tuple(g.shape) for g in got]
    try:
        reference = engine.run(subject.model, args, kwargs, device=device, train=train,
                               count_flops=False, keep_output=True).output_value
    except Exception as exc:  # torch's own limit, not the file's: say so and compare nothing
        result.notes.append(f"torch's forward fails at {where} ({one_line(exc, limit=200)}), "
                            "so ONNX Runtime's values there are not compared")
        return None
    expected = leaves(reference)
    if len(expected) != len(got):
        why = (f"at {where}, the file has {len(got)} outputs, torch's forward returns "
               f"{len(expected)}")
        result.problems.append(why)
        return why
    passed = all(p.ok for p in result.parity or [])
    result.batch_parity, problems = compare_all(names, [p for p, _ in flat(reference)], got,
                                                expected, result.atol, batch, sizes,
                                                result.notes)
    result.problems += [f"at {where}, {p}" for p in problems]
    worst = max((p for p in result.batch_parity if not p.ok),
                key=lambda p: p.max_abs_error, default=None)
    if passed and worst is not None:
        why = (f"ONNX Runtime matches torch at the export's sizes but differs by "
               f"{worst.max_abs_error:.3g} on {worst.output} at {where}, beyond `atol` "
               f"{result.atol:g} (the exporter recorded "
               + ("the batch size" if plan.names == [dyn.BATCH] else "a size")
               + " as a constant)")
        result.problems.append(why)
        return why
    return f"at {where}, {problems[0]}" if problems and passed else None


def _name_observed_axes(staged: Path, result: ExportResult, verdict: _Verdict) -> None:
    """The TorchScript exporter names an output axis after its own node even where it is the
    batch (T5's ``Mullast_hidden_state_dim_0``). An output axis whose size followed one
    dynamic axis's exactly in both runs, while that axis changed, is named after it."""
    import onnx

    renames: dict[tuple[int, int], str] = {}
    checked = result.sizes_checked or {}
    for index, (info, first, second) in enumerate(zip(result.outputs, verdict.shapes,
                                                      verdict.second_shapes, strict=True)):
        for axis, dim in enumerate(info.shape):
            if not isinstance(dim, str) or dim in verdict.sizes or axis >= len(first):
                continue
            fits = [name for name, size in verdict.sizes.items()
                    if checked.get(name, size) != size and first[axis] == size
                    and second[axis] == checked[name]]
            if len(fits) == 1:
                renames[index, axis] = fits[0]
    if not renames:
        return
    proto = onnx.load(str(staged), load_external_data=False)
    for (index, axis), name in renames.items():
        proto.graph.output[index].type.tensor_type.shape.dim[axis].dim_param = name
        result.outputs[index].shape[axis] = name
    onnx.save(proto, str(staged))


def _locate(staged: Path, subject: _Subject, result: ExportResult, *, device: torch.device,
            train: bool) -> None:
    """Name the first module that diverges, and what to do about it."""
    from modelviz.features.onnx.locate import locate

    worst = result.worst
    if worst is None:
        return
    try:
        session = open_session(staged)
        inputs = feeds(session, subject.names_in, subject.tensors)
        found = locate(staged, subject.model, subject.args, subject.kwargs, inputs,
                       atol=result.atol, device=device, train=train,
                       session_options=session_options(), final_error=worst.max_abs_error)
    except Exception as exc:
        found = f"looking for it failed ({one_line(exc, limit=160)})"
    if isinstance(found, str):
        result.divergence_unknown = found
        return
    result.divergence = found
    if found.rounding:
        result.advice = ("The differences start as float rounding: raise `atol` (1e-4 suits "
                         "float32).")
    elif found.before is None:
        result.advice = (f"Look at how {found.module} ({found.type}) is translated to ONNX (a "
                         "custom symbolic or torch.onnx.ops call, an operator the exporter "
                         "decomposes), or raise `atol` if the difference is acceptable.")
    else:
        result.advice = (f"Look at the code of {found.type}.forward between its modules, or "
                         "raise `atol` if the difference is acceptable.")


# ----------------------------------------------------------------------------------------------


def export(prepared: Prepared, output: str | Path, *, exporter: str = "auto",
           opset: int | None = None, dynamic_batch: bool = True,
           dynamic: str | list[str] | tuple[str, ...] | dyn.DynamicSpec | None = None,
           with_cache: bool = False, optimize: bool = False, verify: bool = True,
           atol: float | None = None, external_data: bool | None = None, train: bool = False,
           reference: Any = None, stage: Stage = quiet) -> ExportResult:
    """Export a prepared model (``core.session.prepare``) to ``output``, check it and verify it.

    ``dynamic``: which axes may vary (``axes``: auto, batch, seq, none, INPUT:AXIS=NAME);
    ``dynamic_batch=False`` is ``static``, a fixed batch. ``with_cache``: a language model's
    decoder step with its KV cache as inputs and outputs (``cache``). ``optimize``: onnxslim's
    passes, kept only if the result still matches torch (``optimize``). ``reference`` is the
    model's output on the prepared inputs from a pass already run (the report's); without it,
    verification runs the engine once more. ``atol``: None means 1e-4, or 1e-2 for a float16
    model, whose own rounding is that large. ``external_data``: None decides by size (weights
    of 2 GB or more go to ``output.data``). A parity error beyond ``atol`` is reported in the
    result (``.ok``), not raised: the file is still written.
    """
    target = check_output(output)
    if exporter not in EXPORTERS:
        raise SpecError(f"unknown exporter {exporter!r}.", "Use auto, dynamo or torchscript.")
    if opset is not None and not 7 <= opset <= 30:
        raise SpecError(f"bad `opset={opset}`.", "Use an ONNX opset such as 18 or 20.")
    check_tolerance(atol)
    spec = dynamic if isinstance(dynamic, dyn.DynamicSpec) else dyn.parse_dynamic(
        dynamic, static=not dynamic_batch)
    prepared.require_values("an ONNX file holds the weights, and the meta device has none.",
                            "Export on `device=cpu` (or cuda).")
    model: nn.Module = prepared.model
    args, kwargs = prepared.inputs.args, prepared.inputs.kwargs
    if atol is None:
        atol = default_atol(model)
    external = needs_external_data(model) if external_data is None else external_data
    notes: list[str] = []
    batch = leading_batch(args, kwargs)
    if with_cache:
        subject, cache_notes = _cache_subject(model, args, kwargs)
        notes += cache_notes
        reference = None
    else:
        kwargs, cache_note = _uncached(model, kwargs)
        if cache_note:
            notes.append(cache_note)
            reference = None  # the pass already run returned the cache
        names_in = _input_names(model, args, kwargs)
        subject = _Subject(model, args, kwargs, names_in, dyn.AxisPlan())
    seconds: dict[str, float] = {}
    if verify and reference is None:
        started = time.perf_counter()
        with stage("Running torch for the reference output"):
            reference = engine.run(subject.model, subject.args, subject.kwargs,
                                   device=prepared.device, train=train, count_flops=False,
                                   keep_output=True).output_value
        seconds["reference"] = time.perf_counter() - started
    subject.reference = reference
    if subject.names_out is None and reference is not None:
        subject.names_out = leaf_names(reference, "output")
    if not with_cache:
        if spec.batch != "off" and _per_item(reference, batch):
            if spec.batch == "on":
                raise ExportError(f"the model returns one output per input ({batch}), which an "
                                  "ONNX file cannot follow when the batch varies.",
                                  "Export with a fixed batch (`dynamic=none`).")
            spec = dyn.DynamicSpec("off", spec.seq, spec.axes)
            notes.append(f"the batch dimension is fixed at {batch}: the model returns one "
                         "output per image (a list of dicts), and the number of a file's "
                         "outputs cannot follow the batch")
        elif spec.batch == "auto" and batch is None:
            notes.append("the batch dimension is fixed: the inputs share no leading dimension")
        subject.plan = dyn.plan_axes(spec, subject.names_in, subject.tensors, batch)

    final = resolve_target(target)  # a symbolic link's destination; never over an input
    folder = final.parent if str(final.parent) else Path()
    staging = staging_dir(final)
    try:
        staged = staging / final.name
        plan = subject.plan
        for _attempt in range(3):
            result, made = _attempt_export(subject, plan, staged, target, folder,
                                           exporter=exporter, opset=opset, external=external,
                                           atol=atol, external_data=external_data,
                                           notes=notes, seconds=seconds, prepared=prepared,
                                           train=train, stage=stage)
            if made.plan.fixed:
                fixed = dyn.fixed_text(made.plan.fixed)
                if any(a.required for a, _ in made.plan.fixed):
                    raise ExportError(f"the exporter fixed what `dynamic` asked to vary: "
                                      f"{fixed}.", "Leave that axis fixed (drop it from "
                                      "`dynamic`), or change the model where it reads the "
                                      "size (`debug` shows the exporter's log).")
                notes.append(f"the batch dimension is fixed at {batch}: the exporter could not "
                             f"keep it dynamic ({fixed} in its file)")
                plan = made.plan.without_batch()
                _clear(staging)
                continue
            if not verify:
                break
            started = time.perf_counter()
            with stage("Comparing ONNX Runtime with torch"):
                verdict = _verify(staged, subject, made.plan, result, device=prepared.device,
                                  train=train, stage=stage)
            seconds["verify"] = seconds.get("verify", 0.0) + time.perf_counter() - started
            auto_batch = made.plan.batch and not any(
                a.required for a in made.plan.axes if a.name == dyn.BATCH)
            if verdict.second_failed and auto_batch:
                notes.append(f"the batch dimension is fixed at {batch}: with it dynamic, "
                             f"{verdict.second_failed}")
                plan = made.plan.without_batch()
                _clear(staging)
                continue
            if made.exporter == "torchscript" and verdict.second_shapes:
                _name_observed_axes(staged, result, verdict)
            if verdict.second_failed:
                result.advice = (
                    "Export with a fixed batch (`static`), or with `dynamic=auto`, which fixes "
                    "it when the file needs it." if made.plan.names == [dyn.BATCH] else
                    "Leave the axes the file cannot vary out of `dynamic` (`static` fixes the "
                    "batch).")
            if result.worst is not None:
                with stage("Looking for the first module that differs"):
                    _locate(staged, subject, result, device=prepared.device, train=train)
            break
        else:  # pragma: no cover - three attempts always end in a break or a raise
            raise ExportError("the export did not settle on a file.", "Run with `debug`.")
        if optimize:
            from modelviz.features.onnx.optimize import optimize_file

            def reverify() -> None:
                _verify(staged, subject, made.plan, result, device=prepared.device,
                        train=train, stage=quiet)

            started = time.perf_counter()
            with stage("Optimising the graph (onnxslim)"):
                optimize_file(staged, result, reverify if verify else None)
            seconds["optimize"] = time.perf_counter() - started
        extra = sorted(p for p in staging.iterdir() if p != staged)
        result.data_files = [folder / p.name for p in extra]
        result.data_bytes = sum(p.stat().st_size for p in extra)
        result.file_bytes = sum(p.stat().st_size for p in staging.iterdir())
        if extra:
            result.notes.append(f"the weights are in {', '.join(p.name for p in extra)}: keep "
                                f"{'them' if len(extra) > 1 else 'it'} beside {target.name}"
                                + (" (an ONNX file cannot hold 2 GB or more)"
                                   if external_data is None else ""))
        # the weights first, so the model never points at nothing
        commit_files(staging, folder, [p.name for p in [*extra, staged]])
        return result
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _attempt_export(subject: _Subject, plan: dyn.AxisPlan, staged: Path, target: Path,
                    folder: Path, *, exporter: str, opset: int | None, external: bool,
                    atol: float, external_data: bool | None, notes: list[str],
                    seconds: dict[str, float], prepared: Prepared, train: bool,
                    stage: Stage) -> tuple[ExportResult, _Exported]:
    """One export with ``plan``'s dynamic axes, checked, and its facts read."""
    started = time.perf_counter()
    with stage(f"Exporting {prepared.loaded.name} to ONNX"), \
            engine.as_run(subject.model, prepared.device, train=train) as placed:
        made = _run_exporters(dataclasses.replace(subject, model=placed), staged, plan,
                              exporter=exporter, names_out=subject.names_out, opset=opset,
                              external=external, device=prepared.device)
    seconds["export"] = seconds.get("export", 0.0) + time.perf_counter() - started
    if made.plan.fixed:
        return ExportResult(path=target, exporter=made.exporter, opset=0, inputs=[], outputs=[],
                            op_counts={}, node_count=0, file_bytes=0), made
    started = time.perf_counter()
    with stage("Checking the file (onnx.checker, shape inference)"):
        check_file(staged)
        facts = (facts_from_program(made.program) if made.program is not None else None) \
            or facts_from_file(staged)
    seconds["check"] = time.perf_counter() - started
    result = ExportResult(
        path=target, exporter=made.exporter, opset=facts.opset, inputs=facts.inputs,
        outputs=facts.outputs, op_counts=dict(facts.op_counts.most_common()),
        node_count=sum(facts.op_counts.values()), file_bytes=0,
        dynamic_batch=made.plan.batch, atol=atol, notes=[*notes, *made.notes], seconds=seconds,
        dynamic_axes=made.plan.to_dict(), with_cache=subject.other is not None)
    return result, made
