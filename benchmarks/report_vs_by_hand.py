"""modelviz report and modelviz tensorboard against the routines people write by hand.

report: one modelviz pass feeding summary, graph and activation grids, plus the ONNX export and
its ONNX Runtime parity check, against the peers' routine for the same artifacts (torchinfo's
summary, torchview's graph rendered to SVG, forward hooks and matplotlib for the activation
grids, a bare torch.onnx.export and an ONNX Runtime run), and against running modelviz's own
commands one by one (each with its own pass).

tensorboard: modelviz's log against the seed post's SummaryWriter routine (add_graph,
add_histogram per parameter, add_image of make_grid'ed feature maps).

Median of --repeat runs, interleaved; ratios are to modelviz. Run from the repository root:

    .venv/bin/python benchmarks/report_vs_by_hand.py [--repeat 3] [--models resnet18,mobilenet_v2]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torchinfo
import torchview
import torchvision
from matplotlib.figure import Figure
from torch.utils.tensorboard import SummaryWriter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._timing import interleaved  # noqa: E402
from modelviz import api  # noqa: E402
from modelviz.features.activations.select import representative_modules  # noqa: E402
from modelviz.features.report import build as reports  # noqa: E402


def _hooked_grids(model: torch.nn.Module, x: torch.Tensor, layers: list[str],
                  folder: Path) -> None:
    """What the seed post does: hooks keep the outputs, matplotlib draws each channel."""
    kept: dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())
    handles = [modules[n].register_forward_hook(
        lambda _m, _i, out, n=n: kept.__setitem__(n, out.detach())) for n in layers]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    for name, out in kept.items():
        maps = out[0] if out.dim() == 4 else out.reshape(1, 1, -1)
        count = min(16, maps.shape[0])
        fig = Figure(figsize=(8, 8))
        for i in range(count):
            ax = fig.add_subplot(4, 4, i + 1)
            ax.imshow(maps[i].reshape(maps.shape[-2], -1).numpy(), aspect="auto")
            ax.axis("off")
        fig.savefig(folder / f"{name}.png")


def by_hand_report(name: str, folder: Path) -> None:
    model = getattr(torchvision.models, name)().eval()
    x = torch.randn(1, 3, 224, 224)
    with contextlib.redirect_stdout(io.StringIO()):
        torchinfo.summary(model, input_data=x, depth=3, verbose=0)
        graph = torchview.draw_graph(model, input_data=x, depth=2)
    graph.visual_graph.pipe(format="svg")
    _hooked_grids(model, x, representative_modules(model), folder)
    path = folder / "model.onnx"
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=True, external_data=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        np.abs(got - model(x).numpy()).max()


def modelviz_report(name: str, folder: Path, *, onnx: bool = True) -> None:
    prepared = api.prepare(name)
    # the peers' routine has no memory plan or timing: compare the same artifacts
    result = reports.build(prepared, folder, onnx=onnx, memory=False, profile=False)
    assert all(p.status in ("ok", "skipped") for n, p in result.parts.items()
               if onnx or n != "onnx")


def modelviz_commands_one_by_one(name: str, folder: Path, layers: list[str]) -> None:
    api.summary(name)
    api.graph(name).save(folder / "graph.svg")
    api.activations(name, layers=layers, output_dir=folder)
    api.export_onnx(name, output=folder / "model.onnx")


def by_hand_tensorboard(name: str, folder: Path) -> None:
    model = getattr(torchvision.models, name)().eval()
    x = torch.randn(1, 3, 224, 224)
    writer = SummaryWriter(str(folder))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        writer.add_graph(model, x)
    for pname, param in model.named_parameters():
        writer.add_histogram(pname, param.detach(), 0)
    kept: dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())
    for layer in representative_modules(model):
        modules[layer].register_forward_hook(
            lambda _m, _i, out, n=layer: kept.__setitem__(n, out.detach()))
    with torch.no_grad():
        model(x)
    for layer, out in kept.items():
        if out.dim() == 4:
            grid = torchvision.utils.make_grid(out[0, :16].unsqueeze(1), nrow=4, normalize=True)
            writer.add_image(layer, grid, 0)
    writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--models", default="resnet18,mobilenet_v2")
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"{torch.get_num_threads()} CPU threads, {platform.machine()}; median of "
          f"{args.repeat} interleaved runs, model built and artifacts written each time")
    print()
    print("| model         | modelviz report | no ONNX |  by hand (peers) | modelviz commands "
          "one by one |")
    print("| ------------- | ---------------:| -------:| ----------------:| "
          "---------------------------:|")
    work = Path(tempfile.mkdtemp(prefix="modelviz-bench-"))
    try:
        rows = []
        for name in args.models.split(","):
            folders = {k: work / f"{name}-{k}" for k in ("mv", "mvn", "hand", "cmd")}
            for folder in folders.values():
                folder.mkdir()
            layers = representative_modules(getattr(torchvision.models, name)())
            result = interleaved({
                "mv": lambda n=name, f=folders["mv"]: modelviz_report(n, f),
                "mvn": lambda n=name, f=folders["mvn"]: modelviz_report(n, f, onnx=False),
                "hand": lambda n=name, f=folders["hand"]: by_hand_report(n, f),
                "cmd": lambda n=name, f=folders["cmd"], ls=layers: modelviz_commands_one_by_one(
                    n, f, ls),
            }, args.repeat, warmup=1, collect=True)
            mv = result["mv"]
            print(f"| {name:13} | {mv:14.2f}s | {result['mvn']:6.2f}s | "
                  f"{result['hand']:6.2f}s ({result['hand'] / mv:.2f}x) | "
                  f"{result['cmd']:17.2f}s ({result['cmd'] / mv:.2f}x) |")
            tb = interleaved({
                "mv": lambda n=name: api.tensorboard(n, logdir=work / f"tb-{n}-mv"),
                "hand": lambda n=name: by_hand_tensorboard(n, work / f"tb-{n}-hand"),
            }, args.repeat, warmup=1, collect=True)
            rows.append((name, tb))
        print()
        print("| model         | modelviz tensorboard | SummaryWriter by hand |")
        print("| ------------- | --------------------:| ---------------------:|")
        for name, tb in rows:
            ratio = tb["hand"] / tb["mv"]
            print(f"| {name:13} | {tb['mv']:19.2f}s | {tb['hand']:12.2f}s ({ratio:.2f}x) |")
        print()
        print("by hand: torchinfo summary, torchview SVG (depth 2), hooks + matplotlib grids of "
              "the same layers, torch.onnx.export (dynamo, one file) and one ONNX Runtime run. "
              "Ratios are to modelviz.")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
