"""The instrumented forward pass: one pass, every module's calls recorded and a FLOP counter,
records out.

Every command consumes the ``Trace`` this returns. Optional probes (activation statistics, data
flow for graphs) ride on the same pass through the ``Probe`` interface instead of running the model
again. Whatever happens, the recording is removed and the model is left as it was: train/eval
flags, device and dtype untouched.
"""

from __future__ import annotations

import copy
import gc
import itertools
import math
import re
import sys
import time
import types
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from typing import Any

import torch
from torch import nn

try:  # the C entry points behind TorchDispatchMode.__enter__/__exit__; they skip Python bookkeeping
    from torch._C import _pop_torch_dispatch_stack as _pop_mode
    from torch._C import _push_on_torch_dispatch_stack as _push_mode
except ImportError:  # pragma: no cover - older or newer torch
    from torch.utils._python_dispatch import _pop_mode, _push_mode  # type: ignore[assignment]

from modelviz.core import meta, placeholders
from modelviz.core.flops import (
    FORMULA_TYPES,
    INTEGER_FORMULAS,
    ZERO_FLOP_TYPES,
    FlopCounter,
    shape_formula,
    zero_flops,
)
from modelviz.core.formatting import flat_shapes_text
from modelviz.core.records import (
    CallRecord,
    ModuleRecord,
    Trace,
    describe,
    describer,
    dtype_name,
)
from modelviz.errors import ForwardError, one_line

__all__ = ["Probe", "as_run", "model_device", "model_dtype", "run", "scan"]


class Probe:
    """An extra observation made during the engine's pass; subclasses override what they need."""

    name = "probe"

    def context(self) -> AbstractContextManager[Any]:
        """Entered around the forward pass (a TorchFunctionMode, say)."""
        return nullcontext()

    def call_start(self, call: CallRecord, module: nn.Module, args: tuple[Any, ...]) -> None:
        """A module's forward is about to run; keyword arguments arrive with ``call_end``."""

    def call_end(self, call: CallRecord, module: nn.Module, args: tuple[Any, ...],
                 kwargs: dict[str, Any], output: Any) -> None:
        """A module's forward returned ``output``; tensors are alive only during this call."""

    def finish(self, trace: Trace) -> Any:
        """Returns this probe's result, stored as ``trace.probes[self.name]``."""
        return None


def _kernel_size(module: nn.Module) -> list[int] | None:
    size = module.__dict__.get("kernel_size")
    if isinstance(size, int):
        return [size]
    if isinstance(size, tuple) and all(isinstance(s, int) for s in size):
        return list(size)
    return None


#: Integer dtypes an element of which may hold several narrower values (two 4-bit values in a
#: uint8, eight in an int32): a weight stored so is counted one value per element unless its
#: packing can be read off the tensor or its module (see ``_stored_values``).
_MAY_PACK = frozenset({torch.uint8, torch.int16, torch.int32, torch.int64})
_INTEGER = _MAY_PACK | {torch.int8, torch.qint8, torch.quint8, torch.qint32}
#: Buffers of an integer dtype named like these are weights (8-bit and 4-bit linear layers keep
#: them so: ``weight``, GPTQ/AWQ ``qweight``, HQQ ``W_q``), counted with the parameters.
_WEIGHT_NAME = re.compile(r"weight|^w_?q$", re.IGNORECASE)


def _int_attr(module: nn.Module, *names: str) -> int | None:
    for name in names:
        value = module.__dict__.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _stored_values(module: nn.Module, tensor: torch.Tensor) -> tuple[int, str, bool]:
    """(values, dtype label, opaque) of a weight: a packed 4-bit weight holds two values a byte,
    counted so only where that can be read reliably (bitsandbytes' ``quant_state.shape``, or the
    module's ``bits`` with its in/out features filling the storage exactly); else one value per
    element, and ``opaque`` when its integer dtype may pack several."""
    numel = tensor.numel()
    if tensor.dtype not in _MAY_PACK:
        return numel, dtype_name(tensor.dtype), False
    stored_bits = numel * tensor.element_size() * 8
    state = getattr(tensor, "quant_state", None)  # bitsandbytes Params4bit
    shape = getattr(state, "shape", None)
    if isinstance(shape, tuple) and shape and all(isinstance(d, int) for d in shape):
        values = math.prod(shape)
        if 0 <= stored_bits // 4 - values <= 1:  # two a byte, the last byte maybe half full
            kind = getattr(state, "quant_type", None)
            return values, kind if isinstance(kind, str) else "int4", False
    width = _int_attr(module, "bits", "w_bit", "wbits")
    rows = _int_attr(module, "in_features", "infeatures")
    cols = _int_attr(module, "out_features", "outfeatures")
    if width in (2, 3, 4, 8) and rows and cols and rows * cols * width == stored_bits:
        return rows * cols, f"int{width}", False
    return numel, dtype_name(tensor.dtype), True


def _packed_tensors(value: Any) -> list[torch.Tensor]:
    """The tensors inside torch.ao's packed params: quantized Conv/Linear keep their weight and
    bias in a ScriptObject, dynamic LSTM/GRU biases and packed linears in another; none is an
    nn.Parameter, so ``parameters()`` misses every weight of a quantized model."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in _packed_tensors(item)]
    if isinstance(value, torch.ScriptObject):
        packed: Any = value  # its methods are its TorchScript class's, untyped
        try:
            if packed._has_method("unpack"):  # conv and linear packed params: (weight, bias)
                return _packed_tensors(packed.unpack())
            if packed._has_method("__getstate__"):  # rnn CellParamsBase: biases, packed linears
                return _packed_tensors(packed.__getstate__())
        except RuntimeError:
            return []
    return []


def _half_packed(module: nn.Module, value: Any) -> bool:
    """Packed params of a float16 dynamic layer: fbgemm stores the weights as float16, though
    unpacking gives them back as float32."""
    if module.__dict__.get("dtype") == torch.float16:  # LinearPackedParams
        return True
    try:  # rnn CellParamsBase: ((kind, tensors, ...), class name)
        state = value.__getstate__() if value._has_method("__getstate__") else None
    except RuntimeError:
        return False
    return (isinstance(state, tuple) and bool(state) and isinstance(state[0], tuple)
            and bool(state[0]) and state[0][0] == "quantized_fp16")


def _count_packed(record: ModuleRecord, module: nn.Module, value: Any) -> None:
    """Count the weights inside one packed params object, each storage once (an LSTM cell's
    biases are in it twice), at the dtype they are stored in."""
    half = _half_packed(module, value)
    seen: set[int] = set()
    for tensor in _packed_tensors(value):
        if tensor.numel() and tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        numel = tensor.numel()
        if half and tensor.is_floating_point() and tensor.dim() >= 2:  # weights, not biases
            _count_weight(record, numel, 2 * numel, "float16")
        else:
            _count_weight(record, numel, numel * tensor.element_size(), dtype_name(tensor.dtype))
        record.packed += numel


def _count_weight(record: ModuleRecord, values: int, nbytes: int, dtype: str) -> None:
    record.params += values
    record.param_bytes += nbytes
    record.param_dtypes[dtype] = record.param_dtypes.get(dtype, 0) + values
    record.param_dtype_bytes[dtype] = record.param_dtype_bytes.get(dtype, 0) + nbytes


#: Where torch.ao modules keep their packed params: quantized Conv and LinearPackedParams in
#: ``_packed_params``, a dynamic LSTM/GRU's PackedParameter in ``param``. Looking up two names
#: costs nothing, where reading every module's ``__dict__`` was most of ``scan``'s time.
_PACKED_ATTRS = ("_packed_params", "param")


def _packed_params(module: nn.Module) -> list[tuple[str, Any]]:
    """(attribute, ScriptObject) for the packed params a module holds itself."""
    found = []
    for attr in _PACKED_ATTRS:
        value = module.__dict__.get(attr)
        if isinstance(value, torch.ScriptObject):
            found.append((attr, value))
    return found


def _is_weight_buffer(name: str, buffer: torch.Tensor) -> bool:
    return buffer.dtype in _INTEGER and _WEIGHT_NAME.search(name) is not None


_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def scan(model: nn.Module, modules: dict[str, nn.Module] | None = None) -> (
        dict[str, ModuleRecord]):
    """The model's static structure: hierarchy, parameters (shared ones counted once), buffers.

    Quantized weights count as parameters too, at their real dtype and bytes: torch.ao's packed
    params and integer weight buffers (``ModuleRecord.packed``), never trainable.

    Every pass starts here, so the usual case, float weights each owned by one module, takes
    the short way: no name is joined unless a parameter turns out to be shared."""
    records: dict[str, ModuleRecord] = {}
    owners: dict[int, tuple[str, str]] = {}  # id(parameter) -> (module, name) of its first owner
    values_of: dict[int, int] = {}  # id(parameter) -> values counted for it, where not numel
    may_pack = _MAY_PACK
    if modules is None:
        modules = dict(model.named_modules())
    for name, module in modules.items():
        parent: str | None = name.rpartition(".")[0] if name else None
        depth = name.count(".") + 1 if name else 0
        record = ModuleRecord(name, type(module).__name__, depth, parent)
        attributes = module.__dict__
        if "kernel_size" in attributes:
            kernel = _kernel_size(module)
            if kernel is not None:
                record.extra["kernel_size"] = kernel
        if isinstance(module, _CONTAINERS):
            record.extra["container"] = True  # pure plumbing; torchsummary skips these too
        for pname, param in module._parameters.items():
            if param is None:
                continue
            first = owners.get(id(param))
            if first is not None:
                record.shared[pname] = f"{first[0]}.{first[1]}" if first[0] else first[1]
                record.shared_params += param.numel()
                continue
            owners[id(param)] = (name, pname)
            kind = param.dtype
            if kind in may_pack:
                numel, dtype, opaque = _stored_values(module, param)
                if numel != param.numel():
                    values_of[id(param)] = numel
                if opaque:
                    record.opaque.append(pname)
            else:
                numel = param.numel()
                dtype = dtype_name(kind)
            nbytes = param.nbytes
            record.params += numel
            record.param_bytes += nbytes
            counts, sizes = record.param_dtypes, record.param_dtype_bytes
            counts[dtype] = counts.get(dtype, 0) + numel
            sizes[dtype] = sizes.get(dtype, 0) + nbytes
            if param.requires_grad:
                record.trainable += numel
        for bname, buffer in module._buffers.items():
            if buffer is None:
                continue
            if buffer.dtype in _INTEGER and _is_weight_buffer(bname, buffer):
                if id(buffer) not in owners:
                    owners[id(buffer)] = (name, bname)
                    numel, dtype, opaque = _stored_values(module, buffer)
                    if opaque:
                        record.opaque.append(bname)
                    _count_weight(record, numel, buffer.numel() * buffer.element_size(), dtype)
                    record.packed += numel
                continue
            record.buffers += buffer.numel()
            record.buffer_bytes += buffer.nbytes
        if "_packed_params" in attributes or "param" in attributes:
            for attr, value in _packed_params(module):
                if id(value) not in owners:
                    owners[id(value)] = (name, attr)
                    _count_packed(record, module, value)
        records[name] = record
        if parent is not None:
            above = records.get(parent)
            if above is not None:
                above.children.append(name)
    # Subtree totals, bottom-up. A parameter shared across two subtrees counts once in each, so
    # with sharing we count unique parameters per subtree; without, children's totals just add.
    shared = any(r.shared for r in records.values())
    packed_total: dict[str, int] = {}  # weights outside nn.Parameters, in each subtree
    for name in reversed(list(records)):
        record = records[name]
        if shared:
            packed_total[name] = record.packed + sum(packed_total[c] for c in record.children)
            unique = {id(p): p for p in modules[name].parameters()}.values()
            record.params_total = packed_total[name] + sum(
                values_of.get(id(p), p.numel()) for p in unique)
            record.trainable_total = sum(values_of.get(id(p), p.numel()) for p in unique
                                         if p.requires_grad)
        elif record.children:
            children = [records[c] for c in record.children]
            record.params_total = record.params + sum([c.params_total for c in children])
            record.trainable_total = record.trainable + sum(
                [c.trainable_total for c in children])
        else:
            record.params_total = record.params
            record.trainable_total = record.trainable
    return records


def model_device(model: nn.Module) -> torch.device | None:
    for tensor in _tensors(model):
        return tensor.device
    return None


def model_dtype(model: nn.Module) -> torch.dtype | None:
    """The dtype of the model's floating-point weights, if it has any."""
    for tensor in _tensors(model):
        if tensor.is_floating_point():
            return tensor.dtype
    return None


def _tensors(model: nn.Module) -> Iterator[torch.Tensor]:
    yield from model.parameters()
    yield from model.buffers()


def meta_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose weights live on the meta device: the structure, no memory."""
    memo: dict[int, Any] = {}
    for tensor in _tensors(model):
        empty = torch.empty_like(tensor, device="meta")
        memo[id(tensor)] = (
            nn.Parameter(empty, requires_grad=tensor.requires_grad)
            if isinstance(tensor, nn.Parameter) else empty
        )
    return copy.deepcopy(model, memo)


def _shapes_text(call: CallRecord) -> str:
    """The shapes a failed call was given, for its error message."""
    return flat_shapes_text(call.inputs) or "no tensors"


class _Pass:
    """State of one forward pass: the call stack, the FLOP counter and its pause switch.

    During the pass each call gets only what must be seen then (the shapes of what it was
    given and returned, its own FLOPs); what follows from them, each call's FLOPs with those
    of the calls inside it, is summed once afterwards (``settle``)."""

    def __init__(self, records: dict[str, ModuleRecord], probes: tuple[Probe, ...],
                 count_flops: bool) -> None:
        self.records = records
        self.probes = probes
        self.calls: list[CallRecord] = []
        self.stack: list[CallRecord] = []
        self.describe = describer()
        self.total_flops = 0
        self.int_flops = 0
        #: op -> the modules it ran in, for ops the counter has no formula for (flops.uncountable)
        self.uncounted: dict[str, list[str]] = {}
        self.counter = FlopCounter(self.add_flops, self.miss) if count_flops else None
        self.counting = False  # counting is on (the counter may be paused for a leaf)
        self.paused = False  # the counter is off the mode stack while a stock leaf runs

    def add_flops(self, flops: int, integer: bool = False) -> None:
        """FLOPs of one op, to the call it ran in (``settle`` adds them to the enclosing ones)."""
        self.total_flops += flops
        stack = self.stack
        if stack:
            stack[-1].flops += flops
        if integer:
            self.int_flops += flops
            if stack:
                stack[-1].int_flops += flops

    def settle(self) -> None:
        """Each call's FLOPs made inclusive: those of every call inside it added, innermost
        first (a call starts after the call it runs in, so reversed start order will do)."""
        calls = self.calls
        for call in reversed(calls):
            parent = call.parent
            if parent is not None and (call.flops or call.int_flops):
                outer = calls[parent]
                outer.flops += call.flops
                outer.int_flops += call.int_flops

    def miss(self, op: str) -> None:
        where = self.stack[-1].module if self.stack else ""
        modules = self.uncounted.setdefault(op, [])
        if where not in modules:
            modules.append(where)

    def start_counting(self) -> None:
        if self.counter is not None and not self.counting:
            self.counter.__enter__()  # type: ignore[no-untyped-call]
            self.counting = True

    def stop_counting(self) -> None:
        if self.counting:
            assert self.counter is not None
            if self.paused:  # a leaf raised while paused: put the mode back to leave it cleanly
                self.resume()
            self.counter.__exit__(None, None, None)  # type: ignore[no-untyped-call]
            self.counting = False

    def pause(self) -> bool:
        """Take the counter off the mode stack for one leaf; False if it is not on top."""
        mode = _pop_mode(None)
        if mode is not self.counter:
            _push_mode(mode)
            return False
        self.paused = True
        return True

    def resume(self) -> None:
        assert self.counter is not None
        _push_mode(self.counter)
        self.paused = False

    def failure(self, exc: BaseException, device: torch.device | None = None) -> ForwardError:
        """Name the module that failed, what it was given, and what ran before it."""
        if device is not None and device.type == "meta":
            on_meta = self.meta_failure(exc)
            if on_meta is not None:
                return on_meta
        reason = one_line(f"{type(exc).__name__}: {exc}", limit=400)
        done = sorted((c for c in self.calls if c.end_index >= 0 and c.module),
                      key=lambda c: c.end_index)
        if self.stack:
            call = self.stack[-1]
            record = self.records[call.module]
            where = (f"in {record.label} ({record.type}) given input {_shapes_text(call)}"
                     if call.module else f"in {record.type}.forward itself, given input "
                     f"{_shapes_text(call)}")
        else:
            where = "before any module ran"
        if done:
            last = ", ".join(c.module for c in done[-3:])
            before = f"; {len(done)} module call(s) ran before it, the last: {last}"
        else:
            before = "; it was the first module to run"
        fix = ("Check `sizes` (given without the batch dimension) and their dtypes; "
               "`debug` shows the traceback.")
        if ONE_VALUE_PER_CHANNEL in str(exc):
            # Batch norm in training mode at batch 1, with a 1x1 map: the batch statistics need
            # two values per channel. No size fixes that; more samples do, as in real training.
            fix = ("A BatchNorm layer in training mode needs more than one value per channel: "
                   "give `batch_size=2` or more.")
        return ForwardError(f"forward pass failed {where}: {reason}{before}.", fix)


    def meta_failure(self, exc: BaseException) -> ForwardError | None:
        """The model needs values the meta device does not have: no size would help, so say
        where it reads them (its line, else the running module) instead of blaming `sizes`."""
        kernel = meta.missing_kernel(exc)
        if kernel is None and not meta.reads_values(exc):
            return None
        where = meta.culprit(exc)
        if self.stack and self.stack[-1].module:
            record = self.records[self.stack[-1].module]
            running = f"in {record.label} ({record.type})"
        else:
            running = f"in {self.records[''].type}.forward" if "" in self.records else ""
        at = " ".join(part for part in (running, f"({where})" if where else "") if part)
        what = (f"uses {kernel}, which has no meta implementation" if kernel
                else "reads tensor values (.item(), if on a tensor, nonzero)")
        return ForwardError(
            f"the model {what}, so it cannot run on the meta device, whose tensors have shapes "
            f"but no values{f': {at}' if at else ''}.",
            "Run it on a real device with `device=cpu`; `debug` shows the traceback.",
        )


#: torch's message when batch norm trains on one value per channel (batch 1, a 1x1 map).
ONE_VALUE_PER_CHANNEL = "Expected more than 1 value per channel when training"
#: The frames ``nn.Module.__call__`` runs a module's ``forward`` from: its short path, the
#: closure of its path with hooks, and the path it takes while torch.jit traces.
_CALL_IMPL = nn.Module._call_impl.__code__
_CALLERS = frozenset({_CALL_IMPL, nn.Module._slow_forward.__code__,
                      *(c for c in _CALL_IMPL.co_consts if isinstance(c, types.CodeType))})
#: How a module's FLOPs may come from its shapes: never (watch its ops), always zero, or as
#: ``flops.shape_formula`` says for what it was given.
_NO_FORMULA, _ZERO, _ASK = range(3)


@contextmanager
def _recording(modules: dict[str, nn.Module], state: _Pass) -> Iterator[None]:
    """Each of the model's modules records its calls for the pass: its ``forward`` is wrapped,
    on the instance, and given back afterwards.

    Module hooks would see the same calls (torchinfo and torchview use them), but a hook makes
    torch take ``__call__``'s long path at every call of every module, which costs more than
    all of the recording (resnet50: 1.5 ms of a 55 ms pass). The wrapper records a call only
    when ``__call__`` made it, as a hook would: ``block.forward(x)`` called directly is part of
    its caller's call. A forward pre-hook's view is kept: a call's record and its probes'
    ``call_start`` have the positional arguments, the keyword ones come with ``call_end``.
    """
    records = state.records
    calls, stack = state.calls, state.stack
    describe = state.describe
    probes = state.probes
    counter = state.counter
    finished = itertools.count()
    getframe = sys._getframe
    callers = _CALLERS
    pop, push = _pop_mode, _push_mode

    def recorded(module: nn.Module, record: ModuleRecord) -> Callable[..., Any]:
        forward = module.forward
        kind = type(module)
        how = (_NO_FORMULA if counter is None else _ZERO if kind in ZERO_FLOP_TYPES
               else _ASK if kind in FORMULA_TYPES else _NO_FORMULA)
        name, depth, own = record.name, record.depth, record.calls

        def forward_recorded(*args: Any, **kwargs: Any) -> Any:
            if getframe(1).f_code not in callers:  # called directly, not as a module call
                return forward(*args, **kwargs)
            # The call begins: what it was given (keyword arguments come with its end).
            call = CallRecord(
                len(calls), name, depth, stack[-1].index if stack else None,
                (describe(args[0]),) if len(args) == 1 else tuple([describe(a) for a in args]),
                {})
            calls.append(call)
            own.append(call)
            stack.append(call)
            formula = None
            if how and state.counting:
                formula = zero_flops if how == _ZERO else shape_formula(module, args)
                # A stock leaf layer: its FLOPs follow from shapes, so the counter steps off the
                # mode stack while it runs. If another mode sits above ours, it keeps watching.
                if formula is not None:
                    mode = pop(None)
                    if mode is counter:
                        state.paused = True
                    else:
                        push(mode)
                        formula = None
            if probes:
                for probe in probes:
                    probe.call_start(call, module, args)
            output = forward(*args, **kwargs)
            # The call ends (and any call inside it that raised, caught by the model's code).
            while stack and stack.pop() is not call:
                pass
            if formula is not None:
                push(counter)  # type: ignore[arg-type]  # a formula implies the counter
                state.paused = False
                if formula is not zero_flops:
                    flops = formula(module, args, output)
                    if flops:
                        call.flops += flops
                        state.total_flops += flops
                        if formula in INTEGER_FORMULAS:
                            call.int_flops += flops
                            state.int_flops += flops
            if kwargs:
                call.kwargs = {k: describe(v) for k, v in kwargs.items()}
            call.output = describe(output)
            call.end_index = next(finished)
            if probes:
                for probe in probes:
                    probe.call_end(call, module, args, kwargs, output)
            return output

        forward_recorded.__wrapped__ = forward  # type: ignore[attr-defined]  # its signature
        return forward_recorded

    wrapped: list[tuple[dict[str, Any], Any]] = []
    try:
        for name, module in modules.items():
            attributes = module.__dict__
            wrapped.append((attributes, attributes.get("forward", _UNSET)))
            attributes["forward"] = recorded(module, records[name])
        yield
    finally:
        for attributes, own in wrapped:
            if own is _UNSET:
                attributes.pop("forward", None)
            else:
                attributes["forward"] = own


#: No forward of a module's own (an instance attribute), to put back after the pass.
_UNSET = object()


@contextmanager
def _mode(model: nn.Module, modules: dict[str, nn.Module], train: bool) -> Iterator[None]:
    """Eval (or train) mode for the pass; afterwards every module's flag as it was, and in train
    mode the buffers too (BatchNorm updates its running statistics as a side effect)."""
    flags = [(m, m.training) for m in modules.values()]
    saved = ([(b, b.detach().clone()) for b in model.buffers() if not b.is_meta]
             if train else [])
    try:
        if any(flag != train for _, flag in flags):
            model.train(train)  # through train(): subclasses may override it
        yield
    finally:
        for module, flag in flags:
            if module.training != flag:
                module.training = flag
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


@contextmanager
def _placed(model: nn.Module, device: torch.device | None) -> Iterator[nn.Module]:
    """Run on ``device`` and move the model back afterwards; meta gets a weightless copy."""
    current = model_device(model)
    if device is None or current is None or current == device:
        yield model
    elif device.type == "meta":
        yield meta_copy(model)
    else:
        try:
            yield model.to(device)
        finally:
            model.to(current)


@contextmanager
def as_run(model: nn.Module, device: torch.device | None, *, train: bool = False) -> (
        Iterator[nn.Module]):
    """The model placed and moded as the pass runs it, for another consumer of the same model
    (the ONNX exporter traces it); device, flags and buffers restored afterwards."""
    with _placed(model, device) as placed, _mode(placed, dict(placed.named_modules()), train):
        yield placed


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection during the pass: the records are thousands of small objects
    that would otherwise trigger collections, each walking every object in the process."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextmanager
def _no_fastpath() -> Iterator[None]:
    """Turn off nn.TransformerEncoderLayer's fused fast path, which skips its submodules' calls
    (so their hooks never fire) and runs one fused op no FLOP formula knows."""
    mha = getattr(torch.backends, "mha", None)
    if mha is None or not hasattr(mha, "set_fastpath_enabled"):
        yield
        return
    previous = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(previous)


@contextmanager
def _full_precision(device: torch.device) -> Iterator[None]:
    """float32 as float32 on CUDA: cuDNN convolutions default to TF32, which rounds inputs to 10
    mantissa bits, so a reference output drifts by 2e-3 from the exact values that ONNX Runtime
    computes (resnet18 on an H100), and activation statistics would describe TF32, not the model."""
    if device.type != "cuda":
        yield
        return
    cudnn, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = cudnn, matmul


def _quantized_module(model: nn.Module) -> tuple[str, str] | None:
    """(name, type) of the first module holding torch.ao packed params, or None."""
    for name, module in model.named_modules():
        if _packed_params(module):
            return name, type(module).__name__
    return None


def _cpu_only(model: nn.Module, device: torch.device | None) -> None:
    """Quantized kernels (quantized::conv2d, quantized::linear...) exist only for the CPU and
    their packed weights do not move: on meta or CUDA the pass would fail deep inside torch, so
    we say so in one line first."""
    if device is None or device.type == "cpu":
        return
    found = _quantized_module(model)
    if found is not None:
        name, kind = found
        raise ForwardError(
            f"the model is quantized ({name or 'the model'} is a {kind} holding packed int8 "
            f"weights), and quantized kernels run only on the CPU, not on {device.type}.",
            "Run it with `device=cpu`.",
        )


def _cuda_sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _traced(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], *,
            device: torch.device | None, train: bool, grad: bool, keep_output: bool,
            count_flops: bool, probes: tuple[Probe, ...], exact: bool) -> Trace:
    """The pass itself and its records, for ``run``."""
    with _placed(model, device) as placed:
        modules = dict(placed.named_modules())
        records = scan(placed, modules)
        state = _Pass(records, probes, count_flops)
        run_device = device or model_device(placed) or torch.device("cpu")
        if run_device.type == "meta" and "transformers" in sys.modules:
            from modelviz.core.hub import meta_safe_masks

            meta_safe_masks()  # a transformers model passed in, not built by name
        dtype = model_dtype(placed)
        peak: int | None = None
        _cuda_sync(run_device)
        if run_device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(run_device)
        started = time.perf_counter()
        watch = placeholders.watch(placed, (args, kwargs))
        with ExitStack() as stack:
            stack.enter_context(_recording(modules, state))
            stack.enter_context(_mode(placed, modules, train))
            stack.enter_context(torch.set_grad_enabled(grad))
            stack.enter_context(_no_fastpath())
            if exact:
                stack.enter_context(_full_precision(run_device))
            for probe in probes:
                stack.enter_context(probe.context())
            if watch is not None:  # under the counter, which steps off the top for leaves
                stack.enter_context(watch)
            try:
                state.start_counting()
                output = placed(*args, **kwargs)
            except (Exception, SystemExit) as exc:  # the model's code calling exit() too
                raise state.failure(exc, run_device) from exc
            finally:
                state.stop_counting()
                state.counter = None  # it calls back into the state: no cycle left behind
            _cuda_sync(run_device)
        if watch is not None and watch.read is not None:  # the model caught ValuesNeeded
            raise placeholders.ValuesNeeded(watch.read)
        elapsed = time.perf_counter() - started
        if run_device.type == "cuda":
            peak = int(torch.cuda.max_memory_allocated(run_device))
    state.settle()
    for record in reversed(records.values()):  # children come after their parent
        if record.calls:
            record.flops = sum([c.flops for c in record.calls])
            record.int_flops = sum([c.int_flops for c in record.calls])
        elif record.children:
            record.flops = sum([records[c].flops for c in record.children])
            record.int_flops = sum([records[c].int_flops for c in record.children])
    trace = Trace(
        model_type=type(model).__name__, modules=records, calls=state.calls,
        inputs=[describe(a) for a in args] + ([describe(kwargs)] if kwargs else []),
        output=describe(output), device=str(run_device),
        dtype=dtype_name(dtype) if dtype is not None else "float32", elapsed_s=elapsed,
        peak_memory_bytes=peak, flops=state.total_flops, int_flops=state.int_flops,
        uncounted=state.uncounted,
        output_value=output if keep_output else None,
    )
    return trace


def run(model: nn.Module, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None, *,
        device: torch.device | None = None, train: bool = False, grad: bool = False,
        keep_output: bool = False, count_flops: bool = True,
        probes: tuple[Probe, ...] = (), exact: bool = True) -> Trace:
    """Run ``model(*args, **kwargs)`` once, recorded, and return what every module did.

    ``exact``: float32 computed as float32 on CUDA (no TF32), for values others compare with;
    ``memory`` turns it off, since cuDNN picks other algorithms, with other workspaces, then."""
    kwargs = kwargs or {}
    _cpu_only(model, device)
    # No cyclic collection from the scan to the trace: thousands of small records that would
    # set off collections, each walking every object in the process (torch's 330,000).
    with _gc_paused():
        trace = _traced(model, args, kwargs, device=device, train=train, grad=grad,
                        keep_output=keep_output, count_flops=count_flops, probes=probes,
                        exact=exact)
    for probe in probes:
        trace.probes[probe.name] = probe.finish(trace)
    return trace
