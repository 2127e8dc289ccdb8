"""``modelviz report`` for the terminal: one row per part, with the number that matters most."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rich.table import Table
from rich.text import Text

from modelviz.core.formatting import human
from modelviz.escape import printable
from modelviz.features.report.parts import (
    ActivationsPart,
    GraphPart,
    MemoryPart,
    OnnxPart,
    Part,
    ProfilePart,
    Report,
    SummaryPart,
)


def render_report(report: Report, folder: Path, *,
                  terms: Callable[[str], str] = str) -> Table:
    """The parts' status, headline and files (or why one failed), messages through ``terms``."""
    table = Table(title=printable(f"modelviz report of {report.model} in {folder}"),
                  title_justify="left", header_style="bold")
    table.add_column("Part")
    table.add_column("Status")
    table.add_column("What", overflow="fold")
    table.add_column("Files or reason", overflow="fold")
    for part in report.parts.values():
        style = {"ok": "green", "skipped": "yellow"}.get(part.status, "bold red")
        files = ", ".join(str(f.relative_to(folder)) if f.is_relative_to(folder) else str(f)
                          for f in part.files[:6])
        if len(part.files) > 6:
            files += f" and {len(part.files) - 6} more"
        reason = part.error or part.problem or part.skipped
        table.add_row(part.name, Text(part.status, style=style), headline(part), printable(
            (terms(reason) + (f" ({files})" if files else "")) if reason else files))
    return table


def headline(part: Part) -> str:
    """The one number a reviewer looks for first in each part."""
    if isinstance(part, SummaryPart):
        return f"{part.totals.params:,} params, {human(part.totals.flops)}FLOPs"
    if isinstance(part, GraphPart) and part.nodes is not None:
        return f"{part.nodes} nodes"
    if isinstance(part, ActivationsPart) and part.result and part.result.layers:
        return f"{len(part.result.layers)} layers"
    if isinstance(part, OnnxPart) and part.result and part.result.parity:
        worst = max(p.max_abs_error for p in part.result.parity)  # any check, passed or not
        return f"max error {worst:.2g}, {part.result.node_count} nodes"
    if isinstance(part, MemoryPart) and part.plan is not None:
        from modelviz.core.formatting import binary_size as size

        inference = f"inference {size(part.plan.inference.peak_bytes)}"
        training = part.plan.training
        if training is None:
            return inference
        return f"training peak {size(training.peak_bytes)} ({part.plan.optimizer}), {inference}"
    if isinstance(part, ProfilePart) and part.profile is not None:
        slowest = part.profile.slowest()
        total = part.profile.total_ms
        forward = f"forward {total:.3g} ms" if total < 1000 else f"forward {total:,.0f} ms"
        return forward + (f", slowest {printable(slowest[0].name)}" if slowest else "")
    return ""
