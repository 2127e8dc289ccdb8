"""``modelviz graph``: real renders with Graphviz, read back and checked node by node."""

from __future__ import annotations

import re
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from modelviz import api
from modelviz.errors import MissingToolError, SpecError
from modelviz.features.graph.drawing import PNG_DPI, PNG_LIMIT, Drawing, png_size
from tests.helpers import Cli, Golden, RunModelviz, read_golden

SVG = "{http://www.w3.org/2000/svg}"
NET = ("sample_models.seeds:Net", "1x28x28")
MISSING_DOT = ("error: Graphviz's dot program is not on PATH; it is needed to write {fmt}. "
               "Install Graphviz (apt-get install graphviz, or brew install graphviz), or write "
               "-o model.dot, which needs no Graphviz.")


@dataclass
class Svg:
    nodes: dict[str, list[str]]  # node id -> its lines of text
    edges: list[tuple[str, str, str]]  # (source, target, label)
    clusters: dict[str, list[str]]
    width: float
    height: float

    def labels(self, node_id: str) -> list[str]:
        return self.nodes[node_id]

    def into(self, node_id: str) -> list[tuple[str, str]]:
        return [(src, label) for src, dst, label in self.edges if dst == node_id]

    def out_of(self, node_id: str) -> list[tuple[str, str]]:
        return [(dst, label) for src, dst, label in self.edges if src == node_id]


def parse_svg(data: bytes | str) -> Svg:
    root = ET.fromstring(data)
    nodes: dict[str, list[str]] = {}
    edges: list[tuple[str, str, str]] = []
    clusters: dict[str, list[str]] = {}
    for group in root.iter(f"{SVG}g"):
        kind = group.get("class")
        title = group.findtext(f"{SVG}title") or ""
        texts = [(t.text or "").strip() for t in group.iter(f"{SVG}text")]
        if kind == "node" and title != "legend":
            nodes[title] = texts
        elif kind == "edge":
            src, dst = title.split("->")
            edges.append((src, dst, " ".join(texts)))
        elif kind == "cluster":
            clusters[title] = texts
    width = float(root.get("width", "0pt").removesuffix("pt"))
    height = float(root.get("height", "0pt").removesuffix("pt"))
    return Svg(nodes, edges, clusters, width, height)


def draw_svg(cli: Cli, tmp_path: Path, *args: str) -> Svg:
    target = tmp_path / "graph.svg"
    result = cli("graph", *args, "-o", str(target))
    assert result.exit_code == 0, result.stderr
    return parse_svg(target.read_bytes())


# --- the module view, read back from real SVG -----------------------------------------------

def test_net_golden_dot_and_stdout(cli: Cli, golden: Golden) -> None:
    result = cli("graph", *NET)
    assert result.exit_code == 0, result.stderr
    golden("graph_net.gv", result.stdout)
    assert result.stderr == ""


def test_net_svg_nodes_edges_and_shapes(cli: Cli, tmp_path: Path) -> None:
    svg = draw_svg(cli, tmp_path, *NET)
    assert list(svg.nodes) == [
        "input:x", "conv1", "relu#0", "pool", "conv2", "relu#1", "pool@2", "view#0", "fc1",
        "relu#2", "fc2", "relu#3", "fc3", "output:"]
    assert svg.labels("conv1") == ["conv1", "Conv2d · 156 params", "[1, 6, 24, 24]"]
    assert svg.labels("pool@2") == ["pool", "MaxPool2d · call 2 of 2", "[1, 16, 4, 4]"]
    assert svg.labels("view#0") == ["view"]
    assert svg.labels("input:x") == ["x", "[1, 1, 28, 28]"]
    assert svg.labels("output:") == ["output", "[1, 10]"]
    assert len(svg.edges) == 13
    assert svg.into("view#0") == [("pool@2", "")]  # pool@2 shows its shape
    assert svg.out_of("view#0") == [("fc1", "[1, 256]")]
    assert svg.into("output:") == [("fc3", "")]
    assert svg.height > svg.width  # top to bottom


def test_two_inputs_meet_in_a_cat_node(cli: Cli, tmp_path: Path) -> None:
    svg = draw_svg(cli, tmp_path, "sample_models.multi_io:TwoInputNet", "3x32x32", "10")
    assert [n for n in svg.nodes if n.startswith("input:")] == ["input:image", "input:features"]
    assert svg.labels("input:features") == ["features", "[1, 10]"]
    assert sorted(svg.into("cat#0")) == [("image.3", ""), ("vector.1", "")]
    assert svg.out_of("cat#0") == [("head", "[1, 16]")]
    assert svg.into("image.0") == [("input:image", "")]
    assert {c[0] for c in svg.clusters.values()} == {"image · Sequential", "vector · Sequential"}


def test_dict_output_gets_one_node_per_key(cli: Cli, tmp_path: Path) -> None:
    svg = draw_svg(cli, tmp_path, "sample_models.multi_io:DictOutputNet", "16")
    outputs = {n: svg.labels(n) for n in svg.nodes if n.startswith("output:")}
    assert outputs == {"output:logits": ["logits", "[1, 3]"],
                       "output:embedding": ["embedding", "[1, 8]"]}
    assert svg.into("output:logits") == [("classifier", "")]
    assert svg.into("output:embedding") == [("encoder.2", "")]
    assert sorted(svg.out_of("encoder.2")) == [("classifier", ""), ("output:embedding", "")]


def test_resnet18_residual_adds_and_downsample_branches(cli: Cli, tmp_path: Path) -> None:
    svg = draw_svg(cli, tmp_path, "resnet18", "3x64x64", "--depth", "3", "--device", "cpu")
    adds = [n for n in svg.nodes if n.endswith(":add_#0")]
    assert len(adds) == 8  # one residual merge per BasicBlock
    for add in adds:
        block = add.split(":")[0]
        sources = sorted(src for src, _ in svg.into(add))
        assert len(sources) == 2, add
        assert f"{block}.bn2" in sources
    assert sorted(svg.into("layer2.0:add_#0")) == [
        ("layer2.0.bn2", ""), ("layer2.0.downsample", "")]
    assert ("maxpool", "") in svg.into("layer1.0:add_#0")  # the identity path
    assert svg.out_of("layer2.0:add_#0") == [("layer2.0.relu@2", "[1, 128, 8, 8]")]
    assert svg.labels("layer2.0.downsample") == [
        "layer2.0.downsample", "Sequential · 8.45K params", "[1, 128, 8, 8]"]
    assert "layer1.0 · BasicBlock" in [c[0] for c in svg.clusters.values()]


def test_resnet18_default_depth_shows_blocks_in_stage_frames(cli: Cli, tmp_path: Path) -> None:
    svg = draw_svg(cli, tmp_path, "resnet18", "3x64x64", "--device", "cpu")
    blocks = [n for n in svg.nodes if re.fullmatch(r"layer\d\.\d", n)]
    assert blocks == [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
    assert not any("add" in n for n in svg.nodes)  # inside the blocks, below the depth
    assert svg.into("flatten#0") == [("avgpool", "")]
    assert sorted(c[0] for c in svg.clusters.values()) == [
        f"layer{i} · Sequential" for i in range(1, 5)]
    assert len(svg.nodes) == 17 and len(svg.edges) == 16  # a chain: input to output


def test_expand_opens_one_module(cli: Cli, tmp_path: Path) -> None:
    svg = draw_svg(cli, tmp_path, "resnet18", "3x64x64", "--device", "cpu", "--depth", "1",
                   "-e", "layer2.1")
    assert "layer1" in svg.nodes and "layer3" in svg.nodes
    assert "layer2.0" in svg.nodes and "layer2.1.conv1" in svg.nodes
    assert "layer2.1:add_#0" in svg.nodes and "layer2.0.conv1" not in svg.nodes


def test_tiny_llama_folds_repeated_layers(cli: Cli, tmp_path: Path) -> None:
    spec = ("sample_models.llama:llama_tiny", "int64:16")
    svg = draw_svg(cli, tmp_path, *spec)
    assert list(svg.nodes) == ["input:tokens", "tok_embeddings", "layers.0", "norm", "output",
                               "output:"]
    assert svg.labels("layers.0") == ["layers.0–3", "DecoderLayer ×4 · 45.44K params each",
                                      "[1, 16, 64]"]
    assert svg.labels("input:tokens") == ["tokens", "[1, 16]", "int64"]
    assert svg.into("layers.0") == [("tok_embeddings", "")]
    assert svg.out_of("layers.0") == [("norm", "")]

    unfolded = draw_svg(cli, tmp_path, *spec, "--no-fold")
    assert [n for n in unfolded.nodes if n.startswith("layers.")] == [
        f"layers.{i}" for i in range(4)]
    assert unfolded.into("layers.2") == [("layers.1", "")]

    opened = draw_svg(cli, tmp_path, *spec, "--depth", "3")
    assert "layers.0–3 · DecoderLayer ×4" in [c[0] for c in opened.clusters.values()]
    assert not any(n.startswith(("layers.1", "layers.2", "layers.3")) for n in opened.nodes)
    assert sorted(src for src, _ in opened.into("layers.0:add#0")) == [
        "layers.0.attention", "tok_embeddings"]
    assert opened.out_of("layers.0:add#1") == [("norm", "[1, 16, 64]")]  # the run's exit

    member = draw_svg(cli, tmp_path, *spec, "--expand", "layers.2")  # any member opens the run
    assert member.clusters == opened.clusters and member.nodes == opened.nodes


def test_llama_7b_on_meta_folds_32_layers() -> None:
    drawing = api.graph("sample_models.llama:llama_7b", "int64:128", device="meta")
    assert drawing.graph is not None
    assert [n.id for n in drawing.graph.nodes] == [
        "input:tokens", "tok_embeddings", "layers.0", "norm", "output", "output:"]
    folded = drawing.graph.node("layers.0")
    assert folded.title == "layers.0–31"
    assert folded.lines == ["DecoderLayer ×32 · 202.38M params each", "[1, 128, 4096]"]
    assert folded.repeat == 32 and drawing.source.count("peripheries=2") == 1  # drawn stacked
    svg = parse_svg(drawing.pipe("svg"))
    assert svg.labels("layers.0")[1] == "DecoderLayer ×32 · 202.38M params each"
    assert svg.out_of("output") == [("output:", "")]


class KeywordBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, *, scale: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.inner(x) * scale
        return out


class KeywordNet(nn.Module):
    """Calls a block with keyword arguments, which the engine's pre-hook does not see."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(4, 4)
        self.gate = nn.Linear(4, 4)
        self.block = KeywordBlock()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.block(x=self.first(x), scale=torch.sigmoid(self.gate(x)))
        return out


def test_keyword_arguments_are_edges_too() -> None:
    drawing = api.graph(KeywordNet(), "4", depth=1)
    assert drawing.graph is not None
    into = sorted((e.src, e.label) for e in drawing.graph.edges if e.dst == "block")
    assert into == [("first", ""), ("sigmoid#0", "[1, 4]")]  # an op shows no shape


def test_rankdir_lr_and_legend(cli: Cli, tmp_path: Path) -> None:
    result = cli("graph", *NET, "--rankdir", "lr")
    assert result.exit_code == 0
    assert "rankdir=LR" in result.stdout
    svg = draw_svg(cli, tmp_path, *NET, "--rankdir", "LR")
    assert svg.width > svg.height


def test_legend_lists_the_kinds_drawn(tmp_path: Path) -> None:
    drawing = api.graph("resnet18", "3x64x64", device="cpu")
    root = ET.fromstring(drawing.pipe("svg"))
    legend = next(g for g in root.iter(f"{SVG}g") if g.findtext(f"{SVG}title") == "legend")
    assert [t.text for t in legend.iter(f"{SVG}text")] == [  # BasicBlocks are conv blocks
        "convolution", "linear", "normalization", "activation", "pooling", "functional op"]


def _fill(source: str, node_id: str) -> str:
    match = re.search(rf'^\s*"{re.escape(node_id)}" \[.*fillcolor="(#[0-9a-f]{{6}})"', source,
                      re.MULTILINE)
    assert match is not None, node_id
    return match.group(1)


def test_blocks_are_coloured_by_what_they_hold_and_dropout_by_its_own() -> None:
    from torchvision.ops import Conv2dNormActivation

    from modelviz.features.graph.dot import COLOURS
    from modelviz.features.graph.probe import layer_kind

    assert layer_kind(Conv2dNormActivation(3, 8)) == "conv"  # not "norm", from its name
    assert layer_kind(nn.Sequential(nn.Linear(2, 2), nn.GELU(), nn.Dropout())) == "linear"
    assert layer_kind(nn.Sequential(nn.Dropout())) == "dropout"
    drawing = api.graph("mobilenet_v3_small", "3x64x64", device="cpu")
    assert drawing.graph is not None
    assert drawing.graph.node("features.0").lines[0].startswith("Conv2dNormActivation")
    kinds = {n.id: n.layer for n in drawing.graph.nodes if n.kind == "module"}
    assert kinds["features.0"] == kinds["features.1"] == "conv"  # InvertedResidual too
    assert kinds["classifier.2"] == "dropout"
    assert _fill(drawing.source, "features.0") == COLOURS["conv"]
    assert _fill(drawing.source, "classifier.2") == COLOURS["dropout"] != COLOURS["other"]
    assert f'<TD BGCOLOR="{COLOURS["dropout"]}">dropout</TD>' in drawing.source


def test_each_shape_is_written_once() -> None:
    drawing = api.graph(*NET)
    assert drawing.graph is not None
    kinds = {n.id: n.kind for n in drawing.graph.nodes}
    for edge in drawing.graph.edges:  # a node shows its own shape; an op's edges show theirs
        assert (edge.label == "") == (kinds[edge.src] != "op"), edge
    source = drawing.source
    assert source.count("[1, 6, 24, 24]") == 2  # conv1's node, the edge out of relu#0
    assert '"conv1" -> "relu#0";' in source
    assert '"relu#0" -> "pool" [label=" [1, 6, 24, 24]"];' in source


def test_default_depth_reaches_vits_repeated_blocks() -> None:
    drawing = api.graph("vit_b_16", "3x224x224", device="meta")
    graph = drawing.graph
    assert graph is not None and graph.depth == 3
    block = graph.node("encoder.layers.encoder_layer_0")
    assert block.title == "encoder.layers.encoder_layer_0–11"
    assert block.repeat == 12 and block.layer == "attention"
    assert block.lines[0].startswith("EncoderBlock ×12")
    assert len(graph.nodes) == 12 and graph.notes == []
    shallow = api.graph("vit_b_16", "3x224x224", device="meta", depth=2)
    assert shallow.graph is not None and "encoder.layers" in {n.id for n in shallow.graph.nodes}


def test_busy_detector_is_closed_to_fit_and_joined_through_its_image_list() -> None:
    from modelviz.features.graph.build import MAX_NODES, build_graph
    from modelviz.features.graph.dot import to_dot
    from modelviz.features.graph.probe import DataflowProbe

    prepared = api.prepare("fasterrcnn_resnet50_fpn", "3x320x320", device="cpu")
    trace = api.run(prepared, probes=(DataflowProbe(prepared.inputs.args),))
    flow = trace.probes["dataflow"]
    everything = build_graph(trace, flow, depth=4)  # a depth given: nothing closed
    assert len(everything.nodes) > 2 * MAX_NODES and everything.closed == []
    assert sum(n.title == "getitem" for n in everything.nodes) > 40
    graph = build_graph(trace, flow)
    assert graph.depth == 4  # the Bottlenecks of backbone.body.layer1..4
    assert len(graph.nodes) < MAX_NODES and graph.closed == ["rpn", "roi_heads"]
    assert not any(n.title == "getitem" for n in graph.nodes)
    assert graph.node("roi_heads").lines[0].startswith("RoIHeads")
    note = (f"rpn, roi_heads are drawn closed, with the 269 functional operations inside, to "
            f"keep the graph readable: {len(graph.nodes)} nodes instead of "
            f"{len(everything.nodes)}. Open one with `expand=rpn`, or draw everything with "
            "`depth=4`.")
    assert graph.notes == [note]
    assert Drawing(to_dot(graph), graph=graph).render("dot").warnings == [note]
    # The batch reaches the backbone inside an ImageList: the graph is one piece.
    assert [(e.dst, e.label) for e in graph.edges if e.src == "transform"] == [
        ("backbone.body.conv1", "[1, 3, 800, 800]"), ("rpn", "[1, 3, 800, 800]")]
    expanded = build_graph(trace, flow, expand=("rpn",))
    assert "rpn" not in expanded.closed and "rpn.head" in {n.id for n in expanded.nodes}


class OpStorm(nn.Module):
    """300 operations in the root's own forward, where no module can be drawn closed."""

    def __init__(self) -> None:
        super().__init__()
        self.first, self.middle, self.last = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first(x)
        for _ in range(100):
            x = x * 2
        x = self.middle(x)
        for _ in range(100):
            x = (x + 1).relu()
        out: torch.Tensor = self.last(x)
        return out


def test_operations_in_the_roots_own_code_merge_into_runs_to_fit() -> None:
    from modelviz.features.graph.build import MAX_NODES

    graph = api.graph(OpStorm(), "8", device="meta").graph
    assert graph is not None and graph.closed == []
    assert [n.title for n in graph.nodes] == [
        "x", "first", "100 ops (mul ×100)", "middle", "200 ops (add ×100, relu ×100)", "last",
        "output"]
    ops = [n.id for n in graph.nodes if n.kind == "op"]
    assert [(e.src, e.dst) for e in graph.edges] == [
        ("input:x", "first"), ("first", ops[0]), (ops[0], "middle"), ("middle", ops[1]),
        (ops[1], "last"), ("last", "output:")]
    assert graph.notes == [
        "300 functional operations in the model's own forward are drawn as 2 nodes, each a run "
        "of consecutive operations, to keep the graph readable: 7 nodes instead of 305. Draw "
        "each operation with `depth=2`."]
    everything = api.graph(OpStorm(), "8", device="meta", depth=2).graph  # a depth given
    assert everything is not None and len(everything.nodes) == 305 > MAX_NODES
    assert everything.notes == []
    raft = api.graph("raft_small", device="meta").graph  # 696 nodes before, 192 s to draw
    assert raft is not None and len(raft.nodes) < MAX_NODES
    assert "in the model's own forward are drawn as" in raft.notes[-1]


# --- files: PNG, PDF, DOT -----------------------------------------------------------------

def test_png_signature_and_size(cli: Cli, tmp_path: Path) -> None:
    target = tmp_path / "net.png"
    result = cli("graph", *NET, "-o", str(target))
    assert result.exit_code == 0
    data = target.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = png_size(data)
    svg = draw_svg(cli, tmp_path, *NET)
    # PNG at 2x, 192 dpi (Graphviz's default is 96); SVG in points (72 a inch).
    assert PNG_DPI == 192
    assert abs(width - svg.width * 192 / 72) < 6 and abs(height - svg.height * 192 / 72) < 6
    assert height > 2 * width
    assert result.stderr.strip() == f"note: wrote {target} (14 nodes, {len(data):,} bytes)"


def test_pdf_and_format_option(cli: Cli, tmp_path: Path) -> None:
    target = tmp_path / "net.out"
    result = cli("graph", *NET, "--format", "pdf", "-o", str(target))
    assert result.exit_code == 0
    assert target.read_bytes().startswith(b"%PDF-")


def test_gv_extension_is_dot(cli: Cli, tmp_path: Path) -> None:
    target = tmp_path / "net.gv"
    assert cli("graph", *NET, "-o", str(target)).exit_code == 0
    assert target.read_text() == read_golden("graph_net.gv")


def long_chain() -> nn.Sequential:
    """450 layers in a row: taller than PNG allows, when not folded."""
    return nn.Sequential(*(nn.Linear(2, 2) for _ in range(450)))


def test_png_over_the_size_limit_warns(cli: Cli, tmp_path: Path) -> None:
    target = tmp_path / "chain.png"
    result = cli("graph", "tests.test_graph:long_chain", "2", "--no-fold", "-d", "1",
                 "-o", str(target))
    assert result.exit_code == 0, result.stderr
    width, height = png_size(target.read_bytes())
    assert height == PNG_LIMIT
    warning = result.stderr.strip().splitlines()[-1]
    assert re.fullmatch(
        r"note: the graph is [\d,]+ x [\d,]+ px, over the 32,767 px a side that PNG allows "
        rf"here, so Graphviz shrank it to {width} x 32,767 \(0\.\d\dx\) and small text may be "
        r"unreadable; write SVG \(-o model\.svg\) or draw fewer nodes \(a smaller --depth\)\.",
        warning), warning
    folded = cli("graph", "tests.test_graph:long_chain", "2", "-o", str(tmp_path / "f.png"))
    assert "shrank" not in folded.stderr  # folded, the chain is one node


# --- the autograd view --------------------------------------------------------------------

def _torchviz_nodes(output: torch.Tensor | tuple[torch.Tensor, ...], model: nn.Module) -> int:
    from torchviz import make_dot

    with warnings.catch_warnings():  # torchviz 0.0.3 compares versions with distutils
        warnings.simplefilter("ignore", DeprecationWarning)
        dot = make_dot(output, params=dict(model.named_parameters()))
    return sum(1 for line in dot.body if re.match(r"\s*\d+ \[", line))


def test_autograd_view_matches_torchviz(cli: Cli, tmp_path: Path) -> None:
    from sample_models.seeds import Net

    svg = draw_svg(cli, tmp_path, *NET, "--view", "autograd")
    model = Net()
    assert len(svg.nodes) == _torchviz_nodes(model(torch.randn(1, 1, 28, 28)), model)
    texts = [line for lines in svg.nodes.values() for line in lines]
    for name, param in model.named_parameters():
        shape = "(" + ", ".join(str(d) for d in param.shape) + ")"
        assert texts[texts.index(name) + 1] == shape
    assert texts.count("AddmmBackward0") == 3


def test_autograd_dict_output_and_saved_tensors(tmp_path: Path) -> None:
    from sample_models.multi_io import DictOutputNet

    model = DictOutputNet()
    out = model(torch.randn(1, 16))
    expected = _torchviz_nodes((out["logits"], out["embedding"]), model)
    drawing = api.graph(DictOutputNet(), "16", view="autograd")
    svg = parse_svg(drawing.pipe("svg"))
    assert len(svg.nodes) == expected
    saved = parse_svg(api.graph(DictOutputNet(), "16", view="autograd",
                                show_saved=True).pipe("svg"))
    assert len(saved.nodes) > expected
    assert any("mat2" in line for lines in saved.nodes.values() for line in lines)


def test_autograd_on_meta_names_the_copys_parameters() -> None:
    drawing = api.graph("sample_models.llama:llama_tiny", "int64:16", device="meta",
                        view="autograd")
    assert "layers.3.feed_forward.w2.weight" in drawing.source


# --- mistakes: exit status 2 and one exact line ---------------------------------------------

def test_missing_dot_is_a_clear_error(run_modelviz: RunModelviz,
                                      tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    result = run_modelviz("graph", *NET, "-o", str(tmp_path / "net.svg"),
                          env={"PATH": str(empty)})
    assert result.exit_code == 2
    assert result.stderr.strip() == MISSING_DOT.format(fmt="SVG")
    assert not (tmp_path / "net.svg").exists()
    dot_file = tmp_path / "net.dot"
    result = run_modelviz("graph", *NET, "-o", str(dot_file), env={"PATH": str(empty)})
    assert result.exit_code == 0, result.stderr
    assert dot_file.read_text() == read_golden("graph_net.gv")


def test_missing_dot_in_the_library(tmp_path: Path) -> None:
    drawing = Drawing("digraph { a -> b }", dot=tmp_path / "no" / "dot")
    with pytest.raises(MissingToolError) as info:
        drawing.save(tmp_path / "x.png")
    assert str(info.value) == (
        f"Graphviz's dot program was not found at {tmp_path / 'no' / 'dot'}; it is needed to "
        "write PNG. Install Graphviz (apt-get install graphviz, or brew install graphviz), or "
        "write `output=model.dot`, which needs no Graphviz.")  # the CLI shows -o model.dot
    assert not (tmp_path / "x.png").exists()
    assert drawing.save(tmp_path / "x.dot").data == b"digraph { a -> b }"


@pytest.mark.parametrize(("args", "message"), [
    (("-o", "net.jpg"), "error: cannot tell the format of net.jpg from its extension. Use .png, "
                        ".svg, .pdf, .dot or .gv, or pass --format."),
    (("--expand", "fc9"), "error: --expand 'fc9': the model has no module of that name. Close "
                          "names: fc3, fc2, fc1."),
    (("--expand", "fc1"), "error: --expand 'fc1': fc1 (Linear) has no submodules to open. "
                          "Expand a module that has submodules."),
    (("--expand", "nothing_like_it"), "error: --expand 'nothing_like_it': the model has no "
     "module of that name. Use a module name as modelviz summary shows it."),
    (("--show-saved",), "error: --show-saved applies to --view autograd, not to --view "
                        "modules. Drop --show-saved, or draw --view autograd."),
    (("--view", "autograd", "--depth", "3"), "error: --depth applies to --view modules, not "
     "to --view autograd. Drop --depth, or draw --view modules."),
])
def test_mistakes(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                  args: tuple[str, ...], message: str) -> None:
    result = cli("graph", *NET, *args)
    assert result.exit_code == 2
    assert result.stderr.strip() == message
    assert result.stdout == ""


def test_bad_rankdir(cli: Cli) -> None:
    result = cli("graph", *NET, "--rankdir", "XY")
    assert result.exit_code == 2
    assert "Invalid value for '--rankdir'" in result.stderr
    assert "'XY' is not one of 'tb', 'lr'." in result.stderr


def test_library_validates_its_arguments() -> None:
    with pytest.raises(SpecError, match="unknown rankdir 'up'"):
        api.graph("sample_models.seeds:tanh_mlp", "8", rankdir="up")
    with pytest.raises(SpecError, match="unknown graph view 'layers'"):
        api.graph("sample_models.seeds:tanh_mlp", "8", view="layers")


def test_probe_keeps_no_tensors_and_leaves_the_model_alone() -> None:
    from modelviz.features.graph.probe import DataflowProbe

    prepared = api.prepare("sample_models.seeds:Net", "1x28x28")
    before = {k: v.clone() for k, v in prepared.model.state_dict().items()}
    probe = DataflowProbe(prepared.inputs.args)
    trace = api.run(prepared, probes=(probe,))
    flow = trace.probes["dataflow"]
    assert probe._producers == {}  # weak references only, dropped at the end
    assert [e.name for e in flow.events if e.kind == "op"] == ["relu", "relu", "view", "relu",
                                                               "relu"]
    assert all(torch.equal(before[k], v) for k, v in prepared.model.state_dict().items())
    # torch leaves this private helper unannotated; it is the one that says which mode is on.
    mode = torch.overrides._get_current_function_mode()  # type: ignore[no-untyped-call]
    assert mode is None  # the mode was left


# --- long left-to-right graphs wrap into rows; layout time stays bounded ----------------------

class Chain(nn.Module):
    """Two stages of 24 layers in a row, each a different width: nothing folds."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(*[nn.Linear(8 + i, 9 + i) for i in range(24)])
        self.head = nn.Sequential(*[nn.Linear(32 + i, 33 + i) for i in range(24)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.stem(x))
        return out


def test_long_left_to_right_graph_wraps_into_rows(tmp_path: Path) -> None:
    from modelviz.features.graph.layout import WRAP_RANKS, ranks, rows

    drawing = api.graph(Chain(), "8", rankdir="LR", device="meta")
    graph = drawing.graph
    assert graph is not None and len(graph.nodes) == 50  # input, 48 layers, output
    assert max(ranks(graph).values()) + 1 == 50 > WRAP_RANKS
    row_of = rows(graph)
    # sqrt(50 ranks x 150 pt / (2 x (30 + 60) pt)) = 6.5: six rows of about 8 nodes
    assert sorted(set(row_of.values())) == list(range(6))
    assert all(5 <= list(row_of.values()).count(r) <= 11 for r in range(6))
    source = drawing.source
    assert source.count('subgraph "cluster~row') == 6
    assert "stem · Sequential (continued)" in source  # a frame goes on in the next row
    wrapped = parse_svg(drawing.pipe("svg"))
    flat = parse_svg(api.graph(Chain(), "8", rankdir="LR", device="meta", wrap=False).pipe("svg"))
    assert set(wrapped.nodes) == set(flat.nodes) and len(wrapped.edges) == len(flat.edges)
    # one line of 50 nodes, or six rows about twice as wide as tall
    assert wrapped.width < flat.width / 4 and wrapped.height > flat.height * 4
    assert 1.2 * wrapped.height < wrapped.width < 3 * wrapped.height
    # top to bottom is never wrapped
    assert "cluster~row" not in api.graph(Chain(), "8", device="meta").source


class Dense(nn.Module):
    """A DenseNet-style block: each layer reads every earlier layer's output, so the edges
    to its concatenation span more and more ranks."""

    def __init__(self, layers: int = 36) -> None:
        super().__init__()
        self.stem = nn.Linear(4, 4)
        self.block = nn.ModuleList(nn.Linear(4 * (i + 1), 4) for i in range(layers))
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [self.stem(x)]
        for layer in self.block:
            features.append(torch.relu(layer(torch.cat(features, 1))))
        out: torch.Tensor = self.head(features[-1])
        return out


class DenseNetLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.dense = Dense()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.dense(x)
        return out


def test_a_graph_too_costly_to_lay_out_has_its_costliest_module_closed() -> None:
    from modelviz.features.graph.build import build_graph
    from modelviz.features.graph.draw import graph_probe
    from modelviz.features.graph.layout import LAYOUT_BUDGET, cost

    prepared = api.prepare(DenseNetLike(), "4", device="meta")
    probe = graph_probe(prepared)
    trace = api.run(prepared, probes=(probe,))
    flow = trace.probes[probe.name]
    everything = build_graph(trace, flow, depth=5, budget=0)
    assert cost(everything) > 5 * LAYOUT_BUDGET  # 36 x 37 / 2 edges into the cats
    graph = build_graph(trace, flow, depth=5)
    assert graph.closed == ["dense"] and cost(graph) <= LAYOUT_BUDGET
    assert [n.id for n in graph.nodes] == ["input:x", "dense", "output:"]
    assert graph.notes == [
        "dense is drawn closed, with the 72 functional operations inside, so that Graphviz "
        f"lays the graph out in seconds: 3 nodes instead of {len(everything.nodes)}. Open one "
        "with `expand=dense`."]
    # what the user opens stays open, however long Graphviz takes
    opened = build_graph(trace, flow, depth=5, expand=("dense",))
    assert opened.closed == [] and "dense" not in {n.id for n in opened.nodes}
    assert {f"dense.block.{i}" for i in range(36)} <= {n.id for n in opened.nodes}


def test_layout_cost_counts_the_ranks_edges_cross() -> None:
    from modelviz.features.graph.build import Edge, ModuleGraph, Node
    from modelviz.features.graph.layout import cost, ranks

    nodes = [Node(name, "module", name) for name in "abcd"]
    edges = [Edge("a", "b", ""), Edge("b", "c", ""), Edge("c", "d", ""), Edge("a", "d", "")]
    graph = ModuleGraph("g", nodes, edges, [], 1)
    assert ranks(graph) == {"a": 0, "b": 1, "c": 2, "d": 3}
    assert cost(graph) == 4 + 2  # a -> d crosses the ranks of b and c
