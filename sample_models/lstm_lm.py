"""An LSTM language model on int64 tokens, with the decoder tied to the embedding.

SIZES ``int64:35``. The tied weight must be counted once; ``drop`` runs twice per pass; the LSTM
returns a nested tuple ``(output, (h, c))``.
"""

import torch
from torch import nn


class LSTMLanguageModel(nn.Module):
    def __init__(self, vocab_size: int = 1000, dim: int = 64, layers: int = 2) -> None:
        super().__init__()
        self.encoder = nn.Embedding(vocab_size, dim)
        self.drop = nn.Dropout(0.2)
        self.rnn = nn.LSTM(dim, dim, layers, batch_first=True)
        self.decoder = nn.Linear(dim, vocab_size)
        self.decoder.weight = self.encoder.weight  # weight tying (Press & Wolf, 2017)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.rnn(self.drop(self.encoder(tokens)))
        logits: torch.Tensor = self.decoder(self.drop(hidden))
        return logits
