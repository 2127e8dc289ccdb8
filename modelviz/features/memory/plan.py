"""The memory plan of a prepared model: inference, a training step, sharding, the batch that fits.

Everything comes from the simulation in ``simulate``; sharding is arithmetic on its figures
(FSDP / ZeRO-3 divide parameters, gradients and optimizer state by the number of devices and
gather one block at a time), and ``--fit`` bisects the batch size, simulating each candidate on
the meta device, where a step costs no memory and little time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_map

from modelviz.core import engine
from modelviz.core.formatting import binary_size
from modelviz.core.inputs import needs_training_targets
from modelviz.core.records import shapes_json
from modelviz.core.session import Prepared
from modelviz.errors import ForwardError, SpecError
from modelviz.features.memory import simulate
from modelviz.features.memory.kv import KvCache, plan_kv_cache
from modelviz.features.memory.simulate import Inference, PerModule, Training

MAX_BATCH = 1 << 20


@dataclass
class Sharding:
    """Per-device figures when parameters, gradients and optimizer state are split N ways."""

    devices: int
    block: str  # the largest block, gathered whole while it runs
    block_bytes: int
    inference_peak_bytes: int
    training_peak_bytes: int | None


@dataclass
class Fit:
    """The largest batch whose peak fits ``budget_bytes`` (per device, when sharded)."""

    budget_bytes: int
    budget: str
    mode: str  # "training" or "inference"
    max_batch_size: int
    peak_bytes: int  # at max_batch_size; 0 when even batch 1 does not fit
    next_peak_bytes: int  # at max_batch_size + 1


@dataclass
class MemoryPlan:
    """``modelviz memory``'s answer, for the table and the JSON."""

    model: str
    device: str
    dtype: str
    batch_size: int
    inputs: Any  # shapes, as the summary's JSON gives them
    optimizer: str
    amp: str | None
    checkpointing: bool
    inference: Inference
    training: Training | None
    per_module: PerModule
    module_types: dict[str, str]
    sharding: Sharding | None = None
    fit: Fit | None = None
    kv_cache: KvCache | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON (docs/json.md)."""
        data: dict[str, Any] = {
            "schema": "modelviz.memory/1", "model": self.model, "device": self.device,
            "dtype": self.dtype,
            "batch_size": self.batch_size, "inputs": self.inputs, "optimizer": self.optimizer,
            "amp": self.amp, "checkpointing": self.checkpointing,
            "inference": asdict(self.inference),
            "training": asdict(self.training) if self.training is not None else None,
            "layers": [{"name": name, "type": self.module_types.get(name, ""),
                        "parameters_bytes": self.per_module.parameters.get(name, 0),
                        "gradients_bytes": self.per_module.gradients.get(name, 0),
                        "optimizer_bytes": self.per_module.optimizer.get(name, 0),
                        "activations_bytes": self.per_module.activations.get(name, 0)}
                       for name in self.module_types],
            "sharding": asdict(self.sharding) if self.sharding is not None else None,
            "kv_cache": asdict(self.kv_cache) if self.kv_cache is not None else None,
            "notes": self.notes,
        }
        if self.fit is not None:
            data["fit"] = asdict(self.fit)
            data["max_batch_size"] = self.fit.max_batch_size
        return data


def _on_meta(value: Any, batch: int | None = None, old: int | None = None) -> Any:
    """Inputs as meta tensors, with the batch dimension resized from ``old`` to ``batch``."""

    def move(t: Any) -> Any:
        if not isinstance(t, torch.Tensor):
            return t
        shape = list(t.shape)
        if batch is not None and shape and shape[0] == old:
            shape[0] = batch
        return torch.empty(shape, dtype=t.dtype, device="meta")

    return tree_map(move, value)


def largest_block(model: nn.Module, blocks: list[str]) -> tuple[str, int]:
    """The block FSDP would gather whole: the largest repeated block, else the largest child of
    the root (or the whole model, when it has no children)."""
    modules = dict(model.named_modules())
    names = blocks or [n for n, _ in model.named_children()] or [""]

    def size(name: str) -> int:
        return sum(p.numel() * p.element_size() for p in modules[name].parameters())

    name = max(names, key=size)
    return name, size(name)


def shard(inference: Inference, training: Training | None, devices: int, block: str,
          block_bytes: int) -> Sharding:
    """ZeRO-3 / FSDP arithmetic on the simulated peaks: what is split shrinks N times, and two
    blocks' parameters (the one running and the one prefetched) are gathered whole, plus, in
    backward, one block's full gradient before it is reduce-scattered."""
    split = (devices - 1) / devices
    infer = int(inference.peak_bytes - split * inference.weights_bytes + 2 * block_bytes)
    train = None
    if training is not None:  # each phase sharded: the peak may move (activations stay whole)
        train = max(int(p.peak_bytes - split * (p.at.get("parameters", 0)
                                                + p.at.get("gradients", 0)
                                                + p.at.get("optimizer", 0))
                        + (3 if p.phase.startswith("backward") else 2) * block_bytes)
                    for p in training.phases)
    return Sharding(devices, block or "(the whole model)", block_bytes, infer, train)


def _peak_at(batch: int, model: nn.Module, prepared: Prepared, *, optimizer: str,
             amp: str | None, blocks: list[str], devices: int, block: tuple[str, int]) -> int:
    args = _on_meta(prepared.inputs.args, batch, prepared.batch_size)
    kwargs = _on_meta(prepared.inputs.kwargs, batch, prepared.batch_size)
    meta = torch.device("meta")
    if optimizer == "none" or devices > 1:
        inference, _ = simulate.inference(model, args, kwargs, meta, amp=amp)
        if optimizer == "none" and devices == 1:
            return inference.peak_bytes
    training = None
    if optimizer != "none":
        training, _ = simulate.training(model, args, kwargs, meta, optimizer=optimizer,
                                        amp=amp, checkpoint=blocks)
        if devices == 1:
            return training.peak_bytes
    if devices > 1:
        sharded = shard(inference, training, devices, *block)
        peak = sharded.training_peak_bytes if training is not None else None
        return peak if peak is not None else sharded.inference_peak_bytes
    return training.peak_bytes if training is not None else inference.peak_bytes


def _least_batch(peak: Callable[[int], int], mode: str) -> int:
    """1, or 2 where a training step cannot run on one sample: batch norm's statistics need
    two values per channel, so real training needs a batch of 2 there too."""
    if mode != "training":
        return 1
    try:
        peak(1)
    except ForwardError as exc:
        if engine.ONE_VALUE_PER_CHANNEL not in str(exc):
            raise
        return 2
    return 1


def fit(prepared: Prepared, budget: int, label: str, *, optimizer: str, amp: str | None,
        blocks: list[str], devices: int, block: tuple[str, int]) -> Fit:
    """Double the batch until the peak passes the budget, then bisect: every answer is checked,
    so ``max_batch_size`` fits and one more does not."""
    model = prepared.model if engine.model_device(prepared.model) == torch.device("meta") \
        else engine.meta_copy(prepared.model)
    cache: dict[int, int] = {}

    def peak(batch: int) -> int:
        if batch not in cache:
            cache[batch] = _peak_at(batch, model, prepared, optimizer=optimizer, amp=amp,
                                    blocks=blocks, devices=devices, block=block)
        return cache[batch]

    mode = "training" if optimizer != "none" else "inference"
    least = _least_batch(peak, mode)
    if peak(least) > budget:
        return Fit(budget, label, mode, 0, 0, peak(least))
    # The peak grows almost linearly with the batch: aim at the batch the line from the least
    # two predicts, then bracket it by checked steps and bisect, so that few steps are simulated.
    slope = max(1, peak(least + 1) - peak(least))
    guess = max(least, min(MAX_BATCH, least + (budget - peak(least)) // slope))
    step = 1  # the line is usually exact to a batch: guess and guess + 1 often settle it
    if peak(guess) <= budget:
        low, high = guess, guess + step
        while peak(high) <= budget:
            low, high, step = high, high + 2 * step, 2 * step
            if high > MAX_BATCH:
                raise SpecError(f"batch {MAX_BATCH:,} still fits `fit={label}`.",
                                "The budget is far above this model's needs; give a smaller one.")
    else:
        low, high = max(least, guess - step), guess
        while low > least and peak(low) > budget:
            low, high, step = max(least, low - 2 * step), low, 2 * step
    while high - low > 1:
        middle = (low + high) // 2
        if peak(middle) <= budget:
            low = middle
        else:
            high = middle
    return Fit(budget, label, mode, low, peak(low), peak(low + 1))


def plan(prepared: Prepared, *, optimizer: str = "adam", amp: str | None = None,
         checkpointing: bool = False, shard_over: int = 1, budget: tuple[int, str] | None = None,
         depth: int = 1, kv_cache: int | None = None) -> MemoryPlan:
    """Simulate inference and (unless ``optimizer='none'``) training of ``prepared``."""
    if optimizer not in simulate.OPTIMIZERS:
        raise SpecError(f"unknown `optimizer={optimizer}`.",
                        f"Use one of {', '.join(simulate.OPTIMIZERS)}.")
    if amp is not None and amp not in simulate.AMP:
        raise SpecError(f"unknown `amp={amp}`.", "Use bf16 or fp16.")
    if shard_over < 1:
        raise SpecError(f"bad `shard={shard_over}`.", "Give the number of devices, 1 or more.")
    with engine.as_run(prepared.model, prepared.device) as placed:
        return _plan(prepared, placed, optimizer=optimizer, amp=amp,
                     checkpointing=checkpointing, shard_over=shard_over, budget=budget,
                     depth=depth, kv_cache=kv_cache)


def _plan(prepared: Prepared, model: nn.Module, *, optimizer: str, amp: str | None,
          checkpointing: bool, shard_over: int, budget: tuple[int, str] | None,
          depth: int, kv_cache: int | None) -> MemoryPlan:
    args, kwargs = prepared.inputs.args, prepared.inputs.kwargs
    device = prepared.device
    dtype = engine.model_dtype(model)
    if amp is not None and dtype not in (None, torch.float32):
        raise SpecError(f"`amp={amp}` keeps float32 master weights, but the model is {dtype}.",
                        "Drop `dtype`, or drop `amp` to train in the model's own dtype.")
    inference, trace = simulate.inference(model, args, kwargs, device, amp=amp)
    repeated = simulate.repeated_blocks(trace)
    blocks = repeated if checkpointing else []
    notes: list[str] = []
    if checkpointing and not blocks:
        notes.append("no repeated blocks to checkpoint: activation checkpointing changes nothing")
    training: Training | None = None
    per = PerModule()
    if optimizer != "none":
        training, per = simulate.training(model, args, kwargs, device, optimizer=optimizer,
                                          amp=amp, checkpoint=blocks)
        if needs_training_targets(model, args, kwargs):
            notes.append("training ran on made-up targets, as a torchvision detection model "
                         "needs them: one box per image (with its mask or keypoints where the "
                         "model predicts them); the losses cost the same for any boxes")
    block = largest_block(model, repeated)
    sharding = (shard(inference, training, shard_over, *block) if shard_over > 1 else None)
    fitted = (fit(prepared, budget[0], budget[1], optimizer=optimizer, amp=amp, blocks=blocks,
                  devices=shard_over, block=block) if budget is not None else None)
    sample = training.activations_bytes / max(prepared.batch_size, 1) if training else 0.0
    if fitted is not None and not fitted.max_batch_size and repeated and not checkpointing \
            and fitted.next_peak_bytes - sample <= fitted.budget_bytes:  # they stand in the way
        whole = " on each device, which sharding does not split" if shard_over > 1 else ""
        notes.append(f"nothing fits {fitted.budget}: one sample's activations saved for "
                     f"backward take {binary_size(int(sample))}{whole}; `checkpointing=True` "
                     "keeps only each repeated block's input")
    if not per.parameters:
        per = simulate.per_module_weights(model)
    serving = (plan_kv_cache(model, args, kwargs, device, kv_cache, amp=amp)
               if kv_cache is not None else None)
    types = {name: record.type for name, record in trace.modules.items()
             if record.depth <= depth}
    return MemoryPlan(
        model=prepared.loaded.name, device=str(device),
        dtype=str(dtype).removeprefix("torch.") if dtype is not None else "float32",
        batch_size=prepared.batch_size, inputs=shapes_json(trace.inputs),
        optimizer=optimizer, amp=amp, checkpointing=checkpointing, inference=inference,
        training=training, per_module=per, module_types=types, sharding=sharding, fit=fitted,
        kv_cache=serving, notes=notes)
