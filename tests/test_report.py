"""``modelviz report``: every artifact in one folder, a page that a real browser shows, and
failing parts reported while the others are still written."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.browser import dump_dom
from tests.helpers import Cli, run_cli

NET = "sample_models.seeds:Net"
SVG = "{http://www.w3.org/2000/svg}"


def _svg_nodes(path: Path) -> list[str]:
    root = ET.parse(path).getroot()
    return [g.findtext(f"{SVG}title") or "" for g in root.iter(f"{SVG}g")
            if g.get("class") == "node"]


@pytest.fixture(scope="module")
def net_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    folder = tmp_path_factory.mktemp("report") / "net"
    result = run_cli("report", NET, "1x28x28", "-o", str(folder), "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return folder, data


def test_every_artifact_with_its_content(net_report: tuple[Path, dict[str, object]]) -> None:
    folder, data = net_report
    assert data["ok"] is True and data == json.loads((folder / "report.json").read_text())
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["totals"]["params"] == 44_426 and summary["totals"]["flops"] == 563_280
    markdown = (folder / "summary.md").read_text()
    assert "| Total params | 44,426 |" in markdown and "FLOPs" in markdown

    nodes = _svg_nodes(folder / "graph.svg")
    parts = data["parts"]
    assert isinstance(parts, dict)
    # x, conv1, relu, pool, conv2, relu, pool, view, fc1, relu, fc2, relu, fc3, output
    assert parts["graph"]["nodes"] == 14
    assert {"conv1", "conv2", "fc1", "fc2", "fc3"} <= {n for n in nodes}

    images = sorted(p.name for p in (folder / "activations").iterdir())
    assert images == ["conv1.png", "conv2.png", "fc2.png", "fc3.png"]
    layers = parts["activations"]["layers"]
    assert [layer["name"] for layer in layers] == ["conv1", "conv2", "fc2", "fc3"]
    assert layers[0]["shape"] == [1, 6, 24, 24] and layers[0]["image"] == "activations/conv1.png"

    onnx_part = parts["onnx"]  # parity against the report's own pass, no second forward
    assert onnx_part["status"] == "ok" and onnx_part["files"] == ["model.onnx"]
    assert onnx_part["inputs"] == [{"name": "x", "dtype": "float32", "shape": ["batch", 1, 28, 28]}]
    assert onnx_part["parity"][0]["max_abs_error"] < 1e-4
    assert onnx_part["op_counts"]["Conv"] == 2 and onnx_part["op_counts"]["Gemm"] == 3


def test_the_interactive_graph_comes_with_the_report(
        net_report: tuple[Path, dict[str, object]]) -> None:
    """graph.html is the viewer `graph -o x.html` writes, from the report's own pass, with the
    report's profile and memory plan per module; the page embeds it, and each layer's name on
    the page (tables, activation pictures) opens its node there."""
    folder, data = net_report
    parts = data["parts"]
    assert isinstance(parts, dict) and "graph.html" in parts["graph"]["files"]
    viewer = (folder / "graph.html").read_text()
    found = re.search(r'<script type="application/json" id="modelviz-data">(.*?)</script>',
                      viewer, re.S)
    assert found is not None
    embedded = json.loads(found.group(1))
    params = {name: module["params"] for name, module in embedded["modules"].items()}
    assert params["conv1"] == 156 and params["fc1"] == 30_840
    profile = json.loads((folder / "profile.json").read_text())
    timed = {m["name"]: m for m in profile["modules"]}
    assert embedded["profile"]["modules"]["fc1"] == [
        timed["fc1"]["total_ms"], timed["fc1"]["self_ms"], timed["fc1"]["share"]]
    assert embedded["profile"]["totals"]["total_ms"] == profile["total_ms"]
    memory = json.loads((folder / "memory.json").read_text())
    layer = next(row for row in memory["layers"] if row["name"] == "fc1")
    assert embedded["memory"]["modules"]["fc1"] == [
        layer["parameters_bytes"], layer["gradients_bytes"], layer["optimizer_bytes"],
        layer["activations_bytes"]]
    assert embedded["memory"]["totals"]["training_peak_bytes"] == memory["training"]["peak_bytes"]
    assert embedded["profile"]["unknown"] == embedded["memory"]["unknown"] == []
    index = (folder / "index.html").read_text()
    link = '<a href="graph.html#node=conv1" target="graph-viewer"><code>conv1</code></a>'
    layers = index[index.index('id="layers"'):]
    assert link in layers and link in index[index.index('id="memory"'):index.index('id="graph"')]
    figure = index[index.index('<figure id="act-conv1"'):]
    assert figure[:figure.index("</figure>")].count(link) == 1
    assert '<iframe class="viewer" name="graph-viewer" src="graph.html"' in index


def test_memory_part_is_the_memory_commands_plan(
        net_report: tuple[Path, dict[str, object]]) -> None:
    import modelviz

    folder, data = net_report
    written = json.loads((folder / "memory.json").read_text())
    expected = modelviz.memory(NET, "1x28x28").to_dict()  # the same model, device and batch
    assert written["schema"] == "modelviz.memory/1" and written["optimizer"] == "adam"
    for key in ("inference", "training", "layers", "batch_size", "device", "dtype"):
        assert written[key] == expected[key], key
    training = written["training"]
    assert training["parameters_bytes"] >= 44_426 * 4 and training["optimizer_bytes"] > 0
    parts = data["parts"]
    assert isinstance(parts, dict)
    assert parts["memory"] == {
        "status": "ok", "error": None, "problem": None, "skipped": None,
        "files": ["memory.json"], "optimizer": "adam", "batch_size": 1,
        "inference_peak_bytes": expected["inference"]["peak_bytes"],
        "training_peak_bytes": training["peak_bytes"],
        "training_peak_phase": training["peak_phase"]}


def test_profile_part_times_every_layer(net_report: tuple[Path, dict[str, object]]) -> None:
    folder, data = net_report
    profile = json.loads((folder / "profile.json").read_text())
    assert profile["schema"] == "modelviz.profile/1" and profile["runs"] == 5
    assert profile["warmup"] == 1 and profile["total_ms"] > 0
    modules = {m["name"]: m for m in profile["modules"]}
    assert {"conv1", "conv2", "fc1", "fc2", "fc3"} <= set(modules)
    for name in ("conv1", "conv2", "fc1", "fc2", "fc3"):
        assert modules[name]["timed"] and modules[name]["total_ms"] > 0, name
    assert modules["conv1"]["flops"] > 0  # from the report's own pass
    parts = data["parts"]
    assert isinstance(parts, dict)
    part = parts["profile"]
    assert part["status"] == "ok" and part["files"] == ["profile.json"]
    assert [m["name"] for m in part["slowest"]] == profile["slowest"] != []


def test_index_page_in_a_real_browser(net_report: tuple[Path, dict[str, object]]) -> None:
    folder, _data = net_report
    page = (folder / "index.html").read_text()
    assert "http://" not in page.replace("http://www.w3.org", "")  # nothing fetched: offline
    assert "https://" not in page
    dom = dump_dom((folder / "index.html").resolve().as_uri())
    assert 'data-ready="1"' in dom  # the script ran to its end, without an error
    # The graph is drawn inline, every node of graph.svg, and the table shows every layer.
    assert dom.count('class="node"') == len(_svg_nodes(folder / "graph.svg"))
    layers_table = dom[dom.index('id="layers"'):]
    for name in ("conv1", "pool", "conv2", "fc1", "fc2", "fc3"):
        assert f"<code>{name}</code>" in layers_table
    assert "Total params" in dom and "44,426" in dom
    assert dom.count('src="data:image/png;base64,') == 4
    assert re.search(r'id="zoom"[^>]*>\d+%<', dom)  # the zoom control initialised
    # sizes written in px as read (pt made "100%" 133%), and fit fits the SVG's own size at most
    width = re.search(r'<svg[^>]*\swidth="([\d.]+)(\w+)"', dom)
    assert width is not None and width.group(2) == "px"
    native = re.search(r'<svg[^>]*\swidth="([\d.]+)pt"', (folder / "graph.svg").read_text())
    assert native is not None and float(width.group(1)) <= float(native.group(1)) * 4 / 3 + 1
    # The memory plan's figures, and the time of each layer beside the summary's columns.
    from modelviz.core.formatting import binary_size as size

    memory = json.loads((folder / "memory.json").read_text())
    memory_section = dom[dom.index('id="memory"'):dom.index('id="profile"')]
    assert "Inference peak (no grad)" in memory_section and "Training peak (adam)" in memory_section
    assert size(memory["training"]["peak_bytes"]) in memory_section
    assert size(memory["inference"]["peak_bytes"]) in memory_section
    assert "<code>fc1</code>" in memory_section and "Optimizer state" in memory_section
    profile = json.loads((folder / "profile.json").read_text())
    time_section = dom[dom.index('id="profile"'):dom.index('id="graph"')]
    assert "Slowest layers" in time_section
    for name in profile["slowest"]:
        assert f"<code>{name}</code>" in time_section
    assert "Time (ms)" in layers_table
    conv1 = next(m for m in profile["modules"] if m["name"] == "conv1")
    assert f"{conv1['total_ms']:.3f}" in layers_table.split("<code>conv1</code>", 1)[1].split(
        "</tr>", 1)[0]


def test_failing_part_is_reported_and_the_rest_written(cli: Cli, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELVIZ_DOT", str(tmp_path / "no-such-dot"))
    folder = tmp_path / "report"
    result = cli("report", NET, "1x28x28", "-o", str(folder), "--no-onnx", "--layer", "conv1")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith(
        "error: 2 of 6 parts did not pass: graph (failed), onnx (failed).")
    # graph.html needs no dot program: the page lays the graph out itself
    assert sorted(p.name for p in folder.iterdir()) == [
        "activations", "graph.html", "index.html", "memory.json", "profile.json", "report.json",
        "summary.json", "summary.md"]
    report = json.loads((folder / "report.json").read_text())
    assert "no-such-dot" in report["parts"]["graph"]["error"]
    assert report["parts"]["onnx"]["error"] == "skipped (--no-onnx)."
    page = (folder / "index.html").read_text()
    assert "graph: failed" in page and "no-such-dot" in page and "conv1.png" not in page


def test_memory_and_profile_can_be_left_out(cli: Cli, tmp_path: Path) -> None:
    folder = tmp_path / "report"
    result = cli("report", NET, "1x28x28", "-o", str(folder), "--no-memory", "--no-profile",
                 "--layer", "conv1", "--static")
    assert result.exit_code == 0, result.stderr  # skipped on request: not a failure
    assert sorted(p.name for p in folder.iterdir()) == [
        "activations", "graph.html", "graph.svg", "index.html", "model.onnx", "report.json",
        "summary.json", "summary.md"]
    report = json.loads((folder / "report.json").read_text())
    assert report["ok"] is True
    assert report["parts"]["memory"] == {"status": "skipped", "error": None, "problem": None,
                                         "skipped": "skipped (--no-memory).", "files": []}
    assert report["parts"]["profile"]["skipped"] == "skipped (--no-profile)."
    page = (folder / "index.html").read_text()
    assert "memory: skipped" in page and "profile: skipped" in page
    assert "Training peak" not in page and "Slowest layers" not in page
    assert "Time (ms)" not in page and "memory.json" not in page
    assert "skipped (--no-memory)." in result.stdout


def test_a_failing_memory_plan_leaves_the_other_parts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import modelviz
    from modelviz.features.memory import plan

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("out of <memory>")

    monkeypatch.setattr(plan, "plan", broken)
    report = modelviz.write_report(NET, "1x28x28", output_dir=tmp_path / "r", onnx=False,
                                   layers=["conv1"])
    assert report.memory.status == "failed" and report.memory.plan is None
    assert report.memory.error == "RuntimeError: out of <memory>"
    assert report.profile.status == "ok" and (tmp_path / "r" / "profile.json").is_file()
    assert not (tmp_path / "r" / "memory.json").exists()
    page = (tmp_path / "r" / "index.html").read_text()
    assert "out of &lt;memory&gt;" in page and "<memory>" not in page


@pytest.mark.parametrize(("args", "message"), [
    (["resnt18"], "error: unknown model 'resnt18'"),
    ([NET, "3x28x28"], "error: forward pass failed in conv1 (Conv2d)"),
])
def test_mistakes_write_nothing(cli: Cli, tmp_path: Path, args: list[str], message: str) -> None:
    folder = tmp_path / "report"
    result = cli("report", *args, "-o", str(folder))
    assert result.exit_code == 2 and result.stderr.startswith(message)
    assert not folder.exists()


def test_output_that_is_a_file(cli: Cli, tmp_path: Path) -> None:
    target = tmp_path / "report"
    target.write_text("")
    result = cli("report", NET, "1x28x28", "-o", str(target))
    assert result.exit_code == 2 and "is a file, not a folder" in result.stderr


def test_meta_device_reports_shapes_only(cli: Cli, tmp_path: Path) -> None:
    folder = tmp_path / "llama"
    result = cli("report", "sample_models.llama:llama_tiny", "int64:16", "--device", "meta",
                 "--no-onnx", "-o", str(folder), "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["parts"]["summary"]["status"] == data["parts"]["graph"]["status"] == "ok"
    assert "meta device" in data["parts"]["activations"]["error"]
    # Memory is planned on meta without any memory; a profile has no kernels to time there.
    assert data["parts"]["memory"]["status"] == "ok"
    assert data["parts"]["memory"]["training_peak_bytes"] > 0
    assert json.loads((folder / "memory.json").read_text())["device"] == "meta"
    profile = data["parts"]["profile"]
    assert profile["status"] == "skipped" and profile["error"] is None
    assert "meta device" in profile["skipped"] and not (folder / "profile.json").exists()


def test_python_api(tmp_path: Path) -> None:
    import modelviz

    report = modelviz.write_report(NET, "1x28x28", output_dir=tmp_path / "r", onnx=False,
                                   layers=["conv1"])
    assert list(report.parts) == ["summary", "graph", "activations", "onnx", "memory",
                                  "profile"]
    assert report.summary.totals.params == 44_426 and report.graph.nodes == 14
    assert [f.name for f in report.parts["activations"].files] == ["conv1.png"]
    # The typed results point into the final folder, not where the report was built aside.
    assert report.activations.result is not None
    images = [layer.image for layer in report.activations.result.layers]
    assert images == [tmp_path / "r" / "activations" / "conv1.png"]
    assert images[0] is not None and images[0].is_file()
    assert not report.ok and report.onnx.error == "skipped (`onnx=False`)."  # Python terms
    assert report.onnx.result is None and report.parts["onnx"] is report.onnx


def test_parts_write_report_json_from_typed_results(tmp_path: Path) -> None:
    from modelviz.features.onnx.result import ExportResult, Parity
    from modelviz.features.report.parts import GraphPart, OnnxPart

    staging, final = tmp_path / "staging", tmp_path / "final"
    result = ExportResult(staging / "model.onnx", "dynamo", 18, [], [], {"Gemm": 1}, 1, 10,
                          data_files=[staging / "model.onnx.data"], dynamic_batch=True,
                          parity=[Parity("logits", 0.5, 0.1, False, 1),
                                  Parity("aux", 2e-5, 1e-5, True, 1)],
                          batch_parity=[Parity("logits", 0.9, 0.2, False, 2)])
    part = OnnxPart()
    part.record(result)
    assert part.status == "check failed"  # the worst at the export's batch is named
    assert part.problem == ("ONNX Runtime and torch disagree: logits differs by 0.5 "
                            "(`atol` 0.0001).")
    part.relocate(staging, final)
    assert result.path == final / "model.onnx"
    written = part.to_dict(final)
    assert written["files"] == ["model.onnx", "model.onnx.data"]
    assert written["path"] == "model.onnx" and written["data_files"] == ["model.onnx.data"]
    assert written["status"] == "check failed" and written["ok"] is False
    assert list(written)[:7] == ["status", "error", "problem", "skipped", "files", "path",
                                 "data_files"]

    assert GraphPart(nodes=3, warnings=["w"]).to_dict(final) == {
        "status": "ok", "error": None, "problem": None, "skipped": None, "files": [],
        "nodes": 3, "warnings": ["w"]}
    assert "nodes" not in GraphPart(error="no dot").to_dict(final)
    assert "warnings" not in GraphPart(nodes=3).to_dict(final)


def test_static_onnx(cli: Cli, tmp_path: Path) -> None:
    folder = tmp_path / "r"
    result = cli("report", NET, "1x28x28", "--static", "--layer", "conv1", "-o", str(folder),
                 "--json")
    assert result.exit_code == 0, result.stderr
    onnx_part = json.loads(result.stdout)["parts"]["onnx"]
    assert onnx_part["dynamic_batch"] is False
    assert onnx_part["inputs"][0]["shape"] == [1, 1, 28, 28]


def test_page_contents_and_the_embedded_viewer_in_a_browser(
        net_report: tuple[Path, dict[str, object]], tmp_path: Path) -> None:
    """A table of contents whose every link has its section, and, in a real Chromium, the
    embedded viewer drawn: a screenshot of the page shows its nodes in their colours (the
    static drawing is folded away, so they can only be the viewer's)."""
    from PIL import Image

    from modelviz.features.graph.dot import COLOURS
    from tests.browser import screenshot

    folder, _ = net_report
    page = (folder / "index.html").resolve()
    dom = dump_dom(page.as_uri())
    contents = re.search(r'<nav class="toc" id="contents">(.*?)</nav>', dom, re.S)
    assert contents is not None
    anchors = re.findall(r'<a href="#([\w-]+)">([^<]+)</a>', contents.group(1))
    assert [a for a, _ in anchors] == ["summary", "memory", "profile", "graph", "onnx",
                                       "activations", "layers"]
    for anchor, title in anchors:  # each section is there, headed and linkable
        assert re.search(f'<section id="{anchor}"><h2>{re.escape(title)}<a class="anchor" '
                         f'href="#{anchor}"', dom), anchor
    assert '<details class="static"><summary>Static drawing (14 nodes, graph.svg)' in dom

    def colour(hex_colour: str) -> tuple[int, int, int]:
        return (int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16))

    wanted = {colour(COLOURS["conv"]): "conv", colour(COLOURS["linear"]): "linear"}
    counts: dict[str, int] = {}
    for attempt in range(3):  # WebAssembly compiles in real time, which virtual time skips
        shot = screenshot(page.as_uri(), tmp_path / f"shot{attempt}.png", height=4_000,
                          budget_ms=15_000 * (attempt + 1))
        with Image.open(shot) as image:
            pixels = image.convert("RGB").getcolors(maxcolors=1 << 20) or []
        counts = {kind: 0 for kind in wanted.values()}
        for count, rgb in pixels:
            if rgb in wanted:
                counts[wanted[rgb]] += count
        if all(counts.values()):
            break
    # two convolutions and three linear layers, each box filled with its kind's colour
    assert counts["conv"] > 1_000 and counts["linear"] > 1_000, counts


def test_activation_pictures_are_of_modules_the_graph_draws(cli: Cli, tmp_path: Path) -> None:
    """Six identical blocks fold into one run, `1–6`, drawn as a frame around its first block's
    inside: the pictures picked without --layer are of what the graph draws (its nodes, then its
    frames), never of a block folded away (the structural spread alone would pick 2 and 5)."""
    from modelviz.features.activations.select import representative_modules

    model = tmp_path / "blocks.py"
    model.write_text(
        "from torch import nn\n\n"
        "def build():\n"
        "    return nn.Sequential(nn.Linear(8, 8), *[nn.Sequential(nn.Linear(8, 8), nn.ReLU())"
        " for _ in range(6)], nn.Linear(8, 2))\n", encoding="utf-8")
    folder = tmp_path / "report"
    result = cli("report", f"{model}:build", "8", "-o", str(folder), "--no-onnx",
                 "--no-memory", "--no-profile", "--json")
    data = json.loads(result.stdout)
    import importlib.util

    spec = importlib.util.spec_from_file_location("blocks", model)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert representative_modules(module.build()) == ["0", "2", "5", "7"]
    nodes = set(_svg_nodes(folder / "graph.svg"))
    assert {"0", "1.0", "1.1", "7"} <= nodes and not {"2", "2.0", "5", "5.0"} & nodes
    names = [layer["name"] for layer in data["parts"]["activations"]["layers"]]
    assert names == ["0", "1", "7"]
    assert sorted(p.name for p in (folder / "activations").iterdir()) == [
        "0.png", "1.png", "7.png"]
