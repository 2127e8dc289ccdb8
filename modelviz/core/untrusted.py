"""Reading the files users hand us (checkpoints, saved inputs, saved models) without running code
from them.

A ``torch.save`` file is a pickle, and unpickling runs whatever the file says. Every file modelviz
opens goes through here, and nothing here runs code from it unless the user said ``--trust-pickle``:

* checkpoints (``--weights``), saved inputs (``--input-file``) and state dicts load with
  ``weights_only=True``: tensors, containers and numbers only;
* a whole pickled model needs ``--trust-pickle``;
* TorchScript archives load with TorchScript's own unpickler, which builds only tensors and
  TorchScript's types and refuses every other Python global;
* exported programs (``.pt2``): ``torch.export.load`` was not written for untrusted files. It
  unpickles parts of the archive without ``weights_only`` (sample inputs, pickled weights and
  constants), parses symbolic shapes with sympy (which ``eval``s its string), ``exec``s the input
  guards stored in the archive, and writes names from the archive into the Python source of the
  module it generates. So the archive's JSON is checked first, field by field, against what torch
  itself writes (names are dotted identifiers, shape expressions and guards are arithmetic over
  symbols, nothing else), and while torch loads it, every unpickling is weights-only and every
  pickle that needs more is refused. Anything unexpected is refused with the fix.

Archives are also checked before anything is inflated: a zip whose entries claim far more than
the file holds is a zip bomb.
"""

from __future__ import annotations

import ast
import contextlib
import json
import pickle
import re
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from modelviz.errors import ModelFileError, UnsafePickleError, one_line
from modelviz.output import mark_input

#: An archive may inflate to this multiple of its size on disk; torch stores tensors uncompressed
#: (ratio 1), and weights that compress well enough to pass this are not weights.
MAX_INFLATION = 32
#: ...unless what it inflates to stays small anyway.
INFLATION_FLOOR = 256 * 2**20
MAX_ENTRIES = 1_000_000

TRUST_FIX = ("If you trust its source, add `trust_pickle`; better, save model.state_dict() and "
             "pass it with `weights`, or export to ONNX.")


def not_a_file(path: Path) -> str | None:
    """Why ``path`` cannot be read as a file (missing, a folder, a device), or None."""
    if path.is_file():
        return None
    if not path.exists():
        return "no such file"
    return "a folder, not a file" if path.is_dir() else "not a regular file (a device or a pipe?)"


def zip_names(path: Path, what: str) -> list[str]:
    """The entries of a zip archive (``[]`` for any other file), after refusing zip bombs."""
    try:
        if not zipfile.is_zipfile(path):
            return []
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        raise ModelFileError(f"{what} {path} is a damaged zip archive: {exc}.",
                             "Save the file again.") from exc
    size = path.stat().st_size
    inflated = sum(info.file_size for info in infos)
    if len(infos) > MAX_ENTRIES or (inflated > INFLATION_FLOOR
                                    and inflated > MAX_INFLATION * max(size, 1)):
        raise ModelFileError(
            f"{what} {path} is a zip archive of {size:,} bytes that claims to inflate to "
            f"{inflated:,} bytes in {len(infos):,} entries: a zip bomb, not a PyTorch file.",
            "Save the file again with torch.save, which stores tensors uncompressed.")
    return [info.filename for info in infos]


def _reason(exc: BaseException) -> str:
    """torch's weights-only refusal without its paragraphs of advice: the GLOBAL it refused."""
    text = one_line(exc, limit=10_000)
    found = re.search(r"(Unsupported (?:global|operand)[^.]*|unsupported GLOBAL [^ ]+[^.]*)",
                      text)
    return found.group(1) if found else one_line(text, limit=200)


def load_data(path: str | Path, what: str) -> Any:
    """A ``torch.save`` file of tensors, containers and numbers (``weights_only=True``).

    Raises ``UnsafePickleError`` when the file holds more (a pickled object, whose loading would
    run code), ``ModelFileError`` when it is no file torch can read.
    """
    file = Path(path)
    mark_input(file, what)
    zip_names(file, what)
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafePickleError(
            f"{what} {path} holds more than tensors ({_reason(exc)}), and loading it would run "
            "code from the file.", TRUST_FIX if what == "`model`" else
            "Save only tensors: model.state_dict(), a tensor, or a tuple or dict of tensors.",
        ) from exc
    except MemoryError as exc:
        raise ModelFileError(f"{what} {path} needs more memory than this machine has.",
                             "Load it on a larger machine.") from exc
    except Exception as exc:
        raise ModelFileError(f"{what} {path} is not a file torch.load can read: "
                             f"{one_line(exc)}",
                             "Give a file written by torch.save.") from exc


def load_pickle(path: Path) -> Any:
    """A whole pickled object: runs code from the file, so only under ``--trust-pickle``."""
    zip_names(path, "`model`")
    return torch.load(path, map_location="cpu", weights_only=False)


def load_torchscript(path: Path, map_location: torch.device | str) -> torch.nn.Module:
    """TorchScript's loader: its unpickler builds tensors and TorchScript types and refuses any
    other global, and the code it compiles can call only torch's operators."""
    import warnings

    with warnings.catch_warnings():  # torch 2.10+ deprecates TorchScript; we only read it
        warnings.simplefilter("ignore", FutureWarning)
        module: torch.nn.Module = torch.jit.load(  # type: ignore[no-untyped-call]
            str(path), map_location=map_location)
    return module


# ----------------------------------------------------------------------------------------------
# Exported programs.


class UnsafeArchive(Exception):
    """Something in an exported program's archive that torch would turn into running code."""


#: Plain tokens: names (``block.0.weight``), operators (``torch.ops.aten.add.Tensor``), devices
#: (``cuda:0``), versions (``2.14.1+cu130``); the empty name is the root module.
_TOKEN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:+\-]*|")
#: A name torch puts into generated Python source: dotted identifiers and indices only.
_NAME = re.compile(r"[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*|")
#: Keys of strings that only describe (stack traces, source types): kept, never run.
_DESCRIPTIVE = frozenset({"stack_trace", "torch_fn", "nn_module_stack", "custom", "as_string",
                          "as_strings", "torch_version", "producer"})
#: Keys of strings that become Python source or attribute paths.
_NAMES = frozenset({"name", "fqn", "parameter_name", "buffer_name", "path_name",
                    "forward_arg_names", "custom_obj_name", "tensor_constant_name",
                    "user_input_name", "user_output_name", "input_name", "output_name"})
#: A key string inside a pytree spec: no quotes or backslashes, which could close a literal.
_SAFE_KEY = re.compile(r"[^'\"\\\x00-\x1f\x7f]*")
#: A string inside a shape expression or guard: a symbol's or an input's name.
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]*")
#: Functions a shape expression or guard may call: sympy's and torch's symbolic arithmetic.
_LOWER_FUNCTIONS = frozenset({"floor", "ceiling", "sqrt", "log", "exp", "sign", "size",
                              "stride", "storage_offset", "dim", "numel"})


def _check_expression(text: str, *, field: str) -> None:
    """Arithmetic, comparisons and calls of sympy's capitalised functions over symbols; any
    attribute, lambda, dunder or string that could close a literal is refused."""
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise UnsafeArchive(f"{field} {text[:80]!r} is not an expression") from exc
    allowed = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.operator,
               ast.unaryop, ast.boolop, ast.cmpop, ast.Load, ast.Name, ast.Constant, ast.Call,
               ast.keyword, ast.Subscript, ast.Attribute, ast.Tuple)  # Piecewise((a, c), ...)
    for node in ast.walk(tree):
        if not isinstance(node, allowed):
            raise UnsafeArchive(f"{field} {text[:80]!r} holds a {type(node).__name__}")
        if isinstance(node, ast.Name) and node.id.startswith("_"):
            raise UnsafeArchive(f"{field} {text[:80]!r} names {node.id}")
        # strings name a symbol or an input only: sympy's S("...") would sympify (eval) another
        if isinstance(node, ast.Constant) and not (
                isinstance(node.value, (bool, int, float))
                or (isinstance(node.value, str) and _WORD.fullmatch(node.value))):
            raise UnsafeArchive(f"{field} {text[:80]!r} holds the constant {node.value!r}")
        if isinstance(node, ast.Attribute) and (node.attr not in _LOWER_FUNCTIONS
                                                or not isinstance(node.ctx, ast.Load)):
            raise UnsafeArchive(f"{field} {text[:80]!r} reads the attribute {node.attr}")
        if isinstance(node, ast.Subscript) and field == "expr_str":
            raise UnsafeArchive(f"{field} {text[:80]!r} indexes")
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else (
                func.id if isinstance(func, ast.Name) else "")
            if not (name[:1].isupper() or name in _LOWER_FUNCTIONS):
                raise UnsafeArchive(f"{field} {text[:80]!r} calls {name or 'an expression'}")


def _check_spec(text: str, field: str) -> None:
    """A pytree spec (JSON in a string): its types are dotted names, its keys plain text."""
    try:
        spec = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise UnsafeArchive(f"{field} is not JSON") from exc

    def walk(value: Any, key: str | None) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif isinstance(value, str):
            if key == "context":
                walk(json.loads(value) if value else None, "key")
            elif key == "key" and not _SAFE_KEY.fullmatch(value):
                raise UnsafeArchive(f"{field} holds the key {value[:80]!r}")
            elif key != "key" and not _NAME.fullmatch(value):
                raise UnsafeArchive(f"{field} holds {key} {value[:80]!r}")

    try:
        walk(spec, None)
    except (ValueError, RecursionError) as exc:
        raise UnsafeArchive(f"{field} holds a context that is not JSON") from exc


def _check_json(value: Any, key: str | None = None) -> None:
    """Every string of an archive's JSON, by the field that holds it."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str) or not _TOKEN.fullmatch(k):
                raise UnsafeArchive(f"the field name {str(k)[:80]!r}")
            if k not in _DESCRIPTIVE:
                _check_json(v, k)
    elif isinstance(value, list):
        for v in value:
            _check_json(v, key)
    elif isinstance(value, str):
        if key in ("expr_str", "guards_code"):
            _check_expression(value, field=key)
        elif key in ("in_spec", "out_spec"):
            _check_spec(value, key)
        elif key in _NAMES or key == "target":
            if not (_NAME.fullmatch(value) or (key == "target" and value.startswith("#")
                                               and _NAME.fullmatch(value[1:]))):
                raise UnsafeArchive(f"the {key} {value[:80]!r} is not a dotted name")
        elif not _TOKEN.fullmatch(value):
            raise UnsafeArchive(f"the {key} {value[:80]!r}")


def check_exported_archive(path: Path, names: list[str]) -> None:
    """Refuse an archive whose JSON holds anything torch would run: see the module docstring."""
    with zipfile.ZipFile(path) as archive:
        for name in names:
            if not name.endswith(".json"):
                continue
            try:
                document = json.loads(archive.read(name))
            except (ValueError, RecursionError) as exc:
                raise UnsafeArchive(f"{name} is not JSON") from exc
            try:
                _check_json(document)
            except RecursionError as exc:
                raise UnsafeArchive(f"{name} nests too deeply") from exc
            except UnsafeArchive as exc:
                raise UnsafeArchive(f"{name}: {exc}") from exc


def _refuse(*_: Any, **__: Any) -> Any:
    raise pickle.UnpicklingError("modelviz refuses to unpickle Python objects from this file")


@contextlib.contextmanager
def _weights_only() -> Iterator[None]:
    """While torch reads an archive: every ``torch.load`` is weights-only whatever its caller
    asked, Python's and TorchScript's object unpicklers refuse, and the module torch generates
    quotes the attribute names it writes into its source."""
    import torch.fx.graph as fx_graph

    real_load: Callable[..., Any] = torch.load

    def load(f: Any, map_location: Any = None, pickle_module: Any = None, **kwargs: Any) -> Any:
        kwargs.pop("weights_only", None)
        return real_load(f, map_location=map_location, weights_only=True, **kwargs)

    def format_target(base: str, target: str) -> str:
        for part in target.split("."):
            base = f"{base}.{part}" if part.isidentifier() else f"getattr({base}, {part!r})"
        return base

    patches: list[tuple[Any, str, Any]] = [
        (torch, "load", load), (torch.serialization, "load", load), (pickle, "loads", _refuse),
        (torch._C, "_pickle_load_obj", _refuse), (fx_graph, "_format_target", format_target)]
    saved = [(owner, attr, getattr(owner, attr)) for owner, attr, _ in patches
             if hasattr(owner, attr)]
    try:
        for owner, attr, _ in saved:
            setattr(owner, attr, next(new for o, a, new in patches if o is owner and a == attr))
        yield
    finally:
        for owner, attr, value in saved:
            setattr(owner, attr, value)


def load_exported_program(path: Path, names: list[str], *, trust: bool) -> torch.nn.Module:
    """The program's module, with its hierarchy where ``torch.export.unflatten`` can rebuild it.

    Without ``trust``, the archive is checked and loaded weights-only (see the module docstring);
    anything it needs beyond that is refused with ``UnsafePickleError``.
    """
    guard: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    if not trust:
        try:
            check_exported_archive(path, names)
        except UnsafeArchive as exc:
            raise UnsafePickleError(
                f"{path} is an exported program whose archive holds what torch would run as "
                f"code ({exc}).", TRUST_FIX) from exc
        guard = _weights_only()
    with guard, path.open("rb") as handle:  # a handle: torch warns about names not ending .pt2
        try:
            program = torch.export.load(handle)
        except pickle.UnpicklingError as exc:
            raise UnsafePickleError(
                f"{path} is an exported program whose archive holds pickled Python objects "
                f"({_reason(exc)}), and unpickling them runs code from the file.",
                TRUST_FIX) from exc
        try:
            return torch.export.unflatten(program)  # keeps the module hierarchy
        except Exception:
            module: torch.nn.Module = program.module()
            return module
