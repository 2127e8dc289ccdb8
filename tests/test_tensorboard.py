"""``modelviz tensorboard``: the log is read back with TensorBoard's own event reader."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from modelviz import api
from modelviz.features.activations.select import representative_modules
from sample_models.seeds import Net
from tests.helpers import Cli

NET = "sample_models.seeds:Net"


def _events(folder: Path) -> EventAccumulator:
    events = EventAccumulator(str(folder), size_guidance={"histograms": 0, "images": 0,
                                                          "scalars": 0, "tensors": 0})
    events.Reload()
    return events


def _text(events: EventAccumulator, tag: str) -> str:
    (event,) = events.Tensors(tag)
    value: Any = event.tensor_proto.string_val[0]
    return str(value.decode())


def test_log_holds_graph_histograms_images_scalars_and_text(tmp_path: Path) -> None:
    logdir = tmp_path / "runs" / "net"
    written = api.tensorboard(NET, "1x28x28", logdir=logdir, layers=["conv1", "fc3"])
    events = _events(logdir)
    tags = events.Tags()

    # Graphs tab: the traced model, with the modules' scopes in the node names.
    graph = events.Graph()
    names = [node.name for node in graph.node]
    assert written.graph_nodes == len(names) > 10
    assert any("Conv2d[conv1]" in n for n in names) and any("Linear[fc3]" in n for n in names)

    # One histogram per parameter tensor, with every value counted.
    params = dict(Net().named_parameters())
    assert sorted(tags["histograms"]) == sorted(f"parameters/{n}" for n in params)
    (conv1,) = events.Histograms("parameters/conv1.weight")
    assert conv1.histogram_value.num == params["conv1.weight"].numel() == 150

    # The activation images are the activations command's figures, as PNGs.
    assert sorted(tags["images"]) == ["activations/conv1", "activations/fc3"]
    (image,) = events.Images("activations/conv1")
    picture = Image.open(io.BytesIO(image.encoded_image_string))
    assert picture.size == (image.width, image.height) and picture.width > 300
    colours = np.unique(np.asarray(picture.convert("RGB")).reshape(-1, 3), axis=0)
    assert len(colours) > 50  # a grid of maps, not a blank

    # Scalars and text are the summary's.
    summary = api.summary(NET, "1x28x28")
    assert events.Scalars("summary/params")[0].value == summary.totals.params == 44_426
    assert events.Scalars("summary/flops")[0].value == summary.totals.flops
    text = _text(events, "summary/text_summary")
    assert "conv1" in text and "44,426" in text
    assert [f.parent for f in written.files] == [logdir]
    assert [p.name for p in logdir.parent.iterdir()] == ["net"]  # no staging folder left


def test_default_layers_and_a_transformer_graph(tmp_path: Path) -> None:
    spec = "sample_models.transformer:TinyTransformer"
    written = api.tensorboard(spec, "int64:16", logdir=tmp_path, histograms=False)
    from sample_models.transformer import TinyTransformer

    # TorchScript's trace self-check fails on this model; the graph is written regardless.
    assert written.skipped == {} and written.graph_nodes > 100
    expected = representative_modules(TinyTransformer())
    assert len(written.images) == len(expected)
    assert all(image.startswith(name) for image, name in zip(written.images, expected, strict=True))
    assert not _events(tmp_path).Tags()["histograms"]


def test_representative_modules_spread_from_input_to_output() -> None:
    import torchvision

    assert representative_modules(torchvision.models.resnet18()) == [
        "conv1", "layer2", "layer3", "fc"]
    assert representative_modules(torchvision.models.vgg11()) == [
        "features.0", "features.8", "features.18", "classifier.6"]
    assert representative_modules(Net()) == ["conv1", "conv2", "fc2", "fc3"]


def test_cli_json_and_table(cli: Cli, tmp_path: Path) -> None:
    logdir = tmp_path / "run"
    result = cli("tensorboard", NET, "1x28x28", "--logdir", str(logdir), "--layer", "conv*",
                 "--no-graph", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["images"] == ["conv1", "conv2"] and data["graph_nodes"] == 0
    assert data["histograms"] == 10 and data["text"] is True
    assert "graph" not in _events(logdir).Tags() or not _events(logdir).Tags()["graph"]

    result = cli("tensorboard", NET, "1x28x28", "--logdir", str(tmp_path / "table"))
    assert result.exit_code == 0
    assert "Graphs" in result.stdout and "activations/conv1" in result.stdout
    assert f"tensorboard --logdir {tmp_path}" in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--device", "meta"], "error: a TensorBoard log needs real weights"),
    (["--layer", "conv9"], "error: --layer 'conv9' matches no module"),
])
def test_mistakes_write_nothing(cli: Cli, tmp_path: Path, args: list[str], message: str) -> None:
    logdir = tmp_path / "run"
    result = cli("tensorboard", NET, "1x28x28", "--logdir", str(logdir), *args)
    assert result.exit_code == 2 and result.stderr.startswith(message)
    assert list(tmp_path.iterdir()) == []


def test_logdir_that_is_a_file(cli: Cli, tmp_path: Path) -> None:
    target = tmp_path / "run"
    target.write_text("not a folder")
    result = cli("tensorboard", NET, "1x28x28", "--logdir", str(target))
    assert result.exit_code == 2
    assert "is a file, not a folder" in result.stderr


def test_images_are_cards_sized_for_the_images_tab(tmp_path: Path) -> None:
    """TensorBoard fits an image into its card's ~300x230 px box: the picture is twice that, so
    its smallest text is still 9 px there, whatever the layer draws (grid, bars, heat map)."""
    from matplotlib.text import Text

    from modelviz.features.activations.cards import (
        CARD_PIXELS,
        DPI,
        MIN_POINTS,
        card_figure,
        shown_scale,
    )
    from modelviz.features.activations.measure import measure_activations

    logdir = tmp_path / "run"
    api.tensorboard(NET, "1x28x28", logdir=logdir, layers=["conv2", "fc3"], graph=False,
                    histograms=False)
    events = _events(logdir)
    for tag in ("activations/conv2", "activations/fc3"):
        (image,) = events.Images(tag)
        picture = Image.open(io.BytesIO(image.encoded_image_string))
        assert picture.size == (image.width, image.height) == CARD_PIXELS
        assert shown_scale(*picture.size) * MIN_POINTS * DPI / 72 >= 9  # px in the tab

    # every text on a card, of every kind of picture, is at least MIN_POINTS
    layers = [layer for model, sizes, names in (
        (NET, "1x28x28", ["conv2", "fc3"]),
        ("sample_models.lstm_lm:LSTMLanguageModel", "int64:12", ["rnn"]))
        for layer in measure_activations(api.prepare(model, sizes), layers=names,
                                         images=True).layers]
    kinds = set()
    for layer in layers:
        assert layer.capture is not None
        kinds.add(layer.capture.kind)
        figure = card_figure(layer)
        figure.canvas.draw()  # makes the tick labels
        texts = [t for t in figure.findobj(Text) if t.get_text().strip() and t.get_visible()]
        assert len(texts) > 5
        assert min(float(t.get_fontsize()) for t in texts) >= MIN_POINTS, layer.name
    assert kinds == {"grid", "bars", "heatmap"}
