"""The models that memory predictions are checked on, built the same way on both sides."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn


class Recurrent(nn.Module):
    """An LSTM classifier: what autograd saves for an RNN is per time step."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(64, 256, num_layers=2, batch_first=True)
        self.head = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        result: torch.Tensor = self.head(out[:, -1])
        return result


def _torchvision(name: str) -> Callable[[], tuple[nn.Module, Callable[[int], Any]]]:
    def build() -> tuple[nn.Module, Callable[[int], Any]]:
        import torchvision

        return torchvision.models.get_model(name), lambda b: torch.randn(b, 3, 224, 224)

    return build


def _gpt2(**config: Any) -> tuple[nn.Module, Callable[[int], Any]]:
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(use_cache=False, bos_token_id=0, eos_token_id=0,
                                       **config))
    vocab = model.config.vocab_size

    class Logits(nn.Module):  # the logits alone, as the measurement's loss takes them
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            logits: torch.Tensor = self.model(ids).logits
            return logits

    return Logits(), lambda b: torch.randint(0, vocab, (b, 256))


def _gpt2_small() -> tuple[nn.Module, Callable[[int], Any]]:
    return _gpt2(n_layer=2, n_embd=256, n_head=4, vocab_size=8000)


class PooledNorm(nn.Module):
    """Batch norm after global pooling, as inception_v3's auxiliary head has: a training step
    at batch 1 has one value per channel there, which torch refuses."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.norm = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result: torch.Tensor = self.head(self.norm(self.pool(self.conv(x))).flatten(1))
        return result


def _lstm() -> tuple[nn.Module, Callable[[int], Any]]:
    return Recurrent(), lambda b: torch.randn(b, 100, 64)


MODELS: dict[str, Callable[[], tuple[nn.Module, Callable[[int], Any]]]] = {
    "resnet18": _torchvision("resnet18"), "gpt2-small": _gpt2_small, "lstm": _lstm,
    # the benchmark's (benchmarks/memory_vs_peers.py)
    "resnet50": _torchvision("resnet50"), "vit_b_16": _torchvision("vit_b_16"), "gpt2": _gpt2}
SIZES = {"resnet18": "3x224x224", "gpt2-small": "int64:256", "lstm": "100x64",
         "resnet50": "3x224x224", "vit_b_16": "3x224x224", "gpt2": "int64:256"}
