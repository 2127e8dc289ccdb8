"""What `modelviz profile`'s timing costs, in one process: its hooked forward (two CUDA-event or
clock marks per module call) against a bare `torch.no_grad()` forward, and `torch.profiler` with
`record_shapes=True` around the same forward, on resnet50 and vit_b_16 at batch 1 on the CPU;
and the hooked forward with `--time-depth 1`, where only the depth-1 modules carry hooks.

Run: .venv/bin/python benchmarks/profile_overhead.py
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._timing import interleaved
from modelviz.core import timing

MODELS = ("resnet50", "vit_b_16")
REPEAT = 9


def _candidates(model: torch.nn.Module, x: torch.Tensor) -> dict[str, Callable[[], object]]:
    def bare() -> None:
        with torch.no_grad():
            model(x)

    def profiled() -> None:
        with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], record_shapes=True):
            model(x)

    return {"bare": bare, "torch.profiler": profiled}


def main() -> None:
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, cpu, {torch.get_num_threads()} threads, batch 1, median of "
          f"{REPEAT} interleaved runs\n")
    print("| model    | bare forward | modelviz profile (hooked forward) | --time-depth 1 | "
          "torch.profiler record_shapes |")
    print("| -------- | ------------:| ---------------------------------:| --------------:| "
          "---------------------------:|")
    for name in MODELS:
        model = getattr(torchvision.models, name)().eval()
        x = torch.randn(1, 3, 224, 224)
        times = interleaved(_candidates(model, x), REPEAT)
        # modelviz's own timed runs, its bare forward interleaved with the hooked one
        measured = timing.time_model(model, (x,), device=torch.device("cpu"), runs=REPEAT)
        hooked, own_bare = timing.median(measured.forward_s), timing.median(measured.bare_s)
        shallow = timing.time_model(model, (x,), device=torch.device("cpu"), runs=REPEAT,
                                    time_depth=1)
        ratio = timing.median(shallow.forward_s) / timing.median(shallow.bare_s)
        base = times["bare"]
        print(f"| {name:<8} | {base * 1e3:9.1f} ms | {hooked / own_bare:25.2f}x "
              f"({hooked * 1e3:.1f} ms) | {ratio:13.2f}x | "
              f"{times['torch.profiler'] / base:27.2f}x |")


if __name__ == "__main__":
    main()
