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


class _GeluWithWrongSymbolic(torch.autograd.Function):
    """GELU in torch; ReLU in the TorchScript exporter's file: a custom op whose ONNX symbolic
    is wrong, as a hand-written one can be."""

    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.gelu(x)

    @staticmethod
    def symbolic(g: object, x: object) -> object:
        return g.op("Relu", x)  # type: ignore[attr-defined]


class WrongGelu(nn.Module):
    """An activation whose ONNX translation is wrong under both exporters: the dynamo exporter
    records the ONNX operator its ``torch.onnx.ops.symbolic`` call names (Relu), the TorchScript
    exporter its autograd Function's symbolic (Relu again); torch computes GELU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export() and not torch.jit.is_tracing():
            return torch.onnx.ops.symbolic("ai.onnx::Relu", (x,), {}, dtype=x.dtype,
                                           shape=x.shape, version=1)
        result: torch.Tensor = _GeluWithWrongSymbolic.apply(x)
        return result


class Block(nn.Module):
    def __init__(self, act: nn.Module) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 8)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.act(self.lin(x))


class BrokenInTheMiddle(nn.Module):
    """Three blocks, the second with ``WrongGelu``: the first module that differs in ONNX
    Runtime is ``blocks.1.act``; the ones before it agree, the ones after it inherit the error."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 8)
        self.blocks = nn.Sequential(Block(nn.GELU()), Block(WrongGelu()), Block(nn.GELU()))
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.embed(x)))


class PerImage(nn.Module):
    """Handles the images of a batch one by one, as torchvision's detection transforms do: the
    TorchScript exporter records the batch as a fixed Split, which ONNX Runtime rejects at any
    other batch."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.conv(image[None])[0].mean((1, 2)) for image in x])
