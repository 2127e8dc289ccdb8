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
    """Keeps every module's input and output tensors (on the cpu), in the order the calls
    finished."""

    name = "onnx_locate"

    def __init__(self, wanted: set[str]) -> None:
        self.wanted = wanted
        self.calls: list[tuple[str, list[torch.Tensor], list[torch.Tensor]]] = []

    def context(self) -> AbstractContextManager[Any]:
        return nullcontext()

    def call_end(self, call: Any, module: nn.Module, args: tuple[Any, ...],
                 kwargs: dict[str, Any], output: Any) -> None:
        if call.module in self.wanted:
            self.calls.append((call.module, _copies((args, kwargs)), _copies(output)))


def _copies(value: Any) -> list[torch.Tensor]:
    return [t.detach().to("cpu", copy=True) for t in tensors_of(value)
            if t.dtype.is_floating_point or t.dtype.is_complex]


def _module_kind(model: nn.Module, name: str) -> str:
    try:
        return type(model.get_submodule(name)).__name__
    except AttributeError:
        return "?"


def _boundaries(graph: Any, scopes: list[list[str] | None]
                ) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Per module, the values its nodes make that a node outside it (or the graph's output)
    uses, and the values its nodes take from outside it (its inputs), in the graph's order."""
    inside: dict[str, set[int]] = {}
    for index, chain in enumerate(scopes):
        for module in chain or []:
            if module:
                inside.setdefault(module, set()).add(index)
    users: dict[str, list[int]] = {}
    makers: dict[str, int] = {}
    for index, node in enumerate(graph.node):
        for name in node.input:
            users.setdefault(name, []).append(index)
        for name in node.output:
            makers[name] = index
    weights = {t.name for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    leaving: dict[str, list[str]] = {}
    entering: dict[str, list[str]] = {}
    for module, nodes in inside.items():
        out, into = [], []
        for index in sorted(nodes):
            node = graph.node[index]
            for name in node.output:
                if name and (name in outputs or any(u not in nodes for u in users.get(name, []))):
                    out.append(name)
            for name in node.input:
                if name and name not in weights and makers.get(name, -1) not in nodes and (
                        name not in makers or graph.node[makers[name]].op_type != "Constant"):
                    into.append(name)
        if out:
            leaving[module] = out
            entering[module] = list(dict.fromkeys(into))
    return leaving, entering


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
    leaving, entering = _boundaries(graph, scopes)
    leaving = {m: v for m, v in leaving.items() if m in modules}
    if not leaving:
        return "the file does not say which module made which node"
    known = {o.name for o in graph.output} | {i.name for i in graph.input}
    exposed = list(dict.fromkeys(v for m in leaving for v in [*leaving[m], *entering[m]]
                                 if v not in known))
    graph.output.extend(onnx.ValueInfoProto(name=name) for name in exposed)
    try:
        session = ort.InferenceSession(proto.SerializeToString(), session_options,
                                       providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        values = dict(zip(names, session.run(None, feeds), strict=True)) | dict(feeds)
    except Exception as exc:
        return f"ONNX Runtime could not run the file with its inner values exposed ({exc})"
    probe = _Outputs(set(leaving))
    engine.run(model, args, kwargs, device=device, train=train, count_flops=False,
               probes=(probe,))
    return _first(model, probe.calls, leaving, entering, values, atol, scopes, graph,
                  final_error)


def _error(value: Any, tensor: torch.Tensor, atol: float) -> tuple[float, float]:
    """The largest absolute error, and that error over the tensor's largest magnitude."""
    import numpy as np

    expected = numpy(tensor).astype(np.float64)
    abs_err, _ = errors(np.asarray(value).astype(np.float64), expected, atol)
    finite = np.abs(expected[np.isfinite(expected)])
    scale = float(finite.max()) if finite.size else 0.0
    return abs_err, abs_err / scale if scale > 0 else float("inf")


def _pick(candidates: list[str], values: dict[str, Any], tensor: torch.Tensor, call: int,
          calls: int) -> str | None:
    """The file's value for a module's tensor: of those with its shape, the last (the module's
    result, after any inner value that leaves it too), or, for a module called n times (a
    shared activation), the k-th of n."""
    import numpy as np

    same = [v for v in candidates if v in values and np.shape(values[v]) == tuple(tensor.shape)]
    if calls == 1 and same:
        return same[-1]
    return same[call] if len(same) == calls else None


def _inputs_differ(inputs: list[torch.Tensor], entering: list[str], values: dict[str, Any],
                   atol: float) -> float | None:
    """How far the module's input already is from torch's, when no value entering its nodes
    matches it: then the module computed right, on inputs that were already wrong."""
    import numpy as np

    worst: float | None = None
    for tensor in inputs:
        same = [v for v in entering if v in values
                and np.shape(values[v]) == tuple(tensor.shape)]
        if not same:
            continue
        best = min(_error(values[v], tensor, atol)[0] for v in same)
        if best > atol and (worst is None or best > worst):
            worst = best
    return worst


def _first(model: nn.Module, calls: Sequence[tuple[str, list[torch.Tensor], list[torch.Tensor]]],
           leaving: dict[str, list[str]], entering: dict[str, list[str]],
           values: dict[str, Any], atol: float, scopes: list[list[str] | None], graph: Any,
           final_error: float) -> Divergence | str:
    counts = Counter(module for module, _, _ in calls)
    seen: Counter[str] = Counter()
    compared = 0
    for module, inputs, outputs in calls:
        call = seen[module]
        seen[module] += 1
        worst: tuple[float, str, float] | None = None
        for tensor in outputs:
            value = _pick(leaving[module], values, tensor, call, counts[module])
            if value is None:
                continue
            abs_err, relative = _error(values[value], tensor, atol)
            if worst is None or abs_err > worst[0]:
                worst = (abs_err, value, relative)
        if worst is None:
            continue
        compared += 1
        if worst[0] <= atol:
            continue
        before = _inputs_differ(inputs, entering.get(module, []), values, atol)
        if before is not None:
            # The module's own nodes are right; the code around it, in its parent, is not.
            parent = module.rpartition(".")[0]
            return Divergence(module=parent, type=_module_kind(model, parent) if parent
                              else type(model).__name__, max_abs_error=before, value="",
                              ops={}, agreed=compared - 1, before=module)
        ops = Counter(graph.node[i].op_type for i, chain in enumerate(scopes)
                      if chain and module in chain)
        return Divergence(module=module, type=_module_kind(model, module),
                          max_abs_error=worst[0], value=worst[1], ops=dict(ops.most_common()),
                          agreed=compared - 1, max_rel_error=worst[2])
    if not compared:
        return "no module's output could be paired with a value in the file"
    # Every module agreed: what differs is computed after them, in the model's own forward.
    return Divergence(module="", type=type(model).__name__, max_abs_error=final_error,
                      value="", ops={}, agreed=compared, before="")
