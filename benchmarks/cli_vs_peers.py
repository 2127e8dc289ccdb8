"""The whole ``modelviz summary`` process against scripts that do the same with the peers.

What a user waits for in CI is the whole process: Python starting, torch imported, the model
built, one pass, the table printed, the process gone. Each candidate runs as a fresh process
printing its table into a pipe, in turn with the others (interleaved, so that a busy machine
slows them alike), and the median of the runs is compared with the torchinfo script's:

* ``modelviz``: ``modelviz summary MODEL 3x224x224 --device cpu``;
* ``torchinfo``: a script building the torchvision model and printing ``torchinfo.summary``;
* ``torchsummary``: the same with ``torchsummary.summary`` (which always runs a batch of 2);
* ``import only``: ``import torch, torchvision`` and nothing else, the floor under all three.

Run from the repository root:

    .venv/bin/python benchmarks/cli_vs_peers.py [--repeat 7] [--models resnet18,vgg16]
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

TORCHINFO = """
import sys, torch, torchvision, torchinfo
model = torchvision.models.get_model(sys.argv[1])
print(torchinfo.summary(model, input_size=(1, 3, 224, 224), device="cpu", verbose=0))
"""
TORCHSUMMARY = """
import sys, torch, torchvision
from torchsummary import summary
model = torchvision.models.get_model(sys.argv[1])
summary(model, (3, 224, 224), device="cpu")
"""
IMPORT_ONLY = "import torch, torchvision"


def commands(model: str) -> dict[str, list[str]]:
    modelviz = BIN / "modelviz"
    return {
        "modelviz": [str(modelviz), "summary", model, "3x224x224", "--device", "cpu"],
        "torchinfo": [sys.executable, "-c", TORCHINFO, model],
        "torchsummary": [sys.executable, "-c", TORCHSUMMARY, model],
        "import only": [sys.executable, "-c", IMPORT_ONLY],
    }


def once(command: list[str]) -> float:
    """Seconds the process took, start to exit; NaN if it failed."""
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, check=False)
    seconds = time.perf_counter() - start
    return seconds if done.returncode == 0 else math.nan


def bench(model: str, repeat: int) -> dict[str, float]:
    candidates = commands(model)
    for command in candidates.values():  # warm-up: the page cache, .pyc files
        once(command)
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeat):
        for name, command in candidates.items():
            times[name].append(once(command))
    return {name: (math.nan if any(math.isnan(t) for t in values)
                   else statistics.median(values)) for name, values in times.items()}


def cell(times: dict[str, float], name: str, width: int) -> str:
    """Seconds and the ratio to the torchinfo script's."""
    seconds = times[name]
    if math.isnan(seconds):
        return f"{'fails':>{width}}"
    return f"{seconds:.2f}s ({seconds / times['torchinfo']:.2f}x)".rjust(width)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--models", default="resnet18,resnet50,vgg16,vit_b_16")
    args = parser.parse_args()

    import torch
    import torchvision

    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, Python "
          f"{platform.python_version()}, {platform.processor() or platform.machine()}; "
          f"median of {args.repeat} interleaved runs of each whole process, CPU\n")
    print(f"| {'model':<10} | {'torchinfo script':>16} | {'modelviz summary':>16} | "
          f"{'torchsummary script':>19} | {'import only':>14} |")
    print(f"| {'-' * 10} | {'-' * 16}:| {'-' * 16}:| {'-' * 19}:| {'-' * 14}:|")
    for model in args.models.split(","):
        times = bench(model, args.repeat)
        base = times["torchinfo"]
        print(f"| {model:<10} | {base:>15.2f}s | {cell(times, 'modelviz', 16)} | "
              f"{cell(times, 'torchsummary', 19)} | {cell(times, 'import only', 14)} |",
              flush=True)
    print("\nRatios are to the torchinfo script; 'fails': the tool raised on that model.")


if __name__ == "__main__":
    main()
