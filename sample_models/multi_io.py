"""Models with several inputs and with dict outputs, which torchsummary cannot handle."""

import torch
from torch import nn


class TwoInputNet(nn.Module):
    """An image and a feature vector: SIZES 3x32x32 10."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.image = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                   nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.vector = nn.Sequential(nn.Linear(10, 8), nn.ReLU())
        self.head = nn.Linear(16, num_classes)

    def forward(self, image: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        merged = torch.cat([self.image(image), self.vector(features)], dim=1)
        logits: torch.Tensor = self.head(merged)
        return logits


class DictOutputNet(nn.Module):
    """Returns ``{"logits": ..., "embedding": ...}``: SIZES 16."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 8))
        self.classifier = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        embedding = self.encoder(x)
        return {"logits": self.classifier(embedding), "embedding": embedding}
