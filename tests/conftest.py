"""Shared fixtures: CLI runners (in-process and subprocess), golden files, fixed terminal width."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from hypothesis import settings

# Property tests explore the same examples on every run: CI stays deterministic.
settings.register_profile("deterministic", derandomize=True, deadline=None)
settings.load_profile("deterministic")

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"

# Fixed width and no colour, so Rich output is the same on every machine.
os.environ["COLUMNS"] = "120"
os.environ["TERMINAL_WIDTH"] = "120"
os.environ.pop("FORCE_COLOR", None)
os.environ["NO_COLOR"] = "1"
# One thread per xdist worker: two workers on two cores, without oversubscription.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER")
                      else min(2, torch.get_num_threads()))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true",
                     help="Rewrite the golden files from the current output.")


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Callable[[str, str], None]:
    """Compare text with tests/golden/NAME, or rewrite it with --update-golden."""

    def check(name: str, text: str) -> None:
        path = GOLDEN / name
        if request.config.getoption("--update-golden") or not path.exists():
            path.write_text(text, encoding="utf-8")
        assert text == path.read_text(encoding="utf-8")

    return check


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli() -> Callable[..., Result]:
    """Run the Typer app in-process, the way Typer's test runner does."""
    from typer.testing import CliRunner

    from modelviz.cli import app

    runner = CliRunner()

    def invoke(*args: str) -> Result:
        result = runner.invoke(app, list(args), catch_exceptions=False)
        return Result(result.exit_code, result.stdout, result.stderr)

    return invoke


@pytest.fixture
def run_modelviz() -> Callable[..., Result]:
    """Run ``python -m modelviz`` in a subprocess from the repository root, as a user would."""

    def run(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> Result:
        proc = subprocess.run([sys.executable, "-m", "modelviz", *args], capture_output=True,
                              text=True, cwd=cwd, env={**os.environ, **(env or {})},
                              timeout=600, check=False)
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture(autouse=True)
def _repo_root_cwd(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dotted specs such as sample_models.seeds:Net resolve from the repository root."""
    monkeypatch.chdir(ROOT)
