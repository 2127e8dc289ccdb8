"""Parsing of the small languages on the command line: sizes, dtypes, devices, budgets, kwargs.

Everything here is validated once, at the edge, and turned into plain values; the bad value is
always quoted in the error. This module does not import torch, so parsing errors come back fast.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from modelviz.errors import SpecError

#: Accepted dtype spellings, mapped to the canonical torch attribute name.
DTYPE_ALIASES: dict[str, str] = {
    "float32": "float32", "float": "float32", "fp32": "float32", "f32": "float32",
    "float16": "float16", "half": "float16", "fp16": "float16", "f16": "float16",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float64": "float64", "double": "float64", "fp64": "float64", "f64": "float64",
    "int64": "int64", "long": "int64", "i64": "int64",
    "int32": "int32", "int": "int32", "i32": "int32",
    "int16": "int16", "short": "int16", "i16": "int16",
    "int8": "int8", "i8": "int8",
    "uint8": "uint8", "u8": "uint8",
    "bool": "bool",
    "complex64": "complex64",
}
FLOAT_DTYPES = frozenset({"float32", "float16", "bfloat16", "float64"})
#: Dtypes a model may be cast to with --dtype.
MODEL_DTYPES = ("float32", "float16", "bfloat16", "float64")
#: Suffixes of the files MODEL may name (a script, or a model or checkpoint saved by torch,
#: safetensors or ONNX): the one list, for telling a path from a module name and for naming
#: outputs after the model's file. Here, free of torch, so that the CLI may read it too.
MODEL_FILE_SUFFIXES = (".py", ".pt", ".pth", ".pt2", ".ts", ".jit", ".bin", ".ckpt",
                       ".safetensors", ".onnx", ".pkl")

_DIM_SEPARATORS = re.compile(r"[xX×*,]")


@dataclass(frozen=True)
class InputSpec:
    """One model input as the user wrote it, without the batch dimension."""

    dims: tuple[int, ...]
    dtype: str | None = None  # None: floating point, in the model's dtype
    #: The keyword of ``forward`` this input is passed as; None: positional, in order.
    name: str | None = None

    def __str__(self) -> str:
        body = "x".join(str(d) for d in self.dims)
        body = f"{self.dtype}:{body}" if self.dtype else body
        return f"{self.name}={body}" if self.name else body

    @property
    def is_float(self) -> bool:
        return self.dtype is None or self.dtype in FLOAT_DTYPES


def parse_dtype(text: str, *, allowed: tuple[str, ...] | None = None) -> str:
    """Turn a dtype spelling into its canonical name (``fp16`` -> ``float16``)."""
    name = DTYPE_ALIASES.get(text.strip().lower())
    if name is None or (allowed is not None and name not in allowed):
        choices = (", ".join(allowed) if allowed
                   else "float32, float16, bfloat16, int64, int32, bool")
        raise SpecError(f"unknown dtype {text!r}.", f"Use one of: {choices}.")
    return name


def parse_size(text: str) -> InputSpec:
    """Parse ``[NAME=][DTYPE:]D1xD2x...`` such as ``3x224x224``, ``int64:128`` or
    ``attention_mask=int64:128`` (a keyword input of ``forward``)."""
    raw = text.strip()
    name: str | None = None
    if "=" in raw:
        key, _, raw = raw.partition("=")
        name, raw = key.strip(), raw.strip()
        if not name.isidentifier():
            raise SpecError(
                f"bad size {text!r}: {name!r} is not a parameter name.",
                "Write NAME=SIZE with NAME a parameter of the model's forward, e.g. "
                "attention_mask=int64:128 (or plain sizes such as 3x224x224).")
    dtype: str | None = None
    body = raw
    if ":" in raw:
        prefix, body = raw.split(":", 1)
        try:
            dtype = parse_dtype(prefix)
        except SpecError as exc:
            raise SpecError(f"bad size {text!r}: unknown dtype {prefix.strip()!r}.",
                            exc.fix) from None
    parts = [p.strip() for p in _DIM_SEPARATORS.split(body)]
    if not body.strip() or any(not (p.isascii() and p.isdigit()) or int(p) == 0 for p in parts):
        raise SpecError(
            f"bad size {text!r}: each dimension must be a positive whole number.",
            "Write sizes without the batch dimension, e.g. 3x224x224, 10 or int64:128.",
        )
    return InputSpec(dims=tuple(int(p) for p in parts), dtype=dtype, name=name)


def check_named(specs: list[InputSpec]) -> list[InputSpec]:
    """Positional sizes first, then named ones, each name once: as in a Python call, so that
    which parameter each size binds to is plain."""
    seen: set[str] = set()
    for index, spec in enumerate(specs):
        if spec.name is None:
            named = next((s for s in specs[:index] if s.name), None)
            if named is not None:
                raise SpecError(
                    f"positional size {str(spec)!r} comes after named size {str(named)!r} in "
                    "`sizes`.",
                    f"Put positional sizes first, or name this one too (NAME={spec}).")
        elif spec.name in seen:
            raise SpecError(f"`sizes` names {spec.name!r} twice.", "Give each input once.")
        else:
            seen.add(spec.name)
    return specs


def parse_sizes(texts: list[str] | tuple[str, ...] | None) -> list[InputSpec]:
    return check_named([parse_size(t) for t in texts or ()])


_DEVICE_RE = re.compile(r"^(auto|cpu|meta|mps|cuda(:\d+)?)$")


def parse_device(text: str) -> str:
    """Check the device spelling; whether it exists here is decided when it is used."""
    value = text.strip().lower()
    if not _DEVICE_RE.match(value):
        raise SpecError(
            f"unknown device {text!r}.", "Use auto, cpu, cuda, cuda:N, mps or meta."
        )
    return value


#: Counts past this are typing mistakes (a petaFLOP is 1e15).
MAX_COUNT = 1e30
_SUFFIXES = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "B": 10**9, "T": 10**12}
_NUMBER_RE = re.compile(r"^\s*([0-9][0-9_,]*(?:\.[0-9]+)?(?:e[0-9]+)?)\s*([KMGBT]?)\s*$", re.I)


def parse_count(text: str, *, what: str = "number") -> int:
    """Parse a count with an optional SI suffix: ``25M``, ``5G``, ``1.5e9``, ``138,357,544``."""
    match = _NUMBER_RE.match(text)
    if not match:
        raise SpecError(
            f"bad {what} {text!r}.",
            "Write a number with an optional K, M, G or T suffix, e.g. 25M.",
        )
    number = float(match.group(1).replace("_", "").replace(",", "")) * _SUFFIXES[
        match.group(2).upper()]
    if not number < MAX_COUNT:  # 1e999 is inf, and inf cannot be rounded to a count
        raise SpecError(f"bad {what} {text!r}: too large.",
                        f"Write a number below {MAX_COUNT:.0e}, e.g. 25M.")
    return round(number)


def parse_budget(text: str, *, what: str) -> int:
    """A count that something must stay under: above zero, since nothing is below it."""
    value = parse_count(text, what=what)
    if value <= 0:
        raise SpecError(f"bad {what} {text!r}: a budget must be above 0.",
                        f"Give the most allowed, e.g. {what} 25M.")
    return value


def check_seed(seed: int) -> int:
    """torch seeds are 64-bit: a larger one fails deep inside torch."""
    if not 0 <= seed < 2**63:
        raise SpecError(f"bad `seed={seed}`.", f"Use a whole number from 0 to {2**63 - 1}.")
    return seed


def check_tolerance(atol: float | None, what: str = "`atol`") -> float | None:
    """A tolerance is a positive, finite number (``nan`` compares false with everything)."""
    if atol is not None and not 0 < atol < float("inf"):
        raise SpecError(f"bad {what} {atol}.", "Use a positive number, e.g. 1e-4.")
    return atol


def parse_kwarg(text: str, *, what: str = "kwargs",
                example: str = "num_classes=10") -> tuple[str, object]:
    """Parse ``key=value``; the value is a Python literal, or the bare string if it is not one.
    ``what`` names the parameter in the error (`kwargs`, `forward_args`)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key.isidentifier():
        raise SpecError(
            f"bad `{what}={text!r}`.", f"Write key=value, e.g. `{what}={example}`."
        )
    try:
        parsed: object = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
        parsed = value.strip()
    return key, parsed


def parse_kwargs(texts: list[str] | tuple[str, ...] | None) -> dict[str, object]:
    return dict(parse_kwarg(t) for t in texts or ())


def parse_forward_args(texts: list[str] | tuple[str, ...] | None) -> dict[str, object]:
    """``--forward-arg use_cache=False``: non-tensor keyword arguments of ``forward``."""
    return dict(parse_kwarg(t, what="forward_args", example="use_cache=False")
                for t in texts or ())


# Image preprocessing: modelviz activations --image --resize --mean --std.

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)(e[+-]?\d+)?$", re.IGNORECASE)


def parse_resize(text: str | None) -> int | tuple[int, int] | None:
    """``224`` (shorter side, then a centre square) or ``224x160`` (height x width)."""
    if text is None:
        return None
    parts = [p.strip() for p in re.split(r"[xX×,]", text.strip())]
    if len(parts) in (1, 2) and all(p.isascii() and p.isdigit() and int(p) > 0 for p in parts):
        values = [int(p) for p in parts]
        return values[0] if len(values) == 1 else (values[0], values[1])
    raise SpecError(f"bad `resize={text!r}`.",
                    "Write one size (224: shorter side, then a centre crop) or HxW (224x224).")


def parse_floats(text: str | None, what: str) -> tuple[float, ...] | None:
    """``0.485,0.456,0.406`` -> a tuple; ``--std`` values must be positive."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    if not all(_NUMBER.match(p) for p in parts):
        raise SpecError(f"bad {what} {text!r}.",
                        "Write comma-separated numbers, one per channel or one for all, "
                        "e.g. 0.485,0.456,0.406.")
    values = tuple(float(p) for p in parts)
    if what == "`std`" and any(v <= 0 for v in values):
        raise SpecError(f"bad `std={text!r}`: every value must be above 0.",
                        "Write positive numbers, e.g. 0.229,0.224,0.225.")
    return values
