"""A small encoder-only transformer classifier on int64 tokens: SIZES ``int64:64``."""

import torch
from torch import nn


class TinyTransformer(nn.Module):
    def __init__(self, vocab_size: int = 1000, dim: int = 64, heads: int = 4, layers: int = 2,
                 max_len: int = 512, num_classes: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.position = nn.Parameter(torch.zeros(1, max_len, dim))
        layer = nn.TransformerEncoderLayer(dim, heads, dim * 4, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.position[:, : tokens.shape[1]]
        x = self.encoder(x)
        logits: torch.Tensor = self.head(self.norm(x.mean(dim=1)))
        return logits
