"""When ONNX Runtime and torch disagree, the first module where they part.

A parity failure on the last output says that something is wrong, not where. Both exporters
leave the module that made each node in the file: the dynamo exporter in node metadata
(``pkg.torch.onnx.name_scopes``: ``['', 'h.0', 'h.0.attn', 'view_18']``), the TorchScript
exporter in node names (``/h.0/attn/c_proj/Gemm``). So the values that leave a module's nodes
are that module's outputs in the file. ONNX Runtime runs the file once more with those values
exposed as outputs, torch runs once with every module's output kept, and the two are compared
module by module in the order torch finished them: the first module whose output differs by
more than ``atol`` is where the translation went wrong (the ones that finished before it,
which fed it, agreed). A module whose output has no value of the same shape in the file
(fused away, or computed inside a bigger node) is skipped.
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modelviz.core import engine
from modelviz.core.tensors import tensors as tensors_of
from modelviz.features.onnx.compare import errors, numpy
from modelviz.features.onnx.result import Divergence

SCOPES_KEY = "pkg.torch.onnx.name_scopes"


def _dynamo_scope(node: Any) -> list[str] | None:
    for prop in node.metadata_props:
        if prop.key == SCOPES_KEY:
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return None
            if isinstance(scopes, list) and scopes:
                return [str(s) for s in scopes[:-1]]  # the last one is the FX node's name
    return None


def _torchscript_scope(node: Any, modules: set[str]) -> list[str] | None:
    """``/layers.0/lin/Gemm`` -> ['', 'layers.0', 'layers.0.lin']: each part is a module's name
    relative to the one before, or (``/head/head.0/``) its full name."""
    if not node.name.startswith("/"):
        return None
    parts = node.name.strip("/").split("/")[:-1]
    chain = [""]
    for part in parts:
        here = chain[-1]
        for candidate in (f"{here}.{part}" if here else part, part):
            if candidate in modules:
                chain.append(candidate)
                break
        else:
            return chain
    return chain


class _Outputs(engine.Probe):
    """Keeps every module's output tensors (on the cpu), in the order the calls finished."""

    name = "onnx_locate"

    def __init__(self, wanted: set[str]) -> None:
        self.wanted = wanted
        self.calls: list[tuple[str, list[torch.Tensor]]] = []

    def context(self) -> AbstractContextManager[Any]:
        return nullcontext()

    def call_end(self, call: Any, module: nn.Module, args: tuple[Any, ...],
                 kwargs: dict[str, Any], output: Any) -> None:
        if call.module in self.wanted:
            self.calls.append((call.module, [t.detach().to("cpu", copy=True)
                                             for t in tensors_of(output)]))


def _module_kind(model: nn.Module, name: str) -> str:
    try:
        return type(model.get_submodule(name)).__name__
    except AttributeError:
        return "?"


def _boundaries(graph: Any, scopes: list[list[str] | None]) -> dict[str, list[str]]:
    """Per module, the values its nodes make that a node outside it (or the graph's output)
    uses, in the graph's order."""
    inside: dict[str, set[int]] = {}
    for index, chain in enumerate(scopes):
        for module in chain or []:
            if module:
                inside.setdefault(module, set()).add(index)
    users: dict[str, list[int]] = {}
    for index, node in enumerate(graph.node):
        for name in node.input:
            users.setdefault(name, []).append(index)
    outputs = {o.name for o in graph.output}
    found: dict[str, list[str]] = {}
    for module, nodes in inside.items():
        values = []
        for index in sorted(nodes):
            for name in graph.node[index].output:
                if name and (name in outputs or any(u not in nodes for u in users.get(name, []))):
                    values.append(name)
        if values:
            found[module] = values
    return found


def locate(path: Path, model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
           feeds: dict[str, Any], *, atol: float, device: torch.device | None, train: bool,
           session_options: Any, final_error: float) -> Divergence | str:
    """The first module whose output differs beyond ``atol``, or why none can be named."""
    import onnx
    import onnxruntime as ort

    proto = onnx.load(str(path))
    graph = proto.graph
    modules = {name for name, _ in model.named_modules()}
    scopes = [_dynamo_scope(node) or _torchscript_scope(node, modules) for node in graph.node]
    boundaries = _boundaries(graph, scopes)
    boundaries = {m: v for m, v in boundaries.items() if m in modules}
    if not boundaries:
        return "the file does not say which module made which node"
    known = {o.name for o in graph.output}
    exposed = list(dict.fromkeys(v for values in boundaries.values() for v in values
                                 if v not in known))
    graph.output.extend(onnx.ValueInfoProto(name=name) for name in exposed)
    try:
        session = ort.InferenceSession(proto.SerializeToString(), session_options,
                                       providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        values = dict(zip(names, session.run(None, feeds), strict=True))
    except Exception as exc:
        return f"ONNX Runtime could not run the file with its inner values exposed ({exc})"
    probe = _Outputs(set(boundaries))
    engine.run(model, args, kwargs, device=device, train=train, count_flops=False,
               probes=(probe,))
    return _first(model, probe.calls, boundaries, values, atol, scopes, graph, final_error)


def _first(model: nn.Module, calls: Sequence[tuple[str, list[torch.Tensor]]],
           boundaries: dict[str, list[str]], values: dict[str, Any], atol: float,
           scopes: list[list[str] | None], graph: Any, final_error: float) -> Divergence | str:
    import numpy as np

    counts = Counter(module for module, _ in calls)
    seen: Counter[str] = Counter()
    compared = 0
    for module, outputs in calls:
        call = seen[module]
        seen[module] += 1
        worst: tuple[float, str, float] | None = None
        for tensor in outputs:
            if not (tensor.dtype.is_floating_point or tensor.dtype.is_complex):
                continue
            same = [v for v in boundaries[module]
                    if v in values and np.shape(values[v]) == tuple(tensor.shape)]
            # One call: the last such value (the module's result, after any inner one that
            # leaves it too); a module called n times (a shared activation): the k-th of n.
            if counts[module] == 1 and same:
                value = same[-1]
            elif len(same) == counts[module]:
                value = same[call]
            else:
                continue
            actual = np.asarray(values[value]).astype(np.float64)
            expected = numpy(tensor).astype(np.float64)
            abs_err, _ = errors(actual, expected, atol)
            finite = np.abs(expected[np.isfinite(expected)])
            scale = float(finite.max()) if finite.size else 0.0
            if worst is None or abs_err > worst[0]:  # relative to the output's largest value
                worst = (abs_err, value, abs_err / scale if scale > 0 else float("inf"))
        if worst is None:
            continue
        compared += 1
        if worst[0] > atol:
            ops = Counter(graph.node[i].op_type for i, chain in enumerate(scopes)
                          if chain and module in chain)
            return Divergence(module=module, type=_module_kind(model, module),
                              max_abs_error=worst[0], value=worst[1],
                              ops=dict(ops.most_common()), agreed=compared - 1,
                              max_rel_error=worst[2])
    if not compared:
        return "no module's output could be paired with a value in the file"
    # Every module agreed: what differs is computed between them, in the model's own forward.
    return Divergence(module="", type=type(model).__name__, max_abs_error=final_error,
                      value="", ops={}, agreed=compared)
