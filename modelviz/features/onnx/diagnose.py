"""Running the exporters quietly, and explaining their failures in one line.

An exporter's failure is pages of traceback that name an aten operator somewhere inside. The
user needs the operator, the module whose code called it, and what to do: ``explain`` finds them,
re-running the model under a probe when the exporter's message does not say."""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from modelviz.core import engine
from modelviz.errors import ExportError, chain, one_line

# ----------------------------------------------------------------------------------------------
# Running the exporters quietly, and explaining their failures in one line.


@dataclass
class _Captured:
    text: str = ""
    warnings: list[warnings.WarningMessage] = field(default_factory=list)


@contextlib.contextmanager
def captured(*, every_warning: bool = False) -> Iterator[_Captured]:
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


_UNSUPPORTED = (
    re.compile(r"No ONNX function found for <OpOverload\(op='([\w.]+)'"),
    re.compile(r"Exporting the operator '?([\w:.]+)'? to ONNX opset version \d+ is not supported"),
    re.compile(r"Unsupported: ONNX export of operator ([\w:.]+)"),
)
_STATIC_DIM = re.compile(r"inferred a static shape of (\d+) for dimension ([\w.\[\]]+)")
_CACHE_OUTPUT = re.compile(r"Found <class '[\w.]*?(\w*Cache)'> in output")
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
    text = "\n".join(str(e) for e in chain(exc)) + "\n" + captured
    op = unsupported_op(text)
    if op is not None:
        where = f", called in {module}" if module else ""
        return f"ONNX has no translation for torch's {op} operator{where}"
    site = _CALL_SITE.search(text[text.find("The following call raised"):]
                             if "The following call raised" in text else "")
    location = (f" at {Path(site.group(1)).name}:{site.group(2)} ({site.group(4).strip()})"
                if site else "")
    if any("data-dependent" in str(e) or "DataDependent" in type(e).__name__
           for e in chain(exc)):
        return f"the model branches on a tensor's value{location}, which ONNX cannot record"
    static = _STATIC_DIM.search(text)
    if static:
        return (f"torch.export found {static.group(2)} fixed at {static.group(1)} by the "
                "model's code")
    cache = _CACHE_OUTPUT.search(text)
    if cache:
        return (f"the model returns a KV cache ({cache.group(1)}), an object no ONNX file can "
                "hold")
    last = chain(exc)[-1]
    message = str(last).split("\n\n")[0]
    message = re.sub(r"\x1b\[[0-9;]*m", "", " ".join(message.split()))
    sentence = re.match(r"(.{40,}?[.!])(?: |$)", message)  # the first sentence, never a cut word
    return f"{type(last).__name__}: {one_line(sentence.group(1) if sentence else message, 240)}" \
        f"{location}"



def failure(model: nn.Module, failures: list[tuple[str, BaseException, str]],
             args: tuple[Any, ...], kwargs: dict[str, Any], device: torch.device) -> ExportError:
    """One message for every exporter that was tried; the operator's module is looked up once."""
    reasons: dict[str, str] = {}  # exporter -> why; a later try (static batch) replaces an earlier
    modules: dict[str, str | None] = {}
    ops: dict[str, str | None] = {}
    for name, exc, text in failures:
        op = ops[name] = unsupported_op("\n".join(str(e) for e in chain(exc)) + text)
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
    fix = ("Replace that operation in the model, or leave its module out of the export (`debug` "
           "shows the exporter's traceback)." if "no translation" in first else
           "Leave use_cache=True out of `forward_args` and `kwargs` to export without the cache, "
           "or export the decoder step with `with_cache`." if "KV cache" in first else
           "Rewrite the branch with torch.where or torch.cond, or use `exporter=torchscript`, "
           "which records the branch these inputs take." if "branches on" in first else
           "Run with `debug` for the exporter's full traceback.")
    error = ExportError(f"ONNX export failed: {why}.", fix)
    error.__cause__ = failures[-1][1]
    return error
