"""``modelviz activations``: statistics against torch by hand, PNGs checked pixel by pixel."""

from __future__ import annotations

import gc
import json
import math
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from modelviz import api
from modelviz.core.image_input import open_image, preprocess
from modelviz.core.session import prepare_image
from modelviz.features.activations.measure import measure_activations
from modelviz.features.activations.pictures import (
    COLOUR_BAR,
    DIVERGING_CMAP,
    DPI,
    GRID_CMAP,
    HEADER,
    HIST,
    Layout,
    grid_shape,
    layer_pixels,
    layout,
    limits,
    render_layer,
)
from modelviz.features.activations.stats import (
    ActivationProbe,
    ActivationReport,
    LayerStats,
    tensor_stats,
)
from tests.helpers import ROOT, Cli

NET = ("sample_models.seeds:Net", "1x28x28")
LAYER_KEYS = {"name", "type", "shape", "mean", "std", "min", "max", "zero_fraction",
              "nan_count", "inf_count", "image"}


# --- helpers ---------------------------------------------------------------------------------


def _runs(mask: np.ndarray, shortest: int = 8) -> list[tuple[int, int]]:
    """Start and end of each run of True at least ``shortest`` long."""
    runs, start = [], None
    for i, value in enumerate([*mask.tolist(), False]):
        if value and start is None:
            start = i
        elif not value and start is not None:
            if i - start >= shortest:
                runs.append((start, i))
            start = None
    return runs


def tiles_per_row(png: Path, *, left: int = 0) -> list[int]:
    """Count coloured rectangles below the title: text is black or grey, maps are coloured."""
    pixels = np.asarray(Image.open(png).convert("RGB")).astype(int)
    pixels = pixels[round(HEADER * DPI):, left:]
    colourful = (pixels.max(axis=-1) - pixels.min(axis=-1)) > 40
    return [len(_runs(colourful[top:bottom].any(axis=0)))
            for top, bottom in _runs(colourful.any(axis=1))]


def saved_input(tmp_path: Path, value: torch.Tensor) -> Path:
    path = tmp_path / "x.pt"
    torch.save(value, path)
    return path


def by_name(report: ActivationReport) -> dict[str, LayerStats]:
    return {layer.name: layer for layer in report.layers}


# --- numbers ---------------------------------------------------------------------------------


def test_statistics_match_torch_by_hand(tmp_path: Path) -> None:
    conv = nn.Conv2d(1, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))  # x and -x
    model = nn.Sequential(conv, nn.ReLU())
    x = (torch.arange(64.0) % 7).view(1, 1, 8, 8)  # 10 of 64 values are 0
    report = api.activations(model, input_file=saved_input(tmp_path, x), layers="*")
    layers = by_name(report)
    assert list(layers) == ["0", "1"]
    conv_out = torch.cat([x, -x], dim=1).double()
    relu_out = conv_out.clamp(min=0)
    for name, expected, zeros in (("0", conv_out, 20 / 128), ("1", relu_out, 74 / 128)):
        stats = layers[name].stats
        assert layers[name].shape == (1, 2, 8, 8)
        assert stats.zero_fraction == zeros == (expected == 0).double().mean().item()
        assert stats.mean == pytest.approx(expected.mean().item(), rel=1e-6)
        assert stats.std == pytest.approx(expected.std(correction=0).item(), rel=1e-6)
        assert (stats.min, stats.max) == (expected.min().item(), expected.max().item())
        assert stats.nan_count == stats.inf_count == 0
    assert layers["1"].stats.mean == pytest.approx(x.sum().item() / 128)
    assert layers["0"].type == "Conv2d" and layers["1"].type == "ReLU"


def test_nan_and_inf_are_counted_and_left_out_of_the_moments(tmp_path: Path) -> None:
    x = torch.tensor([[1.0, 2.0, math.nan, math.inf, -math.inf, 0.0, 3.0]])
    report = api.activations(nn.Sequential(nn.Identity()), input_file=saved_input(tmp_path, x))
    stats = report.layers[0].stats
    finite = torch.tensor([1.0, 2.0, 0.0, 3.0], dtype=torch.float64)
    assert (stats.nan_count, stats.inf_count) == (1, 2)
    assert stats.zero_fraction == 1 / 7
    assert stats.mean == pytest.approx(finite.mean().item())
    assert stats.std == pytest.approx(finite.std(correction=0).item())
    assert (stats.min, stats.max) == (0.0, 3.0)
    assert report.layers[0].nonfinite and report.nonfinite == report.layers


def test_tensor_stats_other_dtypes() -> None:
    values = torch.tensor([0.5, -1.25, 0.0, 2.0])
    half = tensor_stats(values.half())
    assert half == tensor_stats(values)
    ints = tensor_stats(torch.tensor([0, 0, 3, 2**40], dtype=torch.int64))
    assert ints.max == 2**40 and ints.zero_fraction == 0.5
    assert tensor_stats(torch.tensor([True, False, False, False])).mean == 0.25
    assert tensor_stats(torch.empty(0, 3)).mean is None
    all_nan = tensor_stats(torch.full((3,), math.nan))
    assert all_nan.mean is None and all_nan.nan_count == 3 and all_nan.zero_fraction == 0


def test_dead_layer_is_flagged() -> None:
    linear = nn.Linear(4, 8)
    model = nn.Sequential(linear, nn.ReLU())
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.fill_(-1.0)  # every unit below zero: ReLU never fires
    report = api.activations(model, "4", layers=["1"])
    assert report.layers[0].stats.zero_fraction == 1.0 and report.dead == report.layers


# --- memory ----------------------------------------------------------------------------------


class Recorder(nn.Module):
    """Returns a big tensor and remembers it only weakly."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 32, 3, padding=1)
        self.refs: list[weakref.ref[torch.Tensor]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.conv(x)
        self.refs.append(weakref.ref(out))
        return out.relu()


@pytest.mark.parametrize("images", [False, True])
def test_the_probe_keeps_no_output_alive(images: bool) -> None:
    recorder = Recorder()
    model = nn.Sequential(recorder, nn.Conv2d(32, 8, 1))
    prepared = api.prepare(model, "3x40x40", batch_size=4)
    report = measure_activations(prepared, layers=["*"], images=images, max_channels=5)
    gc.collect()
    refs = recorder.refs
    assert len(refs) == 1 and refs[0]() is None
    for layer in report.layers:
        if images:
            assert layer.capture is not None
            kept = layer.capture.values
            # at most 5 channels of sample 0, never the batch of 4
            assert kept.untyped_storage().nbytes() == min(5, layer.shape[1]) * 40 * 40 * 4
        else:
            assert layer.capture is None


def test_captured_channels_are_the_strongest_first(tmp_path: Path) -> None:
    from sample_models.seeds import Net

    torch.manual_seed(0)
    model = Net()
    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    report = api.activations(model, input_file=saved_input(tmp_path, x), layers="conv1",
                             max_channels=4, output_dir=tmp_path / "acts")
    with torch.no_grad():
        expected = model.conv1(x)
    layer = report.layers[0]
    assert layer.capture is not None
    order = expected[0].mean(dim=(1, 2)).argsort(descending=True)[:4]
    assert layer.capture.channels == order.tolist()
    torch.testing.assert_close(layer.capture.values, expected[0, order])
    assert layer.stats.mean == pytest.approx(expected.double().mean().item(), rel=1e-6)


# --- pictures --------------------------------------------------------------------------------


def test_net_conv1_grid_has_one_tile_per_channel(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "acts"
    result = cli("activations", *NET, "--layer", "conv1", "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert [p.name for p in out.iterdir()] == ["conv1.png"]  # only the layer asked for
    png = out / "conv1.png"
    assert grid_shape(6) == (2, 3)
    assert tiles_per_row(png) == [3, 3]
    assert f"wrote 1 image(s) to {out}/" in result.stderr
    row = next(line for line in result.stdout.splitlines() if "conv1 (Conv2d)" in line)
    assert "[1, 6, 24, 24]" in row and row.rstrip("│ ").endswith("✓")
    assert "".join(result.stdout.split()).endswith(f"·1image(s):{out}/<layer>.png")


def test_resnet18_layer1_grid_respects_max_channels(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "acts"
    result = cli("activations", "resnet18", "--layer", "layer1", "--max-channels", "10", "-o",
                 str(out), "--json")
    assert result.exit_code == 0, result.stderr
    layer = json.loads(result.stdout)["layers"][0]
    assert layer["shape"] == [1, 64, 56, 56] and layer["image"] == str(out / "layer1.png")
    rows, columns = grid_shape(10)
    assert (rows, columns) == (3, 4)
    assert tiles_per_row(out / "layer1.png") == [4, 4, 2]
    with Image.open(out / "layer1.png") as image:
        # 4 columns of 2-inch maps in 2.15-inch cells plus 0.3-inch margins; 3 rows of 2.5-inch
        # cells under a 1.1-inch title, at 100 dpi
        assert image.size == (920, 890)


def test_png_size_follows_the_documented_layout(tmp_path: Path) -> None:
    report = api.activations(*NET, layers=["conv1", "fc1"], hist=True, output_dir=tmp_path)
    for layer in report.layers:
        assert layer.image is not None and layer.capture is not None
        with Image.open(layer.image) as image:
            assert image.size == layout(layer.capture, hist=True).pixels
    capture = report.layers[0].capture
    assert capture is not None
    assert layout(capture, hist=True).height == layout(capture, hist=False).height + HIST


def test_rendering_is_deterministic(tmp_path: Path) -> None:
    report = api.activations(*NET, layers="conv1", output_dir=tmp_path / "a")
    first = (tmp_path / "a" / "conv1.png").read_bytes()
    figure = render_layer(report.layers[0])
    figure.savefig(tmp_path / "b.png", format="png", dpi=DPI, metadata={"Software": None})
    assert (tmp_path / "b.png").read_bytes() == first


def test_transformer_encoder_output_is_a_heat_map(tmp_path: Path) -> None:
    report = api.activations("sample_models.transformer:TinyTransformer", "int64:64",
                             layers=["encoder"], output_dir=tmp_path)
    layer = report.layers[0]
    assert layer.shape == (1, 64, 64) and layer.capture is not None
    assert layer.capture.kind == "heatmap" and tuple(layer.capture.values.shape) == (64, 64)
    assert layer.image == tmp_path / "encoder.png"
    pixels = np.asarray(Image.open(layer.image).convert("RGB")).astype(int)
    assert pixels.shape[1::-1] == layout(layer.capture).pixels
    body = pixels[round(HEADER * DPI):]
    reddish = (body[..., 0] - body[..., 2]) > 60
    bluish = (body[..., 2] - body[..., 0]) > 60
    assert reddish.sum() > 1000 and bluish.sum() > 1000  # both signs, on a diverging map
    assert len(np.unique(body.reshape(-1, 3), axis=0)) > 200


def test_lstm_tuple_outputs_are_named_per_element(cli: Cli) -> None:
    result = cli("activations", "sample_models.lstm_lm:LSTMLanguageModel", "int64:35",
                 "--layer", "rnn", "--layer", "drop", "--json", "--no-images")
    assert result.exit_code == 0, result.stderr
    layers = json.loads(result.stdout)["layers"]
    assert [(x["name"], x["shape"]) for x in layers] == [
        ("drop#1", [1, 35, 64]), ("rnn.0", [1, 35, 64]), ("rnn.1.0", [2, 1, 64]),
        ("rnn.1.1", [2, 1, 64]), ("drop#2", [1, 35, 64])]
    named = {x["name"]: x for x in layers}
    assert named["drop#2"]["mean"] == named["rnn.0"]["mean"]  # eval-mode dropout: identity
    assert all(x["image"] is None for x in layers)


def test_layers_without_o_are_drawn_into_activations(cli: Cli, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli("activations", f"{ROOT / 'sample_models' / 'seeds.py'}:Net", "1x28x28",
                 "--layer", "fc3", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["layers"][0]["image"] == "activations/fc3.png"
    assert [p.name for p in (tmp_path / "activations").iterdir()] == ["fc3.png"]


def test_lstm_tuple_elements_get_their_own_pictures(tmp_path: Path) -> None:
    report = api.activations("sample_models.lstm_lm:LSTMLanguageModel", "int64:35",
                             layers="rnn", output_dir=tmp_path)
    kinds = {layer.name: layer.capture.kind for layer in report.layers if layer.capture}
    assert kinds == {"rnn.0": "heatmap", "rnn.1.0": "heatmap", "rnn.1.1": "heatmap"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rnn.0.png", "rnn.1.0.png",
                                                          "rnn.1.1.png"]


def test_lstm_state_rows_are_its_layers(tmp_path: Path) -> None:
    # h_n and c_n are [layers, batch, hidden]: both layers drawn, labelled as layers
    report = api.activations("sample_models.lstm_lm:LSTMLanguageModel", "int64:35",
                             layers="rnn", output_dir=tmp_path)
    for name in ("rnn.1.0", "rnn.1.1"):
        layer = by_name(report)[name]
        assert layer.shape == (2, 1, 64) and layer.capture is not None
        assert layer.capture.row_names == ["layer 0", "layer 1"]
        assert tuple(layer.capture.values.shape) == (2, 64)  # every layer, batch sample 0
        assert layer.capture.values.double().mean().item() == pytest.approx(
            layer.stats.mean, rel=1e-5)
        figure = render_layer(layer)
        ticks = [t.get_text() for t in figure.axes[0].get_yticklabels()]
        assert ticks == ["layer 0", "layer 1"]
        assert figure.axes[0].get_ylabel() == "layer"
        assert "2 layers x 64 units" in " ".join(t.get_text() for t in figure.texts)


def test_bidirectional_gru_state_names_layers_and_directions(tmp_path: Path) -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gru = nn.GRU(4, 3, num_layers=2, bidirectional=True, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.gru(x)[1]
            return out

    torch.manual_seed(0)
    model = Net()
    x = torch.randn(2, 5, 4, generator=torch.Generator().manual_seed(3))
    report = api.activations(model, input_file=saved_input(tmp_path, x), layers="gru",
                             output_dir=tmp_path / "acts")
    state = by_name(report)["gru.1"]
    assert state.capture is not None and state.shape == (4, 2, 3)
    assert state.capture.row_names == ["layer 0 forward", "layer 0 backward",
                                       "layer 1 forward", "layer 1 backward"]
    with torch.no_grad():
        expected = model.gru(x)[1]
    torch.testing.assert_close(state.capture.values, expected[:, 0])


class Inner(nn.Module):
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": x * 2, "embedding": x.relu()}


class Outer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.out = Inner()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.out(x)["logits"]
        return logits


def test_dict_outputs_are_named_by_key(tmp_path: Path) -> None:
    x = torch.tensor([[-1.0, 0.0, 2.0, 3.0]])
    report = api.activations(Outer(), input_file=saved_input(tmp_path, x))
    layers = by_name(report)
    assert list(layers) == ["out.logits", "out.embedding"]
    assert layers["out.logits"].stats.mean == 2.0
    assert layers["out.embedding"].stats.zero_fraction == 0.5


# --- real images -----------------------------------------------------------------------------


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    """A 60x40 RGB picture: a red left half and a dark-blue disc on grey."""
    y, x = np.mgrid[0:40, 0:60]
    pixels = np.full((40, 60, 3), 128, dtype=np.uint8)
    pixels[:, :30] = (255, 0, 0)
    pixels[(x - 40) ** 2 + (y - 20) ** 2 < 100] = (0, 0, 90)
    path = tmp_path / "photo.png"
    Image.fromarray(pixels).save(path)
    return path


def test_preprocessing_greyscale_by_hand(photo: Path) -> None:
    made = preprocess(open_image(photo), photo, channels=1, resize=(40, 60), mean=(0.5,),
                      std=(0.25,))
    assert made.shape == (1, 40, 60)
    red = round(0.299 * 255)  # PIL's ITU-R 601-2 luma of pure red: 76
    assert made.tensor[0, 0, 0].item() == pytest.approx((red / 255 - 0.5) / 0.25)
    assert made.display[0, 0, 0].item() == pytest.approx(red / 255)
    square = preprocess(open_image(photo), photo, channels=3, resize=20)
    assert square.shape == (3, 20, 20)  # shorter side to 20, then the centre 20x20


def test_torchvision_image_uses_the_weights_transforms(photo: Path) -> None:
    from modelviz.core import zoo

    prepared, made = prepare_image("resnet18", photo)
    expected = zoo.preprocessing("resnet18")(Image.open(photo).convert("RGB"))
    torch.testing.assert_close(prepared.inputs.args[0], expected.unsqueeze(0))
    assert made.shape == (3, 224, 224) and "weights' transforms" in made.how
    assert made.display.min() >= 0 and made.display.max() <= 1


def test_greyscale_model_on_a_colour_image(cli: Cli, photo: Path, tmp_path: Path) -> None:
    out = tmp_path / "acts"
    result = cli("activations", "sample_models.seeds:Net", "--image", str(photo), "--resize",
                 "28", "--layer", "conv1", "-o", str(out), "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["inputs"] == [{"name": "x", "shape": [1, 1, 28, 28], "dtype": "float32"}]
    assert "greyscale, shorter side to 28 and the centre 28x28" in result.stderr
    # the input image is drawn left of the six maps; the maps' grid is unchanged
    left = round((0.3 + 2.6 + 0.1) * DPI)  # the maps start at 3.3 inches
    assert tiles_per_row(out / "conv1.png", left=left) == [3, 3]
    picture = np.asarray(Image.open(out / "conv1.png").convert("RGB"))[
        round(HEADER * DPI) + 60:round(HEADER * DPI) + 200, 40:250]
    assert (picture.max(axis=-1) - picture.min(axis=-1)).max() < 5  # greyscale input panel
    assert picture.min() < 60 and picture.max() > 100  # dark disc on lighter grey


def test_sizes_set_channels_and_size_of_the_image(photo: Path) -> None:
    prepared, made = prepare_image("sample_models.seeds:SmallConvNet", photo, "3x64x48",
                                       batch_size=2)
    assert prepared.inputs.args[0].shape == (2, 3, 64, 48) and made.shape == (3, 64, 48)


# --- the command -----------------------------------------------------------------------------


def test_json_schema_and_every_module_by_default(cli: Cli) -> None:
    result = cli("activations", *NET, "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) >= {"layers"}
    names = [layer["name"] for layer in data["layers"]]
    assert names == ["conv1", "pool#1", "conv2", "pool#2", "fc1", "fc2", "fc3"]
    for layer in data["layers"]:
        assert set(layer) == LAYER_KEYS and layer["image"] is None
        assert isinstance(layer["mean"], float) and isinstance(layer["nan_count"], int)
    assert "choose layers with --layer or --type" in result.stderr


def test_type_and_glob_selection(cli: Cli) -> None:
    result = cli("activations", "resnet18", "--type", "conv2d", "--layer", "layer4.*.relu",
                 "--no-images", "--json")
    assert result.exit_code == 0, result.stderr
    names = [layer["name"] for layer in json.loads(result.stdout)["layers"]]
    assert sum(1 for n in names if "relu" in n) == 4  # two blocks, relu called twice in each
    assert "layer4.0.relu#1" in names and "layer4.1.relu#2" in names
    assert sum(1 for n in names if "conv" in n or "downsample.0" in n) == 20


def test_table_summary_line_names_dead_layers(cli: Cli, tmp_path: Path) -> None:
    model = tmp_path / "dead.py"
    model.write_text(
        "import torch\nfrom torch import nn\n\n\ndef build():\n"
        "    m = nn.Sequential(nn.Linear(4, 8), nn.ReLU())\n"
        "    nn.init.zeros_(m[0].weight)\n    nn.init.constant_(m[0].bias, -1.0)\n"
        "    return m\n")
    result = cli("activations", f"{model}:build", "4", "--no-images")
    assert result.exit_code == 0, result.stderr
    assert "│ 1 (ReLU)" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == (
        "2 output(s) of 2 module(s) · 1 dead (≥99% zeros): 1 · 0 with NaN or Inf")


def test_help_lists_the_image_options(cli: Cli) -> None:
    result = cli("activations", "--help")
    assert result.exit_code == 0
    for option in ("--layer", "--type", "--max-channels", "--no-images", "--hist", "--json",
                   "--image", "--resize", "--mean", "--std", "--weights", "--seed"):
        assert option in result.stdout


def _mistakes(tmp_path: Path, photo: Path) -> list[tuple[list[str], str]]:
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    return [
        ([*NET, "--layer", "conv3"], "error: --layer 'conv3' matches no module of "
         "sample_models.seeds:Net. Did you mean conv2, conv1? Give qualified names "
         "(layer1.0.conv1) or globs ('layer4.*'); `modelviz summary MODEL --depth 9` lists "
         "them all."),
        ([*NET, "--layer", "layer4.*"], "error: --layer 'layer4.*' matches no module of "
         "sample_models.seeds:Net. Its top-level modules: conv1, pool, conv2, fc1, fc2, fc3. "
         "Give qualified names (layer1.0.conv1) or globs ('layer4.*'); `modelviz summary MODEL "
         "--depth 9` lists them all."),
        ([*NET, "--type", "Conv3d"], "error: --type 'Conv3d' matches no module of "
         "sample_models.seeds:Net. Its module types: Conv2d, Linear, MaxPool2d."),
        (["sample_models.seeds:Net", "--image", str(tmp_path / "missing.jpg")],
         f"error: --image {tmp_path / 'missing.jpg'}: no such file. Check the path to the "
         "image."),
        (["sample_models.seeds:Net", "--image", str(text)],
         f"error: --image {text} is not an image PIL can read: cannot identify image file "
         f"'{text}'. Give a PNG, JPEG, BMP, GIF, TIFF or WebP file."),
        (["sample_models.seeds:Net", "--image", str(photo), "--mean", "0.5;0.4"],
         "error: bad --mean '0.5;0.4'. Write comma-separated numbers, one per channel or one "
         "for all, e.g. 0.485,0.456,0.406."),
        (["sample_models.seeds:Net", "--image", str(photo), "--std", "0.2,0"],
         "error: bad --std '0.2,0': every value must be above 0. Write positive numbers, e.g. "
         "0.229,0.224,0.225."),
        (["sample_models.seeds:Net", "--image", str(photo), "--resize", "28",
          "--mean", "0.5,0.5,0.5"],
         "error: --mean has 3 values, but the model's input has 1 channel. Give one value for "
         "all channels, or one per channel."),
        (["sample_models.seeds:Net", "--image", str(photo), "--resize", "28x"],
         "error: bad --resize '28x'. Write one size (224: shorter side, then a centre crop) or "
         "HxW (224x224)."),
        ([*NET, "--resize", "28"], "error: --resize applies to --image only. Add --image, or "
         "drop --resize."),
        (["sample_models.seeds:Net", "1x28x28", "10", "--image", str(photo)],
         "error: --image makes one image input, but SIZES '1x28x28 10' is not one CxHxW size. "
         "Drop SIZES, or give one such as 3x224x224."),
        (["sample_models.seeds:Net", "--image", str(photo), "--input-file", str(text)],
         "error: give either --image or --input-file, not both. Drop one of them."),
        ([*NET, "--device", "meta"], "error: activation statistics need real numbers, and the "
         "meta device has only shapes. Run on --device cpu or cuda; `modelviz summary --device "
         "meta` gives the shapes."),
        ([*NET, "--layer", "conv1", "-o", str(text / "acts")],
         f"error: cannot create the folder {text / 'acts'}: {text} is a file. Choose another "
         "folder with -o."),
        ([*NET, "--layer", "conv1", "-o", str(text)],
         f"error: {text} is a file, not a folder. Give a folder for the images, e.g. -o "
         "activations/."),
        ([*NET, "--hist", "--no-images"], "error: --hist draws into the layer images, and "
         "--no-images draws none. Drop one of them."),
        (["sample_models.llama:llama_tiny", "int64:16", "--layer", "layers", "--no-images"],
         "error: the chosen modules produced no tensor in the forward pass: layers (ModuleList) "
         "did not run in the forward pass, so it has no output; a ModuleList only holds layers: "
         "try 'layers.*'. Choose modules that run; `modelviz summary` lists what ran."),
    ]


def test_mistakes_get_one_line_and_status_2(cli: Cli, tmp_path: Path, photo: Path) -> None:
    for args, message in _mistakes(tmp_path, photo):
        result = cli("activations", *args)
        assert result.exit_code == 2, (args, result.stdout)
        assert result.stderr.strip() == message, args
        assert "Traceback" not in result.stderr + result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "photo.png"]


def test_failed_forward_pass_leaves_no_image_folder(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "acts"
    result = cli("activations", "sample_models.seeds:Net", "3x28x28", "--layer", "conv1", "-o",
                 str(out))
    assert result.exit_code == 2 and "forward pass failed in conv1" in result.stderr
    assert not out.exists()


def test_probe_names_repeated_calls(tmp_path: Path) -> None:
    shared = nn.ReLU()
    model = nn.Sequential(shared, nn.Linear(3, 3), shared)
    probe = ActivationProbe(["0", "1", "2"])
    prepared = api.prepare(model, "3")
    trace = api.run(prepared, probes=(probe,))
    assert [layer.name for layer in trace.probes["activations"]] == ["0#1", "1", "0#2"]


def test_trained_weights_are_loaded(cli: Cli, tmp_path: Path) -> None:
    from sample_models.seeds import Net

    weights = {k: torch.zeros_like(v) for k, v in Net().state_dict().items()}
    path = tmp_path / "zeros.pt"
    torch.save(weights, path)
    result = cli("activations", *NET, "--weights", str(path), "--type", "Conv2d", "--json",
                 "--no-images")
    assert result.exit_code == 0, result.stderr
    layers = json.loads(result.stdout)["layers"]
    assert [(x["name"], x["zero_fraction"], x["max"]) for x in layers] == [
        ("conv1", 1.0, 0.0), ("conv2", 1.0, 0.0)]


def test_empty_and_one_dimensional_outputs(tmp_path: Path) -> None:
    class Odd(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x[:0], x.sum(dim=(0, 1))  # an empty tensor and a vector

    class Wrapper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.odd = Odd()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            vector: torch.Tensor = self.odd(x)[1]
            return vector

    report = api.activations(Wrapper(), "2x5", layers="odd", output_dir=tmp_path)
    empty, vector = report.layers
    assert empty.shape == (0, 2, 5) and empty.stats.mean is None and empty.image is None
    assert vector.capture is not None and vector.capture.kind == "bars"
    assert [p.name for p in tmp_path.iterdir()] == ["odd.1.png"]


# --- layouts and colours ---------------------------------------------------------------------


def test_swin_channels_last_output_is_drawn_as_its_channels(tmp_path: Path) -> None:
    # features.1 of swin_t is [1, 56, 56, 96], channels last: 96 maps of 56x56, not 56 of 56x96
    report = api.activations("swin_t", "3x224x224", layers=["features.0.1", "features.1"],
                             max_channels=96, output_dir=tmp_path)
    for layer in report.layers:
        assert layer.shape == (1, 56, 56, 96) and layer.capture is not None
        assert layer.capture.kind == "grid" and layer.capture.channel_dim == 3
        assert tuple(layer.capture.values.shape) == (96, 56, 56)
        assert layer.capture.channel_count == 96
        assert "channels last" in layer.capture.note
    assert grid_shape(96) == (10, 10)
    assert tiles_per_row(tmp_path / "features.1.png") == [10] * 9 + [6]
    # the Permute after the patch convolution, told by the convolution's 96 channels
    assert by_name(report)["features.0.1"].capture is not None


def test_channel_dim_forces_the_layout(tmp_path: Path) -> None:
    from modelviz.core.session import prepare

    prepared = prepare("swin_t", "3x224x224")
    forced = measure_activations(prepared, layers=["features.1"], images=True,
                                 max_channels=96, channel_dim=1)
    capture = forced.layers[0].capture
    assert capture is not None and capture.channel_dim == 1
    assert tuple(capture.values.shape) == (56, 56, 96) and capture.channel_count == 56


def test_channel_dim_flag(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "acts"
    # conv1 is [1, 6, 24, 24]; read as channels last: 24 maps of 6x24
    result = cli("activations", *NET, "--layer", "conv1", "--channel-dim", "-1", "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert grid_shape(24) == (5, 5)
    with Image.open(out / "conv1.png") as image:
        # 5 columns of 1.6-inch maps in 1.75-inch cells; 5 rows of maps a quarter as high
        # (6/24) in cells 0.5 inches higher; margins and title: 6 channels of 24x24 would be
        # 820x710 (2 rows, 3 columns of 2.4-inch maps)
        assert image.size == (935, 590)
    result = cli("activations", *NET, "--layer", "conv1", "--channel-dim", "0", "-o", str(out))
    assert result.exit_code == 2 and "bad --channel-dim 0: dimension 0 is the batch" in \
        result.stderr
    result = cli("activations", *NET, "--layer", "conv1", "--shared-scale", "--no-images")
    assert result.exit_code == 2 and "--shared-scale" in result.stderr


class Fixed(nn.Module):
    """Returns ``value`` whatever the input: pictures of known numbers."""

    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.value + 0 * x.sum()


class Holder(nn.Module):
    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.out = Fixed(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result: torch.Tensor = self.out(x)
        return result


def _colour(name: str, value: float, low: float, high: float) -> np.ndarray:
    from matplotlib import colormaps

    return np.array(colormaps[name]((value - low) / (high - low))[:3]) * 255


def _cell(pixels: np.ndarray, size: Layout, box: tuple[float, float, float, float],
          shape: tuple[int, int], row: int, column: int) -> np.ndarray:
    """The pixel at the centre of cell (row, column) of a map drawn in ``box`` (inches)."""
    left, bottom, width, height = box
    x = (left + (column + 0.5) / shape[1] * width) * DPI
    y = (size.height - bottom - height + (row + 0.5) / shape[0] * height) * DPI
    cell: np.ndarray = pixels[int(y), int(x)].astype(float)
    return cell


def _tile_box(size: Layout, tiles: int, i: int, shared: bool) -> tuple[float, float, float,
                                                                          float]:
    rows, columns = grid_shape(tiles)
    left, bottom, body_w, body_h = size.body
    cell_w = (body_w - (COLOUR_BAR if shared else 0.0)) / columns
    cell_h = body_h / rows
    row, column = divmod(i, columns)
    return (left + column * cell_w, bottom + body_h - (row + 1) * cell_h + 0.3, cell_w - 0.15,
            cell_h - 0.5)


@pytest.mark.parametrize("shared", [False, True])
def test_signed_tiles_are_diverging_and_centred_at_zero(tmp_path: Path, shared: bool) -> None:
    value = torch.zeros(1, 2, 4, 4)
    value[0, 0, 2:, :2] = -1.0  # channel 0: zeros above, -1 and 3 below
    value[0, 0, 2:, 2:] = 3.0
    value[0, 1, 2:] = 1.0  # channel 1: zeros above, 1 below
    report = api.activations(Holder(value), "1", layers="out")
    layer = report.layers[0]
    assert layer.capture is None
    report = api.activations(Holder(value), "1", layers="out", output_dir=tmp_path)
    layer = report.layers[0]
    capture = layer.capture
    assert capture is not None and capture.channels == [0, 1]  # means 0.5 and 0.5: stable
    pixels = layer_pixels(layer, shared_scale=shared)
    size = layout(capture, shared_scale=shared)
    assert pixels.shape[1::-1] == size.pixels
    white = _colour(DIVERGING_CMAP, 0.0, -1, 1)
    assert np.allclose(white, [247, 247, 247], atol=2)  # the middle of RdBu_r
    for i in (0, 1):
        box = _tile_box(size, 2, i, shared)
        assert np.allclose(_cell(pixels, size, box, (4, 4), 0, 1), white, atol=3)  # 0
    box = _tile_box(size, 2, 0, shared)
    assert np.allclose(_cell(pixels, size, box, (4, 4), 3, 0),
                       _colour(DIVERGING_CMAP, -1, -3, 3), atol=3)
    assert np.allclose(_cell(pixels, size, box, (4, 4), 3, 3),
                       _colour(DIVERGING_CMAP, 3, -3, 3), atol=3)
    # channel 1's 1 is the top of its own scale, or a third of the way up the shared one
    bound = 3 if shared else 1
    box = _tile_box(size, 2, 1, shared)
    assert np.allclose(_cell(pixels, size, box, (4, 4), 3, 2),
                       _colour(DIVERGING_CMAP, 1, -bound, bound), atol=3)
    figure = render_layer(layer, shared_scale=shared)
    caption = " ".join(t.get_text() for t in figure.texts)
    assert ("all maps on one scale" in caption) == shared
    assert ("each map on its own scale" in caption) != shared
    assert len(figure.axes) == 2 + shared  # a colour bar only for the shared scale
    assert f"{DIVERGING_CMAP}: blue below 0, white at 0, red above" in caption


def test_non_negative_tiles_are_sequential(tmp_path: Path) -> None:
    value = torch.zeros(1, 1, 4, 4)
    value[0, 0, 2:] = 2.0
    report = api.activations(Holder(value), "1", layers="out", output_dir=tmp_path)
    layer = report.layers[0]
    assert layer.capture is not None
    size = layout(layer.capture)
    pixels = np.asarray(Image.open(tmp_path / "out.png").convert("RGB")).astype(int)
    box = _tile_box(size, 1, 0, False)
    assert np.allclose(_cell(pixels, size, box, (4, 4), 0, 0), _colour(GRID_CMAP, 0, 0, 2),
                       atol=3)
    assert np.allclose(_cell(pixels, size, box, (4, 4), 3, 3), _colour(GRID_CMAP, 2, 0, 2),
                       atol=3)
    assert limits(np.array([-1.0, 3.0]), DIVERGING_CMAP) == (-3.0, 3.0)


def test_signed_bars_use_the_diverging_colours(tmp_path: Path) -> None:
    value = torch.tensor([[-2.0, -1.0, 0.5, 2.0]])
    report = api.activations(Holder(value), "1", layers="out", output_dir=tmp_path)
    layer = report.layers[0]
    assert layer.capture is not None and layer.capture.kind == "bars"
    figure = render_layer(layer)
    bars = figure.axes[0].patches
    colours = [np.array(b.get_facecolor()[:3]) * 255 for b in bars]
    for colour, v in zip(colours, [-2.0, -1.0, 0.5, 2.0], strict=True):
        assert np.allclose(colour, _colour(DIVERGING_CMAP, v, -2, 2), atol=1)


def test_vit_patch_tokens_are_drawn_on_their_grid(tmp_path: Path) -> None:
    report = api.activations("vit_b_16", "3x224x224", layers="encoder.layers.encoder_layer_0",
                             output_dir=tmp_path)
    layer = report.layers[0]
    assert layer.shape == (1, 197, 768) and layer.capture is not None
    capture = layer.capture
    assert capture.kind == "tokens" and tuple(capture.values.shape) == (14, 14)
    assert [label for label, _ in capture.apart] == ["class token"]
    values = capture.values.numpy()
    every = np.concatenate([values.ravel(), [capture.apart[0][1]]])
    low, high = float(every.min()), float(every.max())
    size = layout(capture)
    pixels = np.asarray(Image.open(tmp_path / "encoder.layers.encoder_layer_0.png")
                        .convert("RGB")).astype(int)
    assert pixels.shape[1::-1] == size.pixels
    left, bottom, body_w, body_h = size.body
    box = (left + 1.45, bottom + 0.55, body_w - 2.35, body_h - 0.75)
    for row in range(14):
        for column in range(14):  # every one of the 14x14 cells shows its token's norm
            assert np.allclose(_cell(pixels, size, box, (14, 14), row, column),
                               _colour(GRID_CMAP, float(values[row, column]), low, high),
                               atol=3)
    figure = render_layer(layer)
    caption = " ".join(t.get_text() for t in figure.texts)
    assert "196 patch tokens on their 14x14 grid, the class token apart" in caption
    assert "class token" in [ax.get_title() for ax in figure.axes]


def test_a_text_transformer_is_no_grid_of_patches(tmp_path: Path) -> None:
    # 64 tokens is 8x8, but a model without a patch convolution has no patches
    report = api.activations("sample_models.transformer:TinyTransformer", "int64:65",
                             layers=["encoder"], output_dir=tmp_path)
    capture = report.layers[0].capture
    assert capture is not None and capture.kind == "heatmap"


def test_image_input_gets_the_mean_activation_overlaid(photo: Path, tmp_path: Path) -> None:
    value = torch.zeros(1, 2, 4, 4)
    value[0, 0, :, :2] = -2.0  # mean over the two channels: -1 on the left, 1 on the right
    value[0, 1, :, 2:] = 2.0
    report = api.activations(Holder(value), "3x32x32", image=photo, layers="out",
                             output_dir=tmp_path)
    layer = report.layers[0]
    assert layer.capture is not None and layer.capture.mean_map is not None
    torch.testing.assert_close(layer.capture.mean_map, value[0].mean(dim=0))
    size = layout(layer.capture, picture=(32, 32))
    assert size.picture is not None
    pixels = np.asarray(Image.open(tmp_path / "out.png").convert("RGB")).astype(float)
    assert pixels.shape[1::-1] == size.pixels
    left, bottom, width, height = size.picture
    panel = height / 2
    photo_box = (left, bottom + panel, width, panel - 0.35)
    overlay_box = (left, bottom, width, panel - 0.35)
    for column, mean in ((0, -1.0), (3, 1.0)):
        under = _cell(pixels, size, photo_box, (1, 4), 0, column)
        over = _cell(pixels, size, overlay_box, (1, 4), 0, column)
        expected = 0.45 * under + 0.55 * _colour(DIVERGING_CMAP, mean, -1, 1)
        assert np.allclose(over, expected, atol=4)
    figure = render_layer(layer, picture=report.picture.display)
    titles = [ax.get_title() for ax in figure.axes]
    assert "mean of 2 channels, over the input" in titles
