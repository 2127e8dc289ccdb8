"""When ONNX Runtime and torch disagree, the first module whose output differs is named: in the
table, in the JSON and in the error line. Real exports of a model with a deliberately wrong
ONNX translation, under both exporters."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from modelviz import api
from tests.helpers import Cli

BROKEN = "sample_models.onnx_trouble:BrokenInTheMiddle"
HERE = "tests.test_onnx_divergence"


class WrongBetweenModules(nn.Module):
    """The wrong translation in the model's own forward, between its modules: every module
    agrees, and the difference is said to come from the forward itself."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 8)
        self.b = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)
        if torch.onnx.is_in_onnx_export():  # the dynamo exporter (this test's)
            y = torch.onnx.ops.symbolic("ai.onnx::Relu", (y,), {}, dtype=y.dtype,
                                        shape=y.shape, version=1)
        else:
            y = nn.functional.gelu(y)
        out: torch.Tensor = self.b(y)
        return out


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_the_first_diverging_module_is_named(cli: Cli, tmp_path: Path, exporter: str) -> None:
    path = tmp_path / "broken.onnx"
    result = cli("export-onnx", BROKEN, "4", "-o", str(path), "--exporter", exporter, "--json")
    assert result.exit_code == 1 and path.is_file()
    data = json.loads(result.stdout)
    found = data["first_divergence"]
    assert found["module"] == "blocks.1.act" and found["type"] == "WrongGelu"
    assert found["onnx_ops"] == {"Relu": 1}
    # embed, blocks.0.lin, blocks.0.act, blocks.0 and blocks.1.lin ran before it and agree.
    assert found["modules_agreeing"] == 5 and found["rounding"] is False
    assert 0.01 < found["max_abs_error"] < math.inf
    assert data["advice"].startswith("Look at how blocks.1.act (WrongGelu) is translated to "
                                     "ONNX")
    line = result.stderr.strip().splitlines()[-1]
    assert re.fullmatch(
        r"error: .*broken\.onnx was written, but ONNX Runtime differs from torch by [\d.e-]+ on "
        r"output, beyond --atol 0\.0001; the first module whose output differs is blocks\.1\.act "
        r"\(WrongGelu\), by [\d.e-]+; its ONNX nodes: Relu \(5 modules before it agree\)\. Look "
        r"at how blocks\.1\.act \(WrongGelu\) is translated to ONNX \(a custom symbolic or "
        r"torch\.onnx\.ops call, an operator the exporter decomposes\), or raise --atol if the "
        r"difference is acceptable\.", line), line
    assert "float16" not in result.stderr


def test_the_table_names_it(cli: Cli, tmp_path: Path) -> None:
    result = cli("export-onnx", BROKEN, "4", "-o", str(tmp_path / "broken.onnx"))
    assert result.exit_code == 1
    flat = " ".join(result.stdout.split())
    assert re.search(r"First divergence the first module whose output differs is blocks\.1\.act "
                     r"\(WrongGelu\), by [\d.e-]+; its ONNX nodes: Relu \(5 modules before it "
                     r"agree\)", flat), flat


def test_a_difference_between_modules_is_put_in_the_forward(tmp_path: Path) -> None:
    """b's output differs, but so does its input: b is right, the forward's code before it is
    not."""
    torch.manual_seed(0)
    result = api.export_onnx(WrongBetweenModules(), (4,), output=tmp_path / "m.onnx")
    assert not result.ok and result.divergence is not None
    found = result.divergence
    assert (found.module, found.before, found.agreed) == ("", "b", 1)
    assert re.fullmatch(r"the modules before b agree \(1 compared\), but its input already "
                        r"differs by [\d.e-]+: the difference is made in WrongBetweenModules's "
                        r"own forward, before b", found.text()), found.text()
    assert result.advice == ("Look at the code of WrongBetweenModules.forward between its "
                             "modules, or raise `atol` if the difference is acceptable.")


def test_a_passing_export_looks_for_nothing(tmp_path: Path) -> None:
    result = api.export_onnx("sample_models.seeds:Net", "1x28x28", output=tmp_path / "n.onnx")
    assert result.ok and result.divergence is None and result.advice is None
    assert result.to_dict()["first_divergence"] is None


class WrongGelu(nn.Module):
    """GELU in torch, Relu in the dynamo exporter's file (sample_models.onnx_trouble has one
    for both exporters)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            out: torch.Tensor = torch.onnx.ops.symbolic("ai.onnx::Relu", (x,), {},
                                                        dtype=x.dtype, shape=x.shape, version=1)
            return out
        return nn.functional.gelu(x)


class HostileName(nn.Module):
    """The broken activation under a name that is a terminal escape and Rich markup."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.add_module("\x1b[2J[/]act", WrongGelu())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = getattr(self, "\x1b[2J[/]act")(self.lin(x))
        return out


def test_a_hostile_module_name_is_shown_inert(cli: Cli, tmp_path: Path) -> None:
    result = cli("export-onnx", f"{HERE}:HostileName", "4", "-o", str(tmp_path / "h.onnx"))
    assert result.exit_code == 1
    assert "\x1b" not in result.stdout + result.stderr
    assert "the first module whose output differs is \\x1b[2J[/]act (WrongGelu)" in " ".join(
        result.stderr.split())
    assert "\\x1b[2J[/]act (WrongGelu)" in result.stdout
