"""Who produced each tensor a module consumed: the data flow behind ``modelviz graph``.

``DataflowProbe`` rides on the engine's single pass. A TorchFunctionMode sees the functional
operations (``+``, ``torch.cat``, ``x.view``, ``F.relu``...) that run in the code of modules that
have submodules; operations inside leaf modules belong to the leaf and are passed through at once.
Every tensor a module call or operation produced is remembered by identity, through a weak
reference, so that later consumers can name their producer without the probe keeping activations
alive. The probe records at every level of the hierarchy at once, so the display depth, the
modules opened with ``--expand`` and the folding of repeated blocks are all decided afterwards, in
``build.build_graph``, from the records alone.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.modules import activation, conv, dropout, pooling, rnn
from torch.overrides import TorchFunctionMode

from modelviz.core.engine import Probe
from modelviz.core.records import CallRecord, Trace, dtype_name
from modelviz.core.tensors import path_text, tensors, walk

__all__ = ["KINDS", "DataflowProbe", "Flow", "FlowEvent", "input_names", "layer_kind", "op_name"]

Ref = tuple[int, str]  # (event sequence number, path of the tensor inside that event's output)


@dataclass(slots=True)
class FlowEvent:
    """A model input, a module call or a functional operation, and the tensors it touched."""

    seq: int
    kind: str  # "input", "call" or "op"
    call: int  # the engine's call index: the call itself, or the call whose code ran the op
    name: str = ""  # the operation's name ("add", "cat"); empty for calls and inputs
    inputs: list[Ref] = field(default_factory=list)  # producers of the tensors it consumed
    #: path -> (shape, dtype) of each tensor it produced
    outputs: dict[str, tuple[tuple[int, ...], str]] = field(default_factory=dict)
    #: path -> what produced that tensor before it came out of this event; for a module call, the
    #: operation or inner call that really made it, which a see-through module resolves to.
    origins: dict[str, Ref] = field(default_factory=dict)


@dataclass
class Flow:
    """What ``DataflowProbe`` found: every event in order, and the kind of each module."""

    events: list[FlowEvent]
    call_events: dict[int, int]  # engine call index -> event sequence number
    kinds: dict[str, str]  # module name -> layer kind (conv, linear, ...)
    input_names: dict[str, str]  # input path -> the forward() argument's name


# ----------------------------------------------------------------------------------------------
# Layer kinds: what colour a node gets.

KINDS: dict[str, str] = {  # kind -> legend text
    "conv": "convolution", "linear": "linear", "norm": "normalization",
    "activation": "activation", "pooling": "pooling", "attention": "attention / transformer",
    "embedding": "embedding", "recurrent": "recurrent", "dropout": "dropout",
    "other": "block / other", "op": "functional op",
}

_NAME_HINTS = (  # type-name fragments for classes outside torch.nn, checked in order
    ("attention", "attention"), ("attn", "attention"), ("transformer", "attention"),
    ("encoderlayer", "attention"), ("decoderlayer", "attention"), ("encoderblock", "attention"),
    ("decoderblock", "attention"), ("norm", "norm"),
    ("conv", "conv"), ("embed", "embedding"), ("pool", "pooling"), ("lstm", "recurrent"),
    ("gru", "recurrent"), ("rnn", "recurrent"), ("dropout", "dropout"), ("linear", "linear"),
    ("relu", "activation"), ("gelu", "activation"), ("silu", "activation"),
    ("swish", "activation"), ("sigmoid", "activation"), ("tanh", "activation"),
    ("softmax", "activation"), ("activation", "activation"),
)


#: What a container is drawn as, by the kinds of the layers inside it, strongest first: a block
#: with a convolution is a conv block whatever else it holds (``Conv2dNormActivation``), a block
#: of Linear, GELU and Dropout is a linear block.
_CONTENT_ORDER = ("attention", "recurrent", "conv", "embedding", "linear", "norm", "pooling",
                  "activation", "dropout")


def layer_kind(module: nn.Module, memo: dict[int, str] | None = None) -> str:
    """The colour family of a module: by torch.nn base class; a container by the strongest
    kind among its submodules (``_CONTENT_ORDER``); else by its type's name."""
    memo = {} if memo is None else memo
    known = memo.get(id(module))
    if known is None:
        known = memo[id(module)] = _layer_kind(module, memo)
    return known


def _layer_kind(module: nn.Module, memo: dict[int, str]) -> str:
    own = _own_kind(module)
    if own != "other" and not (own != "attention" and module._modules
                               and _name_kind(module) == own):
        return own  # torch.nn's own classes, and containers named as attention
    inside = {layer_kind(child, memo) for child in module.children()}
    for kind in _CONTENT_ORDER:
        if kind in inside:
            return kind
    return own


def _own_kind(module: nn.Module) -> str:
    if isinstance(module, (nn.MultiheadAttention, nn.Transformer, nn.TransformerEncoder,
                           nn.TransformerDecoder, nn.TransformerEncoderLayer,
                           nn.TransformerDecoderLayer)):
        return "attention"
    checks: tuple[tuple[type | tuple[type, ...], str], ...] = (
        (conv._ConvNd, "conv"),
        ((nn.Linear, nn.Bilinear), "linear"),
        ((nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm,
          *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())), "norm"),
        ((nn.Embedding, nn.EmbeddingBag), "embedding"),
        ((rnn.RNNBase, rnn.RNNCellBase), "recurrent"),
        (dropout._DropoutNd, "dropout"),
        ((pooling._MaxPoolNd, pooling._AvgPoolNd, pooling._AdaptiveAvgPoolNd,
          pooling._AdaptiveMaxPoolNd, pooling._LPPoolNd), "pooling"),
    )
    for classes, kind in checks:
        if isinstance(module, classes):
            return kind
    if type(module).__module__ == activation.__name__:
        return "activation"
    return _name_kind(module)


def _name_kind(module: nn.Module) -> str:
    lowered = type(module).__name__.lower()
    for fragment, kind in _NAME_HINTS:
        if fragment in lowered:
            return kind
    return "other"


# ----------------------------------------------------------------------------------------------
# The probe.

_DUNDER = {"getitem": "getitem", "setitem": "setitem", "radd": "add", "rsub": "sub",
           "rmul": "mul", "rtruediv": "div", "truediv": "div", "rmatmul": "matmul",
           "iadd": "add_", "isub": "sub_", "imul": "mul_", "itruediv": "div_", "neg": "neg",
           "rpow": "pow", "and": "and", "or": "or", "invert": "not"}


def op_name(func: Callable[..., Any]) -> str:
    """``Tensor.__radd__`` -> ``add``; ``Tensor.T.__get__`` -> ``T``; ``torch.cat`` -> ``cat``."""
    name = getattr(func, "__name__", None) or type(func).__name__
    if name == "__get__":  # a property such as .T or .mT
        return str(getattr(getattr(func, "__self__", None), "__name__", "attribute"))
    if name.startswith("__") and name.endswith("__"):
        bare = name[2:-2]
        return _DUNDER.get(bare, bare)
    return name


class _FunctionMode(TorchFunctionMode):
    def __init__(self, probe: DataflowProbe) -> None:
        super().__init__()
        self.probe = probe

    def __torch_function__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if self.probe.quiet:
            return func(*args, **kwargs)
        versions = {id(t): _version(t) for t in tensors((args, kwargs))}
        out = func(*args, **kwargs)
        self.probe.operation(func, args, kwargs, out, versions)
        return out


def _version(tensor: torch.Tensor) -> int | None:
    """The in-place modification counter; None where there is none (inference tensors)."""
    try:
        return int(tensor._version)
    except RuntimeError:
        return None


class DataflowProbe(Probe):
    """Records, during the engine's pass, which call or operation produced each tensor consumed.

    Memory stays bounded: the probe keeps shapes and small tuples, never tensors; its map from a
    tensor's identity to its producer holds weak references, purged as tensors die.
    """

    name = "dataflow"

    def __init__(self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None,
                 input_names: dict[str, str] | None = None) -> None:
        self.args = args
        self.kwargs = kwargs or {}
        self.input_names = dict(input_names or {})
        self.events: list[FlowEvent] = []
        self.call_events: dict[int, int] = {}
        self.kinds: dict[str, str] = {}
        self._kind_memo: dict[int, str] = {}  # id(module) -> kind, for this pass
        self._producers: dict[int, tuple[weakref.ref[torch.Tensor], Ref]] = {}
        self._purge_at = 4096
        self._stack: list[tuple[FlowEvent, bool]] = []  # (call event, module is a leaf)
        self.quiet = True  # no module is running, or a leaf is: operations are not recorded
        self._inputs_seen = False

    # -- the producer map --------------------------------------------------------------------

    def producer(self, tensor: torch.Tensor) -> Ref | None:
        entry = self._producers.get(id(tensor))
        if entry is not None and entry[0]() is tensor:
            return entry[1]
        return None

    def _register(self, tensor: torch.Tensor, ref: Ref) -> Ref | None:
        """Make ``ref`` the producer of ``tensor``; returns the previous one."""
        previous = self.producer(tensor)
        self._producers[id(tensor)] = (weakref.ref(tensor), ref)
        if len(self._producers) > self._purge_at:
            self._producers = {k: v for k, v in self._producers.items() if v[0]() is not None}
            self._purge_at = max(4096, 2 * len(self._producers))
        return previous

    def _record_outputs(self, event: FlowEvent, value: Any) -> None:
        for parts, tensor in _walk(value):
            path = path_text(parts)
            event.outputs[path] = (tuple(tensor.shape), dtype_name(tensor.dtype))
            previous = self._register(tensor, (event.seq, path))
            if previous is not None:
                event.origins[path] = previous

    def _event(self, kind: str, call: int, name: str = "") -> FlowEvent:
        event = FlowEvent(len(self.events), kind, call, name)
        self.events.append(event)
        return event

    def _register_inputs(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self._inputs_seen:
            return
        self._inputs_seen = True
        event = self._event("input", -1)
        # positional inputs are "0", "1.0"...; keyword inputs start with their name: "mask"
        for parts, tensor in [*walk(list(args)), *walk(kwargs)]:
            path = path_text(parts)
            event.outputs[path] = (tuple(tensor.shape), dtype_name(tensor.dtype))
            self._register(tensor, (event.seq, path))

    # -- the Probe interface -----------------------------------------------------------------

    @contextmanager
    def _active(self) -> Iterator[None]:
        if self.args or self.kwargs:  # else the root call's positional arguments are the inputs
            self._register_inputs(self.args, self.kwargs)
        with _FunctionMode(self):
            yield

    def context(self) -> AbstractContextManager[Any]:
        return self._active()

    def call_start(self, call: CallRecord, module: nn.Module, args: tuple[Any, ...]) -> None:
        if not call.module:
            self._register_inputs(args, {})
        event = self._event("call", call.index)
        self.call_events[call.index] = event.seq
        seen: set[Ref] = set()
        for _, tensor in _walk(args):
            ref = self.producer(tensor)
            if ref is not None and ref not in seen:
                seen.add(ref)
                event.inputs.append(ref)
        self.kinds[call.module] = layer_kind(module, self._kind_memo)
        leaf = not module._modules
        self._stack.append((event, leaf))
        self.quiet = leaf

    def call_end(self, call: CallRecord, module: nn.Module, args: tuple[Any, ...],
                 kwargs: dict[str, Any], output: Any) -> None:
        while self._stack and self._stack[-1][0].call != call.index:
            self._stack.pop()  # a call that raised inside a caught exception
        if not self._stack:
            return
        event = self._stack.pop()[0]
        self.quiet = self._stack[-1][1] if self._stack else True
        if kwargs:  # the pre-hook saw no keyword arguments: look them up now
            seen = set(event.inputs)
            for _, tensor in _walk(kwargs):
                ref = self.producer(tensor)
                # A tensor re-registered inside this call (in place, or passed through an inner
                # module) is followed back to what produced it before the call began.
                while ref is not None and ref[0] > event.seq:
                    ref = self.events[ref[0]].origins.get(ref[1])
                if ref is not None and ref not in seen:
                    seen.add(ref)
                    event.inputs.append(ref)
        self._record_outputs(event, output)

    def operation(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                  out: Any, versions: dict[int, int | None]) -> None:
        """A functional operation ran in the code of a module that has submodules."""
        if out is None:
            if getattr(func, "__name__", "") != "__setitem__" or not args:
                return
            out = args[0]  # x[i] = y writes into x: y flows into it
        elif not isinstance(out, torch.Tensor) and not (
                isinstance(out, (tuple, list)) and any(isinstance(o, torch.Tensor) for o in out)):
            return  # .shape, .size(), .dim(): no tensor came out
        inputs: list[Ref] = []
        for tensor in tensors((args, kwargs)):
            ref = self.producer(tensor)
            if ref is not None and ref not in inputs:
                inputs.append(ref)
        if not inputs:
            return  # built from constants, parameters or buffers only: not part of the flow
        if (isinstance(out, torch.Tensor) and id(out) in versions
                and versions[id(out)] is not None and versions[id(out)] == _version(out)):
            return  # .contiguous(), .float(), .to() that changed nothing: the same tensor back
        name = op_name(func)
        event = self._event("op", self._stack[-1][0].call, name)
        event.inputs = inputs
        self._record_outputs(event, out)

    def finish(self, trace: Trace) -> Flow:
        self._producers.clear()
        self._stack.clear()
        return Flow(self.events, self.call_events, self.kinds, self.input_names)


_WRAPPER_DEPTH = 4  # how deep _walk looks into objects that are not containers


def _walk(value: Any, path: tuple[str, ...] = (), depth: int = 0) -> Iterator[
        tuple[tuple[str, ...], torch.Tensor]]:
    """``walk``, and into the objects that carry tensors between modules: dataclasses, named
    tuples and plain objects with tensor attributes (torchvision's ``ImageList`` carries the
    batch from ``transform`` to ``backbone`` as ``.tensors``): path ``0.tensors``."""
    if isinstance(value, torch.Tensor):
        yield path, value
    elif isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            yield from _walk(item, (*path, str(i)), depth)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _walk(item, (*path, str(key)), depth)
    elif depth < _WRAPPER_DEPTH and not isinstance(value, (nn.Module, type, str, bytes)):
        if dataclasses.is_dataclass(value):
            items = [(f.name, getattr(value, f.name, None)) for f in dataclasses.fields(value)]
        else:
            attributes = getattr(value, "__dict__", None)
            if not isinstance(attributes, dict):
                return
            items = list(attributes.items())
        for key, item in items:
            if not str(key).startswith("_"):
                yield from _walk(item, (*path, str(key)), depth + 1)


def input_names(model: nn.Module, args: tuple[Any, ...]) -> dict[str, str]:
    """Input path -> the name of ``forward``'s parameter it was passed as ("0" -> "image")."""
    from modelviz.core.inputs import input_names as parameter_names

    return {str(i): name for i, name in enumerate(parameter_names(model, len(args)))}
