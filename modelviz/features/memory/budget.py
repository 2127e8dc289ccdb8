"""Memory budgets as users write them (``80GB``, ``24GiB``, ``h100``), parsed without torch."""

from __future__ import annotations

import re

from modelviz.core import gpus
from modelviz.errors import SpecError

_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_budget(text: str) -> tuple[int, str]:
    """Bytes and how to say them: ``80GB`` is 80e9 bytes, ``80GiB`` 80 * 2**30, a card's name
    its memory as the driver reports it."""
    card = gpus.find(text)
    if card is not None:
        return card.memory_bytes, f"{card.name} ({card.memory_bytes / 2**30:.1f} GiB)"
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)\s*", text.lower())
    if match is None:
        raise SpecError(f"bad `fit={text}`.",
                        f"Give bytes with a unit (80GB, 24GiB, 512MiB) or a card: {gpus.known()}.")
    value = float(match.group(1)) * _UNITS[match.group(2)]
    if value < 1:
        raise SpecError(f"bad `fit={text}`: the budget is empty.", "Give a size such as 80GB.")
    return int(value), text.strip()
