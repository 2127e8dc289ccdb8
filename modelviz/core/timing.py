"""Measured time per module: the light pass behind ``modelviz profile``.

The engine's one instrumented pass says what each module computes (FLOPs, shapes, bytes); this
module says how long it takes. It runs the model ``warmup + runs`` times with hooks that mark the
start and the end of every module call, and as many times without any hook (the bare forward),
interleaved, so that the hooks' own cost is measured in the same process.

The hooks sit on the timed modules themselves, so a module that is not timed (below
``time_depth``) takes torch's hook-free fast path: where a forward is launch-bound (a GPU at
batch 1), timing fewer modules is what makes the hooks cheap. A compiled model gets two global
hooks instead, filtered to the timed modules, since hooks on its modules would be traced into
its graphs.

On CUDA the marks are CUDA events recorded on the stream, read after one synchronisation per run,
so that an asynchronous kernel is charged to the module that launched it; on the CPU they are
``time.perf_counter``. A module's self time is its total less the totals of the calls inside it.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

from modelviz.core import engine
from modelviz.core.tensors import tensors
from modelviz.errors import DeviceError, ForwardError, SpecError, one_line

__all__ = ["ModuleTime", "Span", "Timings", "iqr", "median", "time_model"]

#: Runs chosen when the caller gives none: enough for this many seconds of timed runs...
AUTO_SECONDS = 1.5
#: ...within these bounds.
AUTO_RUNS = (5, 100)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def iqr(values: list[float]) -> float:
    """The interquartile range: how far apart the middle half of the runs lie."""
    if len(values) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q3 - q1


@dataclass
class ModuleTime:
    """One module's measured time, one value per timed run (a run sums the module's calls)."""

    name: str
    calls: int = 0  # calls in one run
    total_s: list[float] = field(default_factory=list)
    self_s: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Span:
    """One module call of the last timed run, in seconds from the start of that forward."""

    module: str
    start_s: float
    end_s: float
    depth: int


@dataclass
class Timings:
    """What the timed runs measured."""

    device: str
    method: str  # "CUDA events" or "wall clock"
    runs: int
    warmup: int
    forward_s: list[float]  # the whole forward under the hooks, per run
    bare_s: list[float]  # the whole forward without any hook, per run
    modules: dict[str, ModuleTime]  # only the modules whose hooks fired
    spans: list[Span]
    backward_s: list[float] | None = None  # the whole backward, per run (no hooks needed)
    compiled: bool = False
    time_depth: int | None = None  # modules deeper than this were not timed


class _WallClock:
    """Marks are ``perf_counter`` readings."""

    def __init__(self) -> None:
        self.marks: list[float] = []

    def mark(self) -> int:
        marks = self.marks
        marks.append(time.perf_counter())
        return len(marks) - 1

    def reset(self) -> None:
        self.marks.clear()

    def finish(self) -> None:
        pass

    def seconds(self, start: int, end: int) -> float:
        return self.marks[end] - self.marks[start]


class _CudaClock:
    """Marks are CUDA events on the current stream, reused from run to run; they are read after
    ``finish`` waits for the device once."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.pool: list[torch.cuda.Event] = []
        self.used = 0
        # Looked up once: Event.record() would ask for the current stream at every mark.
        self.stream = torch.cuda.current_stream(device)

    def mark(self) -> int:
        used = self.used
        if used == len(self.pool):
            self.pool.append(torch.cuda.Event(enable_timing=True))  # type: ignore[no-untyped-call]
        self.pool[used].record(self.stream)
        self.used = used + 1
        return used

    def reset(self) -> None:
        self.used = 0

    def finish(self) -> None:
        torch.cuda.synchronize(self.device)

    def seconds(self, start: int, end: int) -> float:
        return float(self.pool[start].elapsed_time(self.pool[end])) / 1000


_Clock = _WallClock | _CudaClock


def _depth(name: str) -> int:
    """A module's depth in the tree, as the engine's records count it: the root is 0."""
    return 0 if not name else name.count(".") + 1


class _Recorder:
    """The state the two hooks share during one hooked run: a stack of open calls, and each call
    as ``[module index, start mark, end mark, enclosing call]``."""

    def __init__(self, modules: list[tuple[str, nn.Module]], clock: _Clock) -> None:
        self.names = [name for name, _ in modules]
        self.depths = [_depth(name) for name in self.names]
        self.by_id = {id(module): (i, module) for i, (_, module) in enumerate(modules)}
        self.clock = clock
        self.calls: list[list[int]] = []
        self.stack: list[int] = []

    def reset(self) -> None:
        self.calls = []
        self.stack = []

    @contextmanager
    def hooks(self, *, global_: bool = False) -> Iterator[None]:
        """Marks around each call of the timed modules, from hooks on them (``global_``: from
        two process-wide hooks, which see every module and ignore the others)."""
        by_id, mark = self.by_id, self.clock.mark

        def pre(module: nn.Module, args: tuple[Any, ...]) -> None:
            entry = by_id.get(id(module))
            if entry is None or entry[1] is not module:
                return
            stack, calls = self.stack, self.calls
            call = [entry[0], 0, -1, stack[-1] if stack else -1]
            stack.append(len(calls))
            calls.append(call)
            call[1] = mark()  # last: the hook's own work is not the module's

        def post(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            entry = by_id.get(id(module))
            if entry is None or entry[1] is not module:
                return
            self.calls[self.stack.pop()][2] = mark()

        if global_:
            handles = [register_module_forward_pre_hook(pre), register_module_forward_hook(post)]
        else:  # first among the module's own hooks, as the global ones would run
            handles = [handle for _, module in by_id.values() for handle in (
                module.register_forward_pre_hook(pre, prepend=True),
                module.register_forward_hook(post, prepend=True))]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def collect(self, found: dict[str, ModuleTime], origin: int | None) -> list[Span]:
        """Add this run's totals and self times to ``found``; the run's calls as spans from the
        ``origin`` mark (none if ``origin`` is None)."""
        clock, names = self.clock, self.names
        calls = [c for c in self.calls if c[2] >= 0]  # a call whose module raised has no end
        totals: dict[int, float] = {}
        selfs: dict[int, float] = {}
        counts: dict[int, int] = {}
        inner = [0.0] * len(self.calls)
        durations = [clock.seconds(c[1], c[2]) for c in calls]
        index = {id(c): i for i, c in enumerate(self.calls)}
        for call, duration in zip(calls, durations, strict=True):
            if call[3] >= 0:
                inner[call[3]] += duration
        spans: list[Span] = []
        for call, duration in zip(calls, durations, strict=True):
            module = call[0]
            totals[module] = totals.get(module, 0.0) + duration
            selfs[module] = selfs.get(module, 0.0) + max(0.0, duration - inner[index[id(call)]])
            counts[module] = counts.get(module, 0) + 1
            if origin is not None:
                start = clock.seconds(origin, call[1])
                spans.append(Span(names[module], start, start + duration, self.depths[module]))
        for module, total in totals.items():
            entry = found.setdefault(names[module], ModuleTime(names[module]))
            entry.calls = counts[module]
            entry.total_s.append(total)
            entry.self_s.append(selfs[module])
        return spans


def _grad_outputs(output: Any) -> list[torch.Tensor]:
    return [t for t in tensors(output) if t.requires_grad and t.is_floating_point()]


def _differentiable(model: nn.Module) -> list[torch.Tensor]:
    return [p for p in model.parameters() if p.requires_grad and p.is_floating_point()]


def _backward(output: Any, params: list[torch.Tensor]) -> None:
    """Gradients of every floating output (summed) with respect to the parameters, without
    touching their ``.grad``: the model you pass in keeps its state."""
    outputs = _grad_outputs(output)
    if not outputs:
        raise SpecError("`backward` needs an output that depends on the parameters, and this "
                        "model's outputs do not.", "Profile without `backward`.")
    torch.autograd.grad(outputs, params, grad_outputs=[torch.ones_like(t) for t in outputs],
                        allow_unused=True)


def _auto_runs(pair_s: float) -> int:
    low, high = AUTO_RUNS
    return max(low, min(high, math.ceil(AUTO_SECONDS / max(pair_s, 1e-6))))


@contextmanager
def _quiet_compile_hooks() -> Iterator[None]:
    """torch warns that global hooks fire once more for a compiled wrapper, and Dynamo that it
    cannot trace the clock our hooks read (it leaves them out of its graphs, as it should)."""
    # and, on a machine without CUDA, inductor's C++ build logs that it found no CUDA runtime
    quiet = logging.getLogger("torch.utils.cpp_extension")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*global hooks on modules.*")
            warnings.filterwarnings("ignore", message=r".*Dynamo does not know how to trace "
                                    r"the builtin `time\.perf_counter.*")
            yield
    finally:
        quiet.setLevel(level)


def time_model(model: nn.Module, args: tuple[Any, ...] = (),
               kwargs: dict[str, Any] | None = None, *, device: torch.device,
               runs: int | None = None, warmup: int = 2, train: bool = False,
               backward: bool = False, compile: bool = False,
               time_depth: int | None = None) -> Timings:
    """Time ``model(*args, **kwargs)`` per module over ``runs`` runs after ``warmup`` ones
    (``runs=None``: as many as fit in about 1.5 s, 5 to 100), interleaved with as many bare
    runs. ``backward`` times the backward pass of the bare runs as a whole. ``compile`` times
    ``torch.compile(model)``: the modules it fused into its graphs run no hooks and get no time.
    ``time_depth`` times only the modules down to that depth (None: all of them).
    """
    if runs is not None and runs < 1:
        raise SpecError(f"bad `runs={runs}`.", "Use 1 or more.")
    if time_depth is not None and time_depth < 1:
        raise SpecError(f"bad `time_depth={time_depth}`.", "Use 1 or more.")
    if warmup < 0:
        raise SpecError(f"bad warm-up count {warmup}.", "Use 0 or more.")
    if device.type not in ("cpu", "cuda"):
        raise DeviceError(f"profile times modules on the cpu or on CUDA, not on {device.type}.",
                          "Use `device=cpu` or `device=cuda`.")
    kwargs = kwargs or {}
    with engine.as_run(model, device, train=train) as placed, ExitStack() as stack:
        stack.enter_context(engine._no_fastpath())
        stack.enter_context(engine._gc_paused())
        if compile:
            stack.enter_context(_quiet_compile_hooks())
        modules = [(name, module) for name, module in placed.named_modules()
                   if time_depth is None or _depth(name) <= time_depth]
        clock: _Clock = _CudaClock(device) if device.type == "cuda" else _WallClock()
        recorder = _Recorder(modules, clock)
        params = _differentiable(placed) if backward else []
        if backward and not params:
            raise SpecError("`backward` needs parameters that require gradients, and this model "
                            "has none.", "Profile without `backward`.")
        target: Callable[..., Any] = placed
        if compile:
            target = torch.compile(placed)
        forward_s: list[float] = []
        bare_s: list[float] = []
        backward_s: list[float] = []
        found: dict[str, ModuleTime] = {}
        spans: list[Span] = []

        def bare(keep: bool) -> float:
            clock.reset()
            with torch.set_grad_enabled(backward):
                start = clock.mark()
                output = target(*args, **kwargs)
                end = clock.mark()
                if backward:
                    _backward(output, params)
                    done = clock.mark()
            clock.finish()
            seconds = clock.seconds(start, end)
            if keep:
                bare_s.append(seconds)
                if backward:
                    backward_s.append(clock.seconds(end, done))
            return seconds

        def hooked(keep: bool, last: bool) -> float:
            clock.reset()
            recorder.reset()
            with torch.set_grad_enabled(backward), recorder.hooks(global_=compile):
                start = clock.mark()
                target(*args, **kwargs)
                end = clock.mark()
            clock.finish()
            seconds = clock.seconds(start, end)
            if keep:
                forward_s.append(seconds)
                run_spans = recorder.collect(found, start if last else None)
                if last:
                    spans.extend(run_spans)
            return seconds

        def pair(i: int, keep: bool, last: bool) -> float:
            if i % 2 == 0:  # alternate which goes first, so that drift hits both alike
                return bare(keep) + hooked(keep, last)
            return hooked(keep, last) + bare(keep)

        try:
            pair_s = 0.0
            for i in range(warmup):
                pair_s = pair(i, keep=False, last=False)
            if runs is None:
                if warmup == 0:
                    pair_s = pair(0, keep=False, last=False)
                runs = _auto_runs(pair_s)
            for i in range(runs):
                pair(i, keep=True, last=i == runs - 1)
        except (Exception, SystemExit) as exc:
            if compile and not forward_s and not bare_s:
                raise ForwardError(
                    f"torch.compile failed: {one_line(f'{type(exc).__name__}: {exc}', 300)}.",
                    "Profile without `compile` (on the cpu it needs a C compiler); `debug` "
                    "shows the traceback.") from exc
            raise ForwardError(
                f"a timed forward pass failed: {one_line(f'{type(exc).__name__}: {exc}', 300)}.",
                "`debug` shows the traceback.") from exc
    return Timings(device=str(device), method="CUDA events" if device.type == "cuda"
                   else "wall clock", runs=runs, warmup=warmup, forward_s=forward_s,
                   bare_s=bare_s, modules=found, spans=spans,
                   backward_s=backward_s if backward else None, compiled=compile,
                   time_depth=time_depth)
