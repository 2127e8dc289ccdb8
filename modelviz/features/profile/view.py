"""A profile as a Rich table, GitHub Markdown, CSV or JSON.

User text (the model's label, module names and types) goes through ``modelviz.escape``: into Rich
as ``Text`` through ``printable``, into Markdown through ``md_code``/``md_text``, into CSV through
``csv_cell``; JSON writes names exactly, its escapes keeping control characters out.
"""

from __future__ import annotations

import csv
import io
import json

from rich.console import Group
from rich.table import Table
from rich.text import Text

from modelviz.core.formatting import human, human_bytes
from modelviz.escape import csv_cell, md_code, md_text, printable
from modelviz.features.profile.measure import ModuleProfile, Profile, inputs_text

MARK = "●"
HEADERS = ("Layer (type)", "Total ms", "± IQR", "Self ms", "Share", "Calls", "FLOPs",
           "FLOP/s", "Bytes", "FLOP/B", "Bound")
CSV_FIELDS = ("name", "type", "depth", "parent", "calls", "timed", "total_ms", "self_ms",
              "spread_ms", "share", "flops", "flops_per_s", "bytes", "intensity", "bound")


def _cells(module: ModuleProfile) -> list[str]:
    if not module.timed:
        time_cells = ["–", "–", "–", "–"]
    else:
        time_cells = [f"{module.total_ms:.3f}", f"{module.spread_ms:.3f}",
                      f"{module.self_ms:.3f}", f"{module.share * 100:.1f}%"]
    rate = module.flops_per_s
    return [*time_cells, str(module.calls), human(module.flops) if module.flops else "–",
            human(rate) if rate else "–", human_bytes(module.bytes) if module.bytes else "–",
            f"{module.intensity:.1f}" if module.flops and module.bytes else "–",
            module.bound or "–"]


def _title(profile: Profile) -> str:
    compiled = " · torch.compile" if profile.compiled else ""
    return (f"{profile.model} ({profile.model_type}) · {inputs_text(profile)} · "
            f"{profile.device}{compiled}")


def summary_lines(profile: Profile) -> list[str]:
    """The lines under the table: totals, the hooks' cost, the peaks, the slowest layers."""
    lines = [f"forward {profile.total_ms:.3f} ms (IQR {profile.total_spread_ms:.3f}), median of "
             f"{profile.runs} runs after {profile.warmup} warm-up, {profile.method}; "
             f"{human(profile.flops)}FLOPs, "
             f"{human(profile.flops / (profile.total_ms / 1000)) if profile.total_ms else '–'}"
             "FLOP/s",
             f"bare forward {profile.bare_forward_ms:.3f} ms: the timing hooks cost "
             f"{profile.hook_overhead * 100:+.1f}%"]
    if profile.backward_ms is not None:
        lines.append(f"backward {profile.backward_ms:.3f} ms (as a whole)")
    peaks = profile.peaks
    if peaks.flops is not None and peaks.bandwidth is not None and peaks.ridge is not None:
        lines.append(f"peaks {human(peaks.flops)}FLOP/s, {human(peaks.bandwidth)}B/s (ridge "
                     f"{peaks.ridge:.1f} FLOP/B): {peaks.source}")
    slowest = profile.slowest()
    if slowest:
        share = sum(m.self_ms for m in slowest) / profile.total_ms if profile.total_ms else 0
        lines.append(f"{MARK} slowest layers, {share * 100:.0f}% of the time: "
                     + ", ".join(f"{m.name} {m.self_ms / profile.total_ms * 100:.0f}%"
                                 for m in slowest))
    return lines


def render_table(profile: Profile, *, depth: int | None = 3, sort: str = "time") -> Group:
    table = Table(header_style="bold", expand=False)
    table.add_column(HEADERS[0], no_wrap=True)
    for header in HEADERS[1:]:
        table.add_column(header, justify="left" if header == "Bound" else "right", no_wrap=True)
    marked = {m.name for m in profile.slowest()}
    for module in profile.rows(depth, sort):
        label = Text("  " * (module.depth - 1))
        if module.name in marked:
            label.append(MARK + " ", style="bold red")
        label.append(printable(module.name), style="bold" if module.children else "")
        label.append(f" ({printable(module.type)})", style="dim")
        style = "bold" if module.name in marked else ("dim italic" if not module.timed else "")
        table.add_row(label, *[Text(c) for c in _cells(module)], style=style)
    footer = [Text(printable(line), style="dim" if i else "") for i, line in
              enumerate(summary_lines(profile))]
    notes = [Text("note: " + printable(n), style="yellow") for n in profile.notes]
    return Group(Text(printable(_title(profile)), style="italic"), table, *footer, *notes)


def render_markdown(profile: Profile, *, depth: int | None = 3, sort: str = "time") -> str:
    align = [":---"] + ["---:"] * (len(HEADERS) - 2) + [":---"]
    lines = [f"### {md_text(profile.model)} ({md_text(profile.model_type)})", "",
             "| " + " | ".join(HEADERS) + " |", "| " + " | ".join(align) + " |"]
    marked = {m.name for m in profile.slowest()}
    for module in profile.rows(depth, sort):
        indent = "&nbsp;&nbsp;" * (module.depth - 1)
        mark = f"{MARK} " if module.name in marked else ""
        name = f"{indent}{mark}{md_code(module.name)} ({md_text(module.type)})"
        lines.append("| " + " | ".join([name, *[md_text(c) for c in _cells(module)]]) + " |")
    lines.append("")
    lines += [md_text(line) + "  " for line in summary_lines(profile)]
    lines += [f"\n**Note:** {md_text(n)}" for n in profile.notes]
    return "\n".join(lines) + "\n"


def render_json(profile: Profile) -> str:
    return json.dumps(profile.to_dict(), indent=2) + "\n"


def render_csv(profile: Profile, *, sort: str = "name") -> str:
    """One row per module, every module; text cells through ``csv_cell``, for spreadsheets."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for module in profile.rows(None, sort):
        row = module.to_dict()
        for key in CSV_FIELDS:
            value = row[key]
            if isinstance(value, str):
                row[key] = csv_cell(value)
            elif value is None:
                row[key] = ""
        writer.writerow(row)
    return buffer.getvalue()
