"""Renderers against golden files, and the JSON and CSV content."""

from __future__ import annotations

import csv
import io
import json

import pytest

from modelviz import api
from modelviz.features.summary.classic import render_classic
from modelviz.features.summary.data import render_csv, render_json
from modelviz.features.summary.markdown import render_markdown
from modelviz.features.summary.options import ALL_COLUMNS, TableOptions
from modelviz.features.summary.summary import SCHEMA, Summary
from modelviz.features.summary.table import plain_text, render_table
from tests.helpers import Golden


@pytest.fixture(scope="module")
def net() -> Summary:
    return api.summary("sample_models.seeds:Net", "1x28x28")


@pytest.fixture(scope="module")
def lstm() -> Summary:
    return api.summary("sample_models.lstm_lm:LSTMLanguageModel", "int64:35")


def test_table_golden(net: Summary, golden: Golden) -> None:
    golden("net_table.txt", plain_text(render_table(net, TableOptions(columns=ALL_COLUMNS))))


def test_markdown_golden(net: Summary, golden: Golden) -> None:
    golden("net_summary.md", render_markdown(net, TableOptions(columns=ALL_COLUMNS)))


def test_classic_golden(net: Summary, golden: Golden) -> None:
    golden("net_classic.txt", render_classic(net))


def test_tied_weights_footnote(lstm: Summary) -> None:
    text = plain_text(render_table(lstm, TableOptions()))
    assert "65,000 *" in text
    assert "* decoder.weight is encoder.weight: counted once" in text
    assert "Total params" in text and "131,560" in text
    assert "drop (Dropout · 2 calls)" in text


def test_json_schema(net: Summary) -> None:
    data = json.loads(render_json(net))
    assert data["schema"] == SCHEMA
    assert set(data) >= {"model", "inputs", "totals", "layers"}
    assert data["model"] == "sample_models.seeds:Net"
    assert data["inputs"] == [{"name": "x", "shape": [1, 1, 28, 28], "dtype": "float32"}]
    assert set(data["totals"]) >= {
        "params", "trainable_params", "non_trainable_params", "flops", "macs", "input_size_mb",
        "forward_backward_size_mb", "params_size_mb", "estimated_total_size_mb"}
    assert data["totals"]["params"] == 44_426
    first = data["layers"][0]
    assert set(first) >= {"name", "type", "depth", "input_shapes", "output_shapes", "params",
                          "trainable", "flops"}
    by_name = {layer["name"]: layer for layer in data["layers"]}
    assert by_name["conv1"]["output_shapes"] == [1, 6, 24, 24]
    assert by_name["conv1"]["input_shapes"] == [[1, 1, 28, 28]]
    assert by_name["conv1"]["flops"] == 2 * 6 * 25 * 24 * 24
    assert by_name["pool"]["calls"] == 2
    assert by_name["fc3"]["params"] == 850


def test_csv_rows(net: Summary) -> None:
    rows = list(csv.DictReader(io.StringIO(render_csv(net))))
    assert [r["name"] for r in rows] == ["conv1", "pool", "conv2", "fc1", "fc2", "fc3"]
    assert rows[3]["params"] == "30840" and json.loads(rows[3]["output_shapes"]) == [1, 120]


def test_depth_and_fold() -> None:
    summary = api.summary("sample_models.llama:llama_tiny", "int64:16")
    names = [r.name for r in summary.rows(depth=2, fold=True)]
    assert names == ["tok_embeddings", "layers", "layers.0–3", "norm", "output"]
    folded = summary.rows(depth=2, fold=True)[2]
    assert folded.count == 4
    assert folded.total("params_total") == summary.trace.modules["layers"].params_total
    assert [r.name for r in summary.rows(depth=1)] == ["tok_embeddings", "layers", "norm",
                                                       "output"]


def test_uncalled_modules_are_shown_last() -> None:
    import torchvision

    model = torchvision.models.inception_v3(init_weights=False, aux_logits=True).eval()
    summary = api.summary(model, "3x299x299")
    text = plain_text(render_table(summary, TableOptions(depth=1)))
    assert "AuxLogits (InceptionAux)" in text
    aux_line = next(line for line in text.splitlines() if "AuxLogits" in line)
    assert "not called" in aux_line
