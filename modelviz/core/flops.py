"""FLOP counting with ``torch.utils.flop_counter``'s formulas, attributed to the running modules.

``FlopCounterMode`` itself costs about 1.8x a bare forward pass on resnet50 (every op goes through
Python, and its module tracker flattens every input and output). We use the same formula registry
in a leaner dispatch mode, and we step out of it for the standard leaf layers (``Conv2d``,
``Linear``, ``ReLU``, ``BatchNorm2d``...) whose FLOPs follow from their shapes alone: for them we
apply the very formula FlopCounterMode would, to the shapes the module saw. Totals equal
FlopCounterMode's; the tests check that on several torchvision models.

Two additions, so that no fused kernel counts as zero:
- nn.LSTM, nn.GRU and nn.RNN run as one fused op that FlopCounterMode counts as zero; we count
  their matrix products (2 FLOPs per multiply-add, as for Linear).
- ``scaled_dot_product_attention`` on the CPU runs ``_scaled_dot_product_flash_attention_for_cpu``
  (and on other backends ``_scaled_dot_product_fused_attention_overrideable``), which torch's
  registry has no formula for: a model's attention vanished on cpu and not on meta or cuda. We
  count them with torch's own attention formula, so the totals are the same on every device.

Quantized models (torch.ao) run ops torch's registry does not know: ``quantized::conv2d``,
``quantized::linear``, their fused ``_relu`` forms, the dynamic ``linear_dynamic``, and
``aten::quantized_lstm``/``quantized_gru``. Their weights sit in packed params (a ScriptObject), so
we read the weight's shape from there and apply the float ops' formulas: quantized resnet50 counts
the FLOPs float resnet50 does. These FLOPs run in integer kernels (int8 weights, uint8
activations), and the counter says so; ``aten::_int_mm`` too. ``quantized::add``, ``mul`` and
``cat`` count zero, as their float forms do.

Any other op without a formula whose name says it multiplies matrices (attention, conv, mm,
linear, rnn, quantized kernels...) is reported through ``uncounted`` instead of passing as zero.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.ao.nn.quantized import dynamic as quantized_dynamic
from torch.utils._python_dispatch import TorchDispatchMode


@contextmanager
def _without_triton() -> Iterator[None]:
    """Import torch's flop counter without triton where no kernel of triton's can run: the
    counter imports it (0.2-0.35 s) only to recognise triton kernels, which run on GPUs alone
    and which our counter does not count; without a GPU, nothing is lost."""
    if "triton" in sys.modules or "torch.utils.flop_counter" in sys.modules \
            or torch.cuda.is_available():
        yield
        return
    log = logging.getLogger("torch.utils.flop_counter")
    level = log.level
    log.setLevel(logging.ERROR)  # "triton not found": true here, and nothing to act on
    sys.modules["triton.runtime.jit"] = None  # type: ignore[assignment]  # import fails
    try:
        yield
    finally:
        del sys.modules["triton.runtime.jit"]
        log.setLevel(level)


with _without_triton():
    from torch.utils.flop_counter import conv_flop_count, flop_registry, mm_flop

#: torch's matrix-product formula itself, without the pytree walk that maps tensors to shapes.
_mm_flop: Callable[..., int] = getattr(mm_flop, "__wrapped__", mm_flop)

_aten = torch.ops.aten
_CIA = torch._C.DispatchKey.CompositeImplicitAutograd


def _formulas() -> dict[Any, Callable[..., int]]:
    """torch's registry, plus the fused attention kernels it has no entry for, counted with
    its own attention formulas (their first arguments are the same: query, key, value; for the
    backward, grad_out first). torch's registry itself is left as it is."""
    table = dict(flop_registry)
    forward = flop_registry.get(_aten._scaled_dot_product_flash_attention)
    backward = flop_registry.get(_aten._scaled_dot_product_flash_attention_backward)
    extra = {"_scaled_dot_product_flash_attention_for_cpu": forward,
             "_scaled_dot_product_fused_attention_overrideable": forward,
             "_scaled_dot_product_flash_attention_for_cpu_backward": backward,
             "_scaled_dot_product_fused_attention_overrideable_backward": backward}
    for name, formula in extra.items():
        packet = getattr(_aten, name, None)  # absent from older torch
        if packet is not None and formula is not None and packet not in table:
            table[packet] = formula
    return table


def _packed_weight_shape(args: tuple[Any, ...]) -> list[int] | None:
    """The weight shape inside a quantized op's packed params (the first ScriptObject among its
    arguments): torch.ao keeps the int8 weight there, not in a tensor argument."""
    packed: Any = next((a for a in args if isinstance(a, torch.ScriptObject)), None)
    if packed is None:  # Any: a ScriptObject's methods are its TorchScript class's, untyped
        return None
    try:
        if packed._has_method("weight"):  # conv packed params
            weight = packed.weight()
        elif packed._has_method("unpack"):  # linear packed params: (weight, bias)
            weight = packed.unpack()[0]
        else:
            return None
    except RuntimeError:
        return None
    return list(weight.shape) if isinstance(weight, torch.Tensor) else None


def _quantized_conv(transposed: bool) -> Callable[..., int]:
    def formula(*args: Any, out_val: Any = None, **kwargs: Any) -> int:
        x, weight = args[0], _packed_weight_shape(args)
        if weight is None or not isinstance(x, torch.Tensor) or not isinstance(
                out_val, torch.Tensor):
            return 0
        return int(conv_flop_count(list(x.shape), weight, list(out_val.shape), transposed))
    return formula


def _quantized_linear(*args: Any, out_val: Any = None, **kwargs: Any) -> int:
    x, weight = args[0], _packed_weight_shape(args)
    if weight is None or len(weight) != 2 or not isinstance(x, torch.Tensor) or not x.dim():
        return 0
    rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
    return int(mm_flop((rows, weight[1]), (weight[1], weight[0])))


def _int_mm(a: torch.Tensor, b: torch.Tensor, *args: Any, out_val: Any = None,
            **kwargs: Any) -> int:
    """int8 x int8 -> int32 matrix product (torch._int_mm), counted as mm is."""
    return int(mm_flop(tuple(a.shape), tuple(b.shape)))


_QUANTIZED_CONVS = {f"conv{n}d{suffix}": False for n in (1, 2, 3)
                    for suffix in ("", "_relu", "_add", "_add_relu")}
_QUANTIZED_CONVS |= {f"conv_transpose{n}d": True for n in (1, 2, 3)}
_QUANTIZED_LINEARS = (
    "linear", "linear_relu", "linear_leaky_relu", "linear_tanh", "linear_dynamic",
    "linear_relu_dynamic", "linear_with_input_q_dq_qweight_dq_output_fp32",
    "linear_with_input_q_dq_qweight_dq_relu_output_fp32",
)
#: fp16 dynamic linears keep float16 weights and compute in float: counted, but not integer.
_FLOAT_QUANTIZED_LINEARS = ("linear_dynamic_fp16", "linear_relu_dynamic_fp16")


def _quantized_formulas() -> tuple[dict[Any, Callable[..., int]], frozenset[Any]]:
    """Formulas for the quantized ops, keyed by overload packet, and those that are integer."""
    table: dict[Any, Callable[..., int]] = {}
    integer: set[Any] = set()
    ops = torch.ops.quantized
    for name, transposed in _QUANTIZED_CONVS.items():
        packet = getattr(ops, name, None)
        if packet is not None:
            table[packet] = _quantized_conv(transposed)
            integer.add(packet)
    for name in (*_QUANTIZED_LINEARS, *_FLOAT_QUANTIZED_LINEARS):
        packet = getattr(ops, name, None)
        if packet is not None:
            table[packet] = _quantized_linear
            if name not in _FLOAT_QUANTIZED_LINEARS:
                integer.add(packet)
    packet = getattr(_aten, "_int_mm", None)
    if packet is not None and packet not in flop_registry:
        table[packet] = _int_mm
        integer.add(packet)
    return table, frozenset(integer)


FORMULAS = _formulas()
_QUANTIZED, INTEGER_OPS = _quantized_formulas()
FORMULAS.update(_QUANTIZED)

#: Operators whose registered formula only maps its tensors to their shapes (torch's
#: ``shape_wrapper``, through a pytree walk that costs more than the formula) before calling
#: the formula itself, and whose arguments hold no tensor inside a list: for them the counter
#: passes the shapes itself, to the very same function.
_SHAPE_ONLY = ("mm", "addmm", "bmm", "baddbmm", "_scaled_mm", "convolution", "_convolution",
               "cudnn_convolution", "convolution_overrideable", "_slow_conv2d_forward",
               "_scaled_dot_product_efficient_attention", "_scaled_dot_product_flash_attention",
               "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_flash_attention_for_cpu",
               "_scaled_dot_product_fused_attention_overrideable")


def _raw_formulas() -> dict[Any, Callable[..., int]]:
    table = {}
    for name in _SHAPE_ONLY:
        packet = getattr(_aten, name, None)
        raw = getattr(FORMULAS.get(packet), "__wrapped__", None) if packet is not None else None
        if raw is not None:
            table[packet] = raw
    return table


RAW_FORMULAS = _raw_formulas()


def _shape(value: Any) -> Any:
    return value.shape if isinstance(value, torch.Tensor) else value


def _shapes(values: Any) -> Any:
    """What torch's ``shape_wrapper`` makes of an operator's arguments or result, one level
    deep (enough for the operators in ``RAW_FORMULAS``)."""
    if isinstance(values, torch.Tensor):
        return values.shape
    if isinstance(values, (tuple, list)):
        return tuple(_shape(v) for v in values)
    return values

#: Ops whose name says they multiply matrices: without a formula they would count zero FLOPs
#: where the model does most of its arithmetic, so they are reported instead.
_HEAVY = re.compile(r"attention|conv(?!ert)|mm|matmul|linear|einsum|rnn|lstm|gru|gemm|"
                    r"transformer|tensordot|^v?dot$")
#: ...except resampling, whose names say "linear" for the interpolation it does.
_RESAMPLING = re.compile(r"upsample|interp|grid_sampl")

#: Leaf modules whose forward runs no op that FlopCounterMode counts: zero FLOPs, no need to watch.
_ZERO_FLOP_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus,
    nn.Softsign, nn.Tanhshrink, nn.Threshold, nn.GLU, nn.LogSigmoid,
    nn.Softmax, nn.LogSoftmax, nn.Softmin,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
    nn.Identity, nn.Flatten, nn.Unflatten,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LocalResponseNorm,
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
    nn.ZeroPad2d, nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d,
    nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReplicationPad1d, nn.ReplicationPad2d,
    nn.PixelShuffle, nn.PixelUnshuffle, nn.ChannelShuffle, nn.Upsample,
    nn.Embedding,
) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())

_TRANSPOSED_TYPES = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, *_TRANSPOSED_TYPES)


def macs(flops: int) -> int:
    """Multiply-accumulates from FLOPs: the formulas count 2 FLOPs per multiply-add, so every
    MACs figure (totals, layers, JSON) is this one halving, rounded down."""
    return flops // 2


def _first_tensor(args: tuple[Any, ...]) -> torch.Tensor | None:
    return args[0] if args and isinstance(args[0], torch.Tensor) else None


# The formulas below are the ones registered for aten.convolution and aten.mm, called on shapes
# directly: going through the registry's pytree wrapper would cost more than the layer itself.
# Called at every leaf of every pass: weights are read from ``_parameters`` (``module.weight``
# goes through nn.Module.__getattr__) and shapes are passed as torch.Size, which the formulas
# unpack and slice as they would lists.
def _conv_flops(module: nn.Module, args: tuple[Any, ...], out: Any) -> int:
    weight = module._parameters["weight"]
    assert weight is not None
    return int(conv_flop_count(args[0].shape, weight.shape, out.shape,  # type: ignore[arg-type]
                               type(module) in _TRANSPOSED_SET))


def _linear_flops(module: nn.Module, args: tuple[Any, ...], out: Any) -> int:
    config = module.__dict__
    x = args[0]
    rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
    width = config["in_features"]
    return int(_mm_flop((rows, width), (width, config["out_features"])))


def _zero_flops(module: nn.Module, args: tuple[Any, ...], out: Any) -> int:
    return 0


zero_flops = _zero_flops


_GATES: dict[type[nn.Module], int] = {nn.LSTM: 4, nn.GRU: 3, nn.RNN: 1}
#: torch.ao's dynamic quantized LSTM/GRU: int8 weights, one fused op (aten::quantized_lstm).
_QUANTIZED_GATES: dict[type[nn.Module], int] = {quantized_dynamic.LSTM: 4,
                                                quantized_dynamic.GRU: 3}


def _recurrent_flops(module: nn.Module, args: tuple[Any, ...], out: Any) -> int:
    """The matrix products of nn.LSTM/GRU/RNN, which FlopCounterMode cannot see: it gets one
    fused op (mkldnn_rnn_layer, _cudnn_rnn) that has no formula, and counts zero. The dynamic
    quantized LSTM/GRU have the same attributes and the same products."""
    config = module.__dict__  # plain attributes on both; nn.Module's __getattr__ is untyped
    x = args[0]
    if x.dim() == 2:  # unbatched: (sequence, features)
        steps, batch = x.shape[0], 1
    else:
        steps, batch = ((x.shape[1], x.shape[0]) if config.get("batch_first")
                        else (x.shape[0], x.shape[1]))
    gates = _GATES.get(type(module)) or _QUANTIZED_GATES[type(module)]
    hidden = int(config["hidden_size"])
    projection = int(config.get("proj_size") or 0)
    recurrent = projection or hidden
    directions = 2 if config.get("bidirectional") else 1
    total = 0
    for layer in range(int(config.get("num_layers", 1))):
        width = int(config["input_size"]) if layer == 0 else recurrent * directions
        per_step = _mm_flop((1, width + recurrent), (width + recurrent, gates * hidden))
        if projection:
            per_step += _mm_flop((1, hidden), (hidden, projection))
        total += per_step * steps * batch * directions
    return total


def _integer_recurrent_flops(module: nn.Module, args: tuple[Any, ...], out: Any) -> int:
    """A dynamic int8 LSTM/GRU: the same products as the float one, in integer kernels."""
    return _recurrent_flops(module, args, out)


def _attention_flops(module: nn.Module, args: tuple[Any, ...], out: Any) -> int:
    """nn.MultiheadAttention: the ops ``F.multi_head_attention_forward`` runs, counted from
    shapes as FlopCounterMode counts them one by one (a ViT-B/16 pass runs some 200 of them):

    * the input projections, one matrix product per distinct input (one for self-attention,
      two when key is value, three otherwise), 2·N·E·(L·E + S·kdim + S·vdim) in all;
    * the two attention products, Q·Kᵀ and A·V, 2·N·L·S'·E each, whether ``bmm`` computes
      them (``need_weights=True``), ``baddbmm`` with a mask, or the fused kernel (the same
      formula); S' = S, plus one for ``bias_k`` and one for ``add_zero_attn``;
    * the output projection, 2·N·L·E·E.
    Masks, softmax, dropout and averaging the weights count nothing. tests/test_flops.py
    checks this against torch's FlopCounterMode over these variants."""
    config = module.__dict__
    query, key = args[0], args[1]
    embed = int(config["embed_dim"])
    if query.dim() == 3:
        batch, length = ((query.shape[0], query.shape[1]) if config.get("batch_first")
                         else (query.shape[1], query.shape[0]))
        source = key.shape[1] if config.get("batch_first") else key.shape[0]
    else:  # unbatched: (L, E)
        batch, length, source = 1, query.shape[0], key.shape[0]
    kdim, vdim = int(config["kdim"]), int(config["vdim"])
    projections = 2 * batch * embed * (length * embed + source * kdim + source * vdim)
    keys = source + (module._parameters.get("bias_k") is not None) + bool(
        config.get("add_zero_attn"))
    attention = 2 * _mm_flop((batch * length, embed), (embed, keys))
    output = _mm_flop((batch * length, embed), (embed, embed))
    return int(projections + attention + output)


ShapeFormula = Callable[[nn.Module, tuple[Any, ...], Any], int]
#: Shape formulas whose FLOPs run in integer kernels.
INTEGER_FORMULAS: frozenset[ShapeFormula] = frozenset({_integer_recurrent_flops})


def shape_formula(module: nn.Module, args: tuple[Any, ...]) -> ShapeFormula | None:
    """The FLOP formula for a stock leaf layer called in the usual way, or None to watch its ops.

    Only exact stock types qualify: a subclass may override ``forward`` and run anything. Keyword
    arguments cannot change the FLOPs of these layers (none of their ``forward``s takes one that
    would), so the positional ones decide.
    """
    kind = type(module)
    if kind in _ZERO_FLOP_SET:
        return _zero_flops
    x = _first_tensor(args)
    if kind in _QUANTIZED_GATES:  # it may get (x, h0); int8 or float16 weights
        if x is None:
            return None
        return (_recurrent_flops if getattr(module, "dtype", None) == torch.float16
                else _integer_recurrent_flops)
    if kind is nn.MultiheadAttention:  # (query, key, value, masks and flags...)
        if (x is None or len(args) < 3 or not isinstance(args[1], torch.Tensor)
                or not isinstance(args[2], torch.Tensor) or x.is_nested
                or x.dim() not in (2, 3)):
            return None
        return _attention_flops
    if x is None or (len(args) != 1 and kind not in _GATES):  # an RNN may get (x, h0)
        return None
    if kind in _CONV_SET:
        weight = module._parameters["weight"]
        return _conv_flops if weight is not None and x.dim() == weight.dim() else None
    if kind is nn.Linear:
        return _linear_flops if x.dim() >= 2 else None
    if kind in _GATES:
        return _recurrent_flops
    return None


_ZERO_FLOP_SET = frozenset(_ZERO_FLOP_TYPES)
_CONV_SET = frozenset(_CONV_TYPES)
_TRANSPOSED_SET = frozenset(_TRANSPOSED_TYPES)
#: Every type ``shape_formula`` may give a formula for: a module of another type never has one,
#: which the engine learns once per module instead of asking at every call.
FORMULA_TYPES: frozenset[type[nn.Module]] = (
    _ZERO_FLOP_SET | _CONV_SET | frozenset(_GATES) | frozenset(_QUANTIZED_GATES)
    | {nn.Linear, nn.MultiheadAttention})
#: Types whose formula is ``zero_flops`` whatever they are given.
ZERO_FLOP_TYPES = _ZERO_FLOP_SET


def uncountable(func: Any) -> str | None:
    """The name of an op that has no formula, does not decompose into ops that have one, and
    by its name does the kind of arithmetic FLOPs count; None for every other op."""
    name = str(func.name())
    short = name.split("::", 1)[-1].split(".", 1)[0]
    if _HEAVY.search(short) and not _RESAMPLING.search(short):
        return name.split(".", 1)[0]
    return None


class FlopCounter(TorchDispatchMode):  # type: ignore[no-untyped-call]  # torch's mode is untyped
    """Counts each op with FlopCounterMode's registry (and ``FORMULAS``' additions) and hands
    the count to ``sink``, with whether the op is integer (``INTEGER_OPS``); an op it cannot
    count but should goes to ``missed``."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        """No torch._dynamo wrapper around ``__torch_dispatch__`` (torch's default for modes):
        the pass is never compiled, and the wrapper costs two calls an operator and, at the
        first operator, the import of torch._dynamo (0.8 s)."""
        return False

    def __init__(self, sink: Callable[[int, bool], None],
                 missed: Callable[[str], None] | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.sink = sink
        self.missed = missed
        self._decomposable: dict[Any, bool] = {}
        self._heavy: dict[Any, str | None] = {}

    def _can_decompose(self, func: Any) -> bool:
        known = self._decomposable.get(func)
        if known is None:
            known = _CIA in getattr(func, "py_kernels", {}) or bool(
                torch._C._dispatch_has_kernel_for_dispatch_key(func.name(), _CIA))
            self._decomposable[func] = known
        return known

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        packet = func._overloadpacket
        raw = RAW_FORMULAS.get(packet)
        if raw is not None:
            out = func(*args, **kwargs)
            flops = raw(*_shapes(args), out_shape=_shapes(out),
                        **{k: _shape(v) for k, v in kwargs.items()})
            if flops:
                self.sink(int(flops), packet in INTEGER_OPS)
            return out
        formula = FORMULAS.get(packet)
        if formula is None:
            # Like FlopCounterMode: an op without a formula may decompose into ops with one.
            if self._can_decompose(func):
                with self:
                    result = func.decompose(*args, **kwargs)
                if result is not NotImplemented:
                    return result
            if self.missed is not None:
                if func not in self._heavy:
                    self._heavy[func] = uncountable(func)
                heavy = self._heavy[func]
                if heavy is not None:
                    self.missed(heavy)
            return func(*args, **kwargs)
        out = func(*args, **kwargs)
        flops = formula(*args, **kwargs, out_val=out)
        if flops:
            self.sink(int(flops), func._overloadpacket in INTEGER_OPS)
        return out
