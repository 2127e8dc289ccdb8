"""FLOPs: totals and per-module attribution equal torch's FlopCounterMode."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from modelviz import api
from modelviz.core import engine
from modelviz.features.summary.summary import rows
from sample_models.lstm_lm import LSTMLanguageModel
from sample_models.multi_io import TwoInputNet
from sample_models.seeds import Net, SmallConvNet
from sample_models.transformer import TinyTransformer


def _reference(model: nn.Module, *args: torch.Tensor) -> FlopCounterMode:
    """FlopCounterMode on the same computation as ours: without nn.MultiheadAttention's fused
    fast path, whose single op FlopCounterMode cannot see into (the engine turns it off too)."""
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(*args)
    finally:
        torch.backends.mha.set_fastpath_enabled(True)
    return counter


def _per_module(counter: FlopCounterMode, model: nn.Module) -> dict[str, int]:
    """FlopCounterMode names modules 'ClassName.child.grandchild'; ours are 'child.grandchild'."""
    root = type(model).__name__
    return {("" if key == root else key.removeprefix(root + ".")): sum(ops.values())
            for key, ops in counter.get_flop_counts().items() if key != "Global"}


TORCHVISION = [
    ("resnet18", 224), ("mobilenet_v3_small", 224), ("efficientnet_b0", 224),
    ("vit_b_16", 224), ("convnext_tiny", 224), ("swin_t", 224), ("densenet121", 224),
    ("squeezenet1_0", 224), ("inception_v3", 299),
]


@pytest.mark.parametrize(("name", "size"), TORCHVISION)
def test_torchvision_totals_and_attribution(name: str, size: int) -> None:
    torch.manual_seed(0)
    model = torchvision.models.get_model(name).eval()
    x = torch.randn(1, 3, size, size)
    trace = engine.run(model, (x,))
    reference = _reference(model, x)
    assert trace.flops == reference.get_total_flops() > 0
    expected = _per_module(reference, model)
    ours = {name: record.flops for name, record in trace.modules.items() if record.calls}
    assert {k: v for k, v in ours.items() if v} == {k: v for k, v in expected.items() if v}


@pytest.mark.parametrize(("name", "size"), [("resnet50", 224), ("vit_b_16", 224)])
def test_depth_one_rows_add_up(name: str, size: int) -> None:
    summary = api.summary(name, f"3x{size}x{size}")
    top = [row.record.flops for row in rows(summary.trace, depth=1)]
    assert sum(top) == summary.totals.flops
    assert summary.totals.macs == summary.totals.flops // 2


@pytest.mark.parametrize(("model", "inputs"), [
    (Net(), (torch.randn(2, 1, 28, 28),)),
    (SmallConvNet(), (torch.randn(1, 3, 224, 224),)),
    (TwoInputNet(), (torch.randn(1, 3, 32, 32), torch.randn(1, 10))),
    (TinyTransformer(), (torch.randint(0, 1000, (1, 64)),)),
    (nn.Conv1d(4, 8, 3), (torch.randn(4, 10),)),  # unbatched: watched op by op
    (nn.ConvTranspose2d(8, 4, 3, stride=2), (torch.randn(2, 8, 5, 5),)),
    (nn.Linear(6, 3), (torch.randn(2, 5, 6),)),
    (nn.MultiheadAttention(16, 4, batch_first=True), (torch.randn(1, 5, 16),) * 3),
])
def test_other_models_and_layers(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
    model.eval()
    assert engine.run(model, inputs).flops == _reference(model, *inputs).get_total_flops() > 0


def test_llama_on_meta_matches_flop_counter() -> None:
    from sample_models.llama import llama_tiny

    with torch.device("meta"):
        model = llama_tiny()
    tokens = torch.empty(1, 32, dtype=torch.int64, device="meta")
    trace = engine.run(model, (tokens,))
    assert trace.flops == _reference(model, tokens).get_total_flops() > 0


def test_lstm_counts_its_matrix_products() -> None:
    """FlopCounterMode sees one fused op and counts 0; we count 2 * gates * h * (in + h)."""
    model = LSTMLanguageModel(vocab_size=1000, dim=64, layers=2)
    trace = engine.run(model, (torch.randint(0, 1000, (3, 35)),))
    per_step = 2 * 4 * 64 * (64 + 64)
    assert trace.modules["rnn"].flops == per_step * 35 * 3 * 2
    assert _reference(model.rnn, torch.randn(3, 35, 64)).get_total_flops() == 0


def test_gru_bidirectional_and_unbatched() -> None:
    gru = nn.GRU(10, 20, num_layers=2, bidirectional=True)
    trace = engine.run(gru, (torch.randn(7, 10),))
    first = 2 * 3 * 20 * (10 + 20)
    second = 2 * 3 * 20 * (40 + 20)
    assert trace.flops == (first + second) * 7 * 2
