"""``modelviz profile`` on CUDA: CUDA-event timing; skipped cleanly where torch sees no GPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from modelviz import api

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")]


def test_cuda_events_time_resnet50() -> None:
    """At batch 64 the GPU, not the launching CPU, sets the pace: the hooks' CPU time hides
    behind the kernels (at batch 1 resnet50 is launch-bound, and they cost about half again)."""
    result = api.profile("resnet50", "3x224x224", batch_size=64, runs=20, device="cuda")
    assert result.method == "CUDA events" and result.device.startswith("cuda")
    total = result.total_ms
    depth1 = sum(m.total_ms for m in result.modules.values() if m.depth == 1)
    assert depth1 == pytest.approx(total, rel=0.15)
    assert 0.7 <= total / result.bare_forward_ms <= 1.5
    convs = sum(m.self_ms for m in result.modules.values() if m.type == "Conv2d")
    assert convs > 0.3 * total
    if "datasheet" in result.peaks.source:
        assert result.peaks.ridge is not None
        assert result.modules["fc"].bound == "memory"  # 29 FLOP/B: its weights dominate
    else:
        assert result.peaks.ridge is None and result.notes


def test_cuda_kernel_trace(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    api.profile("resnet18", "3x224x224", runs=3, device="cuda", trace=path, trace_kernels=True)
    events = json.loads(path.read_text())["traceEvents"]
    assert any(e.get("cat") == "kernel" for e in events)
    assert any(e.get("name") == "layer1.0.conv1 (Conv2d)" for e in events)


def test_cuda_backward_and_spans(tmp_path: Path) -> None:
    result = api.profile("resnet18", "3x224x224", runs=3, device="cuda", backward=True,
                         trace=tmp_path / "t.json")
    assert result.backward_ms is not None and result.backward_ms > 0
    events = [e for e in json.loads((tmp_path / "t.json").read_text())["traceEvents"]
              if e["ph"] == "X"]
    root = next(e for e in events if e["name"] == "ResNet")
    assert all(root["ts"] - 0.01 <= e["ts"] <= root["ts"] + root["dur"] + 0.01 for e in events)
