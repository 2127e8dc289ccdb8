"""Time Graphviz's layout of modelviz's module graphs over torchvision's models, before and after.

For each model (every torchvision model but the quantized ones, by default), the default graph;
for the models named by ``--deep``, also everything drawn (``--depth 20``) with repeats folded
and not. Each graph is laid out to SVG by the ``dot`` program, alone, and timed:

- after: the graph and DOT as modelviz makes them now (no ``newrank``; a graph whose layout
  would cost over ``LAYOUT_BUDGET`` nodes has modules drawn closed, as its note says);
- before (``--before``): the same graph as modelviz drew it before, every module as asked and
  ``newrank=true`` in the header, stopped after ``--timeout`` seconds.

Run from the repository root (it takes a while: every model runs once, detection models on the
CPU, where the meta device cannot run them):

    .venv/bin/python benchmarks/graph_layout_sweep.py [--before] [--models a,b] [--deep a,b]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from modelviz import api  # noqa: E402
from modelviz.core import session, zoo  # noqa: E402
from modelviz.features.graph.build import ModuleGraph, build_graph  # noqa: E402
from modelviz.features.graph.dot import to_dot  # noqa: E402
from modelviz.features.graph.draw import graph_probe  # noqa: E402
from modelviz.features.graph.layout import LAYOUT_BUDGET, cost  # noqa: E402

warnings.filterwarnings("ignore")

#: Models whose whole graph is drawn too: detection, segmentation, video, optical flow, and the
#: classification models with the most nodes.
DEEP = ("raft_small", "raft_large", "ssd300_vgg16", "ssdlite320_mobilenet_v3_large",
        "fasterrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2", "keypointrcnn_resnet50_fpn",
        "retinanet_resnet50_fpn", "fcos_resnet50_fpn", "deeplabv3_resnet101", "fcn_resnet101",
        "lraspp_mobilenet_v3_large", "r3d_18", "mvit_v2_s", "s3d", "swin_v2_b", "maxvit_t",
        "vit_b_16", "resnet152", "densenet201", "inception_v3", "googlenet", "efficientnet_b7",
        "convnext_large", "regnet_y_128gf")
DEPTH = 20
NEWRANK = ", newrank=true];"


def layout_seconds(source: str, timeout: float) -> float | None:
    """Seconds ``dot -Tsvg`` takes on ``source``; None past ``timeout``."""
    start = time.perf_counter()
    try:
        subprocess.run(["dot", "-Tsvg", "-o", "/dev/null"], input=source.encode(),
                       capture_output=True, timeout=timeout, check=True)
    except subprocess.TimeoutExpired:
        return None
    return time.perf_counter() - start


def before_source(graph: ModuleGraph) -> str:
    """DOT as modelviz wrote it before: ``newrank=true`` in the header, no wrapping."""
    source = to_dot(graph, wrap=False)
    head, _, rest = source.partition("];\n")
    return head + NEWRANK + "\n" + rest


def graphs(name: str, deep: bool) -> list[tuple[str, ModuleGraph, ModuleGraph]]:
    """(variant, graph as asked with no layout budget, graph as modelviz draws it) for the
    default graph and, with ``deep``, the whole graph folded and not."""
    for device in ("meta", "cpu"):  # detection models read values, which meta does not have
        try:
            prepared = api.prepare(name, device=device)
            probe = graph_probe(prepared)
            trace = session.run(prepared, probes=(probe,))
            break
        except Exception:
            if device == "cpu":
                raise
    flow = trace.probes[probe.name]
    variants: list[tuple[str, dict[str, Any]]] = [("default", {})]
    if deep:
        variants += [("depth 20", {"depth": DEPTH}), ("depth 20, no fold",
                                                       {"depth": DEPTH, "fold": False})]
    found = []
    for label, options in variants:
        found.append((label, build_graph(trace, flow, title=name, budget=0, **options),
                      build_graph(trace, flow, title=name, **options)))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="", help="comma-separated; default: all")
    parser.add_argument("--deep", default=",".join(DEEP), help="models drawn whole too")
    parser.add_argument("--before", action="store_true", help="time the old DOT too")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--json", type=Path, help="write every row here too")
    args = parser.parse_args()
    names = (args.models.split(",") if args.models else
             [n for n in zoo.model_names() if zoo.family(n) != "quantization"])
    deep = set(args.deep.split(",")) if args.deep else set()
    version = subprocess.run(["dot", "-V"], capture_output=True, text=True,
                             check=False).stderr.strip()
    print(f"{version}; layout budget {LAYOUT_BUDGET:,}; dot -Tsvg alone, one run each"
          + (f"; before: stopped at {args.timeout:.0f} s" if args.before else ""), flush=True)
    rows: list[dict[str, Any]] = []
    for name in names:
        try:
            found = graphs(name, name in deep)
        except Exception as exc:
            print(f"{name}: could not run ({type(exc).__name__})", flush=True)
            continue
        for label, full, drawn in found:
            row: dict[str, Any] = {
                "model": name, "graph": label, "nodes_before": len(full.nodes),
                "cost_before": cost(full), "nodes": len(drawn.nodes), "cost": cost(drawn),
                "after_s": layout_seconds(to_dot(drawn), args.timeout),
                "notes": drawn.notes}
            if args.before:
                row["before_s"] = layout_seconds(before_source(full), args.timeout)
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "notes"}), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    print()
    report(rows, args.before, args.timeout)


def _seconds(value: float | None, timeout: float) -> str:
    return f"> {timeout:.0f} s" if value is None else f"{value:.2f} s"


def report(rows: list[dict[str, Any]], before: bool, timeout: float) -> None:
    """The slowest graphs, and the worst and median times."""
    def key(row: dict[str, Any]) -> float:
        value = row["before_s"] if before else row["after_s"]
        return float("inf") if value is None else value

    print(f"| {'model':<32} | {'graph':<17} | {'nodes':>11} | {'layout cost':>15} |"
          + (f" {'before':>9} |" if before else "") + f" {'after':>9} |")
    print(f"| {'-' * 32} | {'-' * 17} | {'-' * 10}:| {'-' * 14}:|"
          + (f" {'-' * 8}:|" if before else "") + f" {'-' * 8}:|")
    for row in sorted(rows, key=key, reverse=True)[:15]:
        nodes = (f"{row['nodes_before']} → {row['nodes']}" if row["nodes"] != row["nodes_before"]
                 else str(row["nodes"]))
        costs = (f"{row['cost_before']:,} → {row['cost']:,}"
                 if row["cost"] != row["cost_before"] else f"{row['cost']:,}")
        print(f"| {row['model']:<32} | {row['graph']:<17} | {nodes:>11} | {costs:>15} |"
              + (f" {_seconds(row['before_s'], timeout):>9} |" if before else "")
              + f" {_seconds(row['after_s'], timeout):>9} |")
    for column in (["before_s"] if before else []) + ["after_s"]:
        for label, subset in (("default graphs", [r for r in rows if r["graph"] == "default"]),
                              ("whole graphs", [r for r in rows if r["graph"] != "default"])):
            values = [r[column] for r in subset]
            if not values:
                continue
            finite = [v for v in values if v is not None]
            worst = _seconds(None if len(finite) < len(values) else max(finite), timeout)
            middle = f"{statistics.median(finite):.2f} s" if finite else "-"
            print(f"{column.removesuffix('_s')}, {label} ({len(values)}): worst {worst}, "
                  f"median {middle}, over 5 s: "
                  f"{sum(1 for v in values if v is None or v > 5)}")


if __name__ == "__main__":
    main()
