"""A GitHub-flavoured Markdown table, for pull requests and CI summaries.

Names sit in code spans (``md_code``), every other cell and the title go through ``md_text``: a
module named ``<img onerror=...>`` or ``a|b`` shows as its name, in one table cell."""

from __future__ import annotations

from modelviz.escape import md_code, md_text
from modelviz.features.summary.cells import (
    HEADERS,
    cells,
    column_keys,
    display_rows,
    footer_lines,
)
from modelviz.features.summary.options import TableOptions
from modelviz.features.summary.summary import ROOT_PLACE, Summary


def render_markdown(summary: Summary, options: TableOptions) -> str:
    keys = column_keys(options.columns)
    headers = [HEADERS["layer"]] + [HEADERS[k] for k in keys]
    align = [":---"] + [":---" if "shape" in str(k) else "---:" for k in keys]
    lines = [f"### {md_text(summary.model)} ({md_text(summary.trace.model_type)})", "",
             "| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    for row in display_rows(summary, options):
        c = cells(row, summary.totals.params, options.columns)
        indent = "&nbsp;&nbsp;" * (row.depth - 1)
        name = f"{indent}{md_code(c.name)} ({md_text(c.type)})"
        lines.append("| " + " | ".join([name] + [md_text(c.values[k]) for k in keys]) + " |")
    lines += ["", "| Total | |", "| :--- | ---: |"]
    lines += [f"| {label} | {value} |" for label, value in footer_lines(summary.totals)]
    for param, owner in summary.shared_parameters():
        lines.append(f"\n\\* {md_code(param, table=False)} is {md_code(owner, table=False)}: "
                     "counted once.")
    for op, where in summary.not_counted():
        places = ", ".join(w if w == ROOT_PLACE else md_code(w, table=False) for w in where)
        lines.append(f"\n**Not counted in FLOPs** (no formula): {md_code(op, table=False)} in "
                     f"{places}.")
    lines += [f"\n{md_text(note)}." for note in summary.storage_notes()]
    return "\n".join(lines) + "\n"
