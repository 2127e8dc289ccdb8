"""Dynamic axes beyond the batch, checked in the written file and named there; detections
compared as sets. Real exports, real ONNX Runtime."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from modelviz import api
from modelviz.errors import SpecError
from modelviz.features.onnx.axes import DynamicSpec, NamedAxis, parse_dynamic, rename_symbols
from modelviz.features.onnx.compare import MATCHED, compare_all, match
from tests.helpers import Cli

TINY = "sample_models.transformer:TinyTransformer"


def _dims(path: Path) -> dict[str, list[int | str]]:
    model = onnx.load(str(path), load_external_data=False)
    return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in [*model.graph.input, *model.graph.output]}


# ----------------------------------------------------------------------------------------------
# --dynamic parsed.


@pytest.mark.parametrize(("values", "static", "expected"), [
    (None, False, DynamicSpec("auto")),
    (["auto"], False, DynamicSpec("auto")),
    (["batch"], False, DynamicSpec("on")),
    (["none"], False, DynamicSpec("off")),
    (None, True, DynamicSpec("off")),
    (["seq"], False, DynamicSpec("auto", seq=True)),
    (["batch,seq"], False, DynamicSpec("on", seq=True)),
    (["seq"], True, DynamicSpec("off", seq=True)),
    (["input_ids:1=seq", "pixel_values:-1"], False,
     DynamicSpec("auto", axes=(NamedAxis("input_ids", 1, "seq"),
                               NamedAxis("pixel_values", -1, "pixel_values_-1")))),
])
def test_dynamic_words(values: list[str] | None, static: bool, expected: DynamicSpec) -> None:
    assert parse_dynamic(values, static=static) == expected


@pytest.mark.parametrize(("args", "message"), [
    (["--dynamic", "sequence"], "error: bad --dynamic value 'sequence'. Use auto, batch, seq, "
                                "none, or INPUT:AXIS=NAME such as input_ids:1=seq (AXIS counts "
                                "the batch as 0).\n"),
    (["--dynamic", "x:1=9len"], "error: bad --dynamic value 'x:1=9len'."),
    (["--dynamic", "none", "--dynamic", "tokens:1=seq"],
     "error: --dynamic says none and names dynamic axes too. Give either none or the axes that "
     "vary.\n"),
    (["--dynamic", "ids:1=seq"], "error: --dynamic names input 'ids', which the model does not "
                                 "take. Inputs: tokens.\n"),
    (["--dynamic", "tokens:2=seq"], "error: --dynamic names axis 2 of tokens, which has 2 (the "
                                    "batch is axis 0). Give an axis from 0 to 1.\n"),
])
def test_bad_dynamic_values_are_one_line_and_write_nothing(cli: Cli, tmp_path: Path,
                                                           args: list[str], message: str) -> None:
    result = cli("export-onnx", TINY, "int64:12", "-o", str(tmp_path / "m.onnx"), *args)
    assert result.exit_code == 2 and result.stderr.startswith(message), result.stderr
    assert "Traceback" not in result.stderr and list(tmp_path.iterdir()) == []


def test_seq_without_token_inputs_says_how_to_name_an_axis() -> None:
    with pytest.raises(SpecError, match=r"`dynamic=seq`: no input holds tokens .* Name the axis "
                                        r"instead: INPUT:AXIS=NAME"):
        api.export_onnx("sample_models.seeds:Net", "1x28x28", output="/nonexistent/m.onnx",
                        dynamic="seq")


def test_rename_symbols() -> None:
    mapping = {"s70": "seq", "s43": "past_seq", "s72": "batch"}
    assert rename_symbols("s72", mapping) == "batch"
    assert rename_symbols("s70 + s43", mapping) == "past_seq + seq"  # one spelling per length
    assert rename_symbols("2*s70", mapping) == "2*seq"


# ----------------------------------------------------------------------------------------------
# A dynamic sequence length, checked at a second length.


def test_seq_is_dynamic_named_and_checked_at_a_second_length(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "tiny.onnx"
    result = cli("export-onnx", TINY, "int64:12", "--dynamic", "seq", "-o", str(path), "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["inputs"] == [{"name": "tokens", "dtype": "int64", "shape": ["batch", "seq"]}]
    assert data["dynamic_axes"] == {"tokens": {"0": "batch", "1": "seq"}}
    assert data["sizes_checked"] == {"batch": 2, "seq": 15}
    assert [(p["sizes"], p["ok"]) for p in data["parity"] + data["batch_parity"]] == [
        ({"batch": 1, "seq": 12}, True), ({"batch": 2, "seq": 15}, True)]
    # Our own run at a third length and batch, against torch.
    prepared = api.prepare(TINY, "int64:31", batch_size=3)  # the export's seed: its weights
    tokens = torch.randint(0, 1000, (3, 31), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = prepared.model.eval()(tokens).numpy()
    (got,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"tokens": tokens.numpy()})
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-3)
    shown = cli("export-onnx", TINY, "int64:12", "--dynamic", "tokens:1=length", "-o", str(path))
    assert shown.exit_code == 0, shown.stderr
    assert re.search(r"│ batch 1, length 12 │ output │ .* │ ok │", shown.stdout)
    assert re.search(r"│ batch 2, length 15 │ output │ .* │ ok │", shown.stdout)
    assert "Dynamic axes: also ran at batch 2, length 15 in ONNX Runtime" in shown.stdout
    assert _dims(path)["tokens"] == ["batch", "length"]


def test_no_exporter_symbol_is_left_in_the_file(tmp_path: Path) -> None:
    """torch.export's own names (``s72``) are replaced by the axes' names, in the outputs too."""
    path = tmp_path / "two.onnx"
    api.export_onnx("sample_models.multi_io:TwoInputNet", "3x32x32", "10", output=path,
                    batch_size=2)
    model = onnx.load(str(path))
    graph = model.graph
    params = {d.dim_param for v in [*graph.input, *graph.output, *graph.value_info]
              for d in v.type.tensor_type.shape.dim if d.dim_param}
    assert params == {"batch"}


def test_an_axis_the_exporter_fixes_fails_when_asked_for(cli: Cli, tmp_path: Path) -> None:
    """PerImage loops over the images: torch.export fixes the batch. Asked for (``batch``),
    that is a failure with nothing written; under ``auto`` the batch is fixed, with a note."""
    path = tmp_path / "per.onnx"
    result = cli("export-onnx", "sample_models.onnx_trouble:PerImage", "3x8x8", "-o", str(path),
                 "--dynamic", "batch", "--exporter", "dynamo")
    assert result.exit_code == 2 and not path.exists()
    assert result.stderr.startswith("error: ONNX export failed: torch.export found ")
    assert "fixed at 2 by the model's code" in result.stderr
    result = cli("export-onnx", "sample_models.onnx_trouble:PerImage", "3x8x8", "-o", str(path),
                 "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["dynamic_batch"] is False and data["inputs"][0]["shape"] == [1, 3, 8, 8]
    assert data["notes"][0].startswith("the batch dimension is fixed: with a dynamic batch the "
                                       "export failed (torch.export found ")


def test_a_batch_onnx_runtime_rejects_is_fixed_with_the_node_named(cli: Cli,
                                                                   tmp_path: Path) -> None:
    """The TorchScript exporter records PerImage's loop as a Split of fixed sizes: ONNX Runtime
    fails at batch 2. Under auto, the batch is fixed and the note names the node; asked for,
    the failure says to fix the batch, not to look for float16."""
    path = tmp_path / "per.onnx"
    result = cli("export-onnx", "sample_models.onnx_trouble:PerImage", "3x8x8", "-o", str(path),
                 "--exporter", "torchscript")
    assert result.exit_code == 0, result.stderr
    assert ("note: the batch dimension is fixed at 1: with it dynamic, ONNX Runtime fails at "
            "batch 2, in its Split node '/Split': Cannot split using values in 'split' "
            "attribute\n") in result.stderr
    assert _dims(path)["x"] == [1, 3, 8, 8]
    result = cli("export-onnx", "sample_models.onnx_trouble:PerImage", "3x8x8", "-o", str(path),
                 "--exporter", "torchscript", "--dynamic", "batch")
    assert result.exit_code == 1
    assert result.stderr.endswith(
        "was written, but batch is declared dynamic, but ONNX Runtime fails at batch 2, in its "
        "Split node '/Split': Cannot split using values in 'split' attribute. Export with a "
        "fixed batch (--static), or with --dynamic auto, which fixes it when the file needs "
        "it.\n")


# ----------------------------------------------------------------------------------------------
# Detections as sets.


def _detections(boxes: list[list[float]], scores: list[float],
                labels: list[int]) -> list[np.ndarray]:
    return [np.array(boxes, np.float32), np.array(scores, np.float32),
            np.array(labels, np.int64)]


def test_detections_in_another_order_match() -> None:
    """Tied scores, rows swapped: element by element the boxes 'differ by 95', as sets they
    are the same detections."""
    theirs = _detections([[0, 0, 10, 10], [100, 100, 120, 130], [5, 5, 20, 20]],
                         [0.99, 0.99, 0.5], [1, 2, 1])
    ours = _detections([[100, 100.01, 120, 130], [0, 0, 10.02, 10], [5, 5, 20, 20]],
                       [0.99, 0.99, 0.5], [2, 1, 1])
    names = ["boxes", "scores", "labels"]
    checks, problems = compare_all(names, ["0.boxes", "0.scores", "0.labels"], ours,
                                   [torch.from_numpy(a) for a in theirs], 1e-4, 1)
    assert problems == []
    assert [(c.output, c.comparison, c.ok) for c in checks] == [
        ("boxes", MATCHED, True), ("scores", MATCHED, True), ("labels", MATCHED, True)]
    assert checks[0].max_abs_error == pytest.approx(0.02, abs=1e-6)
    assert checks[0].tolerance == pytest.approx(0.13)  # 0.1% of the largest coordinate
    assert sorted(match(theirs[0], theirs[1], theirs[2], ours[0], ours[1], ours[2])) == [
        (0, 1), (1, 0), (2, 2)]


def test_a_detection_without_a_partner_fails() -> None:
    theirs = _detections([[0, 0, 10, 10], [50, 50, 60, 60]], [0.9, 0.8], [1, 1])
    ours = _detections([[0, 0, 10, 10], [50, 50, 60, 60]], [0.9, 0.8], [1, 3])  # a new label
    checks, problems = compare_all(["boxes", "scores", "labels"],
                                   ["0.boxes", "0.scores", "0.labels"], ours,
                                   [torch.from_numpy(a) for a in theirs], 1e-4, 1)
    assert problems == ["boxes: 2 detections in torch, 2 in ONNX Runtime; 1 pair up (same "
                        "label, IoU ≥ 0.9)"]
    assert not any(c.ok for c in checks)


def test_masks_compare_by_their_mean_per_detection() -> None:
    """A mask pasted one pixel over (its box crossed an integer) still matches; a mask of
    another shape does not."""
    boxes = np.array([[10, 10, 50, 50]], np.float32)
    mask = np.zeros((1, 1, 64, 64), np.float32)
    mask[0, 0, 10:50, 10:50] = 1.0
    moved = np.roll(mask, 1, axis=3)
    wrong = np.zeros_like(mask)
    wrong[0, 0, 10:50, 10:30] = 1.0
    paths = ["0.boxes", "0.scores", "0.labels", "0.masks"]
    names = ["boxes", "scores", "labels", "masks"]
    theirs = [torch.from_numpy(a) for a in (boxes, np.array([0.9], np.float32),
                                            np.array([1]), mask)]
    for ours, ok in ((moved, True), (wrong, False)):
        checks, problems = compare_all(names, paths, [boxes, np.array([0.9], np.float32),
                                                      np.array([1]), ours], theirs, 1e-4, 1)
        (masks,) = [c for c in checks if c.output == "masks"]
        assert problems == [] and masks.ok is ok and masks.tolerance == 0.05
    assert masks.max_abs_error == pytest.approx(800 / 4096)  # the half of the square it lacks
