"""modelviz diff: two models or two summary files, totals and layer changes, CI failure; two
memory plans (files, or models with --memory) and two profiles, read from the files the real
commands write."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import modelviz
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
    assert result.stderr.strip() == (
        f"error: {other} is JSON, but not a modelviz summary, memory plan or profile. Write one "
        "with `modelviz summary MODEL -o summary.json` (or `modelviz memory`, `modelviz "
        "profile`).")
    result = cli("diff", str(tmp_path / "missing.json"), str(other))
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"error: no such file: {tmp_path / 'missing.json'}. Check "
                                     "the path to the file.")


def test_written_to_a_file(cli: Cli, tmp_path: Path) -> None:
    target = tmp_path / "diff.md"
    result = cli("diff", "sample_models.seeds:Net", "sample_models.seeds:Net", "1x28x28",
                 "-o", str(target))
    assert result.exit_code == 0 and result.stdout == ""
    assert target.read_text().startswith("### `sample_models.seeds:Net` → ")


# Memory plans: files written by the real API, compared figure by figure.

MEMORY_FIGURES = {"inference_peak_bytes": ("inference", "peak_bytes"),
                  "training_peak_bytes": ("training", "peak_bytes"),
                  "parameters_bytes": ("training", "parameters_bytes"),
                  "gradients_bytes": ("training", "gradients_bytes"),
                  "optimizer_bytes": ("training", "optimizer_bytes"),
                  "activations_bytes": ("training", "activations_bytes")}


def _write(folder: Path, name: str, data: dict[str, Any]) -> Path:
    path = folder / name
    path.write_text(json.dumps(data))
    return path


@pytest.fixture(scope="module")
def plans(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """resnet18 and resnet34 planned on meta as ``modelviz memory -o`` writes them (resnet18
    also at batch 4, and with a fit budget)."""
    folder = tmp_path_factory.mktemp("plans")
    return {
        "r18": _write(folder, "r18.json", modelviz.memory(
            "resnet18", "3x64x64", device="meta", fit="256MiB").to_dict()),
        "r34": _write(folder, "r34.json", modelviz.memory(
            "resnet34", "3x64x64", device="meta", fit="256MiB").to_dict()),
        "r18b4": _write(folder, "r18b4.json", modelviz.memory(
            "resnet18", "3x64x64", device="meta", batch_size=4).to_dict()),
    }


def _read(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_memory_files_deltas_are_the_files_differences(cli: Cli, plans: dict[str, Path]) -> None:
    a, b = _read(plans["r18"]), _read(plans["r34"])
    result = cli("diff", str(plans["r18"]), str(plans["r34"]), "-f", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["kind"] == "memory"
    for metric, (part, key) in MEMORY_FIGURES.items():
        total = data["totals"][metric]
        assert (total["a"], total["b"]) == (a[part][key], b[part][key])
        assert total["delta"] == b[part][key] - a[part][key]
    assert data["totals"]["training_peak_bytes"]["delta"] > 100 * 2**20  # resnet34: +193 MiB
    fit = data["totals"]["max_batch_size"]
    assert (fit["a"], fit["b"]) == (a["max_batch_size"], b["max_batch_size"])
    assert fit["delta"] == b["max_batch_size"] - a["max_batch_size"] < 0
    assert data["facts"]["training_peak_phase"] == {"a": a["training"]["peak_phase"],
                                                    "b": b["training"]["peak_phase"]}
    rows_a = {row["name"]: row for row in a["layers"]}
    rows_b = {row["name"]: row for row in b["layers"]}
    layers = {row["name"]: row for row in data["layers"]}
    assert set(layers) == {name for name in rows_b if rows_a[name] != rows_b[name]}
    for name, row in layers.items():
        assert row["change"] == "changed" and row["type"] == rows_b[name]["type"]
        for key, value in row["values"].items():
            assert value == {"a": rows_a[name][key], "b": rows_b[name][key],
                             "delta": rows_b[name][key] - rows_a[name][key]}
    assert layers["layer3"]["values"]["parameters_bytes"]["delta"] > 0
    assert "conv1" not in layers or "parameters" not in " ".join(layers["conv1"]["details"])


def test_fail_on_increase_watches_the_peaks(cli: Cli, plans: dict[str, Path]) -> None:
    a, b = _read(plans["r18"]), _read(plans["r34"])
    grew = {label: 100 * (b[part]["peak_bytes"] - a[part]["peak_bytes"]) / a[part]["peak_bytes"]
            for label, part in (("Inference peak", "inference"), ("Training peak", "training"))}
    result = cli("diff", str(plans["r18"]), str(plans["r34"]), "--fail-on-increase", "5")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"error: Inference peak grew {grew['Inference peak']:.2f}%; Training peak grew "
        f"{grew['Training peak']:.2f}%, more than the 5% allowed. Check the change, or raise "
        "--fail-on-increase.")
    assert cli("diff", str(plans["r18"]), str(plans["r34"]), "--fail-on-increase",
               "200").exit_code == 0
    # the other way round the peaks shrink: nothing to fail on
    assert cli("diff", str(plans["r34"]), str(plans["r18"]), "--fail-on-increase",
               "0").exit_code == 0


def test_a_larger_batch_shows_its_settings_and_the_activations(cli: Cli,
                                                              plans: dict[str, Path]) -> None:
    result = cli("diff", str(plans["r18"]), str(plans["r18b4"]), "-f", "markdown")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "| Batch size | 1 | 4 | changed |" in lines
    assert "| Inputs | [[1, 3, 64, 64]] | [[4, 3, 64, 64]] | changed |" in lines
    params = next(line for line in lines if line.startswith("| Parameters |"))
    assert params.endswith("| = |")
    # one side has a fit budget, the other not: said, not compared
    assert ("- note: only A was planned with a fit budget: the largest batch is not compared"
            in lines)
    assert not any(line.startswith("| Largest batch") for line in lines)


def test_memory_file_against_the_same_model_planned_now(cli: Cli, plans: dict[str, Path]) -> None:
    result = cli("diff", str(plans["r18b4"]), "resnet18", "3x64x64", "--device", "meta", "-b",
                 "4", "-f", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["kind"] == "memory" and data["layers"] == []
    assert all(total["delta"] == 0 for total in data["totals"].values())


def test_memory_flag_adds_the_models_peaks(cli: Cli) -> None:
    args = ("diff", "sample_models.seeds:Net", "sample_models.seeds:ActivationNet", "1x28x28",
            "--memory", "--device", "meta", "--optimizer", "adamw")
    result = cli(*args, "-f", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    plans = [modelviz.memory(model, "1x28x28", device="meta", optimizer="adamw").to_dict()
             for model in ("sample_models.seeds:Net", "sample_models.seeds:ActivationNet")]
    for metric, part in (("inference_peak_bytes", "inference"),
                         ("training_peak_bytes", "training")):
        total = data["totals"][metric]
        assert (total["a"], total["b"]) == (plans[0][part]["peak_bytes"],
                                            plans[1][part]["peak_bytes"])
        assert total["delta"] == plans[1][part]["peak_bytes"] - plans[0][part]["peak_bytes"]
    assert data["totals"]["params"]["delta"] == -22_586  # the summary's figures stay
    assert data["layers"][-1] == {"name": "fc3", "change": "removed",
                                  "details": ["Linear, 850 params"]}


def test_memory_flag_fails_when_resnet34_needs_more(cli: Cli) -> None:
    result = cli("diff", "resnet18", "resnet34", "3x64x64", "--memory", "--device", "meta",
                 "--fail-on-increase", "50")
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: Total params grew 86.")
    assert "; Training peak grew 86." in line and line.endswith("raise --fail-on-increase.")


# Profiles: files written by the real API.


@pytest.fixture(scope="module")
def profiles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("profiles")
    return {name: _write(folder, f"{name}.json", modelviz.profile(
        f"sample_models.seeds:{name}", "1x28x28", device="cpu", runs=3, warmup=1).to_dict())
        for name in ("Net", "ActivationNet")}


def test_profiles_compared_per_module_biggest_change_first(cli: Cli,
                                                          profiles: dict[str, Path]) -> None:
    a, b = _read(profiles["Net"]), _read(profiles["ActivationNet"])
    result = cli("diff", str(profiles["Net"]), str(profiles["ActivationNet"]), "-f", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["kind"] == "profile"
    for metric in ("total_ms", "bare_forward_ms", "flops"):
        total = data["totals"][metric]
        assert (total["a"], total["b"], total["delta"]) == (a[metric], b[metric],
                                                            b[metric] - a[metric])
    before = {m["name"]: m for m in a["modules"]}
    after = {m["name"]: m for m in b["modules"]}
    rows = data["layers"]
    assert {row["name"] for row in rows} == set(before) | set(after)
    for row in rows:
        for key in ("total_ms", "self_ms", "share"):
            old, new = before.get(row["name"]), after.get(row["name"])
            value = row["values"][key]
            assert value["a"] == (old[key] if old else None)
            assert value["b"] == (new[key] if new else None)
            assert value["delta"] == (new[key] - old[key] if old and new else None)
    assert {row["name"]: row["change"] for row in rows}["fc3"] == "removed"
    sizes = [abs((row["values"]["total_ms"]["b"] or 0) - (row["values"]["total_ms"]["a"] or 0))
             for row in rows]
    assert sizes == sorted(sizes, reverse=True)


def test_profiles_as_markdown_and_the_forward_time_budget(cli: Cli,
                                                         profiles: dict[str, Path]) -> None:
    a, b = _read(profiles["Net"]), _read(profiles["ActivationNet"])
    result = cli("diff", str(profiles["Net"]), str(profiles["ActivationNet"]), "-f", "markdown")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith(f"| Forward (ms) | {a['total_ms']:,.3f} | {b['total_ms']:,.3f} |")
               for line in lines)
    assert "| Layer (type) | A ms | B ms | Change | Self ms change | Share |" in lines
    fc3 = next(m for m in a["modules"] if m["name"] == "fc3")
    assert (f"| `fc3` (Linear) | {fc3['total_ms']:,.3f} | – | removed | removed | "
            f"{100 * fc3['share']:.1f}% → – |") in lines
    # swapping the sides makes one of them slower; a 0% budget on the forward time then fails
    slower = ("Net", "ActivationNet") if b["total_ms"] > a["total_ms"] else ("ActivationNet",
                                                                             "Net")
    result = cli("diff", str(profiles[slower[0]]), str(profiles[slower[1]]),
                 "--fail-on-increase", "0")
    assert result.exit_code == 1 and "Forward (ms) grew" in result.stderr


# Kinds mixed, and damaged files: one line, exit 2.


def test_mixing_kinds_is_one_line(cli: Cli, tmp_path: Path, plans: dict[str, Path],
                                  profiles: dict[str, Path]) -> None:
    memory, profile = str(plans["r18"]), str(profiles["Net"])
    result = cli("diff", memory, profile)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: {memory} is a modelviz memory plan and {profile} a profile: diff compares two "
        "files of one kind. Give B as a memory plan too, written by `modelviz memory MODEL -o "
        "memory.json`.")
    summary = _summary(cli, tmp_path, "s.json", "sample_models.seeds:Net", "1x28x28")
    result = cli("diff", str(summary), memory)
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "is a modelviz summary and" in result.stderr and "a memory plan:" in result.stderr
    result = cli("diff", profile, "sample_models.seeds:Net", "1x28x28")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: {profile} is a profile, and sample_models.seeds:Net a model: profiles are "
        "compared as two files. Write the other with `modelviz profile MODEL --format json -o "
        "FILE.json`.")
    result = cli("diff", str(summary), "sample_models.seeds:Net", "1x28x28", "--memory")
    assert result.exit_code == 2
    assert result.stderr.strip().startswith(
        f"error: --memory plans models, and {summary} is a modelviz summary.")


def test_damaged_memory_file(cli: Cli, tmp_path: Path, plans: dict[str, Path]) -> None:
    data = _read(plans["r18"])
    data["training"]["peak_bytes"] = "lots"
    damaged = _write(tmp_path, "damaged.json", data)
    result = cli("diff", str(damaged), str(plans["r34"]))
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: {damaged} is a damaged modelviz memory plan: training.peak_bytes is not a whole "
        "number of bytes. Write it again with `modelviz memory MODEL -o memory.json`.")
    before = plans["r34"].read_bytes()
    result = cli("diff", str(plans["r18"]), str(plans["r34"]), "-o", str(plans["r34"]))
    assert result.exit_code == 2 and f"it is the memory plan {plans['r34']}" in result.stderr
    assert plans["r34"].read_bytes() == before


def test_hostile_layer_names_in_memory_files_are_escaped(cli: Cli, tmp_path: Path,
                                                         plans: dict[str, Path]) -> None:
    a, b = _read(plans["r18"]), _read(plans["r18"])
    b["layers"].append({"name": "x|[bold]`y\x1b", "type": "<b>T</b>", "parameters_bytes": 512,
                        "gradients_bytes": 0, "optimizer_bytes": 0, "activations_bytes": 0})
    left, right = _write(tmp_path, "a.json", a), _write(tmp_path, "b.json", b)
    table = cli("diff", str(left), str(right))
    assert table.exit_code == 0, table.stderr
    assert "x|[bold]`y\\x1b" in table.stdout and "<b>T</b>, 512 B of parameters" in table.stdout
    markdown = cli("diff", str(left), str(right), "-f", "markdown").stdout
    assert ("| ``x\\|[bold]`y\\x1b`` | added | &lt;b&gt;T&lt;/b&gt;, 512 B of parameters |"
            in markdown.splitlines())
