"""modelviz's graph page against torchview's SVG and Netron: page weight, time to first draw.

For each model, what a reader opens and how long until a drawing is on the screen, in headless
Chromium (driven over the DevTools protocol on a pipe; nothing fetched from the network):

- modelviz: ``modelviz graph MODEL -o model.html``, one self-contained file, from ``file://``;
  drawn when the viewer's first SVG is in the page (it opens on the top-level modules).
- torchview: ``draw_graph(model, input, depth=3)`` (its default depth) as SVG, opened directly;
  drawn when its nodes are in the document.
- Netron: the ONNX file ``modelviz export-onnx`` writes (the exporter's own file, weights
  inside), served by Netron's bundled viewer (``modelviz netron``); drawn when its edges are in
  the page, after its layout. Weight: every byte the page fetched, the model file included.

Each time is the median of ``--repeat`` loads in fresh browser profiles, from navigation start
(``performance.now()`` when the drawing was found; the page is polled every 20 ms). The
48-layer GPT-2 is ``hf:gpt2`` with ``n_layer=48`` (GPT-2's width: 388 M parameters, so the ONNX
file is about 1.6 GB). Run from the repository root:

    .venv/bin/python benchmarks/graph_page_vs_peers.py [--models resnet50,vit_b_16,gpt2_48]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from modelviz import api  # noqa: E402
from modelviz.features.graph.interactive import interactive_html  # noqa: E402
from modelviz.features.onnx import netron as netron_server  # noqa: E402

warnings.filterwarnings("ignore")

MODELS: dict[str, tuple[str, tuple[str, ...], dict[str, Any]]] = {
    "resnet50": ("resnet50", ("3x224x224",), {}),
    "vit_b_16": ("vit_b_16", ("3x224x224",), {}),
    "gpt2_48": ("hf:gpt2", ("int64:128",), {"kwargs": {"n_layer": 48},
                                            "forward_args": {"use_cache": False}}),
}
DRAWN = {  # what says the page has drawn its graph
    "modelviz": "#stage svg g.node",
    "torchview": "g.node",
    "netron": "#canvas path.edge-path",
}


class Browser:
    """Headless Chromium over ``--remote-debugging-pipe``: JSON messages ending in NUL on file
    descriptors 3 (to it) and 4 (from it)."""

    def __init__(self) -> None:
        chromium = shutil.which("chromium") or shutil.which("google-chrome")
        if chromium is None:
            raise SystemExit("no Chromium here")
        self.profile = tempfile.mkdtemp()
        to_child, self._out = os.pipe()
        self._in, from_child = os.pipe()

        # The shell hands the pipes to Chromium as descriptors 3 and 4 (no preexec_fn: Netron's
        # server thread runs in this process).
        flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-dev-shm-usage", "--remote-debugging-pipe", "--window-size=1280,900",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                 f"--user-data-dir={self.profile}", "about:blank"]
        command = " ".join(shlex.quote(a) for a in [chromium, *flags])
        self.proc = subprocess.Popen(
            ["/bin/sh", "-c", f"exec {command} 3<&{to_child} 4>&{from_child}"],
            pass_fds=(to_child, from_child), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(to_child)
        os.close(from_child)
        self._buffer = b""
        self._id = 0
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget",
                                 {"targetId": target, "flatten": True})["sessionId"]

    def call(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None) -> dict[str, Any]:
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                chunk = os.read(self._in, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed the pipe")
                self._buffer += chunk
            raw, _, self._buffer = self._buffer.partition(b"\0")
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result

    def evaluate(self, expression: str) -> Any:
        reply = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                          self.session)
        return reply.get("result", {}).get("value")

    def first_draw(self, url: str, selector: str, timeout: float = 300) -> tuple[float, int]:
        """Milliseconds from navigation start until ``selector`` matches, and the bytes the
        page fetched (its document and every resource)."""
        self.call("Page.navigate", {"url": url}, self.session)
        found = json.dumps(selector)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(
                f"document.querySelector({found}) ? performance.now() : null")
            if isinstance(value, (int, float)):
                weight = self.evaluate(
                    "performance.getEntries().filter(e => 'encodedBodySize' in e)"
                    ".reduce((s, e) => s + e.encodedBodySize, 0)")
                return float(value), int(weight or 0)
            time.sleep(0.02)
        raise TimeoutError(f"{url}: nothing drawn in {timeout:.0f} s")

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            self.call("Browser.close")
        self.proc.wait(timeout=30)
        os.close(self._in)
        os.close(self._out)
        shutil.rmtree(self.profile, ignore_errors=True)


@contextlib.contextmanager
def browser() -> Iterator[Browser]:
    opened = Browser()
    try:
        yield opened
    finally:
        opened.close()


def load(url: str, selector: str, repeat: int, cookie_url: str | None = None) -> float:
    """Median milliseconds to first draw over ``repeat`` fresh browsers."""
    times = []
    for _ in range(repeat):
        with browser() as chrome:
            if cookie_url is not None:  # Netron waits for a click on its cookie notice
                chrome.call("Network.setCookie", {"name": "consent", "value": str(
                    int(time.time() * 1000)), "url": cookie_url}, chrome.session)
            times.append(chrome.first_draw(url, selector)[0])
    return statistics.median(times)


def weight_of(url: str, selector: str, cookie_url: str | None = None) -> int:
    with browser() as chrome:
        if cookie_url is not None:
            chrome.call("Network.setCookie", {"name": "consent", "value": str(
                int(time.time() * 1000)), "url": cookie_url}, chrome.session)
        return chrome.first_draw(url, selector)[1]


def bench(name: str, folder: Path, repeat: int) -> dict[str, tuple[float, int]]:
    spec, sizes, options = MODELS[name]
    results: dict[str, tuple[float, int]] = {}

    page = folder / f"{name}.html"
    page.write_text(interactive_html(api.prepare(spec, *sizes, device="meta", **options)),
                    encoding="utf-8")
    results["modelviz"] = (load(page.as_uri(), DRAWN["modelviz"], repeat), page.stat().st_size)

    from torchview import draw_graph

    torch.manual_seed(0)
    prepared = api.prepare(spec, *sizes, device="cpu", **options)
    graph = draw_graph(prepared.model, input_data=list(prepared.inputs.args), depth=3,
                       device="cpu")
    svg = folder / f"{name}.svg"
    svg.write_bytes(graph.visual_graph.pipe(format="svg"))
    results["torchview"] = (load(svg.as_uri(), DRAWN["torchview"], repeat), svg.stat().st_size)

    onnx = folder / f"{name}.onnx"
    api.export_onnx(prepared.model, *sizes, output=onnx, verify=False)
    del prepared, graph
    served = netron_server.serve(onnx, port=0)
    try:
        url = f"http://{served.host}:{served.port}"
        fetched = weight_of(url, DRAWN["netron"], url)
        results["netron"] = (load(url, DRAWN["netron"], repeat, url), fetched)
    finally:
        netron_server.stop(served)
    return results


def _mb(size: int) -> str:
    return f"{size / 1e6:.2f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    version = subprocess.run([shutil.which("chromium") or "chromium", "--version"],
                             capture_output=True, text=True, check=False).stdout.strip()
    print(f"{version}, headless; torch {torch.__version__}; median of {args.repeat} loads, "
          "each in a fresh profile\n")
    print(f"| {'model':<9} | {'modelviz page':>13} | {'first draw':>10} | {'torchview SVG':>13} | "
          f"{'first draw':>16} | {'Netron + ONNX':>13} | {'first draw':>17} |")
    print(f"| {'-' * 9} | {'-' * 12}:| {'-' * 9}:| {'-' * 12}:| {'-' * 15}:| {'-' * 12}:| "
          f"{'-' * 16}:|")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models.split(","):
            found = bench(name, Path(folder), args.repeat)
            base = found["modelviz"][0]
            cells = []
            for tool in ("modelviz", "torchview", "netron"):
                ms, size = found[tool]
                ratio = "" if tool == "modelviz" else f" ({ms / base:.1f}x)"
                cells += [_mb(size), f"{ms / 1000:.2f} s{ratio}"]
            print(f"| {name:<9} | {cells[0]:>13} | {cells[1]:>10} | {cells[2]:>13} | "
                  f"{cells[3]:>16} | {cells[4]:>13} | {cells[5]:>17} |", flush=True)
    print("\nRatios are to modelviz's time to first draw.")


if __name__ == "__main__":
    main()
