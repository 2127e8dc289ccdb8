"""``modelviz visdom``: a real Visdom server on loopback, windows read back through its API.

One server per test module (started on a free port with its scripts' download skipped, which
needs the web and serves only the page), stopped even when a test fails. The model's module
names are hostile: Visdom shows a text window's content as HTML.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from modelviz import api
from modelviz.features.activations.cards import CARD_PIXELS
from modelviz.features.visdom.push import default_env, window_id
from tests.helpers import Cli

pytestmark = pytest.mark.xdist_group("visdom")  # one worker, one server for the module

NET = "sample_models.seeds:Net"
HOSTILE = "<img src=x onerror=alert(1)>"
CLOSING = "</td></table><script>alert(2)</script>"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A Visdom server on 127.0.0.1, its port; killed at the end, whatever happened."""
    port = _free_port()
    envs = tmp_path_factory.mktemp("visdom-envs")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from visdom.server.run_server import main; main()",
         "-port", str(port), "-bind_local", "-env_path", str(envs), "-logging_level", "ERROR"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the Visdom server did not start: "
                                       f"{proc.stderr.read() if proc.stderr else ''!r}") from exc
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _windows(port: int, env: str) -> dict[str, Any]:
    """Every window of ``env``, as the server returns them (``/win_data``)."""
    import visdom

    logging.getLogger("visdom").setLevel(logging.ERROR)
    client = visdom.Visdom(server="http://127.0.0.1", port=port, use_incoming_socket=False,
                           raise_exceptions=True)
    found: dict[str, Any] = json.loads(client.get_window_data(env=env))
    return found


class _Hostile(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleDict({HOSTILE: nn.Conv2d(3, 4, 3), CLOSING: nn.Conv2d(4, 4, 3)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks.values():
            x = block(x)
        return x


def test_push_and_read_back(cli: Cli, server: int) -> None:
    result = cli("visdom", NET, "1x28x28", "--port", str(server), "--layer", "conv1",
                 "--layer", "fc3", "--memory", "--json")
    assert result.exit_code == 0, result.stderr
    pushed = json.loads(result.stdout)
    env = default_env(NET)
    assert pushed["env"] == env == "modelviz_sample-models.seeds-Net"
    windows = _windows(server, env)
    assert set(pushed["windows"]) == set(windows)

    # The layer table, as HTML: rows and numbers of the summary.
    table = windows[window_id("layers")]["content"]
    assert table.count("<tr>") == 1 + 6  # the header and Net's six layers
    assert "<td class='n'>30,840</td>" in table  # fc1: 256 x 120 + 120
    totals = windows[window_id("totals")]["content"]
    assert "params</td><td class='n'>44,426<" in totals
    plan = api.memory(NET, "1x28x28", device="cpu")  # --memory: the plan's peaks join them
    assert plan.training is not None
    for key, peak in (("inference", plan.inference.peak_bytes),
                      ("training", plan.training.peak_bytes)):
        assert f"{key}_peak_mb</td><td class='n'>{peak / 2**20:,.2f}<" in totals

    # The activation cards, as PNGs of the dashboard size.
    image = windows[window_id("activations", "conv1")]
    assert image["title"] == "activations/conv1"
    src = image["content"]["src"]
    assert src.startswith("data:image/png;base64,")
    picture = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB")
    assert picture.size == CARD_PIXELS
    assert len(np.unique(np.asarray(picture).reshape(-1, 3), axis=0)) > 50

    # One bar chart per parameter tensor: every value in one of the bins.
    bars = windows[window_id("parameters", "conv1.weight")]["content"]["data"][0]
    assert sum(bars["y"]) == 150 and len(bars["x"]) == 64
    assert sum(1 for w in windows.values() if w["title"].startswith("parameters/")) == 10

    # The module graph, as SVG.
    assert "<svg" in windows[window_id("graph")]["content"]


def test_hostile_module_names_are_escaped(server: int) -> None:
    torch.manual_seed(0)
    pushed = api.visdom(_Hostile(), "3x12x12", port=server, env="hostile", histograms=False,
                        layers=["*"])
    windows = _windows(server, "hostile")
    table = windows[window_id("layers")]["content"]
    assert "<img" not in table and "<script" not in table and "</table><" not in table
    assert "&lt;img src=x onerror=alert(1)&gt;" in table
    assert "&lt;/td&gt;&lt;/table&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in table
    # window ids are digests, whatever the name; titles carry the names as plain text
    titles = {w["title"] for w in windows.values()}
    assert f"activations/blocks.{HOSTILE}" in titles
    assert all(set(win) <= set("abcdefghijklmnopqrstuvwxyz0123456789-") for win in windows)
    assert len(pushed.images) == 2


def test_no_server_is_one_line(cli: Cli) -> None:
    port = _free_port()
    result = cli("visdom", NET, "1x28x28", "--port", str(port))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: no Visdom server answers at http://127.0.0.1:{port}")
    assert "Start one with `python -m visdom.server`" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = cli("visdom", NET, "--server", "http://127.0.0.1:8097/x")
    assert result.exit_code == 2 and result.stderr.startswith("error: bad --server")


def test_meta_device(cli: Cli, server: int) -> None:
    result = cli("visdom", NET, "1x28x28", "--port", str(server), "--device", "meta")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: a Visdom push needs real weights and activations")
