"""``modelviz export-onnx`` and ``modelviz netron``: real exports, checked by onnx and run by ONNX
Runtime against torch at other batch sizes; Netron's page rendered by a real Chromium."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from modelviz import api
from modelviz.features.onnx.export import leaf_names, needs_external_data
from tests.browser import dump_dom
from tests.helpers import ROOT, Cli, run_cli


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _torch_out(spec: str, *sizes: str, batch: int) -> tuple[list[torch.Tensor], list[Any]]:
    """Inputs at ``batch`` and torch's outputs for them, from the model modelviz builds (the
    same seeded weights as the export)."""
    prepared = api.prepare(spec, *sizes, batch_size=batch, seed=0)
    model = prepared.model.eval()
    with torch.no_grad():
        out = model(*prepared.inputs.args)
    outs = list(out.values()) if isinstance(out, dict) else [out]
    return list(prepared.inputs.args), [o.numpy() for o in outs]


def _no_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ----------------------------------------------------------------------------------------------
# The headline: resnet18 through the CLI.


@pytest.fixture(scope="module")
def resnet18(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    path = tmp_path_factory.mktemp("onnx") / "resnet18.onnx"
    result = run_cli("export-onnx", "resnet18", "-o", str(path), "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    return path, json.loads(result.stdout)


def test_resnet18_file_is_self_contained_and_described(
        resnet18: tuple[Path, dict[str, Any]]) -> None:
    path, data = resnet18
    assert _no_leftovers(path.parent) == ["resnet18.onnx"]  # no .onnx.data, no temporary files
    model = onnx.load(str(path))
    assert not any(onnx.external_data_helper.uses_external_data(t)
                   for t in model.graph.initializer)
    weights = sum(np.prod(t.dims) for t in model.graph.initializer)
    assert weights >= 11_689_512 - 10_000  # resnet18's parameters, BatchNorm folded or not
    assert data["exporter"] == "dynamo" and data["opset"] >= 18
    assert data["inputs"] == [{"name": "x", "dtype": "float32", "shape": ["batch", 3, 224, 224]}]
    assert data["outputs"] == [{"name": "output", "dtype": "float32", "shape": ["batch", 1000]}]
    assert data["op_counts"]["Conv"] == 20 and data["op_counts"]["Gemm"] == 1
    assert data["node_count"] == sum(data["op_counts"].values()) == len(model.graph.node)
    assert data["file_bytes"] == path.stat().st_size
    assert data["ok"] is True and data["dynamic_batch"] is True and data["batch_checked"] == 2
    (parity,) = data["parity"]
    assert parity["output"] == "output" and parity["max_abs_error"] < 1e-4


def test_resnet18_at_another_batch_matches_torch(resnet18: tuple[Path, dict[str, Any]]) -> None:
    path, _ = resnet18
    inputs, expected = _torch_out("resnet18", batch=3)
    (got,) = _session(path).run(None, {"x": inputs[0].numpy()})
    assert got.shape == (3, 1000)
    np.testing.assert_allclose(got, expected[0], atol=1e-4, rtol=1e-3)


def test_table_on_a_terminal_width(cli: Cli, tmp_path: Path) -> None:
    result = cli("export-onnx", "sample_models.multi_io:TwoInputNet", "3x32x32", "10",
                 "-o", str(tmp_path / "two.onnx"))
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    facts = " ".join(out[:out.index("┏")].split())  # the line may wrap on a narrow terminal
    assert re.fullmatch(r"File .*two\.onnx \([\d.]+ KB, self-contained\), opset \d+, dynamo "
                        r"exporter", facts)
    assert re.search(r"input\s+│ image\s+│ float32 │ \[batch, 3, 32, 32\]", out)
    assert re.search(r"input\s+│ features\s+│ float32 │ \[batch, 10\]", out)
    assert re.search(r"output\s+│ output\s+│ float32 │ \[batch, 5\]", out)
    assert "Nodes 8: Gemm 2, Relu 2, Concat 1, Conv 1" in out
    assert re.search(r"│ output │\s+[\d.e-]+ │\s+[\d.e-]+ │ ok │", out)
    assert "also ran at batch 2 in ONNX Runtime" in out


# ----------------------------------------------------------------------------------------------
# More models: torchvision families, several inputs, dict outputs, tokens.


@pytest.mark.parametrize(("spec", "sizes", "names"), [
    ("squeezenet1_1", (), ["output"]),
    ("convnext_tiny", ("3x64x64",), ["output"]),
    ("deeplabv3_mobilenet_v3_large", ("3x96x96",), ["out"]),  # a dict output
])
def test_torchvision_models_match_torch_at_batch_two(tmp_path: Path, spec: str,
                                                     sizes: tuple[str, ...],
                                                     names: list[str]) -> None:
    path = tmp_path / f"{spec}.onnx"
    result = api.export_onnx(spec, *sizes, output=path)
    assert result.ok and [o.name for o in result.outputs] == names
    inputs, expected = _torch_out(spec, *sizes, batch=2)
    got = _session(path).run(None, {"x": inputs[0].numpy()})
    for ours, theirs in zip(got, expected, strict=True):
        assert ours.shape == theirs.shape and ours.shape[0] == 2
        np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=1e-3)


def test_two_inputs_named_after_forward(tmp_path: Path) -> None:
    path = tmp_path / "two.onnx"
    result = api.export_onnx("sample_models.multi_io:TwoInputNet", "3x32x32", "10", output=path)
    assert [i.name for i in result.inputs] == ["image", "features"]
    inputs, expected = _torch_out("sample_models.multi_io:TwoInputNet", "3x32x32", "10",
                                  batch=4)
    (got,) = _session(path).run(None, {"image": inputs[0].numpy(),
                                       "features": inputs[1].numpy()})
    np.testing.assert_allclose(got, expected[0], atol=1e-5)


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_dict_output_keys_become_output_names(cli: Cli, tmp_path: Path, exporter: str) -> None:
    path = tmp_path / "dict.onnx"
    result = cli("export-onnx", "sample_models.multi_io:DictOutputNet", "16", "-o", str(path),
                 "--exporter", exporter, "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["exporter"] == exporter
    assert [o["name"] for o in data["outputs"]] == ["logits", "embedding"]
    assert [p["output"] for p in data["parity"]] == ["logits", "embedding"]
    inputs, expected = _torch_out("sample_models.multi_io:DictOutputNet", "16", batch=5)
    got = _session(path).run(["logits", "embedding"], {"x": inputs[0].numpy()})
    assert [g.shape for g in got] == [(5, 3), (5, 8)]
    for ours, theirs in zip(got, expected, strict=True):
        np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_names_without_verification_come_from_the_exported_program(cli: Cli,
                                                                   tmp_path: Path) -> None:
    result = cli("export-onnx", "sample_models.multi_io:DictOutputNet", "16", "-o",
                 str(tmp_path / "dict.onnx"), "--no-verify", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["verified"] is False and data["parity"] is None
    assert [o["name"] for o in data["outputs"]] == ["logits", "embedding"]


@pytest.mark.parametrize("spec", ["sample_models.lstm_lm:LSTMLanguageModel",
                                  "sample_models.transformer:TinyTransformer"])
def test_token_models_keep_a_dynamic_batch(tmp_path: Path, spec: str) -> None:
    """torch.export fixes a dimension whose example size is 1; the export example is widened so
    that batch 1 still gives a dynamic batch."""
    path = tmp_path / "lm.onnx"
    result = api.export_onnx(spec, "int64:12", output=path)
    assert result.ok and result.dynamic_batch and result.inputs[0].shape == ["batch", 12]
    inputs, expected = _torch_out(spec, "int64:12", batch=3)
    (got,) = _session(path).run(None, {result.inputs[0].name: inputs[0].numpy()})
    np.testing.assert_allclose(got, expected[0], atol=1e-4, rtol=1e-3)


def test_static_batch(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "net.onnx"
    result = cli("export-onnx", "sample_models.seeds:Net", "1x28x28", "-o", str(path), "--static",
                 "--batch-size", "2", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["dynamic_batch"] is False and data["batch_checked"] is None
    assert data["inputs"][0]["shape"] == [2, 1, 28, 28]
    session = _session(path)
    session.run(None, {"x": np.zeros((2, 1, 28, 28), np.float32)})
    with pytest.raises(Exception, match=r"(?i)dimension|shape"):
        session.run(None, {"x": np.zeros((3, 1, 28, 28), np.float32)})


def test_external_data_files_are_listed_and_load(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "net.onnx"
    result = cli("export-onnx", "sample_models.seeds:Net", "1x28x28", "-o", str(path),
                 "--external-data", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["data_files"] == [str(tmp_path / "net.onnx.data")]
    assert _no_leftovers(tmp_path) == ["net.onnx", "net.onnx.data"]
    # The weights are in the data file (the exporter keeps a few tiny tensors inline).
    assert (tmp_path / "net.onnx.data").stat().st_size >= 0.99 * 44_426 * 4
    assert path.stat().st_size < 20_000
    assert "keep it beside net.onnx" in result.stderr
    inputs, expected = _torch_out("sample_models.seeds:Net", "1x28x28", batch=2)
    (got,) = _session(path).run(None, {"x": inputs[0].numpy()})
    np.testing.assert_allclose(got, expected[0], atol=1e-5)


def test_over_two_gigabytes_goes_to_external_data() -> None:
    big = api.prepare("sample_models.llama:llama_7b", "int64:8", device="meta").model
    small = api.prepare("resnet18").model
    assert needs_external_data(big) and not needs_external_data(small)


def test_leaf_names() -> None:
    """No output name looks like a module path (``encoder.block.0``)."""
    t = torch.zeros(1)
    assert leaf_names(t, "output") == ["output"]
    assert leaf_names((t, t), "output") == ["output0", "output1"]
    assert leaf_names({"logits": t, "hidden": (t, t)}, "output") == [
        "logits", "hidden_0", "hidden_1"]
    # torchvision's detections: one dict per image.
    assert leaf_names([{"boxes": t, "scores": t}], "output") == ["boxes", "scores"]
    assert leaf_names([{"boxes": t}, {"boxes": t}], "output") == ["boxes_0", "boxes_1"]


# ----------------------------------------------------------------------------------------------
# Failures: parity, unsupported operators, control flow, bad options. Nothing half-written.


def test_parity_beyond_atol_exits_1_with_the_file_written(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "net.onnx"
    result = cli("export-onnx", "sample_models.seeds:Net", "1x28x28", "-o", str(path),
                 "--atol", "1e-12")
    assert result.exit_code == 1
    assert path.is_file() and "over atol" in result.stdout
    message = " ".join(result.stderr.split())
    assert re.search(r"error: .*net\.onnx was written, but ONNX Runtime differs from torch by "
                     r"[\d.e-]+ on output, beyond --atol 1e-12; the first module whose output "
                     r"differs is conv1 \(Conv2d\), by [\d.e-]+ \(relative [\d.e-]+: float "
                     r"rounding\); its ONNX nodes: Conv\. The differences start as float "
                     r"rounding: raise --atol \(1e-4 suits float32\)\.$", message), message


def test_float16_gets_a_float16_tolerance(cli: Cli, tmp_path: Path) -> None:
    result = cli("export-onnx", "sample_models.seeds:Net", "1x28x28", "--dtype", "float16",
                 "-o", str(tmp_path / "half.onnx"), "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["atol"] == 1e-2 and data["inputs"][0]["dtype"] == "float16"
    assert 0 < data["parity"][0]["max_abs_error"] < 1e-2


def test_unsupported_operator_names_it_and_its_module(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "out" / "spectrum.onnx"
    result = cli("export-onnx", "sample_models.onnx_trouble:WithSpectrum", "4x4", "-o", str(path))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith("error: ONNX export failed: ONNX has no translation for torch's "
                               "linalg_eig operator, called in spectrum (Spectrum)")
    assert not path.exists() and _no_leftovers(path.parent) == []


def test_data_dependent_branch(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "branchy.onnx"
    result = cli("export-onnx", "sample_models.onnx_trouble:Branchy", "4", "-o", str(path),
                 "--exporter", "dynamo")
    assert result.exit_code == 2 and not path.exists()
    assert re.search(r"error: ONNX export failed: the model branches on a tensor's value at "
                     r"onnx_trouble\.py:\d+ \(if y\.sum\(\) > 0:\)", result.stderr)
    # auto falls back to the TorchScript exporter and says what that means.
    result = cli("export-onnx", "sample_models.onnx_trouble:Branchy", "4", "-o", str(path))
    assert result.exit_code == 0, result.stderr
    assert "the TorchScript exporter was used instead" in result.stderr
    assert "the file follows the branches these inputs took" in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["resnet18", "-o", "{tmp}/model.txt"], "error: {tmp}/model.txt: an ONNX file should end in "
                                            ".onnx. Give -o model.onnx."),
    (["sample_models.seeds:Net", "1x28x28", "--device", "meta", "-o", "{tmp}/m.onnx"],
     "error: an ONNX file holds the weights, and the meta device has none."),
    (["sample_models.seeds:Net", "1x28x28", "--exporter", "onnxscript", "-o", "{tmp}/m.onnx"],
     "error: unknown exporter 'onnxscript'. Use auto, dynamo or torchscript."),
    (["sample_models.seeds:Net", "3x28x28", "-o", "{tmp}/m.onnx"],
     "error: forward pass failed in conv1 (Conv2d)"),
    (["sample_models.seeds:Net", "1x28x28", "--dtype", "bfloat16", "-o", "{tmp}/m.onnx"],
     "error: the exported file is not valid ONNX: its Conv does not take bfloat16"),
])
def test_mistakes(cli: Cli, tmp_path: Path, args: list[str], message: str) -> None:
    result = cli("export-onnx", *[a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 2 and result.stderr.startswith(message.format(tmp=tmp_path))
    assert _no_leftovers(tmp_path) == []


# ----------------------------------------------------------------------------------------------
# Netron, in a real browser.


def _served_page(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return str(response.read().decode())


def test_netron_renders_the_graph_in_chromium(tmp_path: Path) -> None:
    from modelviz.features.onnx import netron as netron_server

    path = tmp_path / "dict.onnx"
    api.export_onnx("sample_models.multi_io:DictOutputNet", "16", output=path)
    served = netron_server.serve(path, port=0)
    try:
        dom = dump_dom(served.url, netron=True)
    finally:
        netron_server.stop(served)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom[dom.find("<body"):]))
    # Netron drew the graph: its nodes' op types, the input with its dynamic batch, the outputs.
    assert text.count("Gemm") == 3 and "Gelu" in text
    assert "float32[batch,16]" in text
    assert "logits" in text and "embedding" in text


def test_netron_command_serves_the_file(tmp_path: Path) -> None:
    path = tmp_path / "net.onnx"
    api.export_onnx("sample_models.seeds:Net", "1x28x28", output=path, verify=False)
    proc = subprocess.Popen([sys.executable, "-m", "modelviz", "netron", str(path), "--port", "0",
                             "--no-browser"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        match = re.fullmatch(r"Netron is showing .*net\.onnx at (http://127\.0\.0\.1:\d+)\n", line)
        assert match, line + (proc.stderr.read() if proc.poll() is not None else "")
        url = match.group(1)
        assert "<title>Netron</title>" in _served_page(url)
        with urllib.request.urlopen(f"{url}/data/net.onnx", timeout=30) as response:
            assert response.read() == path.read_bytes()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_netron_port_in_use_and_missing_file(cli: Cli, tmp_path: Path) -> None:
    import socket

    path = tmp_path / "net.onnx"
    api.export_onnx("sample_models.seeds:Net", "1x28x28", output=path, verify=False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("netron", str(path), "--port", str(port), "--no-browser")
    assert result.exit_code == 2
    assert result.stderr == (f"error: port {port} on 127.0.0.1 is already in use. Stop what "
                             "serves there, or pass --port N (--port 0 picks a free one).\n")
    result = cli("netron", str(tmp_path / "nothing.onnx"), "--no-browser")
    assert result.exit_code == 2 and "nothing.onnx: no such file." in result.stderr


def test_export_then_open_in_the_browser(tmp_path: Path) -> None:
    """``--open`` serves the new file and hands its URL to the user's browser ($BROWSER)."""
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\necho "$1" > {opened}\n')
    browser.chmod(0o755)
    path = tmp_path / "net.onnx"
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelviz", "export-onnx", "sample_models.seeds:Net", "1x28x28",
         "-o", str(path), "--open", "--port", "0"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "BROWSER": str(browser)})
    try:
        deadline = time.monotonic() + 120
        while not (opened.exists() and opened.read_text().strip()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.2)
        url = opened.read_text().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        assert "<title>Netron</title>" in _served_page(url)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert f"Netron is showing {path} at {url}" in out


def test_python_api(tmp_path: Path) -> None:
    import modelviz
    from sample_models.seeds import Net

    net = Net()
    result = modelviz.export_onnx(net, (1, 28, 28), output=tmp_path / "net.onnx", batch_size=2)
    assert result.ok and result.inputs[0].shape == ["batch", 1, 28, 28]
    assert net.training  # the caller's module is left as it was
    x = torch.randn(5, 1, 28, 28)
    (got,) = _session(tmp_path / "net.onnx").run(None, {"x": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(got, net.eval()(x).numpy(), atol=1e-5)


def test_default_file_name_is_the_model_name(cli: Cli, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from modelviz.cli.export_onnx import _file_name

    assert [_file_name(m) for m in ("sample_models.seeds:Net", "pkg.models.Net", "resnet18",
                                    "runs/best.pt", "my_model.py:Net")] == [
        "Net", "Net", "resnet18", "best", "Net"]
    monkeypatch.chdir(tmp_path)
    result = cli("export-onnx", f"{ROOT}/sample_models/seeds.py:Net", "1x28x28", "--no-verify")
    assert result.exit_code == 0, result.stderr
    assert _no_leftovers(tmp_path) == ["Net.onnx"]
    assert [i.name for i in onnx.load(str(tmp_path / "Net.onnx")).graph.input] == ["x"]


@pytest.mark.parametrize(("spec", "sizes"), [("sample_models.multi_io:DictOutputNet", ("16",)),
                                             ("sample_models.llama:llama_tiny", ("int64:8",))])
def test_facts_from_memory_equal_the_file(tmp_path: Path, spec: str,
                                          sizes: tuple[str, ...]) -> None:
    """The table's facts come from the exporter's in-memory model; they must be the file's."""
    from modelviz.features.onnx.verify import facts_from_file

    path = tmp_path / "m.onnx"
    result = api.export_onnx(spec, *sizes, output=path, verify=False)
    facts = facts_from_file(path)
    assert result.exporter == "dynamo"
    assert result.inputs == facts.inputs and result.outputs == facts.outputs
    assert result.op_counts == dict(facts.op_counts) and result.opset == facts.opset
