"""What a default graph of a busy model costs against ``summary`` of it, and whether it is readable.

For each model: ``modelviz summary MODEL`` and ``modelviz graph MODEL -o model.svg``, each a whole
process as a user runs it (torch's import, the model, the pass, for the graph Graphviz's layout),
interleaved, median of ``--repeat`` runs; and the graph's node count and number of connected
pieces (the issue's bar: at most 120 nodes, one piece, at most 3x the summary's time). Run from
the repository root:

    .venv/bin/python benchmarks/graph_vs_summary.py [--models a,b] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from modelviz import api  # noqa: E402
from modelviz.features.graph.build import ModuleGraph  # noqa: E402

warnings.filterwarnings("ignore")
MODELVIZ = str(Path(sys.executable).with_name("modelviz"))
MODELS = ("fasterrcnn_resnet50_fpn", "ssd300_vgg16", "raft_small")


def pieces(graph: ModuleGraph) -> int:
    """Connected pieces of the graph, edges taken both ways."""
    parent = {node.id: node.id for node in graph.nodes}

    def root(node: str) -> str:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for edge in graph.edges:
        parent[root(edge.src)] = root(edge.dst)
    return len({root(node) for node in parent})


def seconds(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"whole processes, interleaved, median of {args.repeat}; CPU\n")
    print(f"| {'model':<24} | {'nodes':>5} | {'pieces':>6} | {'summary':>8} | "
          f"{'graph -o x.svg':>14} | {'ratio':>5} |")
    print(f"| {'-' * 24} | {'-' * 4}:| {'-' * 5}:| {'-' * 7}:| {'-' * 13}:| {'-' * 4}:|")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models.split(","):
            graph = api.graph(name, device="cpu").graph
            assert graph is not None
            svg = str(Path(folder) / f"{name}.svg")
            runs: dict[str, list[float]] = {"summary": [], "graph": []}
            for _ in range(args.repeat):
                runs["summary"].append(seconds([MODELVIZ, "summary", name, "--device", "cpu"]))
                runs["graph"].append(seconds([MODELVIZ, "graph", name, "--device", "cpu",
                                              "-o", svg]))
            summary, drawn = (statistics.median(runs[k]) for k in ("summary", "graph"))
            print(f"| {name:<24} | {len(graph.nodes):>5} | {pieces(graph):>6} | "
                  f"{summary:>7.2f}s | {drawn:>13.2f}s | {drawn / summary:>4.2f}x |", flush=True)


if __name__ == "__main__":
    main()
