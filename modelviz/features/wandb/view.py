"""``modelviz wandb`` for the terminal: what the run holds, panel by panel."""

from __future__ import annotations

from rich.table import Table

from modelviz.core.formatting import count
from modelviz.escape import printable
from modelviz.features.wandb.log import WandbRun


def render_run(run: WandbRun) -> Table:
    """One row per kind of thing logged; what could not be made is in the notes beside it."""
    where = f" ({run.run_id})" if run.run_id else ""
    table = Table(title=printable(f"W&B run{where} in project {run.project}, {run.mode}"),
                  title_justify="left", header_style="bold")
    table.add_column("Panel")
    table.add_column("What")
    table.add_row("Table", f"layers: {count(run.table_rows)} rows (the summary's default table)")
    table.add_row("Summary", ", ".join(run.summary) or "–")
    table.add_row("Media", printable(", ".join(f"activations/{n}" for n in run.images)) or "–")
    table.add_row("Histograms", f"{len(run.histograms)} parameter tensors" if run.histograms
                  else "–")
    table.add_row("Graph", ", ".join(run.graph) or "not logged (see the note above)")
    table.add_row("Artifact", printable(f"{run.artifact}: {', '.join(run.artifact_files)}")
                  if run.artifact else "–")
    return table
