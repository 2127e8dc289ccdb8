"""Meta-tests: every command has help and is shown in the README; README examples still hold;
CI runs what the README and the Makefile say."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

import pytest

from tests.helpers import ROOT, Cli

if TYPE_CHECKING:
    from typer.core import TyperGroup


def _group() -> TyperGroup:
    from typer.core import TyperGroup
    from typer.main import get_command

    from modelviz.cli import app

    group = get_command(app)
    assert isinstance(group, TyperGroup)
    return group


def _commands() -> list[str]:
    return sorted(_group().commands)


def _readme_command_table() -> dict[str, str]:
    """The README's Commands table: each command's name and its usage after the name."""
    readme = (ROOT / "README.md").read_text()
    table = readme.split("\n## Commands\n", 1)[1].split("\n### ", 1)[0]
    rows = re.findall(r"^\| `modelviz ([a-z-]+)(?: ([^`]*))?` \| [^|]+ \|$", table, re.M)
    names = [name for name, _ in rows]
    assert len(names) == len(set(names)), f"a command is listed twice: {names}"
    return dict(rows)


def test_readme_command_table_lists_exactly_the_registered_commands() -> None:
    listed = set(_readme_command_table())
    registered = set(_commands())
    assert registered - listed == set(), "registered, but missing from the README's table"
    assert listed - registered == set(), "in the README's table, but not a command"


@pytest.mark.parametrize("command", _commands())
def test_readme_usage_matches_the_command(command: str) -> None:
    """The table's usage names the command's arguments, in order, as --help does (MODEL,
    [SIZES]...), and only options the command has."""
    usage = _readme_command_table()[command].split()
    params = _group().commands[command].params
    expected = []
    for param in params:
        if param.param_type_name == "argument":
            word = (param.name or "").upper()
            word = word if param.required else f"[{word}]"
            expected.append(f"{word}..." if param.nargs == -1 else word)
    first_option = next((i for i, word in enumerate(usage) if word.startswith("-")), len(usage))
    assert usage[:first_option] == expected
    options = {opt for p in params if p.param_type_name == "option" for opt in p.opts}
    assert {word for word in usage if word.startswith("-")} <= options


def test_top_level_help_lists_every_command_with_its_help(cli: Cli) -> None:
    result = cli("--help")
    assert result.exit_code == 0
    group = _group()
    for name in _commands():
        short = group.commands[name].get_short_help_str(limit=200)
        first_words = " ".join(short.split()[:4])
        assert first_words, f"{name} has no help text"
        assert re.search(rf"^\W*{re.escape(name)}\s+{re.escape(first_words)}", result.stdout,
                         re.M), f"`modelviz --help` does not show {name}: {first_words}"


@pytest.mark.parametrize("command", _commands())
def test_every_command_has_help_and_a_readme_section(cli: Cli,
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


def _makefile_recipes() -> dict[str, tuple[list[str], list[str]]]:
    """Each Makefile target: its prerequisites and its recipe lines (without a leading @)."""
    recipes: dict[str, tuple[list[str], list[str]]] = {}
    current: list[str] | None = None
    for line in (ROOT / "Makefile").read_text().splitlines():
        if line.startswith("\t") and current is not None:
            current.append(line.strip().lstrip("@"))
            continue
        match = re.match(r"^([A-Za-z$()_.-]+):(?!=)(.*)$", line)
        if match:
            current = []
            recipes[match.group(1)] = (match.group(2).split(), current)
        elif not line.startswith("#"):
            current = None
    return recipes


def _readme_test_command() -> str:
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#") for line in first_block.strip().splitlines()]
    (command,) = [code.strip() for code, *comment in commands if "test suite" in "".join(comment)]
    return command


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run stops at the first failure and runs exactly the README's test command and the
    linters; the Makefile's targets behind them run the whole suite, ruff on all code and mypy."""
    script = ROOT / ".ci" / "run"
    assert os.access(script, os.X_OK)
    lines = [line.strip() for line in script.read_text().splitlines()]
    assert "set -euo pipefail" in lines
    steps = [line for line in lines
             if line and not line.startswith(("#", "set ", "cd "))]
    assert sorted(steps) == sorted([_readme_test_command(), "make lint"])
    assert _readme_test_command() == "make test"
    recipes = _makefile_recipes()
    prerequisites, test_recipe = recipes["test"]
    assert "setup" in prerequisites  # "sets up .venv/, then runs the test suite"
    pytest_runs = [line.split(" -m pytest", 1)[1].split() for line in test_recipe
                   if " -m pytest" in line]
    assert len(pytest_runs) == 1  # and with the virtual environment's Python:
    assert any(line.startswith("$(BIN)/python -m pytest ") for line in test_recipe)
    # The whole suite (pyproject's testpaths): no paths, keywords or markers that leave tests out.
    assert pytest_runs[0] == ["-n", "2", "--dist", "loadgroup", "-q"]
    prerequisites, lint_recipe = recipes["lint"]
    assert "setup" in prerequisites
    ruff = next(line.split() for line in lint_recipe if "ruff check" in line)
    assert {"modelviz", "tests", "sample_models"} <= set(ruff)
    assert any(line.split()[0].endswith("/mypy") for line in lint_recipe)
