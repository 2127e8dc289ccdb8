"""A profile as a Chrome / Perfetto trace: one span per module call, nested as the calls were.

The spans are the last timed run's calls (``core.timing``): ``{"traceEvents": [{"name", "ph":
"X", "ts", "dur", "pid", "tid", "args"}...]}`` in microseconds from the start of that forward. With
``kernels``, one more forward runs under ``torch.profiler``, each module call wrapped in a
``record_function`` span named like ours, and torch's own trace is written instead: its operator
and kernel events sit inside the module spans (on CUDA the kernels are on the GPU's own rows).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

from modelviz.core import engine
from modelviz.output import write_text

if TYPE_CHECKING:
    from modelviz.core.session import Prepared
    from modelviz.features.profile.measure import Profile

PID = 1
TID = 1


def _label(profile: Profile, name: str) -> str:
    module = profile.modules.get(name)
    kind = module.type if module is not None else ""
    return f"{name or kind} ({kind})" if name else kind


def trace_events(profile: Profile) -> dict[str, Any]:
    """The module spans of the last timed run, as a Chrome trace object."""
    events: list[dict[str, Any]] = [
        {"name": "process_name", "ph": "M", "pid": PID, "tid": TID,
         "args": {"name": f"modelviz profile: {profile.model}"}},
        {"name": "thread_name", "ph": "M", "pid": PID, "tid": TID,
         "args": {"name": f"forward ({profile.method}, {profile.device})"}},
    ]
    for span in profile.timings.spans:
        module = profile.modules.get(span.module)
        events.append({
            "name": _label(profile, span.module), "cat": "module", "ph": "X",
            "ts": round(span.start_s * 1e6, 3), "dur": round((span.end_s - span.start_s) * 1e6, 3),
            "pid": PID, "tid": TID,
            "args": {"module": span.module, "type": module.type if module else "",
                     "depth": span.depth, "flops": module.flops if module else 0},
        })
    return {"traceEvents": events, "displayTimeUnit": "ms",
            "otherData": {"model": profile.model, "device": profile.device,
                          "total_ms": profile.total_ms}}


def write_trace(profile: Profile, path: str | Path) -> Path:
    return write_text(path, json.dumps(trace_events(profile)) + "\n")


@contextmanager
def _annotated(profile: Profile, model: nn.Module) -> Iterator[None]:
    """Every module call of ``model`` inside a ``record_function`` span of its name."""
    by_id = {id(m): (m, _label(profile, n)) for n, m in model.named_modules()}
    open_spans: list[torch.autograd.profiler.record_function] = []

    def pre(module: nn.Module, args: tuple[Any, ...]) -> None:
        entry = by_id.get(id(module))
        if entry is not None and entry[0] is module:
            span = torch.autograd.profiler.record_function(entry[1])
            span.__enter__()  # type: ignore[no-untyped-call]
            open_spans.append(span)

    def post(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        entry = by_id.get(id(module))
        if entry is not None and entry[0] is module and open_spans:
            open_spans.pop().__exit__(None, None, None)

    handles = [register_module_forward_pre_hook(pre), register_module_forward_hook(post)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        while open_spans:
            open_spans.pop().__exit__(None, None, None)


def write_kernel_trace(profile: Profile, prepared: Prepared, path: str | Path, *,
                       train: bool = False) -> Path:
    """One more forward under ``torch.profiler``, module spans around its ops and kernels."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    device = prepared.device
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    args, kwargs = prepared.inputs.args, prepared.inputs.kwargs
    with engine.as_run(prepared.model, device, train=train) as placed, torch.no_grad():
        placed(*args, **kwargs)  # warm, as the timed runs were
        with torch_profile(activities=activities, record_shapes=True) as prof, \
                _annotated(profile, placed):
            placed(*args, **kwargs)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
    handle, name = tempfile.mkstemp(suffix=".json", prefix=".modelviz-trace-")
    os.close(handle)
    try:
        prof.export_chrome_trace(name)
        text = Path(name).read_text(encoding="utf-8")
    finally:
        Path(name).unlink(missing_ok=True)
    data = json.loads(text)  # torch's file is JSON; checked before it replaces anything
    data.setdefault("otherData", {})["modelviz"] = {"model": profile.model,
                                                    "total_ms": profile.total_ms}
    return write_text(path, json.dumps(data) + "\n")
