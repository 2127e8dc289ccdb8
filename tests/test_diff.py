"""modelviz diff: two models or two summary files, totals and layer changes, CI failure."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import Cli


def _summary(cli: Cli, tmp_path: Path, name: str, *args: str) -> Path:
    target = tmp_path / name
    assert cli("summary", *args, "-o", str(target)).exit_code == 0
    return target


def test_head_change_shows_only_the_head(cli: Cli, tmp_path: Path) -> None:
    before = _summary(cli, tmp_path, "main.json", "resnet18", "3x64x64")
    result = cli("diff", str(before), "resnet18", "3x64x64", "-k", "num_classes=10", "-f", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["layers"] == [{"name": "fc", "change": "changed", "details": [
        "params 513,000 → 5,130", "output [1, 1000] → [1, 10]"]}]
    params = data["totals"]["params"]
    assert params["a"] == 11_689_512 and params["b"] == 11_181_642
    assert params["delta"] == -507_870 and round(params["percent"], 2) == -4.34


def test_markdown_for_pull_requests(cli: Cli) -> None:
    result = cli("diff", "sample_models.seeds:Net", "sample_models.seeds:ActivationNet",
                 "1x28x28", "-f", "markdown")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "### `sample_models.seeds:Net` → `sample_models.seeds:ActivationNet`"
    assert "| Total params | 44,426 | 21,840 | -22,586 (-50.84%) |" in lines
    assert "| FLOPs | 563.28 K | 961.00 K | +397.72 K (+70.61%) |" in lines
    assert "| `fc3` | removed | Linear, 850 params |" in lines
    assert ("| `conv1` | changed | params 156 → 260; output [1, 6, 24, 24] → [1, 10, 24, 24] |"
            in lines)


def test_identical_models(cli: Cli) -> None:
    result = cli("diff", "sample_models.seeds:Net", "sample_models.seeds:Net", "1x28x28")
    assert result.exit_code == 0
    assert "No layer was added, removed or changed." in result.stdout
    rows = [line for line in result.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == 6 and all(row.rstrip("│ ").endswith("=") for row in rows)
    data = json.loads(cli("diff", "sample_models.seeds:Net", "sample_models.seeds:Net", "1x28x28",
                          "-f", "json").stdout)
    assert data["layers"] == [] and all(t["delta"] == 0 for t in data["totals"].values())


def test_fail_on_increase(cli: Cli) -> None:
    args = ("diff", "sample_models.seeds:Net", "sample_models.seeds:ActivationNet", "1x28x28")
    result = cli(*args, "--fail-on-increase", "5")
    assert result.exit_code == 1
    assert result.stderr.strip() == ("error: FLOPs grew 70.61%, more than the 5% allowed. Check "
                                     "the change, or raise --fail-on-increase.")
    assert cli(*args, "--fail-on-increase", "80").exit_code == 0


def test_bad_summary_files(cli: Cli, tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}')
    result = cli("diff", str(other), "sample_models.seeds:Net", "1x28x28")
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"error: {other} is JSON, but not a modelviz summary. Write "
                                     "one with `modelviz summary MODEL -o summary.json`.")
    result = cli("diff", str(tmp_path / "missing.json"), str(other))
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"error: no such file: {tmp_path / 'missing.json'}. Check "
                                     "the path to the summary.")


def test_written_to_a_file(cli: Cli, tmp_path: Path) -> None:
    target = tmp_path / "diff.md"
    result = cli("diff", "sample_models.seeds:Net", "sample_models.seeds:Net", "1x28x28",
                 "-o", str(target))
    assert result.exit_code == 0 and result.stdout == ""
    assert target.read_text().startswith("### `sample_models.seeds:Net` → ")
