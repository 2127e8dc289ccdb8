"""What the engine records: one ``ModuleRecord`` per module, one ``CallRecord`` per call.

Records hold shapes, dtypes and counts, never tensors, so a trace of a 70-billion-parameter model
on the meta device is a few hundred kilobytes. Every command reads these records; nothing is
measured twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Union

import torch


@dataclass(frozen=True, slots=True)
class TensorMeta:
    shape: tuple[int, ...]
    dtype: str
    nbytes: int

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


#: A nested structure of tensor metadata, mirroring what a module took or returned.
#: ``None`` stands for a value that is not a tensor (an int, a string, ``None`` itself).
Tree = Union[TensorMeta, tuple["Tree", ...], list["Tree"], dict[str, "Tree"], None]  # noqa: UP007 - a recursive alias needs Union

_DTYPE_NAMES: dict[torch.dtype, str] = {}


def dtype_name(dtype: torch.dtype) -> str:
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = str(dtype).removeprefix("torch.")
    return name


def describe(value: Any) -> Tree:
    """Capture the metadata of every tensor inside ``value``; called on the hot path."""
    if isinstance(value, torch.Tensor):
        return TensorMeta(tuple(value.shape), dtype_name(value.dtype), value.nbytes)
    if isinstance(value, tuple):
        return tuple(describe(v) for v in value)
    if isinstance(value, list):
        return [describe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): describe(v) for k, v in value.items()}
    return None


def describer() -> Callable[[Any], Tree]:
    """``describe`` for one pass: a TensorMeta is immutable and a pass meets the same few
    shapes thousands of times (every block of a stage gives the same), so each (shape, dtype)
    of a strided tensor, whose bytes follow from them, is described once and shared."""
    metas: dict[tuple[Any, ...], TensorMeta] = {}
    strided = torch.strided

    def cached(value: Any) -> Tree:
        if isinstance(value, torch.Tensor):
            if value.layout is not strided:  # sparse: its bytes depend on what it holds
                return describe(value)
            key = (value.shape, value.dtype)
            meta = metas.get(key)
            if meta is None:
                meta = metas[key] = TensorMeta(tuple(key[0]), dtype_name(key[1]), value.nbytes)
            return meta
        if isinstance(value, tuple):
            return tuple([cached(v) for v in value])
        if isinstance(value, list):
            return [cached(v) for v in value]
        if isinstance(value, dict):
            return {str(k): cached(v) for k, v in value.items()}
        return None

    return cached


def iter_metas(tree: Tree) -> Iterator[TensorMeta]:
    if isinstance(tree, TensorMeta):
        yield tree
    elif isinstance(tree, (tuple, list)):
        for item in tree:
            yield from iter_metas(item)
    elif isinstance(tree, dict):
        for item in tree.values():
            yield from iter_metas(item)


def tree_bytes(tree: Tree) -> int:
    return sum(m.nbytes for m in iter_metas(tree))


def has_tensor(tree: Tree) -> bool:
    return next(iter_metas(tree), None) is not None


def shapes_json(tree: Tree) -> Any:
    """A tensor becomes its shape (a list of ints), containers stay containers, others null."""
    if isinstance(tree, TensorMeta):
        return list(tree.shape)
    if isinstance(tree, (tuple, list)):
        return [shapes_json(t) for t in tree]
    if isinstance(tree, dict):
        return {k: shapes_json(v) for k, v in tree.items()}
    return None


def dtypes_json(tree: Tree) -> Any:
    if isinstance(tree, TensorMeta):
        return tree.dtype
    if isinstance(tree, (tuple, list)):
        return [dtypes_json(t) for t in tree]
    if isinstance(tree, dict):
        return {k: dtypes_json(v) for k, v in tree.items()}
    return None


def call_inputs(args: tuple[Tree, ...], kwargs: dict[str, Tree]) -> list[Tree]:
    """Positional inputs that hold tensors, then keyword inputs (as one dict) if any do."""
    items: list[Tree] = [a for a in args if has_tensor(a)]
    tensor_kwargs = {k: v for k, v in kwargs.items() if has_tensor(v)}
    if tensor_kwargs:
        items.append(tensor_kwargs)
    return items


@dataclass(slots=True, eq=False)
class CallRecord:
    """One execution of one module's forward."""

    index: int  # order in which calls started (pre-order)
    module: str  # qualified name, "" for the root
    depth: int
    parent: int | None  # index of the enclosing call
    args: tuple[Tree, ...]
    kwargs: dict[str, Tree]
    output: Tree = None
    end_index: int = -1  # order in which calls finished (post-order); -1 if it raised
    flops: int = 0  # inclusive: the ops of this call and of every call inside it
    int_flops: int = 0  # how many of ``flops`` are integer arithmetic (quantized kernels)

    @property
    def inputs(self) -> list[Tree]:
        return call_inputs(self.args, self.kwargs)

    @property
    def output_bytes(self) -> int:
        return tree_bytes(self.output)


@dataclass(slots=True, eq=False)
class ModuleRecord:
    """A module of the model: its place in the hierarchy, its parameters, and its calls."""

    name: str
    type: str
    depth: int
    parent: str | None
    children: list[str] = field(default_factory=list)
    params: int = 0  # own parameters, not counting ones first owned by an earlier module
    trainable: int = 0
    param_bytes: int = 0
    params_total: int = 0  # this module and everything below it, each parameter once
    trainable_total: int = 0
    shared: dict[str, str] = field(default_factory=dict)  # own param name -> first owner
    shared_params: int = 0  # elements of those shared parameters, not counted in ``params``
    #: how many of ``params`` are weights held outside nn.Parameters: quantized modules' packed
    #: params (torch.ao), integer weight buffers (8-bit and 4-bit linear layers)
    packed: int = 0
    #: own ``params`` and their stored bytes by dtype ("float32", "qint8", "nf4"...): a
    #: quantized model's weights are not float32, and its size is not 4 bytes a parameter
    param_dtypes: dict[str, int] = field(default_factory=dict)
    param_dtype_bytes: dict[str, int] = field(default_factory=dict)
    #: own integer weights that may pack several values per element (a uint8 holding two 4-bit
    #: values) where nothing says how many: counted as stored, one value per element
    opaque: list[str] = field(default_factory=list)
    buffers: int = 0
    buffer_bytes: int = 0
    calls: list[CallRecord] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # kernel_size and similar
    #: FLOPs of all its calls; for a container that is never called itself (a ModuleList),
    #: the FLOPs of its children. Set by the engine after the pass.
    flops: int = 0
    int_flops: int = 0  # how many of ``flops`` are integer arithmetic, set with ``flops``

    @property
    def output_bytes(self) -> int:
        return sum(c.output_bytes for c in self.calls)

    @property
    def first_call(self) -> CallRecord | None:
        return self.calls[0] if self.calls else None

    @property
    def input_shapes(self) -> list[Tree]:
        call = self.first_call
        return call.inputs if call is not None else []

    @property
    def output_shapes(self) -> Tree:
        call = self.first_call
        return call.output if call is not None else None

    @property
    def is_leaf(self) -> bool:
        return not self.children

    @property
    def label(self) -> str:
        return self.name or self.type


@dataclass(eq=False)
class Trace:
    """Everything one instrumented forward pass found out about a model."""

    model_type: str
    modules: dict[str, ModuleRecord]  # definition order; "" is the root
    calls: list[CallRecord]  # start order
    inputs: list[Tree]
    output: Tree
    device: str
    dtype: str
    elapsed_s: float = 0.0
    peak_memory_bytes: int | None = None  # measured on CUDA only
    flops: int = 0  # the whole pass, as FlopCounterMode would count it
    int_flops: int = 0  # how many of ``flops`` ran in integer kernels (quantized ops)
    #: ops that do matrix arithmetic but have no FLOP formula -> the modules they ran in ("" is
    #: the model's own forward): their FLOPs are missing from ``flops``, and the summary says so
    uncounted: dict[str, list[str]] = field(default_factory=dict)
    output_value: Any = None  # the real output, kept only when asked for
    probes: dict[str, Any] = field(default_factory=dict)  # results of optional probes by name

    @property
    def root(self) -> ModuleRecord:
        return self.modules[""]

    @property
    def params(self) -> int:
        return self.root.params_total

    @property
    def trainable_params(self) -> int:
        return self.root.trainable_total

    @property
    def param_bytes(self) -> int:
        return sum(m.param_bytes for m in self.modules.values())

    @property
    def param_dtypes(self) -> dict[str, tuple[int, int]]:
        """dtype -> (parameters, bytes), most parameters first: what the weights really are."""
        found: dict[str, list[int]] = {}
        for record in self.modules.values():
            for dtype, numel in record.param_dtypes.items():
                entry = found.setdefault(dtype, [0, 0])
                entry[0] += numel
                entry[1] += record.param_dtype_bytes.get(dtype, 0)
        return {k: (v[0], v[1]) for k, v in sorted(found.items(), key=lambda kv: -kv[1][0])}

    @property
    def buffer_bytes(self) -> int:
        return sum(m.buffer_bytes for m in self.modules.values())

    @property
    def input_bytes(self) -> int:
        return sum(tree_bytes(t) for t in self.inputs)

    def children(self, name: str) -> list[ModuleRecord]:
        return [self.modules[c] for c in self.modules[name].children]
