"""The meta device with models whose code reads tensor values: building falls back to small
tensors on the cpu (regnets), and a forward pass that reads values says so and names the line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torchvision

from modelviz import api
from modelviz.core.loading import load_model
from modelviz.errors import ForwardError, UserCodeError
from tests.helpers import Cli

REGNETS = sorted(n for n in torchvision.models.list_models(module=torchvision.models)
                 if n.startswith("regnet"))

TOUCHY = """\
import torch
from torch import nn


class Touchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        with torch.no_grad():
            self.fc.weight.copy_(torch.eye(4))
        assert self.fc.weight.sum().item() == 4
        self.rates = [r.item() for r in torch.linspace(0, 0.1, 3)]
        self.big = nn.Linear(256, 256)

    def forward(self, x):
        return self.big(self.fc(x).repeat(1, 64))


class Hopeless(nn.Module):
    def __init__(self):
        super().__init__()
        self.big = nn.Linear(256, 256)
        self.scale = self.big.weight.abs().max().item()


class Gate(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        x = self.fc(x)
        if x.sum().item() > 0:
            return x
        return -x
"""


@pytest.fixture
def touchy(tmp_path: Path) -> Path:
    path = tmp_path / "touchy.py"
    path.write_text(TOUCHY)
    return path


def test_regnets_count_torchvisions_published_macs_on_meta() -> None:
    assert len(REGNETS) == 15
    for name in REGNETS:
        weights = torchvision.models.get_model_weights(name).DEFAULT
        size = weights.transforms().crop_size[0]
        totals = api.summary(name, f"3x{size}x{size}", device="meta").totals
        assert round(totals.macs / 1e9, 3) == pytest.approx(weights.meta["_ops"]), name
        assert totals.params == weights.meta["num_params"], name


def test_regnet_on_meta_says_how_it_was_built() -> None:
    loaded = load_model("regnet_y_400mf", device="meta")
    assert all(t.is_meta for t in loaded.module.state_dict().values())
    assert len(loaded.notes) == 1
    note = loaded.notes[0]
    assert note.startswith("built on meta with its small tensors on the cpu first")
    assert "regnet_y_400mf reads tensor values (torchvision/models/regnet.py, line" in note
    cpu = load_model("regnet_y_400mf").module
    assert (sum(p.numel() for p in loaded.module.parameters())
            == sum(p.numel() for p in cpu.parameters()) == 4_344_144)


def test_init_that_touches_data_builds_on_meta(touchy: Path) -> None:
    loaded = load_model(f"{touchy}:Touchy", device="meta")
    assert all(t.is_meta for t in loaded.module.state_dict().values())
    assert loaded.notes and "(touchy.py, line 11)" in loaded.notes[0]
    cpu = load_model(f"{touchy}:Touchy").module
    assert (sum(p.numel() for p in loaded.module.parameters())
            == sum(p.numel() for p in cpu.parameters()) == 20 + 65_792)
    assert api.summary(f"{touchy}:Touchy", "4", device="meta").totals.params == 65_812


def test_init_that_reads_a_large_tensor_cannot_build_on_meta(touchy: Path) -> None:
    with pytest.raises(UserCodeError) as info:
        load_model(f"{touchy}:Hopeless", device="meta")
    message = str(info.value)
    assert "cannot be built on the meta device" in message
    assert "(touchy.py, line 23: self.scale = self.big.weight.abs().max().item())" in message
    assert "`device=cpu`" in message


def test_forward_reading_values_names_the_line(touchy: Path) -> None:
    with pytest.raises(ForwardError) as info:
        api.summary(f"{touchy}:Gate", "4", device="meta")
    message = str(info.value)
    assert "reads tensor values, so it cannot run on the meta device" in message.replace(
        " (.item(), if on a tensor, nonzero)", "")
    assert "in Gate.forward (touchy.py, line 33: if x.sum().item() > 0:)" in message
    assert "`device=cpu`" in message and "`sizes`" not in message
    assert api.summary(f"{touchy}:Gate", "4").totals.params == 20  # fine on the cpu


def test_detection_model_on_meta_says_it_reads_values(cli: Cli) -> None:
    result = cli("summary", "fasterrcnn_mobilenet_v3_large_320_fpn", "--device", "meta")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "reads tensor values" in lines[0] and "cannot run on the meta device" in lines[0]
    assert "in rpn (RegionProposalNetwork) (torchvision/models/detection/rpn.py, line" in lines[0]
    assert "--device cpu" in lines[0]
    assert "SIZES" not in lines[0] and "register_meta" not in lines[0]
