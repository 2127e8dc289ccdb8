"""Reading an exported file back: onnx.checker, facts for the table, and running it in ONNX
Runtime quietly (the comparisons themselves are in ``compare``; which runs, in ``export``)."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modelviz.core import engine
from modelviz.core.tensors import flat
from modelviz.errors import ExportError, one_line
from modelviz.features.onnx.compare import numpy
from modelviz.features.onnx.result import TensorInfo

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


# ----------------------------------------------------------------------------------------------
# Running the file in ONNX Runtime, quietly.


def session_options() -> Any:
    """Options for every session: ONNX Runtime's own log lines (coloured, with a timestamp,
    straight to stderr) are off; its errors come back as exceptions, which modelviz words."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # fatal only: an error is raised, not printed as well
    # ORT's worker threads otherwise spin for a while after each run, taking the CPU from
    # whatever the user does next.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def open_session(path: Path) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), session_options(), providers=["CPUExecutionProvider"])


def feeds(session: Any, names: list[str], tensors: list[torch.Tensor]) -> dict[str, Any]:
    """The inputs the file takes, by name (an input torch.export found unused is not one)."""
    by_name = dict(zip(names, (numpy(t) for t in tensors), strict=True))
    return {i.name: by_name[i.name] for i in session.get_inputs()}


def run_options() -> Any:
    import onnxruntime as ort

    options = ort.RunOptions()
    options.log_severity_level = 4
    return options


_ORT_NODE = re.compile(r"while running (\w+) node\. Name:'([^']*)'")


def ort_error(exc: BaseException, limit: int = 160) -> str:
    """ONNX Runtime's error as a phrase: ``in its Split node '/Split': Cannot split using
    values in 'split' attribute`` (the node first, the status codes and the shapes' detail
    off, the message cut at its first sentence)."""
    text = " ".join(str(exc).split())
    node = _ORT_NODE.search(text)
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    text = re.sub(r"^Non-zero status code returned while running \w+ node\. Name:'[^']*' "
                  r"Status Message: ", "", text)
    sentence = re.match(r"(.{20,}?[.!])(?: |$)", text)
    text = one_line(sentence.group(1).rstrip(".") if sentence else text, limit=limit)
    return (f"in its {node.group(1)} node {node.group(2)!r}: " if node else "") + text


DEFAULT_ATOL = 1e-4
HALF_ATOL = 1e-2


def default_atol(model: nn.Module) -> float:
    """1e-4, or 1e-2 for a half-precision model: float16 alone rounds at 1e-3 relative."""
    dtype = engine.model_dtype(model)
    return HALF_ATOL if dtype in (torch.float16, torch.bfloat16) else DEFAULT_ATOL
