"""``modelviz wandb``: offline runs read back from W&B's own transaction log, no network.

Every run here is offline (``--offline`` or WANDB_MODE=offline) with W&B's folders in the test's
own tmp_path, and a guard records any connection this process tries to anything but loopback.
The online cases (no login, a server that refuses the key) stop before anything leaves the
machine, or talk to a fake W&B server on loopback.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from PIL import Image

from modelviz import api
from modelviz.features.activations.cards import CARD_PIXELS
from modelviz.features.dashboard.content import COLUMNS
from tests.helpers import Cli, RunModelviz
from tests.wandb_log import OfflineRun, read_run

NET = "sample_models.seeds:Net"
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@pytest.fixture
def wandb_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """W&B's folders in tmp_path, no credentials, and the hosts any connection went to."""
    for variable, folder in (("WANDB_DATA_DIR", "data"), ("WANDB_CACHE_DIR", "cache"),
                             ("WANDB_CONFIG_DIR", "config"), ("WANDB_DIR", "runs")):
        monkeypatch.setenv(variable, str(tmp_path / folder))
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    monkeypatch.setenv("WANDB_ERROR_REPORTING", "false")
    for variable in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL", "WANDB_PROJECT"):
        monkeypatch.delenv(variable, raising=False)
    tried: list[str] = []
    connect, lookup = socket.socket.connect, socket.getaddrinfo

    def guarded_connect(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOOPBACK:
            tried.append(str(address[0]))
        return connect(self, address)

    def guarded_lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in LOOPBACK:
            tried.append(str(host))
        return lookup(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_lookup)
    yield tried


def _offline_run(cli: Cli, folder: Path, *args: str) -> tuple[dict[str, Any], OfflineRun]:
    result = cli("wandb", NET, "1x28x28", "--project", "modelviz-tests", "--dir", str(folder),
                 "--json", *args)
    assert result.exit_code == 0, result.stderr
    logged = json.loads(result.stdout)
    return logged, read_run(Path(logged["run_dir"]))


def _png(run: OfflineRun, entry: dict[str, Any]) -> Image.Image:
    return Image.open(run.files / entry["path"])


def test_offline_run_holds_table_summary_media_and_artifact(cli: Cli, tmp_path: Path,
                                                            wandb_home: list[str]) -> None:
    logged, run = _offline_run(cli, tmp_path / "w", "--offline", "--run-name", "net-1",
                               "--layer", "conv1", "--layer", "fc3", "--static")
    assert logged["mode"] == "offline" and logged["url"] is None
    assert run.run.project == "modelviz-tests" and run.run.display_name == "net-1"
    assert run.config["model"] == NET and run.config["batch_size"] == 1

    # The layer table: the summary's default rows, numbers as numbers (W&B sorts them).
    table_entry = run.history["layers"]
    assert table_entry["_type"] == "table-file" and table_entry["nrows"] == 6
    table = json.loads((run.files / table_entry["path"]).read_text())
    assert table["columns"] == list(COLUMNS)
    rows = {row[0]: dict(zip(COLUMNS, row, strict=True)) for row in table["data"]}
    assert list(rows) == ["conv1", "pool", "conv2", "fc1", "fc2", "fc3"]
    # by hand: conv1 is 6 maps of 24x24, each 5x5x1 multiply-adds; fc1 is 256 -> 120
    assert rows["conv1"]["params"] == 6 * 25 + 6 and rows["conv1"]["flops"] == 2 * 6 * 24 * 24 * 25
    assert rows["fc1"]["params"] == 256 * 120 + 120 and rows["fc1"]["flops"] == 2 * 256 * 120
    assert rows["pool"]["calls"] == 2 and rows["conv2"]["output_shape"] == "[1, 16, 8, 8]"

    # The totals in the run summary, as the summary command counts them.
    totals = api.summary(NET, "1x28x28").totals
    assert run.summary["params"] == totals.params == 44_426
    assert run.summary["flops"] == totals.flops
    assert run.summary["estimated_total_size_mb"] == pytest.approx(totals.estimated_total_size_mb)

    # Activation cards at the dashboard size; histograms of every parameter, every value binned.
    assert sorted(k for k in run.history if k.startswith("activations/")) == [
        "activations/conv1", "activations/fc3"]
    card = run.history["activations/conv1"]
    assert (card["width"], card["height"]) == CARD_PIXELS == _png(run, card).size
    hist = run.history["parameters/conv1.weight"]
    assert hist["_type"] == "histogram" and sum(hist["values"]) == 150
    assert len(hist["bins"]) == len(hist["values"]) + 1 == 65
    assert len([k for k in run.history if k.startswith("parameters/")]) == 10

    # The graph: the SVG and the interactive page, as HTML media.
    svg = (run.files / run.history["graph/modules"]["path"]).read_text()
    assert "<svg" in svg and "conv1" in svg
    page = (run.files / run.history["graph/interactive"]["path"]).read_text()
    assert "conv2" in page and "<script" in page

    # The artifact: summary.json and the verified ONNX file, checksums as W&B recorded them.
    (artifact,) = [a for a in run.artifacts if a.type == "model"]
    assert artifact.name == "modelviz-sample_models.seeds-Net" == logged["artifact"]
    entries = {entry.path: entry for entry in artifact.manifest.contents}
    assert sorted(entries) == ["model.onnx", "summary.json"]
    for entry in entries.values():
        data = Path(entry.local_path).read_bytes()
        assert base64.b64encode(hashlib.md5(data).digest()).decode() == entry.digest
    summary = json.loads(Path(entries["summary.json"].local_path).read_text())
    assert summary["totals"]["params"] == 44_426
    model = onnx.load(entries["model.onnx"].local_path)
    onnx.checker.check_model(model)
    assert sum(node.op_type == "Conv" for node in model.graph.node) == 2
    metadata = json.loads(artifact.metadata)
    assert metadata["onnx"]["parity_ok"] is True and metadata["params"] == 44_426
    assert metadata["onnx"]["dynamic_batch"] is False  # --static

    assert wandb_home == []  # nothing left this machine


def test_the_program_leaves_a_whole_run(run_modelviz: RunModelviz, tmp_path: Path) -> None:
    """The program ends with os._exit (cli/_process.py) once exit handlers have run: the run's
    transaction log, written by W&B's service, must be whole and final all the same."""
    env = {f"WANDB_{name}_DIR": str(tmp_path / name.lower()) for name in ("DATA", "CACHE",
                                                                          "CONFIG")}
    result = run_modelviz("wandb", NET, "1x28x28", "--project", "p", "--dir", str(tmp_path / "w"),
                          "--offline", "--json", "--no-onnx", "--no-graph", "--layer", "fc3",
                          env={**env, "WANDB_ERROR_REPORTING": "false",
                               "NETRC": str(tmp_path / "netrc")})
    assert result.exit_code == 0, result.stderr
    run = read_run(Path(json.loads(result.stdout)["run_dir"]))
    assert run.summary["params"] == 44_426
    assert sorted(k for k in run.history if k.startswith("activations/")) == ["activations/fc3"]
    assert len([k for k in run.history if k.startswith("parameters/")]) == 10
    assert "exit" in run.kinds  # the run was finished, not cut off


def test_wandb_mode_offline_and_parts_turned_off(cli: Cli, tmp_path: Path,
                                                 wandb_home: list[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    logged, run = _offline_run(cli, tmp_path / "w", "--layer", "conv2", "--no-onnx",
                               "--no-graph", "--no-histograms")
    assert logged["mode"] == "offline" and logged["skipped"] == {
        "onnx": "skipped (--no-onnx)."}
    assert not any(k.startswith(("parameters/", "graph/")) for k in run.history)
    (artifact,) = [a for a in run.artifacts if a.type == "model"]
    assert [entry.path for entry in artifact.manifest.contents] == ["summary.json"]
    assert wandb_home == []


def test_cli_table_and_sync_hint(cli: Cli, tmp_path: Path, wandb_home: list[str]) -> None:
    result = cli("wandb", NET, "1x28x28", "--project", "p", "--offline", "--dir",
                 str(tmp_path / "w"), "--layer", "fc3", "--no-onnx", "--no-graph")
    assert result.exit_code == 0, result.stderr
    assert "layers: 6 rows" in result.stdout and "activations/fc3" in result.stdout
    assert "wandb:" not in result.stdout + result.stderr  # W&B's own chatter stays out
    (hint,) = [line for line in result.stderr.splitlines() if "sync it" in line]
    folder = Path(hint.split("wandb sync ", 1)[1].strip())
    assert folder.parent == tmp_path / "w" / "wandb" and folder.name.startswith("offline-run-")


def test_online_without_login_is_one_line(cli: Cli, tmp_path: Path,
                                          wandb_home: list[str]) -> None:
    result = cli("wandb", NET, "1x28x28", "--project", "p", "--dir", str(tmp_path / "w"))
    assert result.exit_code == 2
    assert result.stderr == ("error: not logged in to W&B. Run `wandb login` (or set "
                             "WANDB_API_KEY), or log offline with --offline.\n")
    assert not (tmp_path / "w").exists() and wandb_home == []


class _Refusing(http.server.BaseHTTPRequestHandler):
    """A W&B server that refuses every key, as W&B's does a revoked one."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"errors": [{"message": "user is not logged in"}]}')

    def log_message(self, *args: Any) -> None:
        pass


def test_a_refused_key_is_never_printed(run_modelviz: RunModelviz, tmp_path: Path) -> None:
    """In a fresh process: W&B reads WANDB_BASE_URL once per process, when it is set up."""
    key = "modelviztestkey0123456789abcdefghijklmnop"
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env = {f"WANDB_{name}_DIR": str(tmp_path / name.lower()) for name in ("DATA", "CACHE",
                                                                          "CONFIG")}
    try:
        result = run_modelviz(
            "wandb", NET, "1x28x28", "--project", "p", "--dir", str(tmp_path / "w"), "--layer",
            "fc3", "--no-onnx", "--no-graph", "--no-histograms",
            env={**env, "WANDB_API_KEY": key, "WANDB_MODE": "online",
                 "WANDB_BASE_URL": f"http://127.0.0.1:{server.server_port}",
                 "WANDB_ERROR_REPORTING": "false", "NETRC": str(tmp_path / "netrc")})
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("error: W&B refused the run: user is not logged in")
    assert len(result.stderr.splitlines()) == 1
    assert key not in result.stdout + result.stderr
    assert not any(key in p.read_text(errors="ignore") for p in tmp_path.rglob("*")
                   if p.is_file())


@pytest.mark.parametrize(("module", "extra"), [("wandb", "wandb"), ("visdom", "visdom")])
def test_without_the_extra(cli: Cli, monkeypatch: pytest.MonkeyPatch, module: str,
                           extra: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    args = ["--project", "p", "--offline"] if module == "wandb" else []
    result = cli(module, NET, "1x28x28", *args)
    assert result.exit_code == 2
    assert result.stderr == (f"error: the {module} package is not installed. Install the "
                             f"extra: pip install 'torch-modelviz[{extra}]'\n")


def test_wandb_mode_disabled_logs_nothing(cli: Cli, tmp_path: Path, wandb_home: list[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    result = cli("wandb", NET, "1x28x28", "--project", "p", "--dir", str(tmp_path / "w"))
    assert result.exit_code == 0 and result.stdout == ""
    assert result.stderr == "note: WANDB_MODE=disabled: nothing logged.\n"
    assert not (tmp_path / "w").exists()


def test_meta_device_and_bad_project(cli: Cli, tmp_path: Path, wandb_home: list[str]) -> None:
    result = cli("wandb", NET, "1x28x28", "--project", "p", "--offline", "--device", "meta",
                 "--dir", str(tmp_path / "w"))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: a W&B run needs real weights and activations")
    result = cli("wandb", NET, "--project", "a/b", "--offline")
    assert result.exit_code == 2 and result.stderr.startswith("error: bad W&B --project a/b.")


def test_cards_read_back_at_their_size(tmp_path: Path, wandb_home: list[str]) -> None:
    """The API too: a transformer's token card, read from the run's files."""
    logged = api.wandb("sample_models.transformer:TinyTransformer", "int64:16",
                       project="p", offline=True, folder=tmp_path / "w", onnx=False,
                       graph=False, histograms=False, layers=["encoder.layers.0"])
    run = read_run(Path(logged.run_dir or ""))
    (key,) = [k for k in run.history if k.startswith("activations/")]
    picture = _png(run, run.history[key]).convert("RGB")
    assert picture.size == CARD_PIXELS
    assert len(np.unique(np.asarray(picture).reshape(-1, 3), axis=0)) > 50  # a map, not blank
