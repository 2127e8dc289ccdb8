"""modelviz wandb against the W&B routine people write by hand, both offline.

by hand: what the seed posts and W&B's PyTorch guide do, for the same panels: wandb.init,
torchinfo's summary as a wandb.Table and its totals in the run summary, forward hooks and
make_grid'ed feature maps of the same layers as wandb.Image, one wandb.Histogram per
parameter, torchview's SVG as wandb.Html, and a static torch.onnx.export checked by one ONNX
Runtime run, logged as an artifact with the summary. modelviz: one pass for the table, the
cards and the graph (SVG and the interactive page), a dynamic-batch ONNX export verified at two
batch sizes, the same artifact. Both write an offline run (no network), in fresh folders.

Median of --repeat runs, interleaved; ratios are to modelviz. Run from the repository root:

    .venv/bin/python benchmarks/wandb_vs_by_hand.py [--repeat 3] [--models resnet18,mobilenet_v2]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import onnxruntime as ort
import torch
import torchinfo
import torchview
import torchvision
import wandb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._timing import interleaved  # noqa: E402
from modelviz import api  # noqa: E402
from modelviz.features.activations.select import representative_modules  # noqa: E402


def by_hand(name: str, folder: Path, *, onnx: bool = True) -> None:
    folder.mkdir(parents=True)
    model = getattr(torchvision.models, name)().eval()
    x = torch.randn(1, 3, 224, 224)
    run = wandb.init(project="bench", dir=str(folder), mode="offline",
                     settings=wandb.Settings(silent=True, console="off", x_disable_stats=True))
    with contextlib.redirect_stdout(io.StringIO()):
        stats = torchinfo.summary(model, input_data=x, depth=3, verbose=0)
        graph = torchview.draw_graph(model, input_data=x, depth=2)
    rows = [[layer.get_layer_name(False, True), layer.class_name, layer.depth,
             str(layer.output_size), layer.num_params, layer.macs]
            for layer in stats.summary_list]
    table = wandb.Table(columns=["layer", "type", "depth", "output", "params", "macs"],
                        data=rows)
    kept: dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())
    handles = [modules[n].register_forward_hook(
        lambda _m, _i, out, n=n: kept.__setitem__(n, out.detach()))
        for n in representative_modules(model)]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    logged = {"layers": table, "graph": wandb.Html(graph.visual_graph.pipe(format="svg")
                                                   .decode(), inject=False)}
    for layer, out in kept.items():
        maps = out[0, :16].unsqueeze(1) if out.dim() == 4 else out.reshape(1, 1, 1, -1)
        grid = torchvision.utils.make_grid(maps, nrow=4, normalize=True)
        logged[f"activations/{layer}"] = wandb.Image(grid)
    for pname, param in model.named_parameters():
        logged[f"parameters/{pname}"] = wandb.Histogram(param.detach().numpy())
    run.log(logged, step=0)
    run.summary.update({"params": stats.total_params, "macs": stats.total_mult_adds})
    (folder / "summary.json").write_text(json.dumps({"params": stats.total_params}))
    artifact = wandb.Artifact(f"{name}-by-hand", type="model")
    artifact.add_file(str(folder / "summary.json"))
    if onnx:
        _onnx(model, x, folder, artifact)
    run.log_artifact(artifact)
    run.finish()


def _onnx(model: torch.nn.Module, x: torch.Tensor, folder: Path, artifact: wandb.Artifact) -> None:
    path = folder / "model.onnx"
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=True, external_data=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    session.run(None, {session.get_inputs()[0].name: x.numpy()})
    artifact.add_file(str(path))


def with_modelviz(name: str, folder: Path, *, onnx: bool = True) -> None:
    logged = api.wandb(name, project="bench", offline=True, folder=folder, onnx=onnx)
    assert logged.run_id and (not onnx or "onnx" not in logged.skipped), logged.skipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--models", default="resnet18,mobilenet_v2")
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    work = Path(tempfile.mkdtemp(prefix="modelviz-bench-wandb-"))
    for variable in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):
        os.environ[variable] = str(work / variable.lower())
    os.environ["WANDB_MODE"] = "offline"  # W&B's process-wide settings too: no network at all
    print(f"torch {torch.__version__}, wandb {wandb.__version__}, {torch.get_num_threads()} "
          f"CPU threads, {platform.machine()}; median of {args.repeat} interleaved runs, "
          "offline runs in fresh folders")
    print()
    print("| model         | modelviz wandb | by hand (W&B, torchinfo, torchview, hooks, ONNX) "
          "| modelviz --no-onnx | by hand, no ONNX |")
    print("| ------------- | --------------:| -----------------------------------------------:"
          "| ------------------:| ----------------:|")
    count = 0

    def fresh() -> Path:
        nonlocal count
        count += 1
        return work / f"run-{count}"

    try:
        for name in args.models.split(","):
            result = interleaved({
                "mv": lambda n=name: with_modelviz(n, fresh()),
                "mvn": lambda n=name: with_modelviz(n, fresh(), onnx=False),
                "hand": lambda n=name: by_hand(n, fresh()),
                "handn": lambda n=name: by_hand(n, fresh(), onnx=False),
            }, args.repeat, warmup=1, collect=True)
            mv, mvn = result["mv"], result["mvn"]
            print(f"| {name:13} | {mv:13.2f}s | {result['hand']:38.2f}s "
                  f"({result['hand'] / mv:.2f}x) | {mvn:17.2f}s | {result['handn']:8.2f}s "
                  f"({result['handn'] / mvn:.2f}x) |")
        print()
        print("Ratios are to modelviz. by hand exports a static batch and runs ONNX Runtime "
              "once; modelviz exports a dynamic batch and compares with torch at two batch "
              "sizes.")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
