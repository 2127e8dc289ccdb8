"""What the test files share: the repository's paths, CLI results and golden files.

Test files import from here, never from conftest.py, which holds the fixtures and the session
setup that pytest loads by itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"


@dataclass
class Result:
    """What a modelviz run left: its exit status and its two streams."""

    exit_code: int
    stdout: str
    stderr: str


class Cli(Protocol):
    """The ``cli`` fixture: runs the Typer app in-process with these arguments."""

    def __call__(self, *args: str) -> Result: ...


class RunModelviz(Protocol):
    """The ``run_modelviz`` fixture: ``python -m modelviz`` in a subprocess."""

    def __call__(self, *args: str, env: dict[str, str] | None = None,
                 cwd: Path = ROOT) -> Result: ...


def run_cli(*args: str) -> Result:
    """Run the Typer app in-process with CliRunner; an exception propagates, traceback and all."""
    from typer.testing import CliRunner

    from modelviz.cli import app

    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return Result(result.exit_code, result.stdout, result.stderr)


def run_python_m_modelviz(*args: str, env: dict[str, str] | None = None,
                          cwd: Path = ROOT) -> Result:
    """Run ``python -m modelviz`` in a subprocess, with ``env`` added to this environment."""
    proc = subprocess.run([sys.executable, "-m", "modelviz", *args], capture_output=True,
                          text=True, cwd=cwd, env={**os.environ, **(env or {})},
                          timeout=600, check=False)
    return Result(proc.returncode, proc.stdout, proc.stderr)


Golden = Callable[[str, str], None]
"""The ``golden`` fixture: ``golden(NAME, text)`` compares text with tests/golden/NAME."""


def missing_golden(name: str) -> str:
    """The failure message for a golden file that is not there."""
    return (f"golden file tests/golden/{name} is missing. Run pytest with --update-golden to "
            "write it from the current output, then review it before committing.")


def read_golden(name: str) -> str:
    """The text of tests/golden/NAME, for tests that only read it; it is never written here."""
    path = GOLDEN / name
    if not path.is_file():
        pytest.fail(f"golden file tests/golden/{name} is missing. Restore it; --update-golden "
                    "rewrites only the files that tests compare through the `golden` fixture "
                    "(the seed_*_torchsummary.txt texts are fixed references, never rewritten).",
                    pytrace=False)
    return path.read_text(encoding="utf-8")
