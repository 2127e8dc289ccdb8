"""ONNX export that can be trusted: one self-contained file, checked, and numerically verified.

``torch.onnx.export`` alone leaves the user to find out that the weights went to a separate
``.onnx.data`` file, that the batch dimension was frozen at 1, that outputs are called
``linear_2``, or that the numbers differ from torch's. Here the file is written whole (weights
inside under 2 GB), named after ``forward``'s parameters and the output's dict keys, passed
through ``onnx.checker`` with shape inference, and run in ONNX Runtime against the output of the
engine's own pass. A failure leaves nothing behind and names the operator and module at fault.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from modelviz.core import engine
from modelviz.core.inputs import input_names
from modelviz.core.specs import check_tolerance
from modelviz.errors import DeviceError, ExportError, OutputError, SpecError, one_line
from modelviz.output import commit_files, resolve_target, staging_dir

EXPORTERS = ("auto", "dynamo", "torchscript")
#: Protobuf cannot serialise a message of 2 GiB or more; leave room for the graph itself.
INLINE_LIMIT = 2**31 - 2**26
Stage = Callable[[str], AbstractContextManager[None]]


@contextlib.contextmanager
def _quiet(_: str) -> Iterator[None]:
    yield


@dataclass
class TensorInfo:
    """A graph input or output as the ONNX file declares it; a str dimension is symbolic."""

    name: str
    dtype: str
    shape: list[int | str]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": self.shape}


@dataclass
class Parity:
    """How far ONNX Runtime's output is from torch's, for one output at one batch size.

    ``max_rel_error`` is the largest ``|onnx - torch| / max(|torch|, atol)``: relative where the
    value is large, and not blown up by values near zero. Positions equal on both sides agree
    whatever their value (inf with the same inf, NaN with NaN); a NaN or an infinity on one side
    only is an infinite error. ``uninformative`` says why a passing check proves nothing (torch's
    output is constant, all NaN...): a graph that computed anything else would have matched too.
    """

    output: str
    max_abs_error: float
    max_rel_error: float
    ok: bool
    batch: int | None = None  # the inputs' batch size, where they share one
    uninformative: str | None = None  # what torch's output is, when that makes the check moot

    @property
    def informative(self) -> bool:
        return self.uninformative is None

    def to_dict(self) -> dict[str, Any]:
        return {"output": self.output, "batch": self.batch, "max_abs_error": self.max_abs_error,
                "max_rel_error": self.max_rel_error, "ok": self.ok,
                "informative": self.informative, "uninformative_reason": self.uninformative}


@dataclass
class ExportResult:
    """What was written and what the checks found.

    ``ok`` fails on a parity error beyond ``atol`` (at the export's batch or at batch + 1) and on
    any problem, but not on an uninformative check: a constant output says nothing against the
    file, which may well be right, and failing would make an untrained model (a zero-initialised
    head) unexportable. The check is flagged instead (``informative``), in the table and JSON.
    """

    path: Path
    exporter: str
    opset: int
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    op_counts: dict[str, int]
    node_count: int
    file_bytes: int
    data_files: list[Path] = field(default_factory=list)  # external weights, when over 2 GB
    dynamic_batch: bool = False
    parity: list[Parity] | None = None  # None: not verified
    atol: float = 1e-4
    batch_checked: int | None = None  # another batch size that ran in ONNX Runtime
    batch_parity: list[Parity] | None = None  # its values against torch's at that batch
    problems: list[str] = field(default_factory=list)  # beyond parity at the export's batch
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems and all(p.ok for p in [*(self.parity or []),
                                                        *(self.batch_parity or [])])

    @property
    def informative(self) -> bool | None:
        """Whether every comparison made can tell a right file from a wrong one; None when
        nothing was compared."""
        checks = [*(self.parity or []), *(self.batch_parity or [])]
        return all(p.informative for p in checks) if self.parity is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path), "data_files": [str(f) for f in self.data_files],
            "file_bytes": self.file_bytes, "exporter": self.exporter, "opset": self.opset,
            "dynamic_batch": self.dynamic_batch, "node_count": self.node_count,
            "op_counts": self.op_counts,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "verified": self.parity is not None, "ok": self.ok,
            "informative": self.informative, "atol": self.atol,
            "parity": [p.to_dict() for p in self.parity] if self.parity is not None else None,
            "batch_checked": self.batch_checked,
            "batch_parity": ([p.to_dict() for p in self.batch_parity]
                             if self.batch_parity is not None else None),
            "problems": self.problems, "notes": self.notes, "seconds": self.seconds,
        }


# ----------------------------------------------------------------------------------------------
# Names and shapes of what goes in and comes out.


def _key_text(key: Any) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def leaf_names(value: Any, base: str) -> list[str]:
    """One name per tensor in ``value``: ``base`` for a lone tensor, the keys for a dict
    (``logits``, ``hidden.0``), ``base`` with indices for a tuple (``output0``, ``output1``)."""
    from torch.utils import _pytree as pytree

    leaves, _ = pytree.tree_flatten_with_path(value)
    paths = [".".join(_key_text(k) for k in path) for path, leaf in leaves
             if isinstance(leaf, torch.Tensor)]
    if isinstance(value, dict):
        return paths
    if len(paths) == 1:
        return [base]
    return [base + path for path in paths]


def _tensors(value: Any) -> list[torch.Tensor]:
    from torch.utils import _pytree as pytree

    return [leaf for leaf in pytree.tree_leaves(value) if isinstance(leaf, torch.Tensor)]


def _input_names(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for name, value in zip(input_names(model, len(args)), args, strict=True):
        names += leaf_names(value, name)
    for key, value in kwargs.items():
        names += leaf_names(value, key)
    return names


def _batched(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int | None:
    """The shared leading dimension of every input tensor: the batch, if there is one."""
    tensors = _tensors((args, kwargs))
    firsts = {t.shape[0] for t in tensors if t.dim() > 0}
    if len(firsts) != 1 or any(t.dim() == 0 for t in tensors):
        return None
    return firsts.pop()


def _widen(value: Any) -> Any:
    """Inputs with a batch of 2 made from a batch of 1: torch.export specialises a dimension
    whose example size is 1, and the batch would stay fixed at 1."""
    from torch.utils import _pytree as pytree

    return pytree.tree_map(
        lambda t: torch.cat([t, t]) if isinstance(t, torch.Tensor) else t, value)


def _dynamic_shapes(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    from torch.utils import _pytree as pytree

    batch = torch.export.Dim("batch")

    def spec(value: Any) -> Any:
        return pytree.tree_map(lambda t: {0: batch} if isinstance(t, torch.Tensor) else None,
                               value)

    if not kwargs:
        return tuple(spec(a) for a in args)
    names = input_names(model, len(args))
    return {**{n: spec(a) for n, a in zip(names, args, strict=True)},
            **{k: spec(v) for k, v in kwargs.items()}}


# ----------------------------------------------------------------------------------------------
# Running the exporters quietly, and explaining their failures in one line.


@dataclass
class _Captured:
    text: str = ""
    warnings: list[warnings.WarningMessage] = field(default_factory=list)


@contextlib.contextmanager
def _captured(*, every_warning: bool = False) -> Iterator[_Captured]:
    """The exporters print progress and pages of advice, some of it from C++ straight to the
    file descriptors; keep all of it for the error message instead of the user's terminal.

    ``every_warning`` records warnings that Python shows only once per place (the TorchScript
    tracer's, which say where it froze a Python value); recording them all costs the dynamo
    exporter, which warns a lot, several percent.
    """
    seen = _Captured()
    out, err = io.StringIO(), io.StringIO()
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile() as sink:
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            with warnings.catch_warnings(record=True) as caught, \
                    contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                if every_warning:
                    warnings.simplefilter("always")
                try:
                    yield seen
                finally:
                    seen.warnings = list(caught)
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sink.seek(0)
            native = sink.read().decode("utf-8", errors="replace")
            seen.text = out.getvalue() + err.getvalue() + native


def _chain(exc: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in found:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


_UNSUPPORTED = (
    re.compile(r"No ONNX function found for <OpOverload\(op='([\w.]+)'"),
    re.compile(r"Exporting the operator '?([\w:.]+)'? to ONNX opset version \d+ is not supported"),
    re.compile(r"Unsupported: ONNX export of operator ([\w:.]+)"),
)
_CALL_SITE = re.compile(r'File "([^"]+)", line (\d+), in (\w+)\s*\n\s*(\S.*)')


def unsupported_op(text: str) -> str | None:
    """The aten operator an exporter could not translate (``linalg_eig``), from its message."""
    for pattern in _UNSUPPORTED:
        match = pattern.search(text)
        if match:
            name = match.group(1).replace("aten::", "").replace("aten.", "")
            return name.split(".")[0]
    return None


class _OpFinder(TorchDispatchMode):  # type: ignore[no-untyped-call]  # torch's mode is untyped
    def __init__(self, probe: _OpProbe) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.probe = probe

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        self.probe.saw(func._overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


class _OpProbe(engine.Probe):
    """Finds the module whose forward ran a given aten operator, to name it in the error."""

    name = "onnx_op"

    def __init__(self, op: str) -> None:
        self.op = op
        self.stack: list[str] = []
        self.exact: str | None = None
        self.near: str | None = None  # an op the exporter's name decomposes to, or from

    def context(self) -> AbstractContextManager[Any]:
        return _OpFinder(self)

    def saw(self, name: str) -> None:
        here = self.stack[-1] if self.stack else ""
        if name == self.op and self.exact is None:
            self.exact = here
        elif self.near is None and (name.startswith(self.op) or self.op.startswith(name)):
            self.near = here

    @property
    def found(self) -> str | None:
        return self.exact if self.exact is not None else self.near

    def call_start(self, call: Any, module: nn.Module, args: tuple[Any, ...]) -> None:
        self.stack.append(call.module)

    def call_end(self, call: Any, module: nn.Module, args: tuple[Any, ...],
                 kwargs: dict[str, Any], output: Any) -> None:
        if self.stack:
            self.stack.pop()


def _module_running(model: nn.Module, op: str, args: tuple[Any, ...],
                    kwargs: dict[str, Any], device: torch.device) -> str | None:
    """One more engine pass, only after a failed export, to see which module ran ``op``."""
    probe = _OpProbe(op)
    try:
        engine.run(model, args, kwargs, device=device, count_flops=False, probes=(probe,))
    except Exception:  # the export already failed; this only adds detail to its message
        return None
    if probe.found is None:
        return None
    found = probe.found
    kind = type(model.get_submodule(found)).__name__
    return f"the model's own forward ({kind})" if not found else f"{found} ({kind})"


def explain(exc: BaseException, captured: str = "", *, module: str | None = None) -> str:
    """The cause of a failed export in one sentence: unsupported operator, data-dependent
    control flow, or the exporter's own summary."""
    text = "\n".join(str(e) for e in _chain(exc)) + "\n" + captured
    op = unsupported_op(text)
    if op is not None:
        where = f", called in {module}" if module else ""
        return f"ONNX has no translation for torch's {op} operator{where}"
    site = _CALL_SITE.search(text[text.find("The following call raised"):]
                             if "The following call raised" in text else "")
    location = (f" at {Path(site.group(1)).name}:{site.group(2)} ({site.group(4).strip()})"
                if site else "")
    if any("data-dependent" in str(e) or "DataDependent" in type(e).__name__
           for e in _chain(exc)):
        return f"the model branches on a tensor's value{location}, which ONNX cannot record"
    last = _chain(exc)[-1]
    message = str(last).split("\n\n")[0]
    message = re.sub(r"\x1b\[[0-9;]*m", "", " ".join(message.split()))
    return f"{type(last).__name__}: {message[:300]}{location}"


def _has_dynamo() -> bool:
    return "dynamo" in inspect.signature(torch.onnx.export).parameters


# ----------------------------------------------------------------------------------------------
# The export itself.


@dataclass
class _Exported:
    exporter: str
    dynamic: bool
    notes: list[str]
    program: Any = None  # the dynamo exporter's in-memory model, as saved


def _export_dynamo(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
                   target: Path, *, names_in: list[str], names_out: list[str] | None,
                   dynamic: bool, opset: int | None, external: bool) -> Any:
    example_args, example_kwargs = args, kwargs
    if dynamic and _batched(args, kwargs) == 1:
        example_args, example_kwargs = _widen(args), _widen(kwargs)
    options: dict[str, Any] = {"kwargs": example_kwargs or None, "dynamo": True,
                               "input_names": names_in, "verbose": False}
    if names_out is not None:
        options["output_names"] = names_out
    if opset is not None:
        options["opset_version"] = opset
    if dynamic:
        options["dynamic_shapes"] = _dynamic_shapes(model, example_args, example_kwargs)
    program = torch.onnx.export(model, example_args, None, **options)
    if program is None:  # pragma: no cover - torch versions whose export returns nothing
        raise ExportError("this torch's dynamo exporter returned no program.",
                          "Use --exporter torchscript, or upgrade torch.")
    if names_out is None:
        _name_outputs(program)
    program.save(str(target), external_data=external)
    return program


def _name_outputs(program: Any) -> None:
    """Output names from the model's own structure (dict keys) when no reference output is at
    hand: the exported program knows it."""
    from torch.utils import _pytree as pytree

    spec = getattr(getattr(program, "exported_program", None), "call_spec", None)
    outputs = list(program.model.graph.outputs)
    if spec is None or spec.out_spec is None or spec.out_spec.num_leaves != len(outputs):
        return
    structure = pytree.tree_unflatten([torch.empty(0)] * len(outputs), spec.out_spec)
    for value, name in zip(outputs, leaf_names(structure, "output"), strict=True):
        value.name = name


def _export_torchscript(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
                        target: Path, *, names_in: list[str], names_out: list[str] | None,
                        dynamic: bool, opset: int | None) -> None:
    options: dict[str, Any] = {"input_names": names_in, "do_constant_folding": True}
    if kwargs and "kwargs" in inspect.signature(torch.onnx.export).parameters:
        options["kwargs"] = kwargs
    elif kwargs:  # torch before 2.5 takes keyword inputs as a trailing dict
        args = (*args, kwargs)
    if names_out is not None:
        options["output_names"] = names_out
    if opset is not None:
        options["opset_version"] = opset
    if dynamic:  # outputs get their symbolic dimensions from the exporter's shape inference
        options["dynamic_axes"] = {name: {0: "batch"} for name in names_in}
    if _has_dynamo():
        options["dynamo"] = False
    torch.onnx.export(model, args, str(target), **options)


def _weight_bytes(model: nn.Module) -> int:
    seen: set[int] = set()
    total = 0
    for tensor in [*model.parameters(), *model.buffers()]:
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += tensor.numel() * tensor.element_size()
    return total


def needs_external_data(model: nn.Module) -> bool:
    """Weights too large for one protobuf message must live in a separate file."""
    return _weight_bytes(model) >= INLINE_LIMIT


def _run_exporters(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
                   target: Path, *, exporter: str, names_in: list[str],
                   names_out: list[str] | None, dynamic: bool, opset: int | None,
                   external: bool, device: torch.device) -> _Exported:
    """The chosen exporter, with the dynamo exporter's fallbacks: a static batch, then the
    TorchScript exporter (``auto`` only). Every failure is explained, none leaks a traceback."""
    notes: list[str] = []
    failures: list[tuple[str, BaseException, str]] = []
    use_dynamo = exporter in ("auto", "dynamo") and _has_dynamo()
    if exporter == "dynamo" and not _has_dynamo():
        raise ExportError(f"torch {torch.__version__} has no dynamo-based ONNX exporter.",
                          "Use --exporter torchscript, or upgrade torch to 2.5 or newer.")
    if use_dynamo:
        for batch_dynamic in ((True, False) if dynamic else (False,)):
            try:
                with _captured() as seen:
                    program = _export_dynamo(model, args, kwargs, target, names_in=names_in,
                                             names_out=names_out, dynamic=batch_dynamic,
                                             opset=opset, external=external)
            except ExportError:
                raise
            except Exception as exc:
                failures.append(("dynamo", exc, seen.text))
                text = "\n".join(str(e) for e in _chain(exc))
                if unsupported_op(text) or "data-dependent" in text:
                    break  # a static batch would not help
                continue
            if dynamic and not batch_dynamic:
                notes.append("the batch dimension is fixed: with a dynamic batch the export "
                             f"failed ({explain(failures[-1][1], failures[-1][2])})")
            return _Exported("dynamo", batch_dynamic, notes, program)
        if exporter == "dynamo":
            raise _failure(model, failures, args, kwargs, device)
    try:
        with _captured(every_warning=True) as seen:
            _export_torchscript(model, args, kwargs, target, names_in=names_in,
                                names_out=names_out, dynamic=dynamic, opset=opset)
    except Exception as exc:
        failures.append(("torchscript", exc, seen.text))
        raise _failure(model, failures, args, kwargs, device) from None
    if failures:
        notes.append("the dynamo exporter failed (" + explain(failures[0][1], failures[0][2])
                     + "); the TorchScript exporter was used instead")
    tracer = [f"{Path(w.filename).name}:{w.lineno}" for w in seen.warnings
              if w.category.__name__ == "TracerWarning"]
    if tracer:
        notes.append("the TorchScript exporter recorded Python values as constants (at "
                     + ", ".join(dict.fromkeys(tracer)) + "): the file follows the branches "
                     "these inputs took, and may be wrong for inputs that take others")
    return _Exported("torchscript", dynamic, notes)


def _failure(model: nn.Module, failures: list[tuple[str, BaseException, str]],
             args: tuple[Any, ...], kwargs: dict[str, Any], device: torch.device) -> ExportError:
    """One message for every exporter that was tried; the operator's module is looked up once."""
    reasons: dict[str, str] = {}  # exporter -> why; a later try (static batch) replaces an earlier
    modules: dict[str, str | None] = {}
    ops: dict[str, str | None] = {}
    for name, exc, text in failures:
        op = ops[name] = unsupported_op("\n".join(str(e) for e in _chain(exc)) + text)
        if op is not None and op not in modules:
            modules[op] = _module_running(model, op, args, kwargs, device)
        reasons[name] = explain(exc, text, module=modules.get(op) if op else None)
    distinct = list(dict.fromkeys(reasons.values()))
    if len(distinct) == 1:
        why = distinct[0]
    elif all(ops.values()) and len(ops) == 2:
        why = f"{reasons['dynamo']}; the TorchScript exporter has none for {ops['torchscript']}"
    else:
        why = "; ".join(f"the {name} exporter: {reason}" for name, reason in reasons.items())
    first = distinct[0]
    fix = ("Replace that operation in the model, or leave its module out of the export (--debug "
           "shows the exporter's traceback)." if "no translation" in first else
           "Rewrite the branch with torch.where or torch.cond, or use --exporter torchscript, "
           "which records the branch these inputs take." if "branches on" in first else
           "Run with --debug for the exporter's full traceback.")
    error = ExportError(f"ONNX export failed: {why}.", fix)
    error.__cause__ = failures[-1][1]
    return error


# ----------------------------------------------------------------------------------------------
# Reading the file back: the checker, facts for the table, parity in ONNX Runtime.


@dataclass
class _Facts:
    opset: int
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    op_counts: Counter[str]


def _facts_from_program(program: Any) -> _Facts | None:
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


def _facts_from_file(path: Path) -> _Facts:
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


def _check(path: Path) -> None:
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
                              "Export in float32 or float16 (--dtype) and cast at run "
                              "time.") from exc
        raise ExportError(f"the exported file fails onnx.checker: {text[:400]}",
                          "This is an exporter bug: try the other --exporter.") from exc


def _numpy(tensor: torch.Tensor) -> Any:
    return tensor.detach().to("cpu").contiguous().numpy()


def _uninformative(name: str, values: Any) -> str | None:
    """Why comparing with torch's ``values`` proves nothing, or None: with no element, no
    finite one, or one value everywhere (an untrained zero-initialised head gives 0 for every
    logit, whatever the layers before it computed), any graph of the right shape would match."""
    import numpy as np

    finite = np.isfinite(values)
    if values.size == 0:
        what = "is empty"
    elif np.isnan(values).all():
        what = "is all NaN"
    elif (values.size > 1 or not finite.all()) and (values == values.flat[0]).all():
        first = float(values.flat[0])
        what = ("is all zeros (a layer initialised to zero, such as an untrained head?)"
                if first == 0 else f"is {first:g}" + (" everywhere" if values.size > 1 else ""))
    elif not finite.any():
        what = (f"is never finite ({int(np.isnan(values).sum()):,} NaN, "
                f"{int(np.isinf(values).sum()):,} infinite)")
    else:
        return None
    return f"torch's {name} {what}"


def _compare(name: str, got: Any, reference: torch.Tensor, atol: float,
             batch: int | None) -> Parity | str:
    """One output's parity, or why it cannot be compared. A position counts only where the two
    differ: equal infinities and NaN against NaN agree; a NaN or an infinity facing anything
    else is an infinite error, never the NaN that subtracting them gives."""
    import numpy as np

    expected = _numpy(reference).astype(np.float64)
    actual = np.asarray(got).astype(np.float64)
    if actual.shape != expected.shape:
        return (f"{name}: shape {list(actual.shape)} in ONNX Runtime, {list(expected.shape)} "
                "in torch")
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        same = (actual == expected) | (np.isnan(actual) & np.isnan(expected))
        diff = np.where(same, 0.0, np.abs(actual - expected))
        diff = np.where(np.isnan(diff), np.inf, diff)
        rel = np.where(np.isinf(diff), np.inf, diff / np.fmax(np.abs(expected), atol))
    abs_err = float(diff.max()) if diff.size else 0.0
    rel_err = float(rel.max()) if rel.size else 0.0
    return Parity(name, abs_err, rel_err, abs_err <= atol, batch,
                  _uninformative(name, expected))


def _verify(path: Path, inputs: list[torch.Tensor], reference: list[torch.Tensor],
            names: list[str], atol: float, result: ExportResult, *, model: nn.Module,
            device: torch.device | None, train: bool, args: tuple[Any, ...],
            kwargs: dict[str, Any]) -> None:
    """ONNX Runtime against torch at the export's batch, then at batch + 1 on a dynamic batch;
    the model and its structured inputs are there for torch's pass at that other batch."""
    import onnxruntime as ort

    if any(t.dtype == torch.bfloat16 for t in [*inputs, *reference]):
        result.notes.append("not verified: numpy, which ONNX Runtime's Python API speaks, has no "
                            "bfloat16")
        return
    options = ort.SessionOptions()
    options.log_severity_level = 3
    # ORT's worker threads otherwise spin for a while after each run, taking the CPU from
    # whatever the user does next.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        graph_inputs = [i.name for i in session.get_inputs()]
        feeds = dict(zip(names, (_numpy(t) for t in inputs), strict=True))
        got = session.run(None, {n: feeds[n] for n in graph_inputs})
    except Exception as exc:
        result.problems.append("ONNX Runtime could not run the file: "
                               + one_line(exc))
        return
    if len(got) != len(reference):
        result.problems.append(f"the file has {len(got)} outputs, torch's forward returns "
                               f"{len(reference)}")
        return
    batch = _batched(tuple(inputs), {})
    result.parity = []
    for name, ours, theirs in zip(names_out(result), got, reference, strict=True):
        compared = _compare(name, ours, theirs, atol, batch)
        if isinstance(compared, str):
            result.problems.append(compared)
            continue
        if compared.uninformative:
            result.notes.append(f"{compared.uninformative}, so its parity check proves nothing")
        result.parity.append(compared)
    if result.dynamic_batch:
        _other_batch(session, graph_inputs, names, result, model=model, device=device,
                     train=train, args=args, kwargs=kwargs)


def names_out(result: ExportResult) -> list[str]:
    return [t.name for t in result.outputs]


def _other_batch(session: Any, graph_inputs: list[str], names: list[str], result: ExportResult,
                 *, model: nn.Module, device: torch.device | None, train: bool,
                 args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Run the file at batch + 1 and compare it with torch on the same inputs: a dynamic batch
    that only works at the export's batch size (one the exporter froze into a constant) would
    fail here, not in the user's serving code."""
    from torch.utils import _pytree as pytree

    bigger_args, bigger_kwargs = pytree.tree_map(
        lambda t: torch.cat([t, t[:1]]) if isinstance(t, torch.Tensor) else t, (args, kwargs))
    bigger = _tensors((bigger_args, bigger_kwargs))
    batch = bigger[0].shape[0]
    feeds = dict(zip(names, (_numpy(t) for t in bigger), strict=True))
    try:
        got = session.run(None, {n: feeds[n] for n in graph_inputs})
    except Exception as exc:
        result.problems.append(f"the batch dimension is declared dynamic, but ONNX Runtime fails "
                               f"at batch {batch}: " + one_line(exc, limit=200))
        return
    for declared, value in zip(result.outputs, got, strict=True):
        if declared.shape and declared.shape[0] == "batch" and value.shape[0] != batch:
            result.problems.append(f"{declared.name} has {value.shape[0]} rows at batch {batch}, "
                                   "though the file declares them as the batch")
            return
    result.batch_checked = batch
    try:
        reference = _tensors(engine.run(model, bigger_args, bigger_kwargs, device=device,
                                        train=train, count_flops=False,
                                        keep_output=True).output_value)
    except Exception as exc:  # torch's own limit, not the file's: say so and compare nothing
        result.notes.append(f"torch's forward fails at batch {batch} ("
                            + one_line(exc, limit=200) + "), so ONNX Runtime's values "
                            "there are not compared")
        return
    if len(reference) != len(got):
        result.problems.append(f"at batch {batch}, the file has {len(got)} outputs, torch's "
                               f"forward returns {len(reference)}")
        return
    _batch_parity(got, reference, batch, result)


def _batch_parity(got: list[Any], reference: list[torch.Tensor], batch: int,
                  result: ExportResult) -> None:
    """The values at batch + 1. An error there is a problem of its own only where the export's
    batch passed: that is what points at a batch size frozen in the file, and what the one-line
    failure message must then name instead of the export batch's small error."""
    passed = all(p.ok for p in result.parity or [])
    result.batch_parity = []
    for name, ours, theirs in zip(names_out(result), got, reference, strict=True):
        compared = _compare(name, ours, theirs, result.atol, batch)
        if isinstance(compared, str):
            result.problems.append(f"at batch {batch}, {compared}")
            continue
        result.batch_parity.append(compared)
        if passed and not compared.ok:
            result.problems.append(
                f"ONNX Runtime matches torch at the export's batch but differs by "
                f"{compared.max_abs_error:.3g} on {name} at batch {batch}, beyond --atol "
                f"{result.atol:g} (did the exporter record the batch size as a constant?)")


# ----------------------------------------------------------------------------------------------


DEFAULT_ATOL = 1e-4
HALF_ATOL = 1e-2


def default_atol(model: nn.Module) -> float:
    """1e-4, or 1e-2 for a half-precision model: float16 alone rounds at 1e-3 relative."""
    dtype = engine.model_dtype(model)
    return HALF_ATOL if dtype in (torch.float16, torch.bfloat16) else DEFAULT_ATOL


def check_output(output: str | Path) -> Path:
    target = Path(output)
    if target.suffix.lower() != ".onnx":
        raise OutputError(f"{output}: an ONNX file should end in .onnx.",
                          "Give -o model.onnx.")
    if target.is_dir():
        raise OutputError(f"{output} is a folder.", "Give a file name, e.g. -o model.onnx.")
    return target


def export(prepared: Any, output: str | Path, *, exporter: str = "auto",
           opset: int | None = None, dynamic_batch: bool = True, verify: bool = True,
           atol: float | None = None, external_data: bool | None = None, train: bool = False,
           reference: Any = None, stage: Stage = _quiet) -> ExportResult:
    """Export a prepared model (``api.prepare``) to ``output``, check it and verify it.

    ``reference`` is the model's output on the prepared inputs from a pass already run (the
    report's); without it, verification runs the engine once more. ``atol``: None means 1e-4,
    or 1e-2 for a float16 model, whose own rounding is that large. ``external_data``: None
    decides by size (weights of 2 GB or more go to ``output.data``). A parity error beyond
    ``atol`` is reported in the result (``.ok``), not raised: the file is still written.
    """
    target = check_output(output)
    if exporter not in EXPORTERS:
        raise SpecError(f"unknown exporter {exporter!r}.", "Use auto, dynamo or torchscript.")
    if opset is not None and not 7 <= opset <= 30:
        raise SpecError(f"bad --opset {opset}.", "Use an ONNX opset such as 18 or 20.")
    check_tolerance(atol)
    if prepared.device.type == "meta":
        raise DeviceError("an ONNX file holds the weights, and the meta device has none.",
                          "Export on --device cpu (or cuda).")
    model: nn.Module = prepared.model
    args, kwargs = prepared.inputs.args, prepared.inputs.kwargs
    if atol is None:
        atol = default_atol(model)
    external = needs_external_data(model) if external_data is None else external_data
    dynamic = dynamic_batch and _batched(args, kwargs) is not None
    notes = [] if dynamic or not dynamic_batch else [
        "the batch dimension is fixed: the inputs share no leading dimension"]
    names_in = _input_names(model, args, kwargs)
    seconds: dict[str, float] = {}
    if verify and reference is None:
        started = time.perf_counter()
        with stage("Running torch for the reference output"):
            reference = engine.run(model, args, kwargs, device=prepared.device, train=train,
                                   count_flops=False, keep_output=True).output_value
        seconds["reference"] = time.perf_counter() - started
    names = leaf_names(reference, "output") if reference is not None else None

    final = resolve_target(target)  # a symbolic link's destination; never over an input
    folder = final.parent if str(final.parent) else Path()
    staging = staging_dir(final)
    try:
        staged = staging / final.name
        started = time.perf_counter()
        with stage(f"Exporting {prepared.loaded.name} to ONNX"), \
                engine.as_run(model, prepared.device, train=train) as placed:
            made = _run_exporters(placed, args, kwargs, staged, exporter=exporter,
                                  names_in=names_in, names_out=names, dynamic=dynamic,
                                  opset=opset, external=external, device=prepared.device)
        seconds["export"] = time.perf_counter() - started
        started = time.perf_counter()
        with stage("Checking the file (onnx.checker, shape inference)"):
            _check(staged)
            facts = (_facts_from_program(made.program) if made.program is not None else None) \
                or _facts_from_file(staged)
        seconds["check"] = time.perf_counter() - started
        extra = sorted(p for p in staging.iterdir() if p != staged)
        result = ExportResult(
            path=target, exporter=made.exporter, opset=facts.opset, inputs=facts.inputs,
            outputs=facts.outputs, op_counts=dict(facts.op_counts.most_common()),
            node_count=sum(facts.op_counts.values()),
            file_bytes=sum(p.stat().st_size for p in staging.iterdir()),
            data_files=[folder / p.name for p in extra], dynamic_batch=made.dynamic,
            atol=atol, notes=notes + made.notes, seconds=seconds)
        if extra:
            result.notes.append(f"the weights are in {', '.join(p.name for p in extra)}: keep "
                                f"{'them' if len(extra) > 1 else 'it'} beside {target.name}"
                                + (" (an ONNX file cannot hold 2 GB or more)"
                                   if external_data is None else ""))
        if verify:
            started = time.perf_counter()
            with stage("Comparing ONNX Runtime with torch"):
                _verify(staged, _tensors((args, kwargs)), _tensors(reference), names_in, atol,
                        result, model=model, device=prepared.device, train=train, args=args,
                        kwargs=kwargs)
            seconds["verify"] = time.perf_counter() - started
        # the weights first, so the model never points at nothing
        commit_files(staging, folder, [p.name for p in [*extra, staged]])
        return result
    finally:
        shutil.rmtree(staging, ignore_errors=True)
