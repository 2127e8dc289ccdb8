"""One training step and one inference pass, followed allocation by allocation.

The forward pass is the engine's (a probe follows the storages and what autograd saves); the
backward pass and the optimizer step run under the same tracker. Two steps run, because the
second is the one that holds the optimizer state through its forward and backward passes: the
steady state a training run lives in. On the meta device nothing is computed, so a 70B model is
planned in seconds; on CPU or CUDA the step is real and, on CUDA, torch's own
``max_memory_allocated`` is read beside the prediction.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from modelviz.core import engine
from modelviz.core.allocations import CUDA_BLOCK, Tracker, round_up
from modelviz.core.hierarchy import block_runs
from modelviz.core.inputs import training_targets
from modelviz.core.records import CallRecord, Trace
from modelviz.errors import SpecError
from modelviz.features.memory.amp import emulated_autocast
from modelviz.features.memory.kernels import cpu_scratch, cuda_attention

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw", "adafactor", "none")
AMP = ("bf16", "fp16")


@dataclass
class Inference:
    """A no-grad forward pass: activations are freed as soon as nothing needs them."""

    peak_bytes: int
    weights_bytes: int  # parameters and buffers
    inputs_bytes: int
    measured_peak_bytes: int | None = None


@dataclass
class PhasePeak:
    """One phase's peak in one step, and what was live at it, by kind."""

    phase: str  # "backward (step 2)"
    peak_bytes: int
    at: dict[str, int]


@dataclass
class Training:
    """Two steps of training; the figures are those of the step with the higher peak."""

    peak_bytes: int
    peak_phase: str
    parameters_bytes: int
    buffers_bytes: int
    inputs_bytes: int
    gradients_bytes: int
    optimizer_bytes: int
    activations_bytes: int  # saved for backward at the end of the forward pass
    at_peak: dict[str, int]  # what was live at the peak, by kind
    phases: list[PhasePeak]  # every phase of both steps: another may peak once sharded
    checkpointed: list[str] = field(default_factory=list)
    measured_peak_bytes: int | None = None


@dataclass
class PerModule:
    """Bytes one module owns: its parameters' (and their gradients and optimizer state), and the
    activations autograd saved while it ran, its submodules' included."""

    parameters: dict[str, int] = field(default_factory=dict)
    gradients: dict[str, int] = field(default_factory=dict)
    optimizer: dict[str, int] = field(default_factory=dict)
    activations: dict[str, int] = field(default_factory=dict)


class _Watch(engine.Probe):
    """Rides on the engine's forward pass: follows allocations, knows which module runs."""

    name = "memory"

    def __init__(self, tracker: Tracker, *, saved: bool, amp: Any, meta: bool) -> None:
        self.tracker = tracker
        self.meta = meta
        self.saved = saved
        self.amp = amp
        self.stack: list[str] = []

    def context(self) -> Any:
        stack = ExitStack()
        stack.enter_context(self.amp())
        if self.meta:
            stack.enter_context(cuda_attention())
        stack.enter_context(self.tracker.following(saved=self.saved))
        return stack

    def again(self) -> Any:
        """What a recomputed forward needs on meta (real devices' checkpointing restores
        autocast by itself)."""
        stack = ExitStack()
        if self.meta:
            stack.enter_context(self.amp())
            stack.enter_context(cuda_attention())
        return stack

    def call_start(self, call: CallRecord, module: nn.Module, args: tuple[Any, ...]) -> None:
        self.stack.append(self.tracker.module)
        self.tracker.module = call.module

    def call_end(self, call: CallRecord, module: nn.Module, args: tuple[Any, ...],
                 kwargs: dict[str, Any], output: Any) -> None:
        if self.stack:
            self.tracker.module = self.stack.pop()


def block_for(device: torch.device) -> int:
    """The allocator's block: CUDA's 512 bytes on cuda and on meta, which plans for it."""
    return CUDA_BLOCK if device.type in ("cuda", "meta") else 1


def tracker_for(device: torch.device) -> Tracker:
    """A tracker that rounds as ``device``'s allocator does and knows its kernels' scratch.

    torch._dynamo is imported first, if nothing has yet: torch imports it at the first op that
    passes one of its ``_disable_dynamo`` wrappers (a dispatch mode, a meta decomposition), and
    an import inside a followed pass leaves the frames it ran under in reference cycles that
    live until the pass ends (the collector is paused there, for steady figures), the tensors
    they hold included: resnet50's first plan in a process counted conv1's output (98 MiB at
    batch 32) into its inference peak, and the second did not (tests/test_memory.py)."""
    import torch._dynamo  # noqa: F401  # imported for its side effect, before any pass

    return Tracker(block=block_for(device), scratch=cpu_scratch if device.type == "cpu" else None)


def _bytes(tensors: Any, block: int = 1) -> int:
    """Bytes of the tensors' storages, each rounded up to the allocator's block."""
    return sum(round_up(t.untyped_storage().nbytes(), block) for t in _unique(tensors))


def _unique(tensors: Any) -> list[torch.Tensor]:
    seen: set[int] = set()
    out = []
    for t in tensors:
        if isinstance(t, torch.Tensor) and id(t) not in seen:
            seen.add(id(t))
            out.append(t)
    return out


def _measuring(device: torch.device) -> bool:
    return device.type == "cuda"


def _reset(device: torch.device) -> None:
    if _measuring(device):
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _measured(device: torch.device) -> int:
    torch.cuda.synchronize(device)
    return int(torch.cuda.max_memory_allocated(device))


def autocast_for(device: torch.device, amp: str | None) -> Any:
    """The autocast context of a real device, or on meta an emulation of CUDA's policy."""
    if amp is None:
        return nullcontext
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    if device.type == "meta":
        return functools.partial(emulated_autocast, dtype)
    return functools.partial(torch.autocast, device.type, dtype=dtype)


def inference(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
              device: torch.device, *, amp: str | None = None) -> tuple[Inference, Trace]:
    """The peak of a no-grad forward pass, and the engine's trace of it."""
    tracker = tracker_for(device)
    weights = tracker.adopt(model.parameters(), "parameters")
    weights += tracker.adopt(model.buffers(), "buffers")
    inputs = tracker.adopt(tree_leaves((args, kwargs)), "inputs")
    tracker.start_phase("inference", "activations")
    _reset(device)
    trace = engine.run(model, args, kwargs, device=None, train=False, grad=False, exact=False,
                       probes=(_Watch(tracker, saved=False, amp=autocast_for(device, amp),
                                      meta=device.type == "meta"),))
    measured = trace.peak_memory_bytes if _measuring(device) else None
    return Inference(tracker.peak.total, weights, inputs, measured), trace


def repeated_blocks(trace: Trace) -> list[str]:
    """The outermost runs of two or more interchangeable sibling blocks (a transformer's layers,
    a ResNet stage's bottlenecks): what activation checkpointing wraps."""
    memo: dict[str, tuple[Any, ...]] = {}
    found: list[str] = []

    def visit(name: str) -> None:
        for run in block_runs(trace, name, memo):  # numbered runs, as summary folds them
            if len(run) > 1 and all(r.calls for r in run):
                found.extend(r.name for r in run)
            else:
                for record in run:
                    visit(record.name)

    visit("")
    return found


@contextmanager
def checkpointed(model: nn.Module, names: list[str]) -> Iterator[None]:
    """Each named block's forward under non-reentrant activation checkpointing, for the pass."""
    from torch.utils.checkpoint import checkpoint

    modules = dict(model.named_modules())
    patched: list[nn.Module] = []
    try:
        for name in names:
            module = modules[name]
            original = module.forward

            def forward(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
                return checkpoint(_original, *args, use_reentrant=False,
                                  preserve_rng_state=False, **kwargs)

            module.forward = forward
            patched.append(module)
        yield
    finally:
        for module in patched:
            del module.forward  # the class's forward again


def make_optimizer(name: str, params: list[nn.Parameter],
                   device: torch.device) -> torch.optim.Optimizer | None:
    """torch's own optimizer, so its state and its step's temporaries are the real ones. On
    meta, the multi-tensor ("foreach") step that CUDA uses by default, since meta plans for it.
    The learning rate is 0: a real device does all of a step's work, and the weights stay."""
    if name == "none" or not params:
        return None
    options: dict[str, Any] = {"foreach": True} if device.type == "meta" else {}
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.0, **options)
    if name == "momentum":
        return torch.optim.SGD(params, lr=0.0, momentum=0.9, **options)
    if name == "adam":
        return torch.optim.Adam(params, lr=0.0, **options)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=0.0, **options)
    if name == "adafactor":
        adafactor = getattr(torch.optim, "Adafactor", None)
        if adafactor is None:
            raise SpecError(f"`optimizer=adafactor` needs torch 2.5 or newer (this is "
                            f"{torch.__version__}).", "Use adam, adamw, momentum or sgd.")
        return adafactor(params, lr=0.0, **options)  # type: ignore[no-any-return]
    raise SpecError(f"unknown `optimizer={name}`.", f"Use one of {', '.join(OPTIMIZERS)}.")


def _loss(output: Any) -> torch.Tensor | None:
    """The mean of every floating output that needs gradients, in float32: the smallest loss
    that reaches every output (a cross-entropy over a large vocabulary adds its log-softmax)."""
    parts = [leaf.float().mean() for leaf in tree_leaves(output)
             if isinstance(leaf, torch.Tensor) and leaf.requires_grad
             and leaf.is_floating_point()]
    if not parts:
        return None
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


def _state_tensors(optimizer: torch.optim.Optimizer | None,
                   device: torch.device) -> dict[int, list[torch.Tensor]]:
    """The optimizer's state per parameter (by id), on the model's device only: Adam's step
    counters live on the CPU when the model is on a GPU."""
    if optimizer is None:
        return {}
    return {id(p): [t for t in state.values()
                    if isinstance(t, torch.Tensor) and t.device.type == device.type]
            for p, state in optimizer.state.items()}


def training(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
             device: torch.device, *, optimizer: str = "adam", amp: str | None = None,
             checkpoint: list[str] | None = None, steps: int | None = None) -> (
        tuple[Training, PerModule]):
    """Follow ``steps`` training steps; the model is left as it was (weights, since the learning
    rate is 0; no ``.grad``; buffers, restored by the engine).

    ``steps``: by default two on a real device, where the second is measured too, and one on
    meta, where the second step's forward and backward peaks are the first's plus the optimizer
    state that they then hold (the same shapes allocate the same bytes; the optimizer's step
    peaks as the first's): half the time for a 70B model, and the same figure (checked against
    two simulated steps in the tests).
    """
    if steps is None:
        steps = 1 if device.type == "meta" else 2
    kwargs = {**kwargs, **training_targets(model, args, kwargs)}  # detection trains on targets
    tracker = tracker_for(device)
    params = [p for p in model.parameters() if p.requires_grad]
    parameters = tracker.adopt(model.parameters(), "parameters")
    buffers = tracker.adopt(model.buffers(), "buffers")
    inputs = tracker.adopt(tree_leaves((args, kwargs)), "inputs")
    tracker.not_activations([*model.parameters(), *model.buffers()])
    opt = make_optimizer(optimizer, params, device)

    def landed(param: torch.Tensor) -> None:  # a gradient is one only once it is in .grad
        if param.grad is not None:
            tracker.relabel([param.grad], "gradients")

    handles = [p.register_post_accumulate_grad_hook(landed)  # type: ignore[no-untyped-call]
               for p in params]
    probe = _Watch(tracker, saved=True, amp=autocast_for(device, amp),
                   meta=device.type == "meta")
    figures: Training | None = None
    phases: list[PhasePeak] = []
    per = PerModule()
    measured = 0
    flags = [(m, m.training) for m in model.modules()]
    model.train()  # through backward too: checkpointed blocks run their forward again there
    try:
        with checkpointed(model, checkpoint or []):
            for step in range(1, steps + 1):
                tracker.reset_peak()
                tracker.start_phase("forward", "activations")
                _reset(device)
                trace = engine.run(model, args, kwargs, device=None, train=True, grad=True,
                                   keep_output=True, count_flops=False, probes=(probe,),
                                   exact=False)
                if _measuring(device) and trace.peak_memory_bytes is not None:
                    measured = max(measured, trace.peak_memory_bytes)
                with tracker.following(), probe.amp():
                    loss = _loss(trace.output_value)
                trace.output_value = None
                activations = tracker.saved_bytes()
                saved_by_module = tracker.saved_by_module()
                tracker.start_phase("backward", "backward")
                _reset(device)
                if loss is not None:
                    # checkpointed blocks run their forward again in here: on meta, with the
                    # same attention kernels and emulated autocast as the first time
                    again = probe.again() if checkpoint else nullcontext()
                    with tracker.following(), again:
                        loss.backward()  # type: ignore[no-untyped-call]
                    del loss
                gradients = _bytes((p.grad for p in params if p.grad is not None), tracker.block)
                grads_by_param = {id(p): _bytes([p.grad], tracker.block) for p in params
                                  if p.grad is not None}
                tracker.start_phase("optimizer step", "optimizer")
                if opt is not None:
                    with tracker.following():
                        opt.step()
                    opt.zero_grad(set_to_none=True)
                else:
                    model.zero_grad(set_to_none=True)
                if _measuring(device):
                    measured = max(measured, _measured(device))
                states = _state_tensors(opt, device)
                optimizer_bytes = _bytes((t for ts in states.values() for t in ts), tracker.block)
                phases += [PhasePeak(f"{name} (step {step})", peak, dict(tracker.phase_at[name]))
                           for name, peak in tracker.phase_peaks.items()]
                figures = Training(
                    peak_bytes=0, peak_phase="", parameters_bytes=parameters,
                    buffers_bytes=buffers, inputs_bytes=inputs, gradients_bytes=gradients,
                    optimizer_bytes=optimizer_bytes, activations_bytes=activations, at_peak={},
                    phases=phases, checkpointed=list(checkpoint or []))
                if step == 1:
                    per = _per_module(model, params, grads_by_param, states, saved_by_module)
    finally:
        for handle in handles:
            handle.remove()
        model.zero_grad(set_to_none=True)
        for module, flag in flags:
            module.training = flag
    assert figures is not None
    if steps == 1 and opt is not None:  # the second step's forward and backward, derived
        state = figures.optimizer_bytes
        phases += [PhasePeak(p.phase.replace("(step 1)", "(step 2)"), p.peak_bytes + state,
                             {**p.at, "optimizer": p.at.get("optimizer", 0) + state})
                   for p in list(phases) if not p.phase.startswith("optimizer")]
    top = max(phases, key=lambda p: p.peak_bytes)
    figures.peak_bytes, figures.peak_phase, figures.at_peak = top.peak_bytes, top.phase, top.at
    if _measuring(device):
        figures.measured_peak_bytes = measured
    return figures, per


def per_module_weights(model: nn.Module) -> PerModule:
    """Parameters per module, for a plan without training."""
    return _per_module(model, [], {}, {}, {})


def _per_module(model: nn.Module, params: list[nn.Parameter], grads: dict[int, int],
                states: dict[int, list[torch.Tensor]], saved: dict[str, int]) -> PerModule:
    """Each figure charged to the module that owns the parameter (the first owner of a shared
    one) or that saved the activation; totals roll up to every ancestor."""
    per = PerModule()
    trainable = {id(p) for p in params}
    seen: set[int] = set()

    def add(table: dict[str, int], name: str, size: int) -> None:
        parts = name.split(".") if name else []
        for depth in range(len(parts) + 1):
            key = ".".join(parts[:depth])
            table[key] = table.get(key, 0) + size

    for module_name, module in model.named_modules():
        for param in module.parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            add(per.parameters, module_name, param.numel() * param.element_size())
            if id(param) in trainable:
                add(per.gradients, module_name, grads.get(id(param), 0))
                add(per.optimizer, module_name,
                    sum(t.untyped_storage().nbytes() for t in states.get(id(param), [])))
    for module_name, size in saved.items():
        add(per.activations, module_name, size)
    return per
