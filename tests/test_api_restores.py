"""The caller's model through the Python API: whatever a function does (train mode, weights,
another device or dtype, a pass that fails), the model comes back exactly as it was given,
buffers included."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import modelviz
from modelviz.errors import ModelvizError


class WithBatchNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(torch.relu(self.bn(self.conv(x))))
        logits: torch.Tensor = self.head(x.mean((2, 3)))
        return logits


def _state(model: nn.Module) -> dict[str, Any]:
    """Everything the API could change: values, modes, devices, dtypes, grads."""
    return {
        "tensors": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [p.grad for p in model.parameters()],
        "devices": {t.device for t in model.state_dict().values()},
        "dtypes": [t.dtype for t in model.state_dict().values()],
    }


def _same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a["tensors"].keys() == b["tensors"].keys()
    for key in a["tensors"]:
        assert torch.equal(a["tensors"][key], b["tensors"][key]), key
    assert {k: v for k, v in a.items() if k != "tensors"} == \
        {k: v for k, v in b.items() if k != "tensors"}


CALLS: dict[str, Callable[[nn.Module, Path], Any]] = {
    "summary": lambda m, _: modelviz.summary(m, "3x8x8", train=True, batch_size=4),
    "graph": lambda m, _: modelviz.graph(m, "3x8x8", train=True, batch_size=4),
    "autograd": lambda m, _: modelviz.graph(m, "3x8x8", view="autograd", train=True),
    "activations": lambda m, out: modelviz.activations(m, "3x8x8", layers="bn", train=True,
                                                       output_dir=out / "acts", batch_size=4),
    "export_onnx": lambda m, out: modelviz.export_onnx(m, "3x8x8", output=out / "m.onnx",
                                                       train=True, batch_size=4),
    "tensorboard": lambda m, out: modelviz.tensorboard(m, "3x8x8", logdir=out / "tb",
                                                       train=True, batch_size=4),
    "write_report": lambda m, out: modelviz.write_report(m, "3x8x8", output_dir=out / "r",
                                                         train=True, batch_size=4),
    "float64": lambda m, _: modelviz.summary(m, "3x8x8", dtype="float64"),
    "meta": lambda m, _: modelviz.summary(m, "3x8x8", device="meta"),
}


@pytest.mark.parametrize("call", list(CALLS))
def test_train_mode_leaves_the_model_as_it_was(call: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = WithBatchNorm().eval()
    before = _state(model)
    CALLS[call](model, tmp_path)
    _same(before, _state(model))


def test_weights_go_into_a_copy(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = WithBatchNorm()
    other = WithBatchNorm()
    with torch.no_grad():
        for p in other.parameters():
            p.fill_(0.5)
    path = tmp_path / "w.pt"
    torch.save(other.state_dict(), path)
    before = _state(model)
    result = modelviz.summary(model, "3x8x8", weights=path)
    assert result.totals.params == sum(p.numel() for p in model.parameters())
    _same(before, _state(model))
    with pytest.raises(ModelvizError, match="forward pass failed"):  # and when the pass fails
        modelviz.summary(model, "5x8x8", weights=path, train=True)
    _same(before, _state(model))
    report = modelviz.activations(model, "3x8x8", layers="conv", weights=path)
    assert report.layers[0].stats.mean is not None  # the copy did get the weights:
    plain = modelviz.activations(model, "3x8x8", layers="conv")
    assert report.layers[0].stats.mean != plain.layers[0].stats.mean
