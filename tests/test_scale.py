"""Models far larger than memory, on the meta device: seconds and well under 1.5 GB."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from tests.helpers import ROOT

MEASURE = """
import json, sys, time

from modelviz.core.machine import peak_rss

from modelviz.cli import app
start = time.perf_counter()
try:
    app(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
seconds = time.perf_counter() - start
peak = peak_rss()
print(json.dumps({"code": code, "seconds": seconds, "peak": peak}), file=sys.stderr)
"""


def _measure(*args: str) -> tuple[dict[str, Any], dict[str, float]]:
    proc = subprocess.run([sys.executable, "-c", MEASURE, *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, check=False)
    stats = json.loads(proc.stderr.strip().splitlines()[-1])
    assert stats["code"] in (0, None), proc.stderr
    return json.loads(proc.stdout), stats


def test_llama_7b_on_meta() -> None:
    data, stats = _measure("summary", "sample_models/llama.py:llama_7b", "int64:128",
                           "--device", "meta", "-f", "json")
    totals = data["totals"]
    assert totals["params"] == 6_738_415_616
    # 2 FLOPs per weight per token for every matmul weight (all but the embedding table), plus
    # causal attention's two products: 2 * 2 * heads * tokens^2 * head_dim per layer.
    matmul_weights = 6_738_415_616 - 32000 * 4096 - 4096 * (2 * 32 + 1)
    attention = 32 * 2 * 2 * 32 * 128 * 128 * 128
    assert totals["flops"] == 2 * 128 * matmul_weights + attention
    assert round(totals["params_size_mb"]) == 25705
    assert stats["peak"] < 1.5 * 1024**3, f"peak RSS {stats['peak'] / 1024**3:.2f} GB"
    assert stats["seconds"] < 60


def test_llama_70b_on_meta() -> None:
    start = time.perf_counter()
    data, stats = _measure("summary", "sample_models.llama:llama_70b", "int64:32",
                           "--device", "meta", "-f", "json")
    assert data["totals"]["params"] == 68_976_648_192
    assert stats["peak"] < 1.5 * 1024**3
    assert time.perf_counter() - start < 120
