"""modelviz graph against torchview and torchviz, in one process, each producing SVG.

For each model: the median seconds from model and input to SVG bytes (the pass, building the
graph, and Graphviz's layout), the ratio to modelviz (higher means slower than modelviz), and
what came out: SVG bytes and the number of nodes drawn. modelviz draws its module view at
the default depth (2); torchview gets the same depth; torchviz draws the whole autograd graph,
which is what it does. Run from the repository root:

    .venv/bin/python benchmarks/graph_vs_peers.py [--repeat 5] [--models resnet18,resnet152,tiny]
"""

from __future__ import annotations

import argparse
import copy
import platform
import re
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from torchview import draw_graph
from torchviz import make_dot

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from modelviz import api  # noqa: E402
from modelviz.features.graph.build import DEFAULT_DEPTH  # noqa: E402
from modelviz.features.graph.draw import draw  # noqa: E402
from sample_models.transformer import TinyTransformer  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)  # torchviz's distutils import


def build(name: str) -> tuple[torch.nn.Module, str]:
    torch.manual_seed(0)
    if name == "tiny":
        return TinyTransformer().eval(), "int64:64"
    return torchvision.models.get_model(name).eval(), "3x224x224"


def nodes_in(svg: bytes) -> int:
    """Nodes drawn, not counting modelviz's legend."""
    titles = re.findall(rb'<g id="node\d+" class="node">\s*<title>([^<]*)</title>', svg)
    return sum(1 for title in titles if title != b"legend")


def interleaved(candidates: dict[str, Callable[[], bytes]], repeat: int) -> (
        dict[str, tuple[float, bytes]]):
    """Median seconds of each candidate and its last output, run in turn so drift hits all."""
    outputs = {name: run() for name, run in candidates.items()}  # warm-up
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeat):
        for name, run in candidates.items():
            start = time.perf_counter()
            outputs[name] = run()
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(times[name]), outputs[name]) for name in candidates}


def bench(name: str, repeat: int) -> dict[str, tuple[float, bytes]]:
    model, size = build(name)
    prepared = api.prepare(model, size, device="cpu")
    x = prepared.inputs.args[0]  # the same input for all three

    def with_modelviz() -> bytes:
        return draw(prepared).pipe("svg")

    view_copy = copy.deepcopy(model)

    def with_torchview() -> bytes:
        graph = draw_graph(view_copy, input_data=x, depth=DEFAULT_DEPTH, device="cpu")
        return bytes(graph.visual_graph.pipe(format="svg"))

    def with_torchviz() -> bytes:
        dot = make_dot(model(x), params=dict(model.named_parameters()))
        return bytes(dot.pipe(format="svg"))

    return interleaved({"modelviz": with_modelviz, "torchview": with_torchview,
                        "torchviz": with_torchviz}, repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--models", default="resnet18,resnet152,tiny")
    args = parser.parse_args()
    dot = subprocess.run(["dot", "-V"], capture_output=True, text=True, check=False).stderr
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"{dot.strip()}, {torch.get_num_threads()} CPU threads, "
          f"{platform.processor() or platform.machine()}; median of {args.repeat} interleaved "
          "runs, model and input to SVG bytes, CPU\n")
    print(f"| {'model':<16} | {'modelviz':>9} | {'torchview':>15} | {'torchviz':>15} | "
          f"{'SVG KB (mv / tv / tz)':>23} | {'nodes (mv / tv / tz)':>20} |")
    print(f"| {'-' * 16} | {'-' * 9}:| {'-' * 15}:| {'-' * 15}:| {'-' * 23}:| {'-' * 20}:|")
    for name in args.models.split(","):
        result = bench(name, args.repeat)
        base = result["modelviz"][0]
        cells = [f"{result[k][0]:.2f}s ({result[k][0] / base:.1f}x)"
                 for k in ("torchview", "torchviz")]
        sizes = " / ".join(f"{len(result[k][1]) / 1024:.0f}"
                           for k in ("modelviz", "torchview", "torchviz"))
        nodes = " / ".join(str(nodes_in(result[k][1]))
                           for k in ("modelviz", "torchview", "torchviz"))
        label = "TinyTransformer" if name == "tiny" else name
        print(f"| {label:<16} | {base:>8.2f}s | {cells[0]:>15} | {cells[1]:>15} | "
              f"{sizes:>23} | {nodes:>20} |", flush=True)
    print("\nmodelviz: module view, depth 2, folded repeats, legend; torchview: depth 2; "
          "torchviz: the full autograd graph (parameters named). Ratios are to modelviz.")


if __name__ == "__main__":
    main()
