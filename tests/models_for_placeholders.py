"""Models whose build or forward pass depends on their weights' values, for placeholder weights.

Each is tiny, and each reaches the values another way: an ``if`` on a tensor, ``.tolist()``, a
boolean mask, a value caught in ``except``; or a constructor that reads a weight it has just
drawn. ``InputRead`` reads values too, but only of its input, which placeholders do not change.
"""

from __future__ import annotations

import torch
from torch import nn

#: The CPU generator's state around each ``RngProbe`` build: (before, after) the random inits.
RNG_STATES: list[tuple[torch.Tensor, torch.Tensor]] = []


class Gate(nn.Module):
    """Takes one of two heads by the sign of the weights' output: a shape from values."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.b = nn.Linear(8, 4)
        self.c = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h: torch.Tensor = self.a(x)
        out: torch.Tensor = self.b(h) if h.sum() > 0 else self.c(h)
        return out


class Tolist(nn.Module):
    """Cuts its output to a length read with ``.tolist()``, which no operator sees."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h: torch.Tensor = self.a(x)
        total = h.sum(dim=1).tolist()  # no operator: the value leaves unseen by a mode
        keep = int(abs(sum(total)) * 1000) % 7 + 1
        return h[:, :keep]


class Masked(nn.Module):
    """Keeps the values above a threshold: a boolean index, whose shape counts them."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h: torch.Tensor = self.a(x)
        return h[h > 0.1]


class Swallow(nn.Module):
    """Reads a value inside a bare ``except``, which catches whatever stops the pass."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.b = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h: torch.Tensor = self.a(x)
        try:
            big = bool(h.max() > 0)
        except:  # noqa: E722 - what a model's own code may do
            big = False
        out: torch.Tensor = self.b(h) if big else h
        return out


class InputRead(nn.Module):
    """Reads values of its input alone (as transformers does to build attention masks)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x > 100).any():
            return x
        out: torch.Tensor = self.a(x)
        return out


class ReadsWhileBuilding(nn.Module):
    """Decides its depth from a weight it has just drawn at random."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8)
        extra = 1 + int(self.a.weight.abs().max() * 100) % 3
        self.layers = nn.Sequential(*(nn.Linear(8, 8) for _ in range(extra)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.layers(self.a(x))
        return out


class TruncatedAwayFromZero(nn.Module):
    """``trunc_normal_`` into [0.5, 2]: a sampler that redraws until every value is in range,
    which zeros never are."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8)
        nn.init.trunc_normal_(self.a.weight, mean=1.0, std=0.5, a=0.5, b=2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.a(x)
        return out


class RandomBuffer(nn.Module):
    """A projection drawn after the layers' inits, kept as a buffer no state dict holds."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.register_buffer("projection", torch.randn(8, 4), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h: torch.Tensor = self.a(x)
        return h @ self.get_buffer("projection")


class RngProbe(nn.Module):
    """Records the generator's state before and after its layers draw their weights."""

    def __init__(self) -> None:
        super().__init__()
        before = torch.random.get_rng_state()
        self.a = nn.Linear(8, 8)
        self.b = nn.Conv1d(8, 8, 3)
        RNG_STATES.append((before, torch.random.get_rng_state()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h: torch.Tensor = self.a(x)
        out: torch.Tensor = self.b(h.unsqueeze(-1).expand(-1, -1, 3))
        return out


class HiddenDraw(nn.Module):
    """A random tensor kept in a list, where no state dict looks, drawn after a skipped init."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.kept = [torch.randn(8)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h: torch.Tensor = self.a(x)
        return h + self.kept[0]
