"""`modelviz memory` against what an H100 measured and what the peers estimate, in one process.

The measured peaks are `max_memory_allocated` over two real training steps on an H100 (torch
2.11; scripts/gpu_truth.py wrote tests/data/h100_memory.json). modelviz plans the same steps on
the meta device, here. torchinfo's figure is its "Estimated Total Size" (input, forward/backward
pass and parameters); accelerate's `estimate-memory` reports, for training with Adam, four times
the float32 weights (weights, gradients and two moments), and nothing for activations. Times:
one plan each, this machine.

Then the same on this CPU, where the step is real: modelviz plans it on the cpu device, and a
fresh process runs it and measures its peak resident memory (tests/memory_truth.py, under the
malloc settings that make resident memory what the process held), beside the peers' figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from modelviz import api

ROOT = Path(__file__).resolve().parent.parent
MIB = 2**20

CASES: list[tuple[str, str, str, int, str, dict[str, Any]]] = [
    # (label, modelviz spec, sizes, batch, optimizer, prepare options)
    ("resnet50", "resnet50", "3x224x224", 32, "adam", {}),
    ("vit_b_16", "vit_b_16", "3x224x224", 16, "adamw", {}),
    ("gpt2", "hf:gpt2@causal-lm", "int64:512", 4, "adamw",
     {"forward_args": {"use_cache": False}}),
]


def _measured(label: str, optimizer: str) -> int:
    data = json.loads((ROOT / "tests" / "data" / "h100_memory.json").read_text())
    for record in data["memory"]:
        if (record.get("name"), record.get("optimizer"), record.get("amp")) == (
                label, optimizer, "None"):
            step = record["steps"][1]
            peak: int = max(step["forward_peak"], step["backward_peak"], step["step_peak"])
            return peak
    raise KeyError(label)


def _torchinfo(model: torch.nn.Module, inputs: Any) -> float:
    import torchinfo

    stats = torchinfo.summary(model, input_data=inputs, verbose=0, device="cpu")
    total: float = (stats.total_input + stats.total_output_bytes + stats.total_param_bytes)
    return total


# (model in tests/models_for_memory.py, batch, optimizer)
CPU_CASES = [("resnet50", 8, "adam"), ("vit_b_16", 4, "adamw"), ("gpt2", 2, "adamw"),
             ("lstm", 32, "adam"), ("resnet50", 8, "none")]


def cpu() -> None:
    sys.path.insert(0, str(ROOT))
    from tests.memory_truth import MEASURING_ENV
    from tests.models_for_memory import MODELS, SIZES

    print("\n| model (cpu) | batch | optimizer | resident, measured | modelviz | torchinfo | "
          "accelerate |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: |")
    for name, batch, optimizer in CPU_CASES:
        proc = subprocess.run([sys.executable, str(ROOT / "tests" / "memory_truth.py"), name,
                               str(batch), optimizer], capture_output=True, text=True,
                              env={**os.environ, **MEASURING_ENV}, check=True)
        measured = json.loads(proc.stdout.strip().splitlines()[-1])["measured_peak_bytes"]
        torch.manual_seed(0)
        model, make_input = MODELS[name]()
        plan = api.memory(model, SIZES[name], batch_size=batch, optimizer=optimizer,
                          device="cpu")
        ours = (plan.training or plan.inference).peak_bytes
        try:
            info = _torchinfo(model, [make_input(batch)])
        except Exception as exc:  # a peer failing is a result too
            info = float("nan")
            print(f"torchinfo fails on {name}: {type(exc).__name__}")
        weights = sum(p.numel() * p.element_size() for p in model.parameters())
        accelerate = (4 if optimizer != "none" else 1) * weights
        print(f"| {name} | {batch} | {optimizer} | {measured / MIB:,.0f} MiB | "
              f"{ours / MIB:,.0f} MiB ({ours / measured:.2f}x) | "
              f"{info / MIB:,.0f} MiB ({info / measured:.2f}x) | "
              f"{accelerate / MIB:,.0f} MiB ({accelerate / measured:.2f}x) |")


def main() -> None:
    rows = []
    for label, spec, sizes, batch, optimizer, options in CASES:
        started = time.perf_counter()
        plan = api.memory(spec, sizes, batch_size=batch, optimizer=optimizer, device="meta",
                          **options)
        seconds = time.perf_counter() - started
        assert plan.training is not None
        measured = _measured(label, optimizer)
        prepared = api.prepare(spec, sizes, batch_size=batch, device="cpu", **options)
        inputs = list(prepared.inputs.args) or None
        try:
            info = _torchinfo(prepared.model, inputs)
        except Exception as exc:  # a peer failing is a result too
            info = float("nan")
            print(f"torchinfo fails on {label}: {type(exc).__name__}")
        weights = sum(p.numel() * 4 for p in prepared.model.parameters())
        accelerate = 4 * weights
        rows.append((label, batch, optimizer, measured, plan.training.peak_bytes, info,
                     accelerate, seconds))
    print("| model | batch | optimizer | H100 measured | modelviz (meta) | torchinfo | "
          "accelerate | modelviz time |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for label, batch, optimizer, measured, ours, info, accelerate, seconds in rows:
        print(f"| {label} | {batch} | {optimizer} | {measured / MIB:,.0f} MiB | "
              f"{ours / MIB:,.0f} MiB ({ours / measured:.2f}x) | "
              f"{info / MIB:,.0f} MiB ({info / measured:.2f}x) | "
              f"{accelerate / MIB:,.0f} MiB ({accelerate / measured:.2f}x) | {seconds:.1f} s |")


if __name__ == "__main__":
    main()
    cpu()
