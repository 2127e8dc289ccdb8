"""Shared fixtures: CLI runners (in-process and subprocess), golden files, fixed terminal width.

What test files import (paths, Result, the fixtures' types) lives in tests/helpers.py.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import settings

from tests.helpers import (
    GOLDEN,
    ROOT,
    Cli,
    Golden,
    RunModelviz,
    missing_golden,
    run_cli,
    run_python_m_modelviz,
)

# Property tests explore the same examples on every run: CI stays deterministic.
settings.register_profile("deterministic", derandomize=True, deadline=None)
settings.load_profile("deterministic")

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
                     help="Write the golden files from the current output (the only way one "
                          "is written: without it, a missing golden file fails its test).")


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Golden:
    """Compare text with tests/golden/NAME, or rewrite it with --update-golden.

    --update-golden is the only way a golden file gets written: without it, a missing file fails
    the test, so a deleted or misnamed golden file cannot pass by comparing output with itself.
    """

    def check(name: str, text: str) -> None:
        path = GOLDEN / name
        if request.config.getoption("--update-golden"):
            path.parent.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
        elif not path.is_file():
            pytest.fail(missing_golden(name), pytrace=False)
        assert text == path.read_text(encoding="utf-8")

    return check


@pytest.fixture
def cli() -> Cli:
    """Run the Typer app in-process, the way Typer's test runner does."""
    return run_cli


@pytest.fixture
def run_modelviz() -> RunModelviz:
    """Run ``python -m modelviz`` in a subprocess from the repository root, as a user would."""
    return run_python_m_modelviz


@pytest.fixture(autouse=True)
def _repo_root_cwd(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dotted specs such as sample_models.seeds:Net resolve from the repository root."""
    monkeypatch.chdir(ROOT)
