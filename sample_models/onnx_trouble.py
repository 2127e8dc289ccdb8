"""Models that ONNX export cannot take as they are, for the error messages' tests and README."""

import torch
from torch import nn


class Spectrum(nn.Module):
    """Eigenvalues: an operator neither ONNX exporter can translate."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.eigvals(self.lin(x)).real


class WithSpectrum(nn.Module):
    """The unsupported operator one level down, so the error has a module to name."""

    def __init__(self) -> None:
        super().__init__()
        self.pre = nn.Linear(4, 4)
        self.spectrum = Spectrum()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spectrum(self.pre(x))


class Branchy(nn.Module):
    """Python control flow on a tensor's value: the dynamo exporter refuses it."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lin(x)
        if y.sum() > 0:
            return y * 2
        return y - 1
