"""What the written file holds besides the graph: no author's paths or stack traces; and what
else comes with it: ONNX Runtime's log lines kept off the terminal, ``--optimize``'s smaller
graph still matching torch, and a report that links large weights instead of packing them."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from modelviz import api
from modelviz.features.onnx import export as onnx_export
from modelviz.features.onnx.metadata import KEPT_NODE_KEYS, MODELVIZ_KEY
from tests.helpers import ROOT, Cli, RunModelviz

TINY = "sample_models.transformer:TinyTransformer"

MODEL_FILE = textwrap.dedent("""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x):
            return torch.relu(self.lin(x)) * 2
""")


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_no_local_path_or_stack_trace_in_the_file(cli: Cli, tmp_path: Path,
                                                  exporter: str) -> None:
    """A model file in a folder that names its author, and a model whose code lives in this
    worktree (and its .venv): neither path may be in the bytes of the file."""
    folder = tmp_path / "home-of-ana-secret"
    folder.mkdir()
    (folder / "mine.py").write_text(MODEL_FILE)
    for spec, sizes in ((f"{folder}/mine.py:Net", ["4"]), (TINY, ["int64:8"])):
        path = tmp_path / "out.onnx"
        result = cli("export-onnx", spec, *sizes, "-o", str(path), "--exporter", exporter)
        assert result.exit_code == 0, result.stderr
        data = path.read_bytes()
        for secret in (str(ROOT), str(folder), "home-of-ana-secret", "site-packages",
                       "stack_trace", ".py\""):
            assert secret.encode() not in data, (spec, secret)
        model = onnx.load(str(path))
        props = {p.key: p.value for p in model.metadata_props}
        assert props[MODELVIZ_KEY] and model.producer_name == "pytorch"
        assert model.doc_string == model.graph.doc_string == ""
        keys = {p.key for node in model.graph.node for p in node.metadata_props}
        assert keys <= KEPT_NODE_KEYS
        if exporter == "dynamo" and spec == TINY:
            # Module names stay: Netron shows them, and the divergence finder reads them.
            scopes = [p.value for node in model.graph.node for p in node.metadata_props
                      if p.key == "pkg.torch.onnx.name_scopes"]
            assert any("encoder.layers.0" in s for s in scopes)


def test_onnx_runtime_log_lines_stay_off_the_terminal(run_modelviz: RunModelviz,
                                                      tmp_path: Path) -> None:
    """ONNX Runtime writes its errors from C++ straight to stderr, coloured and timestamped,
    before raising: with a dynamic batch, PerImage's file fails in ORT at batch 2."""
    result = run_modelviz("export-onnx", "sample_models.onnx_trouble:PerImage", "3x8x8",
                          "--exporter", "torchscript", "-o", str(tmp_path / "p.onnx"))
    assert result.exit_code == 0, result.stderr
    assert "\x1b[" not in result.stderr and "onnxruntime" not in result.stderr
    assert "in its Split node '/Split'" in result.stderr  # said once, in modelviz's words
    assert all(line.startswith(("note: ", "  ")) for line in result.stderr.splitlines())


def test_optimize_shrinks_the_graph_and_checks_it_again(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "tiny.onnx"
    plain = json.loads(cli("export-onnx", TINY, "int64:12", "-o", str(path), "--exporter",
                           "torchscript", "--json").stdout)
    result = cli("export-onnx", TINY, "int64:12", "-o", str(path), "--exporter", "torchscript",
                 "--optimize", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    opt = data["optimization"]
    assert opt["tool"] == "onnxslim" and opt["kept"] is True
    assert opt["nodes_before"] == plain["node_count"] > opt["nodes_after"] == data["node_count"]
    assert opt["bytes_after"] == data["file_bytes"] == path.stat().st_size
    assert len(onnx.load(str(path)).graph.node) == opt["nodes_after"]
    # Checked again after optimisation, at both batch sizes.
    assert data["ok"] and [p["batch"] for p in data["parity"] + data["batch_parity"]] == [1, 2]
    # And our own run at batch 3.
    prepared = api.prepare(TINY, "int64:12", batch_size=3)
    with torch.no_grad():
        expected = prepared.model.eval()(*prepared.inputs.args).numpy()
    (got,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"tokens": prepared.inputs.args[0].numpy()})
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-3)
    assert {p.key for p in onnx.load(str(path)).metadata_props} >= {MODELVIZ_KEY}
    shown = cli("export-onnx", TINY, "int64:12", "-o", str(path), "--exporter", "torchscript",
                "--optimize")
    assert re.search(rf"Optimised by onnxslim: {opt['nodes_before']} nodes to "
                     rf"{opt['nodes_after']}, [\d.]+ [KM]B to [\d.]+ [KM]B", shown.stdout)


def test_report_links_large_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over the limit (100 MB of weights), the report's model.onnx holds the graph and links
    model.onnx.data; here the limit is lowered to a small model's size."""
    from modelviz.features.report import build as report

    assert not onnx_export.report_links_weights(api.prepare("resnet50", device="meta").model)
    assert onnx_export.report_links_weights(api.prepare("vit_b_16", device="meta").model)
    monkeypatch.setattr(onnx_export, "REPORT_LINK_LIMIT", 100_000)
    report.build(api.prepare("sample_models.seeds:Net", "1x28x28"), tmp_path / "r",
                 memory=False, profile=False)
    folder = tmp_path / "r"
    part = json.loads((folder / "report.json").read_text())["parts"]["onnx"]
    assert part["data_files"] == ["model.onnx.data"] and part["ok"] is True
    weights = (folder / "model.onnx.data").stat().st_size
    assert weights >= 0.99 * 44_426 * 4 and (folder / "model.onnx").stat().st_size < 20_000
    assert part["data_bytes"] == weights
    page = (folder / "index.html").read_text()
    assert re.search(r'<a href="model\.onnx">model\.onnx</a> \([\d.]+ KB\) · weights in '
                     r'<a href="model\.onnx\.data">model\.onnx\.data</a> \(17[\d.]+ KB\)', page)
