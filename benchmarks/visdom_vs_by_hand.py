"""modelviz visdom against the Visdom routine people write by hand, on one local server.

by hand: the seed post's Visdom calls for the same windows: torchinfo's summary as a text
window, forward hooks and make_grid'ed feature maps of the same layers as image windows, one
viz.histogram per parameter (Visdom bins it in the client), and torchview's SVG as an svg
window. modelviz: one pass for the table, the totals, the cards and the graph, one bar chart of
the same bins per parameter. The benchmark starts its own Visdom server on loopback (without
the scripts download, which needs the web) and stops it at the end.

Median of --repeat runs, interleaved; ratios are to modelviz. Run from the repository root:

    .venv/bin/python benchmarks/visdom_vs_by_hand.py [--repeat 3] [--models resnet18,mobilenet_v2]
"""

from __future__ import annotations

import argparse
import contextlib
import html
import io
import logging
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchinfo
import torchview
import torchvision
import visdom

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._timing import interleaved  # noqa: E402
from modelviz import api  # noqa: E402
from modelviz.features.activations.select import representative_modules  # noqa: E402


def by_hand(name: str, port: int) -> None:
    model = getattr(torchvision.models, name)().eval()
    x = torch.randn(1, 3, 224, 224)
    viz = visdom.Visdom(server="http://127.0.0.1", port=port, env=f"hand_{name}",
                        raise_exceptions=True, use_incoming_socket=False)
    with contextlib.redirect_stdout(io.StringIO()):
        stats = torchinfo.summary(model, input_data=x, depth=3, verbose=0)
        graph = torchview.draw_graph(model, input_data=x, depth=2)
    viz.text(f"<pre>{html.escape(str(stats))}</pre>", win="summary")
    viz.svg(svgstr=graph.visual_graph.pipe(format="svg").decode(), win="graph")
    kept: dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())
    handles = [modules[n].register_forward_hook(
        lambda _m, _i, out, n=n: kept.__setitem__(n, out.detach()))
        for n in representative_modules(model)]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    for layer, out in kept.items():
        maps = out[0, :16].unsqueeze(1) if out.dim() == 4 else out.reshape(1, 1, 1, -1)
        grid = torchvision.utils.make_grid(maps, nrow=4, normalize=True)
        viz.image(grid.numpy(), win=f"act-{layer}", opts={"title": layer})
    for pname, param in model.named_parameters():
        viz.histogram(param.detach().reshape(-1), win=f"hist-{pname}",
                      opts={"title": pname, "numbins": 64})


def with_modelviz(name: str, port: int) -> None:
    pushed = api.visdom(name, port=port)
    assert pushed.images and not pushed.skipped, pushed.skipped


def _server(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    proc = subprocess.Popen(
        [sys.executable, "-c", "from visdom.server.run_server import main; main()", "-port",
         str(port), "-bind_local", "-env_path", str(folder), "-logging_level", "ERROR"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the Visdom server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--models", default="resnet18,mobilenet_v2")
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    logging.getLogger("visdom").setLevel(logging.ERROR)
    print(f"torch {torch.__version__}, visdom {visdom.__version__}, "
          f"{torch.get_num_threads()} CPU threads, {platform.machine()}; median of "
          f"{args.repeat} interleaved runs, one local Visdom server")
    print()
    print("| model         | modelviz visdom |   by hand (Visdom, torchinfo, torchview, hooks) |")
    print("| ------------- | ---------------:| -----------------------------------------------:|")
    with tempfile.TemporaryDirectory(prefix="modelviz-bench-visdom-") as folder:
        proc, port = _server(Path(folder))
        try:
            for name in args.models.split(","):
                result = interleaved({
                    "mv": lambda n=name: with_modelviz(n, port),
                    "hand": lambda n=name: by_hand(n, port),
                }, args.repeat, warmup=1, collect=True)
                mv = result["mv"]
                print(f"| {name:13} | {mv:14.2f}s | {result['hand']:38.2f}s "
                      f"({result['hand'] / mv:.2f}x) |")
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    print()
    print("Ratios are to modelviz.")


if __name__ == "__main__":
    main()
