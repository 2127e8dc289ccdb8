"""Parity figures that never mislead: infinities and NaN that ONNX Runtime reproduces agree, a
constant output is flagged as proving nothing, and the run at batch + 1 is compared with torch
at that batch. Real tiny models, real exports, real ONNX Runtime."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from modelviz import api
from modelviz.features.onnx.compare import compare as _compare
from modelviz.features.onnx.compare import uninformative as _uninformative
from modelviz.features.onnx.result import ExportResult
from tests.helpers import Cli

HERE = "tests.test_onnx_parity"


class Specials(nn.Module):
    """``x`` plus +inf, -inf and NaN at fixed columns: additions that both runtimes do exactly;
    ``logged`` adds -inf wherever relu(x) is 0, and ordinary logs elsewhere."""

    mask: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mask", torch.tensor([math.inf, -math.inf, math.nan, 0.0]))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"exact": x + self.mask, "logged": torch.log(torch.relu(x))}


class AllNaN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.lin(x)
        return y * math.nan


class ZeroHead(nn.Module):
    """An untrained classifier whose head is initialised to zero (torchvision's vit_b_16 does
    this): every logit is 0, and the softmax 1/3 everywhere, whatever the body computes."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
        self.head = nn.Linear(8, 3)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.head(self.body(x))
        return {"logits": logits, "probs": logits.softmax(-1)}


class FrozenBatch(nn.Module):
    """Divides by the batch size as a Python float: the TorchScript tracer records the size at
    export time as a constant, so the file is wrong at every other batch size."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.lin(x)
        return y / float(x.shape[0])


class BatchMean(nn.Module):
    """Uses the batch size the traceable way: right at every batch."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.lin(x)
        return y - y.sum(0) / x.shape[0]


def _export(model: nn.Module, tmp_path: Path, *, batch: int = 1,
            exporter: str = "auto", dynamic: str = "auto") -> ExportResult:
    torch.manual_seed(0)
    return api.export_onnx(model, (4,), output=tmp_path / "m.onnx", batch_size=batch,
                           exporter=exporter, dynamic=dynamic)


# ----------------------------------------------------------------------------------------------
# Infinities and NaN.


def test_infinities_and_nan_reproduced_exactly_agree(tmp_path: Path) -> None:
    torch.manual_seed(0)
    result = _export(Specials(), tmp_path, batch=2)
    assert result.ok and not result.problems, result.problems
    exact, logged = result.parity or []
    assert exact.output == "exact" and exact.ok
    assert exact.max_abs_error == 0 and exact.max_rel_error == 0  # not nan: they agree
    assert exact.informative  # its finite column varies
    assert logged.ok and math.isfinite(logged.max_abs_error) and logged.max_abs_error < 1e-6
    assert result.batch_checked == 3 and [p.batch for p in result.batch_parity or []] == [3, 3]
    assert result.batch_parity is not None and result.batch_parity[0].max_abs_error == 0
    data = result.to_dict()
    assert data["ok"] is True and data["parity"][0]["max_abs_error"] == 0
    json.dumps(data, allow_nan=False)  # no NaN figure reaches the JSON


@pytest.mark.parametrize(("ours", "theirs"), [
    ([1.0, math.nan], [1.0, 2.0]),  # NaN on ONNX Runtime's side only
    ([1.0, 2.0], [1.0, math.nan]),  # NaN on torch's side only
    ([1.0, math.inf], [1.0, -math.inf]),  # opposite infinities
    ([1.0, math.inf], [1.0, 3.0]),  # an infinity against a finite value
    ([1.0, 3.0], [1.0, -math.inf]),
])
def test_a_difference_at_a_nonfinite_position_is_infinite(ours: list[float],
                                                          theirs: list[float]) -> None:
    parity = _compare("out", np.array(ours, np.float32), torch.tensor(theirs), 1e-4, 1)
    assert not isinstance(parity, str)
    assert parity.max_abs_error == parity.max_rel_error == math.inf and not parity.ok


def test_equal_nonfinite_positions_agree_and_only_differences_count() -> None:
    theirs = torch.tensor([math.inf, -math.inf, math.nan, 100.0, 0.0])
    ours = np.array([math.inf, -math.inf, math.nan, 100.5, 2e-5], np.float32)
    parity = _compare("out", ours, theirs, 1e-4, 1)
    assert not isinstance(parity, str) and not parity.ok
    assert parity.max_abs_error == pytest.approx(0.5)
    assert parity.max_rel_error == pytest.approx(0.2)  # 2e-5 / atol beats 0.5 / 100
    assert _compare("out", np.zeros(3), torch.zeros(2), 1e-4, 1) == (
        "out: shape [3] in ONNX Runtime, [2] in torch")


# ----------------------------------------------------------------------------------------------
# Outputs that prove nothing.


@pytest.mark.parametrize(("values", "reason"), [
    ([], "torch's out is empty"),
    ([math.nan] * 3, "torch's out is all NaN"),
    ([0.0] * 3, "torch's out is all zeros (a layer initialised to zero, such as an untrained "
                "head?)"),
    ([0.25] * 4, "torch's out is 0.25 everywhere"),
    ([-math.inf] * 2, "torch's out is -inf everywhere"),
    ([math.inf], "torch's out is inf"),
    ([math.nan, math.inf, math.inf], "torch's out is never finite (1 NaN, 2 infinite)"),
    ([3.5], None),  # one value is still a value to match
    ([0.0, 0.0, math.nan], None),
    ([math.inf, 1.0, math.nan], None),
])
def test_what_makes_a_check_uninformative(values: list[float], reason: str | None) -> None:
    assert _uninformative("out", np.array(values, np.float64)) == reason


def test_all_nan_output_is_described_as_nan(tmp_path: Path) -> None:
    result = _export(AllNaN(), tmp_path)
    (parity,) = result.parity or []
    assert parity.ok and parity.max_abs_error == 0  # NaN against NaN agrees
    assert parity.uninformative == "torch's output is all NaN"
    assert "torch's output is all NaN, so its parity check proves nothing" in result.notes
    assert not any("zeros" in note for note in result.notes)
    assert result.ok and result.informative is False


def test_zero_head_is_flagged_in_result_table_and_json(cli: Cli, tmp_path: Path) -> None:
    result = _export(ZeroHead(), tmp_path)
    assert result.ok  # the file is not wrong: an uninformative check still passes
    assert result.informative is False
    assert [(p.output, p.informative) for p in result.parity or []] == [
        ("logits", False), ("probs", False)]
    assert [p.informative for p in result.batch_parity or []] == [False, False]

    path = tmp_path / "cli.onnx"
    shown = cli("export-onnx", f"{HERE}:ZeroHead", "4", "-o", str(path))
    assert shown.exit_code == 0, shown.stderr
    table = shown.stdout
    assert re.search(r"│\s+1 │ logits │\s+0 │\s+0 │ ok, uninformative │", table)
    assert re.search(r"│\s+2 │ probs\s+│\s+0 │\s+0 │ ok, uninformative │", table)
    flat = " ".join(table.split())
    assert ("uninformative: torch's logits is all zeros (a layer initialised to zero, such as an "
            "untrained head?), so this check proves next to nothing about the file") in flat
    assert "uninformative: torch's probs is 0.333333 everywhere" in flat
    assert "torch's logits is all zeros" in shown.stderr  # the note

    data = json.loads(cli("export-onnx", f"{HERE}:ZeroHead", "4", "-o", str(path),
                          "--json").stdout)
    assert data["ok"] is True and data["informative"] is False
    logits = data["parity"][0]
    assert logits["informative"] is False and logits["batch"] == 1
    assert logits["uninformative_reason"].startswith("torch's logits is all zeros")
    assert data["batch_parity"][1]["uninformative_reason"] == "torch's probs is 0.333333 everywhere"


def test_informative_output_is_not_flagged(cli: Cli, tmp_path: Path) -> None:
    data = json.loads(cli("export-onnx", f"{HERE}:BatchMean", "4", "--batch-size", "2", "-o",
                          str(tmp_path / "m.onnx"), "--json").stdout)
    assert data["informative"] is True
    assert [p["informative"] for p in data["parity"] + data["batch_parity"]] == [True, True]
    assert [p["uninformative_reason"] for p in data["parity"]] == [None]


def test_report_page_flags_an_uninformative_check(tmp_path: Path) -> None:
    from modelviz.features.report import build as report

    torch.manual_seed(0)
    built = report.build(api.prepare(ZeroHead(), (4,)), tmp_path / "r")
    onnx_part = json.loads((tmp_path / "r" / "report.json").read_text())["parts"]["onnx"]
    assert built.parts["onnx"].status == "ok" and onnx_part["informative"] is False
    page = (tmp_path / "r" / "index.html").read_text()
    section = page[page.index('<section id="onnx">'):]
    section = section[:section.index("</section>")]
    assert section.count('<tr class="dead">') == 4  # two outputs at batches 1 and 2
    assert section.count("ok, uninformative") == 4
    assert ("Uninformative: torch&#x27;s logits is all zeros (a layer initialised to zero, such as "
            "an untrained head?), so this check proves next to nothing") in section


# ----------------------------------------------------------------------------------------------
# Batch + 1: the values, not only that it runs.


def test_correct_model_matches_torch_at_batch_plus_one(cli: Cli, tmp_path: Path) -> None:
    result = _export(BatchMean(), tmp_path, batch=2)
    assert result.ok and result.batch_checked == 3
    (parity,) = result.batch_parity or []
    assert parity.batch == 3 and parity.ok and parity.max_abs_error < 1e-5

    shown = cli("export-onnx", f"{HERE}:BatchMean", "4", "--batch-size", "2", "-o",
                str(tmp_path / "cli.onnx"))
    assert shown.exit_code == 0, shown.stderr
    assert re.search(r"│\s+2 │ output │\s+[\d.e-]+ │\s+[\d.e-]+ │ ok │", shown.stdout)
    assert re.search(r"│\s+3 │ output │\s+[\d.e-]+ │\s+[\d.e-]+ │ ok │", shown.stdout)
    assert ("Dynamic batch: also ran at batch 3 in ONNX Runtime, values compared with torch's "
            "above") in shown.stdout


def _torch_at(model: nn.Module, x: torch.Tensor) -> Any:
    with torch.no_grad():
        return model.eval()(x).numpy()


def test_batch_size_frozen_in_the_file_fails(cli: Cli, tmp_path: Path) -> None:
    """Asked for a dynamic batch (``dynamic=batch``), a file that is wrong at another batch
    fails; under the default ``auto`` the batch is fixed instead (the next test)."""
    model = FrozenBatch()
    result = _export(model, tmp_path, batch=2, exporter="torchscript", dynamic="batch")
    (parity,) = result.parity or []
    assert parity.ok and parity.batch == 2  # right at the export's batch...
    (bigger,) = result.batch_parity or []
    assert bigger.batch == 3 and not bigger.ok  # ...wrong at the next one
    assert not result.ok
    # The error is the file's: its output at batch 3 is torch's scaled by 3/2.
    x = torch.randn(3, 4)
    import onnxruntime as ort

    (got,) = ort.InferenceSession(str(tmp_path / "m.onnx"),
                                  providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})
    np.testing.assert_allclose(got, _torch_at(model, x) * 1.5, rtol=1e-5, atol=1e-6)
    assert result.problems == [
        f"ONNX Runtime matches torch at the export's sizes but differs by "
        f"{bigger.max_abs_error:.3g} on output at batch 3, beyond `atol` 0.0001 (the exporter "
        "recorded the batch size as a constant)"]
    # The advice is about the batch, not float16 or nondeterminism.
    assert result.advice == ("Export with a fixed batch (`static`), or with `dynamic=auto`, "
                             "which fixes it when the file needs it.")
    data = result.to_dict()
    assert data["ok"] is False and data["batch_parity"][0]["ok"] is False

    path = tmp_path / "cli.onnx"
    shown = cli("export-onnx", f"{HERE}:FrozenBatch", "4", "--batch-size", "2", "--exporter",
                "torchscript", "--dynamic", "batch", "-o", str(path))
    assert shown.exit_code == 1 and path.is_file()
    assert re.search(r"│\s+3 │ output │\s+[\d.e-]+ │\s+[\d.e-]+ │ over atol │", shown.stdout)
    message = " ".join(shown.stderr.split())
    assert re.search(r"error: .*cli\.onnx was written, but ONNX Runtime matches torch at the "
                     r"export's sizes but differs by [\d.e-]+ on output at batch 3, beyond "
                     r"--atol 0\.0001 \(the exporter recorded the batch size as a constant\)\. "
                     r"Export with a fixed batch \(--static\), or with --dynamic auto, which "
                     r"fixes it when the file needs it\.$", message), message
    assert "float16" not in message


def test_auto_fixes_a_batch_the_file_cannot_vary(tmp_path: Path) -> None:
    result = _export(FrozenBatch(), tmp_path, batch=2, exporter="torchscript")
    assert result.ok and not result.dynamic_batch and result.batch_parity is None
    assert result.inputs[0].shape == [2, 4]
    assert any(re.fullmatch(r"the batch dimension is fixed at 2: with it dynamic, ONNX Runtime "
                            r"matches torch at the export's sizes but differs by [\d.e-]+ on "
                            r"output at batch 3, beyond `atol` 0\.0001 \(the exporter recorded "
                            r"the batch size as a constant\)", note) for note in result.notes)


def test_report_fixes_a_batch_the_file_cannot_vary(tmp_path: Path) -> None:
    from modelviz.features.report import build as report

    torch.manual_seed(0)
    built = report.build(api.prepare(FrozenBatch(), (4,), batch_size=2), tmp_path / "r",
                         exporter="torchscript")
    assert built.parts["onnx"].status == "ok"
    onnx_part = json.loads((tmp_path / "r" / "report.json").read_text())["parts"]["onnx"]
    assert onnx_part["dynamic_batch"] is False and onnx_part["inputs"][0]["shape"] == [2, 4]
    assert any(note.startswith("the batch dimension is fixed at 2: with it dynamic, ONNX "
                               "Runtime matches torch") for note in onnx_part["notes"])


def test_static_batch_has_no_batch_parity(tmp_path: Path) -> None:
    torch.manual_seed(0)
    result = api.export_onnx(BatchMean(), (4,), output=tmp_path / "m.onnx", batch_size=2,
                             dynamic_batch=False)
    assert result.ok and result.batch_checked is None and result.batch_parity is None
    assert result.to_dict()["batch_parity"] is None
