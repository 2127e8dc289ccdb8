"""modelviz summary against torchinfo and torchsummary, in one process, on the same models.

Prints each tool's time as a ratio to a bare ``torch.no_grad()`` forward pass of the same model
and input run in the same round (lower is better; 1.00 would be free), then modelviz's
meta-device figures for the Llama-style 7B and 70B sample models, each summary a fresh process
timed whole, from its start (torch's import included) to its exit. Run from the repository
root:

    .venv/bin/python benchmarks/summary_vs_peers.py [--repeat 15] [--models resnet50,vgg16]

One CPU thread by default (``--threads``): on a machine shared with other work, two-thread
timings swing with whoever else runs, one-thread ones much less.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import math
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchinfo
import torchvision
from torchsummary import summary as torchsummary

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._timing import paired_ratios  # noqa: E402
from modelviz.core import engine  # noqa: E402
from modelviz.features.summary.summary import Summary  # noqa: E402


def bench_model(name: str, repeat: int, clock: Callable[[], float]) -> dict[str, float]:
    torch.manual_seed(0)
    model = torchvision.models.get_model(name).eval()
    x = torch.randn(1, 3, 224, 224)

    def bare() -> None:
        with torch.no_grad():
            model(x)

    def modelviz() -> None:
        trace = engine.run(model, (x,))
        Summary(name, trace, inputs=[]).totals  # noqa: B018 - the totals are part of the work

    def with_torchinfo() -> None:
        torchinfo.summary(model, input_data=x, verbose=0)

    # torchsummary leaves its hooks on the model when it fails, so it gets a copy of its own.
    summary_copy = copy.deepcopy(model)

    def with_torchsummary() -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            torchsummary(summary_copy, (3, 224, 224), device="cpu")  # it runs a batch of 2

    return paired_ratios({"bare forward": bare, "modelviz": modelviz,
                          "torchinfo": with_torchinfo, "torchsummary": with_torchsummary},
                         "bare forward", repeat, clock=clock)


META = """
import json, sys, time

from modelviz.core.machine import peak_rss

from modelviz import api
start = time.perf_counter()
summary = api.summary(sys.argv[1], sys.argv[2], device="meta")
seconds = time.perf_counter() - start
print(json.dumps({"summary": seconds, "params": summary.totals.params,
                  "flops": summary.totals.flops,
                  "peak_rss": peak_rss()}))
"""


def bench_meta(spec: str, size: str) -> dict[str, float]:
    """In a fresh process, so that the peak memory is this summary's alone (torch included),
    timed whole: ``process`` from its start to its exit, ``summary`` the call alone."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", META, spec, size], capture_output=True,
                          text=True, cwd=ROOT, check=True)
    seconds = time.perf_counter() - start
    result: dict[str, float] = json.loads(proc.stdout)
    return result | {"process": seconds}


def ratio(value: float) -> str:
    return "fails" if math.isnan(value) else f"{value:.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--models", default="resnet50,vgg16,mobilenet_v2,vit_b_16")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: this process's CPU time, which other work on the machine does "
                             "not add to")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"{torch.get_num_threads()} CPU thread(s), {platform.processor() or platform.machine()}; "
          f"{args.clock} time, {args.repeat} interleaved rounds: the median of each round's ratio "
          "to the bare pass, batch 1, 3x224x224, CPU\n")
    print(f"| {'model':<14} | {'bare forward':>12} | {'modelviz':>9} | {'torchinfo':>9} | "
          f"{'torchsummary*':>13} |")
    print(f"| {'-' * 14} | {'-' * 12}:| {'-' * 9}:| {'-' * 9}:| {'-' * 13}:|")
    for name in args.models.split(","):
        times = bench_model(name, args.repeat, clock)
        base = times["bare forward"]
        ratios = [ratio(times[k]) for k in ("modelviz", "torchinfo", "torchsummary")]
        print(f"| {name:<14} | {base * 1e3:>9.1f} ms | {ratios[0]:>9} | {ratios[1]:>9} | "
              f"{ratios[2]:>13} |", flush=True)
    print("\n* torchsummary always runs a batch of 2; 'fails': it raised on that model.\n")
    print("modelviz on the meta device, each in a fresh process: 'process' from its start to its "
          "exit (Python, torch's import, the summary), 'summary' the api.summary call alone:\n")
    print(f"| {'model':<29} | {'tokens':>6} | {'params':>14} | {'FLOPs':>18} | {'process':>7} | "
          f"{'summary':>7} | {'peak RSS':>9} |")
    print(f"| {'-' * 29} | {'-' * 6}:| {'-' * 14}:| {'-' * 18}:| {'-' * 7}:| {'-' * 7}:| "
          f"{'-' * 9}:|")
    for spec in ("sample_models.llama:llama_7b", "sample_models.llama:llama_70b"):
        result = bench_meta(spec, "int64:128")
        print(f"| {spec:<29} | {128:>6} | {result['params']:>14,} | {result['flops']:>18,} | "
              f"{result['process']:>6.2f}s | {result['summary']:>6.2f}s | "
              f"{result['peak_rss'] / 1024**3:>6.2f} GB |", flush=True)


if __name__ == "__main__":
    main()
