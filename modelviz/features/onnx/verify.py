"""Reading an exported file back: onnx.checker, facts for the table, and parity in ONNX Runtime.

Parity runs at the export's batch and, for a dynamic batch, at batch + 1 against torch at that
batch, so that a batch size baked into a reshape is caught rather than shipped."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modelviz.core import engine
from modelviz.core.formatting import dims_text
from modelviz.core.tensors import flat, leading_batch
from modelviz.errors import ExportError, one_line
from modelviz.features.onnx.result import ExportResult, Parity, TensorInfo

# ----------------------------------------------------------------------------------------------
# Reading the file back: the checker, facts for the table, parity in ONNX Runtime.


def leaves(value: Any) -> list[torch.Tensor]:
    """The tensors of an input or output, in the order the exported file lists them."""
    return [tensor for _, tensor in flat(value)]


@dataclass
class _Facts:
    opset: int
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    op_counts: Counter[str]


def facts_from_program(program: Any) -> _Facts | None:
    """The facts from the dynamo exporter's in-memory model, which is what it saved: parsing
    the file again would cost as much as the checker (4% of a 100 MB export)."""
    try:
        try:
            import onnx_ir as ir
        except ImportError:  # onnxscript before onnx_ir was split out of it
            from onnxscript import ir  # type: ignore[no-redef]

        def info(value: Any) -> TensorInfo:
            dtype = value.dtype.numpy().name if value.dtype is not None else "?"
            dims = [d if isinstance(d, int) else (d.value or "?") for d in value.shape or []]
            return TensorInfo(value.name, dtype, dims)

        model = program.model
        counts = Counter(node.op_type
                         for node in ir.traversal.RecursiveGraphIterator(model.graph))
        opset = model.opset_imports.get("", model.opset_imports.get("ai.onnx", 0))
        return _Facts(int(opset), [info(v) for v in model.graph.inputs],
                      [info(v) for v in model.graph.outputs], counts)
    except Exception:  # an onnx_ir of another shape: read the file instead
        return None


def facts_from_file(path: Path) -> _Facts:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    counts: Counter[str] = Counter()
    _count_ops(proto.graph, counts)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    return _Facts(opset, _tensor_infos(proto.graph.input), _tensor_infos(proto.graph.output),
                  counts)


def _dim(d: Any) -> int | str:
    return d.dim_param if d.HasField("dim_param") else (d.dim_value if
                                                         d.HasField("dim_value") else "?")


def _tensor_infos(values: Any) -> list[TensorInfo]:
    import onnx

    infos = []
    for value in values:
        tensor_type = value.type.tensor_type
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type).name \
            if tensor_type.elem_type else "?"
        infos.append(TensorInfo(value.name, dtype, [_dim(d) for d in tensor_type.shape.dim]))
    return infos


def _count_ops(graph: Any, counts: Counter[str]) -> None:
    import onnx

    for node in graph.node:
        counts[node.op_type] += 1
        for attr in node.attribute:  # If/Loop/Scan bodies
            if attr.type == onnx.AttributeProto.GRAPH:
                _count_ops(attr.g, counts)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    _count_ops(sub, counts)


def check_file(path: Path) -> None:
    """onnx.checker's full check (it runs strict shape inference too). Given the path, the
    checker reads the file in C++: faster than checking a parsed model, which it would
    serialise again first."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        text = " ".join(str(exc).split())
        dtype = re.search(r"op_type:(\w+).*unsupported type: tensor\((\w+)\)", text)
        if dtype:
            raise ExportError(f"the exported file is not valid ONNX: its {dtype.group(1)} does "
                              f"not take {dtype.group(2)} ({text[:200]}).",
                              "Export in float32 or float16 (`dtype`) and cast at run "
                              "time.") from exc
        raise ExportError(f"the exported file fails onnx.checker: {text[:400]}",
                          "This is an exporter bug: try the other `exporter`.") from exc


def _numpy(tensor: torch.Tensor) -> Any:
    return tensor.detach().to("cpu").contiguous().numpy()


def _uninformative(name: str, values: Any) -> str | None:
    """Why comparing with torch's ``values`` proves nothing, or None: with no element, no
    finite one, or one value everywhere (an untrained zero-initialised head gives 0 for every
    logit, whatever the layers before it computed), any graph of the right shape would match."""
    import numpy as np

    finite = np.isfinite(values)
    if values.size == 0:
        what = "is empty"
    elif np.isnan(values).all():
        what = "is all NaN"
    elif (values.size > 1 or not finite.all()) and (values == values.flat[0]).all():
        first = float(values.flat[0])
        what = ("is all zeros (a layer initialised to zero, such as an untrained head?)"
                if first == 0 else f"is {first:g}" + (" everywhere" if values.size > 1 else ""))
    elif not finite.any():
        what = (f"is never finite ({int(np.isnan(values).sum()):,} NaN, "
                f"{int(np.isinf(values).sum()):,} infinite)")
    else:
        return None
    return f"torch's {name} {what}"


def _compare(name: str, got: Any, reference: torch.Tensor, atol: float,
             batch: int | None) -> Parity | str:
    """One output's parity, or why it cannot be compared. A position counts only where the two
    differ: equal infinities and NaN against NaN agree; a NaN or an infinity facing anything
    else is an infinite error, never the NaN that subtracting them gives."""
    import numpy as np

    expected = _numpy(reference).astype(np.float64)
    actual = np.asarray(got).astype(np.float64)
    if actual.shape != expected.shape:
        return (f"{name}: shape {dims_text(actual.shape)} in ONNX Runtime, "
                f"{dims_text(expected.shape)} in torch")
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        same = (actual == expected) | (np.isnan(actual) & np.isnan(expected))
        diff = np.where(same, 0.0, np.abs(actual - expected))
        diff = np.where(np.isnan(diff), np.inf, diff)
        rel = np.where(np.isinf(diff), np.inf, diff / np.fmax(np.abs(expected), atol))
    abs_err = float(diff.max()) if diff.size else 0.0
    rel_err = float(rel.max()) if rel.size else 0.0
    return Parity(name, abs_err, rel_err, abs_err <= atol, batch,
                  _uninformative(name, expected))


def verify_parity(path: Path, inputs: list[torch.Tensor], reference: list[torch.Tensor],
            names: list[str], atol: float, result: ExportResult, *, model: nn.Module,
            device: torch.device | None, train: bool, args: tuple[Any, ...],
            kwargs: dict[str, Any]) -> None:
    """ONNX Runtime against torch at the export's batch, then at batch + 1 on a dynamic batch;
    the model and its structured inputs are there for torch's pass at that other batch."""
    import onnxruntime as ort

    if any(t.dtype == torch.bfloat16 for t in [*inputs, *reference]):
        result.notes.append("not verified: numpy, which ONNX Runtime's Python API speaks, has no "
                            "bfloat16")
        return
    options = ort.SessionOptions()
    options.log_severity_level = 3
    # ORT's worker threads otherwise spin for a while after each run, taking the CPU from
    # whatever the user does next.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        graph_inputs = [i.name for i in session.get_inputs()]
        feeds = dict(zip(names, (_numpy(t) for t in inputs), strict=True))
        got = session.run(None, {n: feeds[n] for n in graph_inputs})
    except Exception as exc:
        result.problems.append("ONNX Runtime could not run the file: "
                               + one_line(exc))
        return
    if len(got) != len(reference):
        result.problems.append(f"the file has {len(got)} outputs, torch's forward returns "
                               f"{len(reference)}")
        return
    batch = leading_batch(tuple(inputs), {})
    result.parity = []
    for name, ours, theirs in zip(names_out(result), got, reference, strict=True):
        compared = _compare(name, ours, theirs, atol, batch)
        if isinstance(compared, str):
            result.problems.append(compared)
            continue
        if compared.uninformative:
            result.notes.append(f"{compared.uninformative}, so its parity check proves nothing")
        result.parity.append(compared)
    if result.dynamic_batch:
        _other_batch(session, graph_inputs, names, result, model=model, device=device,
                     train=train, args=args, kwargs=kwargs)


def names_out(result: ExportResult) -> list[str]:
    return [t.name for t in result.outputs]


def _other_batch(session: Any, graph_inputs: list[str], names: list[str], result: ExportResult,
                 *, model: nn.Module, device: torch.device | None, train: bool,
                 args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Run the file at batch + 1 and compare it with torch on the same inputs: a dynamic batch
    that only works at the export's batch size (one the exporter froze into a constant) would
    fail here, not in the user's serving code."""
    from torch.utils import _pytree as pytree

    bigger_args, bigger_kwargs = pytree.tree_map(
        lambda t: torch.cat([t, t[:1]]) if isinstance(t, torch.Tensor) else t, (args, kwargs))
    bigger = leaves((bigger_args, bigger_kwargs))
    batch = bigger[0].shape[0]
    feeds = dict(zip(names, (_numpy(t) for t in bigger), strict=True))
    try:
        got = session.run(None, {n: feeds[n] for n in graph_inputs})
    except Exception as exc:
        result.problems.append(f"the batch dimension is declared dynamic, but ONNX Runtime fails "
                               f"at batch {batch}: " + one_line(exc, limit=200))
        return
    for declared, value in zip(result.outputs, got, strict=True):
        if declared.shape and declared.shape[0] == "batch" and value.shape[0] != batch:
            result.problems.append(f"{declared.name} has {value.shape[0]} rows at batch {batch}, "
                                   "though the file declares them as the batch")
            return
    result.batch_checked = batch
    try:
        reference = leaves(engine.run(model, bigger_args, bigger_kwargs, device=device,
                                        train=train, count_flops=False,
                                        keep_output=True).output_value)
    except Exception as exc:  # torch's own limit, not the file's: say so and compare nothing
        result.notes.append(f"torch's forward fails at batch {batch} ("
                            + one_line(exc, limit=200) + "), so ONNX Runtime's values "
                            "there are not compared")
        return
    if len(reference) != len(got):
        result.problems.append(f"at batch {batch}, the file has {len(got)} outputs, torch's "
                               f"forward returns {len(reference)}")
        return
    _batch_parity(got, reference, batch, result)


def _batch_parity(got: list[Any], reference: list[torch.Tensor], batch: int,
                  result: ExportResult) -> None:
    """The values at batch + 1. An error there is a problem of its own only where the export's
    batch passed: that is what points at a batch size frozen in the file, and what the one-line
    failure message must then name instead of the export batch's small error."""
    passed = all(p.ok for p in result.parity or [])
    result.batch_parity = []
    for name, ours, theirs in zip(names_out(result), got, reference, strict=True):
        compared = _compare(name, ours, theirs, result.atol, batch)
        if isinstance(compared, str):
            result.problems.append(f"at batch {batch}, {compared}")
            continue
        result.batch_parity.append(compared)
        if passed and not compared.ok:
            result.problems.append(
                f"ONNX Runtime matches torch at the export's batch but differs by "
                f"{compared.max_abs_error:.3g} on {name} at batch {batch}, beyond `atol` "
                f"{result.atol:g} (did the exporter record the batch size as a constant?)")



DEFAULT_ATOL = 1e-4
HALF_ATOL = 1e-2


def default_atol(model: nn.Module) -> float:
    """1e-4, or 1e-2 for a half-precision model: float16 alone rounds at 1e-3 relative."""
    dtype = engine.model_dtype(model)
    return HALF_ATOL if dtype in (torch.float16, torch.bfloat16) else DEFAULT_ATOL
