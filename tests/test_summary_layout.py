"""The summary table's layout: it fits 80 columns by giving way on names, never on numbers or
shapes; repeated blocks fold by default at a depth that reaches them; FLOPs and MACs say which
convention they count in; a terminal hears once that zoo models have random weights."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
import torch
from rich.console import Console
from torch import nn

from modelviz import api
from modelviz.cli.summary import PIPE_WIDTH
from modelviz.core.formatting import count
from modelviz.features.summary.cells import UNIT_LABELS, display_rows
from modelviz.features.summary.markdown import render_markdown
from modelviz.features.summary.options import ALL_COLUMNS, DEFAULT_DEPTH, TableOptions
from modelviz.features.summary.summary import Summary
from modelviz.features.summary.table import MIN_NAME, plain_text, render_table, shorten
from tests.helpers import Cli

LLAMA = "sample_models/llama.py:llama_7b"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
LONG = "a_stage_whose_name_goes_on_and_on_for_quite_a_while"

#: A model file for the CLI: module names long enough that no 80-column table holds them.
LONG_NAMES = f'''
from torch import nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.the_projection_that_maps_features_to_the_next_space = nn.Linear(16, 16)

    def forward(self, x):
        return self.the_projection_that_maps_features_to_the_next_space(x)


class LongNames(nn.Module):
    def __init__(self):
        super().__init__()
        self.{LONG} = nn.Sequential(Block(), nn.ReLU(), Block())
        self.head = nn.Linear(16, 123457)

    def forward(self, x):
        return self.head(self.{LONG}(x))
'''


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Sequential(nn.Linear(8, 8), nn.Tanh()) for _ in range(3))


class Tower(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = Encoder()


class Nested(nn.Module):
    """Repeated blocks at depth 4, as CLIP's ``vision_model.encoder.layers.0–11``."""

    def __init__(self) -> None:
        super().__init__()
        self.tower = Tower()
        self.q_proj, self.k_proj = nn.Linear(8, 8), nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.tower.encoder.layers:
            x = layer(x)
        out: torch.Tensor = self.q_proj(x) + self.k_proj(x)
        return out


def rendered(summary: Summary, width: int, options: TableOptions | None = None) -> str:
    """The table as an 80-column terminal shows it; crop off, so a wider table shows whole."""
    console = Console(width=width, file=io.StringIO(), record=True, color_system=None,
                      markup=False, emoji=False, highlight=False)
    console.print(render_table(summary, options or TableOptions()), crop=False)
    return "\n".join(line.rstrip() for line in console.export_text().splitlines())


def body(text: str) -> list[list[str]]:
    """The data rows' cells (header and borders left out)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("┡")) + 1
    end = next(i for i, line in enumerate(lines) if line.startswith("└"))
    return [[cell.strip() for cell in line.strip("│").split("│")] for line in lines[start:end]]


def check_whole(summary: Summary, text: str, options: TableOptions | None = None) -> None:
    """One line per row; no number or shape cut or wrapped; every row's count there in full."""
    rows = display_rows(summary, options or TableOptions())
    cells = body(text)
    assert len(cells) == len(rows)  # a wrapped cell would add a line
    for row, line in zip(rows, cells, strict=True):
        assert all("…" not in value for value in line[1:]), line
        assert any(v.startswith(count(row.total("params_total"))) for v in line[1:]), line
        shape = line[1]
        assert shape[0] in "[{–n" and shape.count("[") == shape.count("]"), line


@pytest.fixture(scope="module")
def vit() -> Summary:
    return api.summary("vit_b_16", device="meta")


@pytest.fixture(scope="module")
def llama() -> Summary:
    return api.summary(LLAMA, "int64:128", device="meta")


@pytest.fixture
def long_names(tmp_path: Path) -> str:
    path = tmp_path / "long_names.py"
    path.write_text(LONG_NAMES, encoding="utf-8")
    return f"{path}:LongNames"


@pytest.mark.parametrize("model", ["vit", "llama", "resnet18"])
def test_fits_80_columns_whole(model: str, request: pytest.FixtureRequest) -> None:
    summary = (api.summary("resnet18", device="meta") if model == "resnet18"
               else request.getfixturevalue(model))
    text = rendered(summary, 80)
    assert max(len(line) for line in text.splitlines()) <= 80, text
    check_whole(summary, text)


def test_every_column_runs_past_rather_than_cut(llama: Summary) -> None:
    options = TableOptions(columns=ALL_COLUMNS)
    text = rendered(llama, 80, options)
    assert max(len(line) for line in text.splitlines()) > 80  # wider than the terminal...
    check_whole(llama, text, options)  # ...and nothing cut
    assert "1.67 T" in text and "833.22 G" in text and "[[1, 128, 4096], [128, 128], [128, 128]]" \
        in text
    names = [line[0] for line in body(text)]
    assert any(name.startswith("…") for name in names)  # names gave way first


def test_long_names_keep_their_tail(cli: Cli, long_names: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    result = cli("summary", long_names, "16", "--device", "meta", "-c", "flops")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, result.stdout
    names = [cells[0] for cells in body(result.stdout)]
    # the tail of the name under its indentation, at a dot where one fits
    assert "…the_projection_that_maps_features_to_the_next_space (Linear)" not in names
    assert any(n.startswith("…") and n.endswith("_next_space (Linear)") for n in names), names
    assert "head (Linear)" in names
    assert count(17 * 123457) in result.stdout  # the head's parameters, whole


def test_shorten_keeps_whole_parts() -> None:
    assert shorten("encoder.layers.3.attention.self_attn", 21) == "…attention.self_attn"
    assert shorten("encoder.layers.3.attention.self_attn", 5) == "…self_attn"
    assert shorten("tok_embeddings", 5) == "tok_embeddings"  # never less than its last part
    assert shorten("stage." + "x" * 40, 14) == "…" + "x" * (MIN_NAME - 1)  # unless very long


def test_pipe_width(cli: Cli, long_names: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    wide = cli("summary", long_names, "16", "--device", "meta", "-c", "all").stdout
    assert 80 < max(len(line) for line in wide.splitlines()) <= PIPE_WIDTH
    assert "…" in wide  # names gave way, as on a terminal
    full = plain_text(render_table(api.summary(long_names, "16", device="meta"),
                                   TableOptions(columns=ALL_COLUMNS)))
    assert max(len(line) for line in full.splitlines()) > PIPE_WIDTH  # -o FILE: whole names
    narrow = cli("summary", "sample_models.seeds:Net", "1x28x28", "--device", "meta").stdout
    natural = plain_text(render_table(api.summary("sample_models.seeds:Net", "1x28x28",
                                                  device="meta"), TableOptions()))
    assert narrow == natural  # its natural width, under PIPE_WIDTH


def test_fold_by_default(cli: Cli) -> None:
    folded = cli("summary", LLAMA, "int64:128", "--device", "meta")
    assert folded.exit_code == 0, folded.stderr
    assert len(folded.stdout.splitlines()) < 40
    assert "layers.0–31 (DecoderLayer ×32)" in folded.stdout
    assert cli("summary", LLAMA, "int64:128", "--device", "meta", "--fold").stdout == \
        folded.stdout
    full = cli("summary", LLAMA, "int64:128", "--device", "meta", "--no-fold").stdout
    assert len(full.splitlines()) > 150 and "layers.31.feed_forward (FeedForward)" in full


def test_default_depth_reaches_the_blocks() -> None:
    summary = api.summary(Nested(), "8")
    names = [row.name for row in display_rows(summary, TableOptions())]
    assert "tower.encoder.layers.0–2" in names  # depth 4, past the default 3
    assert not any(name.startswith("tower.encoder.layers.0.") for name in names)
    # identical siblings with names of their own keep their rows
    assert "q_proj" in names and "k_proj" in names
    exact = [row.name for row in display_rows(summary, TableOptions(reach_blocks=False))]
    assert DEFAULT_DEPTH == 3 and "tower.encoder.layers" in exact
    assert not any(name.startswith("tower.encoder.layers.0") for name in exact)


def test_clip_shows_its_encoder_layers() -> None:
    pytest.importorskip("transformers")
    summary = api.summary("hf:clip", "input_ids=int64:16", "pixel_values=3x224x224",
                          device="meta")
    names = [row.name for row in display_rows(summary, TableOptions())]
    assert "vision_model.encoder.layers.0–11" in names
    assert "text_model.encoder.layers.0–11" in names
    assert len(names) < 30


def test_units_are_labelled(vit: Summary) -> None:
    table = rendered(vit, 80)
    markdown = render_markdown(vit, TableOptions())
    for label in UNIT_LABELS.values():
        assert label in table and label in markdown
    assert "multiply and add counted as 2" in table and "torchvision's GFLOPS" in table
    assert "17.56 G (17,563,828,224)" in table  # the MACs torchvision publishes for vit_b_16


def test_random_weights_note_on_a_terminal_only(cli: Cli, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    note = "has random weights"
    assert note not in cli("summary", "resnet18", "--device", "meta").stderr  # a pipe
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    terminal = cli("summary", "resnet18", "--device", "meta")
    assert terminal.exit_code == 0
    assert ANSI.sub("", terminal.stderr).count(f"resnet18 {note}") == 1
    assert note not in cli("summary", "resnet18", "--device", "meta", "-f", "json").stderr
    # a model of the user's own, or a zoo model given --weights, has the weights it was given
    assert note not in cli("summary", "sample_models.seeds:Net", "1x28x28").stderr
    from torchvision.models import resnet18

    weights = tmp_path / "resnet18.pt"
    torch.save(resnet18().state_dict(), weights)
    assert note not in cli("summary", "resnet18", "--weights", str(weights)).stderr
