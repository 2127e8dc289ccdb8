"""What a real CPU training step or inference pass uses, measured in a fresh process.

Run as ``python tests/memory_truth.py MODEL BATCH OPTIMIZER``: it builds the model, its inputs and
its optimizer, resets the kernel's peak-RSS mark, runs two real steps (the second holds the
optimizer state through its forward and backward, as training does) or one no-grad pass, and
prints the peak resident memory above the baseline plus the bytes of parameters, buffers and
inputs that the baseline already held: the measured peak, comparable with ``memory``'s.
One thread and one malloc arena keep it repeatable (the issue saw 665-686 MB over four runs).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")


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
    params = [p for p in model.parameters() if p.requires_grad]
    opt: torch.optim.Optimizer | None = None
    if optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=0.0)
    elif optimizer == "momentum":
        opt = torch.optim.SGD(params, lr=0.0, momentum=0.9)
    elif optimizer == "adam":
        opt = torch.optim.Adam(params, lr=0.0)
    elif optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=0.0)
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
    if opt is None:
        with torch.no_grad():
            model(*args)
    else:
        for _ in range(2):
            loss = loss_of(model(*args))
            loss.backward()
            del loss
            opt.step()
            opt.zero_grad(set_to_none=True)
    print(json.dumps({"measured_peak_bytes": _rss_peak() - base + held, "held_bytes": held}))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
