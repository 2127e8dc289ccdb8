"""Meta-tests: every command has help and is shown in the README; README examples still hold."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from tests.conftest import ROOT, Result


def _commands() -> list[str]:
    from typer.main import get_command

    from modelviz.cli import app

    group = get_command(app)
    return sorted(group.commands)  # type: ignore[attr-defined]


def test_there_are_commands() -> None:
    assert {"summary", "models"} <= set(_commands())


@pytest.mark.parametrize("command", _commands())
def test_every_command_has_help_and_a_readme_section(cli: Callable[..., Result],
                                                     command: str) -> None:
    result = cli(command, "--help")
    assert result.exit_code == 0
    assert "Usage:" in result.stdout
    readme = (ROOT / "README.md").read_text()
    assert f"### `modelviz {command}`" in readme, f"README has no section for {command}"
    assert re.search(rf"\$ modelviz {re.escape(command)}\b", readme), f"no example of {command}"


def test_readme_starts_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands[:2] == ["make demo", "make test"]


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in (ROOT / ".ci" / "run").read_text()
