"""A GitHub-flavoured Markdown table, for pull requests and CI summaries."""

from __future__ import annotations

from modelviz.layer_table import Summary
from modelviz.render.layers import HEADERS, cells, column_keys
from modelviz.render.options import TableOptions
from modelviz.render.text import totals_lines


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(summary: Summary, options: TableOptions) -> str:
    keys = column_keys(options.columns)
    headers = [HEADERS["layer"]] + [HEADERS[k] for k in keys]
    align = [":---"] + [":---" if "shape" in str(k) else "---:" for k in keys]
    lines = [f"### {summary.model} ({summary.trace.model_type})", "",
             "| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    for row in summary.rows(depth=options.depth, fold=options.fold):
        c = cells(row, summary.totals.params, options.columns)
        indent = "&nbsp;&nbsp;" * (row.depth - 1)
        name = f"{indent}`{c.name}` ({c.type})"
        lines.append("| " + " | ".join([_escape(name)] + [_escape(c.values[k]) for k in keys])
                     + " |")
    lines += ["", "| Total | |", "| :--- | ---: |"]
    lines += [f"| {label} | {value} |" for label, value in totals_lines(summary.totals)]
    for param, owner in summary.shared_parameters():
        lines.append(f"\n\\* `{param}` is `{owner}`: counted once.")
    return "\n".join(lines) + "\n"
