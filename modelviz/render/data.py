"""Machine-readable outputs: JSON (the documented schema) and CSV (one row per module)."""

from __future__ import annotations

import csv
import io
import json

from modelviz.layer_table import Summary

CSV_FIELDS = ("name", "type", "depth", "parent", "calls", "input_shapes", "output_shapes",
              "params", "params_own", "trainable", "flops", "macs", "output_bytes", "kernel_size")


def render_json(summary: Summary) -> str:
    return json.dumps(summary.to_dict(), indent=2) + "\n"


def render_csv(summary: Summary) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for layer in summary.to_dict()["layers"]:
        row = dict(layer)
        for key in ("input_shapes", "output_shapes", "kernel_size"):
            row[key] = json.dumps(row[key]) if row[key] is not None else ""
        writer.writerow(row)
    return buffer.getvalue()
