"""Machine-readable outputs: JSON (the documented schema) and CSV (one row per module)."""

from __future__ import annotations

import csv
import io
import json

from modelviz.escape import csv_cell
from modelviz.features.summary.summary import Summary

#: Columns holding JSON text: its escapes already keep control characters out, and a list, an
#: object or a size never starts with what a spreadsheet reads as a formula.
_JSON_FIELDS = ("input_shapes", "output_shapes", "kernel_size")

CSV_FIELDS = ("name", "type", "depth", "parent", "calls", "input_shapes", "output_shapes",
              "params", "params_own", "trainable", "flops", "macs", "output_bytes", "kernel_size")


def render_json(summary: Summary) -> str:
    """Names exactly as the model has them: ``json`` writes control characters as ``\\u``
    escapes, and a program reading it gets the real name back."""
    return json.dumps(summary.to_dict(), indent=2) + "\n"


def render_csv(summary: Summary) -> str:
    """One row per module; text cells (name, type, parent) through ``csv_cell``, since CSV files
    are opened in spreadsheets, where a module named ``=cmd|...`` would be a formula."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for layer in summary.to_dict()["layers"]:
        row = dict(layer)
        for key in _JSON_FIELDS:
            row[key] = json.dumps(row[key]) if row[key] is not None else ""
        for key in CSV_FIELDS:
            if key not in _JSON_FIELDS and isinstance(row[key], str):
                row[key] = csv_cell(row[key])
        writer.writerow(row)
    return buffer.getvalue()
