"""Placeholder weights: a model built without its random initialisation, for work that needs
only shapes and counts (summary, graph, memory, diff).

Outside torch's import, drawing random weights is most of what such a command spends: vgg16's
138 M values cost 0.85 s, half of it ``nn.Linear``'s default init that torchvision then
overwrites. Under ``SkipRandomInit`` every random fill (``nn.init.kaiming_uniform_``,
``Tensor.normal_``, timm's ``trunc_normal_``...) becomes a zero fill (on meta, nothing at all):
parameters have their shapes, dtypes and devices, buffers keep the values their constructors
give them, and nothing reads uninitialised memory. Zeros change no shape, parameter count,
FLOP or byte, unless the model's code reads values that come from them (``.item()``, an ``if``
on a tensor, ``nonzero``, ``.tolist()``): what decides the control flow then may differ.

So the placeholders are tracked. While building, ``SkipRandomInit`` follows every tensor made
from a placeholder (a clone, a cast, a random draw that the skipped fills no longer precede);
a constructor that reads one of them is built again with its init. During the forward pass,
``Watch`` follows the tensors that owe nothing to placeholders (the inputs, real buffers, what
the model makes from them) and stops the pass with ``ValuesNeeded`` when the model reads a
value that may: the caller builds the model again with its random init and redoes the work
(``session.shapes_only``). Reading values the inputs alone decide, as transformers does to
build its attention masks, costs nothing.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.weak import WeakIdKeyDictionary

__all__ = ["Placeholders", "ReadWhileBuilding", "SkipRandomInit", "ValuesNeeded", "Watch",
           "found", "mark", "watch"]

_T = torch.Tensor
_init = torch.nn.init

#: Random fills, made zero fills: the tensor is written in place, and its values are drawn
#: from the generator. ``nn.init``'s uniform_, normal_ and kaiming_uniform_ reach a torch
#: function mode whole; its other initialisers call these methods.
_RANDOM_FILLS = frozenset({
    _T.uniform_, _T.normal_, _T.random_, _T.bernoulli_, _T.exponential_, _T.cauchy_,
    _T.log_normal_, _T.geometric_, _init.uniform_, _init.normal_, _init.kaiming_uniform_,
})
_INIT_FILLS = frozenset({_init.uniform_, _init.normal_, _init.kaiming_uniform_})
#: Element-wise arithmetic done in place on a placeholder (``trunc_normal_``'s erfinv_, mul_,
#: add_, clamp_ after its uniform_): the result is a placeholder too, so it is skipped.
_PLACEHOLDER_ARITHMETIC = frozenset({
    _T.erfinv_, _T.mul_, _T.div_, _T.add_, _T.sub_, _T.clamp_, _T.clamp_min_, _T.clamp_max_,
    _T.abs_, _T.neg_, _T.sqrt_, _T.exp_, _T.log_, _T.pow_, _T.tanh_, _T.sign_, _T.fmod_,
    _T.remainder_, _T.addcmul_, _T.addcdiv_, _T.lerp_, _T.__iadd__, _T.__isub__, _T.__imul__,
    _T.__itruediv__,
})
#: Functions that draw new random tensors: after a skipped fill the generator is not where
#: the ordinary build would have it, so what they return differs from that build's.
_RANDOM_MAKERS = frozenset({
    torch.rand, torch.randn, torch.randint, torch.randperm, torch.rand_like, torch.randn_like,
    torch.randint_like, torch.normal, torch.bernoulli, torch.multinomial, torch.poisson,
    _T.bernoulli, _T.multinomial,
})
#: Functions that make a tensor like another without its values: not made from a placeholder.
_LIKE = frozenset({
    _T.new_tensor, _T.new_empty, _T.new_zeros, _T.new_ones, _T.new_full, _T.new_empty_strided,
    torch.empty_like, torch.zeros_like, torch.ones_like, torch.full_like,
})
#: Functions that bring a tensor's values into Python or into a shape.
_READS = frozenset({
    _T.item, _T.tolist, _T.numpy, _T.__array__, _T.__bool__, _T.__int__, _T.__float__,
    _T.__index__, _T.__complex__, torch.equal, _T.equal, torch.allclose, _T.allclose,
    torch.nonzero, _T.nonzero, torch.argwhere, _T.argwhere, torch.unique, _T.unique,
    torch.unique_consecutive, _T.unique_consecutive, torch.masked_select, _T.masked_select,
    torch.bincount, _T.bincount, torch.repeat_interleave, _T.repeat_interleave,
})
#: The reads a torch dispatch mode cannot see: they copy the data out without an operator.
_RAW_READS = frozenset({_T.tolist, _T.numpy, _T.__array__})


class ReadWhileBuilding(BaseException):
    """A constructor read values made from placeholders: it may decide on them (and a loop
    that waits for a random draw to land in a range would wait forever), so the build stops
    here, to be done again with its random init. A BaseException, so that the constructor's
    own ``except Exception`` lets it through."""


class ValuesNeeded(BaseException):
    """The model read values that placeholder weights decide: build it with its init, redo.

    A BaseException, so that a model's own ``except Exception`` cannot swallow it."""

    def __init__(self, what: str) -> None:
        super().__init__(f"the forward pass reads values ({what}) that depend on its weights")
        self.what = what


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    """The tensors in a function's arguments or result (tuples, lists and dicts of them)."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)


def _storage(tensor: torch.Tensor) -> int | None:
    """Where a tensor's values live; None where they cannot be read (meta, empty, sparse)."""
    if tensor.is_meta or not tensor.numel():
        return None
    try:
        return int(tensor.untyped_storage().data_ptr()) or None
    except (RuntimeError, NotImplementedError):
        return None


def _in_place(func: Any) -> bool:
    name = getattr(func, "__name__", "")
    return name == "__setitem__" or (name.endswith("_") and not name.endswith("__")) or (
        name.startswith("__i") and name.endswith("__"))


class SkipRandomInit(TorchFunctionMode):
    """Build a model with its random fills made zero fills, keeping track of every tensor that
    owes its values to them; ``placeholders(model)`` says which of the model's end up so."""

    def __init__(self) -> None:
        super().__init__()
        self.skipped = 0
        #: the storages of placeholders, each held by one of its tensors so that no other
        #: tensor can take its address while the model is built
        self._held: dict[int, torch.Tensor] = {}
        #: a constructor read values made from placeholders: it may have decided differently
        self.read: str | None = None

    def __enter__(self) -> SkipRandomInit:
        # One thread: a zero fill is a memset, and torch's parallel one waits for a second
        # thread, which on a busy machine costs ~10 ms a tensor (regnet_y_400mf: 1.3 s of
        # zero fills on two threads, 20 ms on one); random fills are sequential anyway.
        self._threads = torch.get_num_threads()
        torch.set_num_threads(1)
        self._trunc_normal = getattr(_init, "_no_grad_trunc_normal_", None)
        if self._trunc_normal is not None:  # a rejection sampler: see _skip_trunc_normal
            _init._no_grad_trunc_normal_ = self._skip_trunc_normal
        super().__enter__()  # type: ignore[no-untyped-call]  # torch's mode is untyped
        return self

    def __exit__(self, *exc: Any) -> None:
        super().__exit__(*exc)  # type: ignore[no-untyped-call]
        if self._trunc_normal is not None:
            _init._no_grad_trunc_normal_ = self._trunc_normal
        torch.set_num_threads(self._threads)

    def _skip_trunc_normal(self, tensor: torch.Tensor, mean: float, std: float, a: float,
                           b: float, generator: Any = None) -> torch.Tensor:
        """``nn.init.trunc_normal_`` draws until every value lies in [a, b], reading them to
        know: zeros outside [a, b] would be drawn forever. Its placeholder is the mean, moved
        into [a, b]."""
        self.skipped += 1
        if not tensor.is_meta:
            with torch.no_grad():
                tensor.fill_(min(max(mean, a), b))
            self._hold(tensor)
        return tensor

    def _hold(self, tensor: torch.Tensor) -> None:
        key = _storage(tensor)
        if key is not None and key not in self._held:
            self._held[key] = tensor

    def _derived(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        held = self._held
        return any(_storage(t) in held for t in _tensors((args, kwargs)))

    def __torch_function__(self, func: Callable[..., Any], types: Any,
                           args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None,
                           ) -> Any:
        kwargs = kwargs or {}
        if func in _RANDOM_FILLS:
            tensor = args[0] if args else kwargs["tensor"]
            self.skipped += 1
            if tensor.is_meta:
                return tensor
            if func in _INIT_FILLS:  # nn.init fills without recording gradients
                with torch.no_grad():
                    tensor.zero_()
            else:
                tensor.zero_()
            self._hold(tensor)
            return tensor
        if func in _RANDOM_MAKERS:
            result = func(*args, **kwargs)
            if self.skipped:  # the generator is not where the ordinary build has it
                for tensor in _tensors(result):
                    self._hold(tensor)
            return result
        if not self._held:  # nothing is a placeholder (yet): the build is the ordinary one
            return func(*args, **kwargs)
        if func in _PLACEHOLDER_ARITHMETIC and args and isinstance(args[0], torch.Tensor) \
                and _storage(args[0]) in self._held:
            return args[0]
        if func in _LIKE:
            return func(*args, **kwargs)
        derived = self._derived(args, kwargs)
        if derived and (func in _READS or _bool_index(func, args)):
            if self.read is None:
                self.read = getattr(func, "__name__", str(func))
            raise ReadWhileBuilding(self.read)
        result = func(*args, **kwargs)
        if derived:
            for tensor in _tensors(result):
                self._hold(tensor)
            if _in_place(func) and args and isinstance(args[0], torch.Tensor):
                self._hold(args[0])
        return result

    def placeholders(self, model: nn.Module) -> Placeholders:
        """The model's parameters and buffers (by name) that hold placeholders, and how many
        placeholders live on elsewhere (a plain attribute, a list of tensors): a tensor this
        mode holds that something else refers to too. Then the held tensors are let go."""
        held = self._held
        pairs = (*model.named_parameters(), *model.named_buffers())
        names = frozenset(name for name, tensor in pairs if _storage(tensor) in held)
        registered = {_storage(tensor) for _, tensor in pairs}
        # Referred to by this dict and by getrefcount's argument alone: a temporary, now gone.
        others = sum(1 for key in list(held)
                     if key not in registered and sys.getrefcount(held[key]) > 2)
        self._held = {}
        return Placeholders(names, others, self.skipped, self.read)


def _bool_index(func: Any, args: tuple[Any, ...]) -> bool:
    """``x[mask]``: a boolean index makes a shape out of values."""
    if func is not _T.__getitem__ or len(args) < 2:
        return False
    return any(t.dtype in (torch.bool, torch.uint8) for t in _tensors(args[1]))


@dataclass(frozen=True)
class Placeholders:
    """What a build under ``SkipRandomInit`` left without real values."""

    names: frozenset[str]  # parameters and buffers, by qualified name
    others: int  # placeholders outside the parameters and buffers, still referred to
    skipped: int  # random fills skipped
    read: str | None  # a read of placeholder values while building, by function name

    @property
    def any(self) -> bool:
        return bool(self.names or self.others)


_MARKED: weakref.WeakKeyDictionary[nn.Module, Placeholders] = weakref.WeakKeyDictionary()


def mark(model: nn.Module, placeholders: Placeholders) -> None:
    """Remember that ``model`` holds placeholders, so that its passes are watched."""
    _MARKED[model] = placeholders


def found(model: nn.Module) -> Placeholders | None:
    return _MARKED.get(model)


# --- the forward pass ----------------------------------------------------------------------

_aten = torch.ops.aten
_SHAPE_FROM_VALUES = torch.Tag.dynamic_output_shape
_VALUES_TO_PYTHON = torch.Tag.data_dependent_output
#: Operators that only raise on a value: a placeholder could make them raise or not.
_ASSERTS = frozenset(getattr(_aten, name) for name in ("_assert_async", "_assert_scalar")
                     if hasattr(_aten, name))


#: How an operator reads values: not at all, always, with a boolean index (``aten.index``,
#: tagged for that form), without ``output_size`` (repeat_interleave with a tensor of
#: repeats), without ``num_classes`` (one_hot counts them from the values).
_NO, _ALWAYS, _BOOL_INDEX, _NO_OUTPUT_SIZE, _NO_CLASSES = range(5)


def _read_kind(func: Any) -> int:
    packet = func._overloadpacket
    tags = func.tags
    if packet in _ASSERTS or _VALUES_TO_PYTHON in tags:
        return _ALWAYS
    if _SHAPE_FROM_VALUES not in tags:
        return _NO
    if packet is _aten.index:
        return _BOOL_INDEX
    if packet is _aten.repeat_interleave:
        return _NO_OUTPUT_SIZE
    if packet is _aten.one_hot:
        return _NO_CLASSES
    return _ALWAYS


def _reads(kind: int, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    if kind == _BOOL_INDEX:
        return any(t.dtype in (torch.bool, torch.uint8) for t in _tensors(args[1:2]))
    if kind == _NO_OUTPUT_SIZE:
        return kwargs.get("output_size") is None
    if kind == _NO_CLASSES:
        return bool((args[1] if len(args) > 1 else kwargs.get("num_classes", -1)) == -1)
    return kind == _ALWAYS


def _mutated(func: Any) -> tuple[int, ...]:
    """Positions of the arguments an operator writes to (``self`` of ``add_``, ``out=``)."""
    return tuple(i for i, argument in enumerate(func._schema.arguments)
                 if argument.alias_info is not None and argument.alias_info.is_write)


class _Clean:
    """The tensors whose values owe nothing to placeholders. Anything not known to be clean
    counts as made from placeholders: a read of it stops the pass, which is the safe side.
    Keyed by identity (a WeakSet would compare two tensors with ``==``, element-wise)."""

    def __init__(self) -> None:
        self.tensors: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self.read: str | None = None

    def add(self, tensor: torch.Tensor) -> None:
        self.tensors[tensor] = True
        base = tensor._base
        if base is not None:
            self.tensors[base] = True

    def __contains__(self, tensor: torch.Tensor) -> bool:
        tensors = self.tensors
        if tensor not in tensors:
            return False
        base = tensor._base
        return base is None or base in tensors

    def discard(self, tensor: torch.Tensor) -> None:
        for key in (tensor, tensor._base):
            if key is not None and key in self.tensors:
                del self.tensors[key]

    def stop(self, what: str) -> None:
        if self.read is None:
            self.read = what
        raise ValuesNeeded(what)


class _WatchOps(TorchDispatchMode):  # type: ignore[no-untyped-call]  # torch's mode is untyped
    """Every operator of the pass: what is made from clean tensors alone is clean; a read of
    anything else stops the pass."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        """No torch._dynamo wrapper around ``__torch_dispatch__``: the pass is never compiled,
        and the wrapper imports torch._dynamo (0.8 s) and costs two calls an operator."""
        return False

    def __init__(self, clean: _Clean) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.clean = clean
        self._kinds: dict[Any, tuple[int, tuple[int, ...]]] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        known = self._kinds.get(func)
        if known is None:
            known = self._kinds[func] = (_read_kind(func), _mutated(func))
        kind, mutated = known
        clean = self.clean
        pure = all(t in clean for t in _tensors((args, kwargs)))
        if kind and not pure and _reads(kind, args, kwargs):
            clean.stop(str(func.name()))
        result = func(*args, **kwargs)
        if pure:
            for tensor in _tensors(result):
                clean.add(tensor)
        elif mutated:
            for index in mutated:
                target = args[index] if index < len(args) else None
                if isinstance(target, torch.Tensor):
                    clean.discard(target)
            for tensor in _tensors(kwargs.get("out")):
                clean.discard(tensor)
        return result


class _WatchRawReads(TorchFunctionMode):
    """``tolist``, ``numpy`` and ``__array__`` copy values out without an operator."""

    def __init__(self, clean: _Clean) -> None:
        super().__init__()
        self.clean = clean

    def __torch_function__(self, func: Callable[..., Any], types: Any,
                           args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None,
                           ) -> Any:
        if func in _RAW_READS and args and isinstance(args[0], torch.Tensor) \
                and args[0] not in self.clean:
            self.clean.stop(f"Tensor.{func.__name__}")
        return func(*args, **(kwargs or {}))


class Watch:
    """Around a forward pass of a model holding placeholders: ``read`` names the first read
    of values that may come from them (the pass stops there with ``ValuesNeeded``)."""

    def __init__(self, model: nn.Module, placeholders: Placeholders, inputs: Any) -> None:
        self.clean = _Clean()
        for name, tensor in (*model.named_parameters(), *model.named_buffers()):
            if name not in placeholders.names:
                self.clean.add(tensor)
        for tensor in _tensors(inputs):
            self.clean.add(tensor)
        self._modes = (_WatchRawReads(self.clean), _WatchOps(self.clean))

    @property
    def read(self) -> str | None:
        return self.clean.read

    def __enter__(self) -> Watch:
        for mode in self._modes:
            mode.__enter__()  # type: ignore[no-untyped-call]  # torch's modes are untyped
        return self

    def __exit__(self, *exc: object) -> None:
        for mode in reversed(self._modes):
            mode.__exit__(*exc)  # type: ignore[no-untyped-call]


def watch(model: nn.Module, inputs: Any) -> Watch | None:
    """A ``Watch`` for a pass of ``model`` on ``inputs`` if it holds placeholders, else None."""
    placeholders = found(model)
    if placeholders is None or not placeholders.any:
        return None
    return Watch(model, placeholders, inputs)
