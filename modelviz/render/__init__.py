"""Renderers: turn a ``Summary`` into text. One module per output kind; none of them prints."""

from __future__ import annotations

from modelviz.render.options import SummaryColumns, TableOptions

__all__ = ["SummaryColumns", "TableOptions"]
