"""CUDA paths; skipped cleanly where torch sees no GPU (CI never has one)."""

from __future__ import annotations

import pytest
import torch

from modelviz import api
from modelviz.core import engine
from sample_models.seeds import Net

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")]


def test_summary_on_cuda_measures_peak_memory() -> None:
    summary = api.summary("resnet18", "3x224x224", device="cuda")
    assert summary.trace.device.startswith("cuda")
    peak = summary.totals.peak_memory_mb
    assert peak is not None and peak > summary.totals.params_size_mb  # weights live there too
    cpu = api.summary("resnet18", "3x224x224", device="cpu").totals
    assert summary.totals.flops == cpu.flops and summary.totals.params == cpu.params


def test_module_passed_in_goes_back_to_its_device() -> None:
    model = Net()
    trace = engine.run(model, (torch.randn(1, 1, 28, 28, device="cuda"),),
                       device=torch.device("cuda"))
    assert trace.device.startswith("cuda")
    assert next(model.parameters()).device.type == "cpu"


def test_half_precision_on_cuda() -> None:
    summary = api.summary("resnet18", "3x224x224", device="cuda", dtype="float16")
    assert summary.trace.dtype == "float16"
    assert summary.totals.params_size_mb == pytest.approx(11_689_512 * 2 / 1024**2)
