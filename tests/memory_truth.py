"""What a real CPU training step or inference pass uses: torch's CPU allocator, and the process.

``allocator_peak`` follows torch.profiler's memory timeline (every allocation and free the c10
CPU allocator made, kernels' own temporaries included): the CPU's ``max_memory_allocated``.
The script measures the other figure, resident memory, in a fresh process:

Run as ``python tests/memory_truth.py MODEL BATCH OPTIMIZER``: it builds the model, its inputs and
its optimizer, resets the kernel's peak-RSS mark, runs two real steps (the second holds the
optimizer state through its forward and backward, as training does) or one no-grad pass, and
prints the peak resident memory above the baseline plus the bytes of parameters, buffers and
inputs that the baseline already held: the measured peak, comparable with ``memory``'s.

Run it under ``MEASURING_ENV``. Without it, resident memory is glibc's figure more than the
process's: glibc raises its mmap threshold each time it frees a large block, so later activations
come from the heap and their freed pages stay resident (a resnet18 step read 18% above what was
ever live at once), and a block allocated but never written is not resident at all (oneDNN's RNN
scratch: an LSTM step read 35% under). A fixed mmap threshold returns every large block to the
kernel when it is freed, and ``MALLOC_PERTURB_`` writes every block malloc hands out, so the peak
resident memory is the peak of what every allocator (torch's, oneDNN's own) held at once; with
one thread and one arena it repeats within 0.1% (resnet18, batch 8, Adam: 364.21-364.37 MB).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

#: malloc reads these at start-up, so they are set for the fresh process, not inside it.
MEASURING_ENV = {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_THRESHOLD_": "65536",
                 "MALLOC_PERTURB_": "165", "OMP_NUM_THREADS": "1"}


def _rss_now() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def _rss_peak() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def make_optimizer(name: str, params: list[Any]) -> Any:
    import torch

    if name == "sgd":
        return torch.optim.SGD(params, lr=0.0)
    if name == "momentum":
        return torch.optim.SGD(params, lr=0.0, momentum=0.9)
    if name == "adam":
        return torch.optim.Adam(params, lr=0.0)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=0.0)
    return None


def steps(model: Any, args: tuple[Any, ...], opt: Any) -> None:
    """Two training steps (the second holds the optimizer state), or one no-grad pass."""
    import torch

    if opt is None:
        model.eval()
        with torch.no_grad():
            model(*args)
        return
    model.train()
    for _ in range(2):
        loss = model(*args).float().mean()
        loss.backward()
        del loss
        opt.step()
        opt.zero_grad(set_to_none=True)


def allocator_peak(name: str, batch: int, optimizer: str) -> int:
    """The peak of torch's CPU allocator over ``steps``, plus what was allocated before."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import Action

    torch.manual_seed(0)
    model, args = build(name, batch)
    opt = make_optimizer(optimizer, [p for p in model.parameters() if p.requires_grad])
    held = sum(t.untyped_storage().nbytes() for t in [*model.parameters(), *model.buffers(),
                                                     *args])
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True,
                 with_stack=True) as prof:  # the memory timeline needs all three
        steps(model, args, opt)
    current = peak = 0
    for _, action, _, size in prof._memory_profile().timeline:
        if action == Action.CREATE:
            current += size
        elif action == Action.DESTROY:
            current -= size
        peak = max(peak, current)
    total: int = peak + held
    return total


def build(name: str, batch: int) -> tuple[Any, tuple[Any, ...]]:
    from tests.models_for_memory import MODELS

    model, make_input = MODELS[name]()
    return model, (make_input(batch),)


def main() -> None:
    import torch

    torch.set_num_threads(1)
    name, batch, optimizer = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    torch.manual_seed(0)
    model, args = build(name, batch)
    opt = make_optimizer(optimizer, [p for p in model.parameters() if p.requires_grad])
    held = sum(t.untyped_storage().nbytes() for t in [*model.parameters(), *model.buffers(),
                                                     *args])

    def loss_of(out: Any) -> Any:
        return out.float().mean()

    if opt is None:  # warm up once so that lazily built kernels' tables are in the baseline
        model.eval()
        with torch.no_grad():
            model(*[a[:1] for a in args])
    else:
        model.train()
        loss_of(model(*[a[:1] for a in args])).backward()
        model.zero_grad(set_to_none=True)
    Path("/proc/self/clear_refs").write_text("5")  # the peak-RSS mark from here on
    base = _rss_now()
    steps(model, args, opt)
    print(json.dumps({"measured_peak_bytes": _rss_peak() - base + held, "held_bytes": held}))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
