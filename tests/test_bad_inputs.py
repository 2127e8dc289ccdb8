"""Careless and hostile inputs that once ended in a traceback, a wrong exit status or a mangled
message: each is one line on stderr, exit 2 (1 for a budget or a failed check), no traceback.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.helpers import Cli, Result, RunModelviz

NET = "sample_models.seeds:Net"


def _one_line(result: Result, status: int = 2) -> str:
    assert result.exit_code == status, (result.exit_code, result.stderr, result.stdout)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


FORTY_DIMS = "x".join(["2"] * 40)
LINES = [
    (["summary", NET, "1x100000x100000"], "error: the inputs need 37.3 GiB "
     "(40,000,000,000 bytes) on cpu, which cannot be allocated"),
    (["summary", NET, FORTY_DIMS], "error: the inputs need 4,096.0 GiB "
     "(4,398,046,511,104 bytes) on cpu"),
    (["summary", NET, "1x28x28", "-b", "100000000000"], "error: the inputs need "
     "292,062.8 GiB (313,600,000,000,000 bytes) on cpu"),
    (["summary", NET, "1x28x28", "--max-params", "0"], "error: bad --max-params '0': a budget "
     "must be above 0. Give the most allowed, e.g. --max-params 25M."),
    (["summary", NET, "1x28x28", "--max-flops", "1e999"], "error: bad --max-flops '1e999': too "
     "large. Write a number below 1e+30, e.g. 25M."),
    (["summary", NET, "1x28x28", "--seed", "1" * 30], f"error: bad --seed {'1' * 30}. Use a "
     f"whole number from 0 to {2**63 - 1}."),
    (["summary", NET, "1x28x28", "--seed", "-1"], "error: bad --seed -1."),
    (["export-onnx", NET, "1x28x28", "--atol", "nan"], "error: bad --atol nan. Use a positive "
     "number, e.g. 1e-4."),
    (["report", NET, "1x28x28", "--atol", "inf"], "error: bad --atol inf."),
    (["summary", NET, "1x28x28", "--columns", "all,bogus"], "error: unknown column 'bogus'."),
    (["summary", NET, "1x28x28", "-o", "/proc/modelviz.md"], "error: cannot write "
     "/proc/modelviz.md: "),
    # click's own usage errors: one line too, never its boxed usage screen
    (["summary", NET, "-1"], "error: No such option: -1. See 'modelviz summary --help'."),
    (["summary", NET, "1x28x28", "--depth", "0"], "error: Invalid value for '--depth' / '-d'"),
    (["summary"], "error: Missing argument 'model'. See 'modelviz summary --help'."),
    (["sumary", NET], "error: No such command 'sumary'. Did you mean 'summary'? See "
     "'modelviz --help'."),
    (["diff", NET, NET, "--fail-on-increase", "-1"], "error: Invalid value for "
     "'--fail-on-increase'"),
]


@pytest.mark.parametrize(("args", "start"), LINES, ids=[" ".join(a)[:60] for a, _ in LINES])
def test_one_line_and_status_2(cli: Cli, args: list[str], start: str) -> None:
    assert _one_line(cli(*args)).startswith(start)


def test_output_onto_a_folder_or_under_a_file(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "taken.md").mkdir()
    line = _one_line(cli("summary", NET, "1x28x28", "-o", str(tmp_path / "taken.md")))
    assert line == f"error: {tmp_path / 'taken.md'} is a folder. Give a file name, not a folder."
    (tmp_path / "file").write_text("x")
    for args in (["summary", NET, "1x28x28", "-o", str(tmp_path / "file" / "s.md")],
                 ["graph", NET, "1x28x28", "-o", str(tmp_path / "file" / "g.dot")],
                 ["export-onnx", NET, "1x28x28", "-o", str(tmp_path / "file" / "m.onnx")]):
        assert "is a file, not a folder" in _one_line(cli(*args))
    for args in (["report", NET, "1x28x28", "-o", str(tmp_path / "file")],
                 ["tensorboard", NET, "1x28x28", "--logdir", str(tmp_path / "file")],
                 ["activations", NET, "1x28x28", "-l", "conv1", "-o", str(tmp_path / "file")]):
        assert "is a file, not a folder" in _one_line(cli(*args))
    assert (tmp_path / "file").read_text() == "x"


@pytest.mark.parametrize("content", [
    "[" * 100_000 + "]" * 100_000,
    '{"schema": "modelviz.summary/1"}',
    '{"schema": "modelviz.summary/1", "totals": {"params": "many"}, "layers": []}',
    '{"schema": "modelviz.summary/1", "totals": {}, "layers": [{"name": 3}]}',
    '{"schema": "modelviz.summary/1", "totals": {}, "layers": "none"}',
    "\xff\xfe not utf-8",
])
def test_diff_of_damaged_summaries(cli: Cli, tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content.encode("latin-1") if content.startswith("\xff")
                     else content.encode())
    good = tmp_path / "good.json"
    assert cli("summary", NET, "1x28x28", "-o", str(good)).exit_code == 0
    line = _one_line(cli("diff", str(good), str(path)))
    assert str(path) in line and "summary" in line


def _model_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "user_model.py"
    path.write_text(textwrap.dedent(body))
    return path


def test_user_code_that_exits_at_import(cli: Cli, tmp_path: Path) -> None:
    path = _model_file(tmp_path, """
        import sys
        sys.exit(0)
    """)
    line = _one_line(cli("summary", f"{path}:Model", "4"))
    assert line.startswith(f"error: importing {path} exited (SystemExit 0) (user_model.py, "
                           "line 3): the code runs a program of its own when imported.")


def test_user_script_that_parses_arguments_at_import(run_modelviz: RunModelviz,
                                                     tmp_path: Path) -> None:
    path = _model_file(tmp_path, """
        import argparse
        parser = argparse.ArgumentParser()
        parser.add_argument("--lr", type=float, required=True)
        args = parser.parse_args()
    """)
    result = run_modelviz("summary", f"{path}:Model", "4", "--seed", "3")
    assert result.exit_code == 2
    # argparse's usage names the script, not modelviz, and never saw modelviz's options
    assert "usage: user_model.py" in result.stderr and "modelviz" not in result.stderr.split(
        "error: importing")[0]
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"error: importing {path} exited (SystemExit 2)")


def test_forward_that_calls_exit(cli: Cli, tmp_path: Path) -> None:
    path = _model_file(tmp_path, """
        import sys
        from torch import nn

        class Model(nn.Module):
            def forward(self, x):
                sys.exit(0)
    """)
    line = _one_line(cli("summary", f"{path}:Model", "4"))
    assert "forward pass failed in Model.forward itself" in line and "SystemExit" in line


def test_warnings_never_join_the_error_line(cli: Cli, tmp_path: Path) -> None:
    path = _model_file(tmp_path, """
        import warnings
        from torch import nn

        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                warnings.warn("this layer is deprecated", UserWarning)
                self.fc = nn.Linear(4, 4)

            def forward(self, x):
                warnings.warn("noisy forward", RuntimeWarning)
                # what a Ctrl-C in the middle of an import leaves: housekeeping, never a note
                warnings.warn("unclosed file <_io.BufferedReader>", ResourceWarning)
                return self.fc(x)
    """)
    line = _one_line(cli("summary", f"{path}:Model", "5"))  # wrong size: the pass fails
    assert line.startswith("error: forward pass failed in fc (Linear)")
    ok = cli("summary", f"{path}:Model", "4")
    assert ok.exit_code == 0
    assert ok.stderr.splitlines() == ["note: UserWarning: this layer is deprecated",
                                      "note: RuntimeWarning: noisy forward"]


MARKUP_MODEL = """
    import torch
    from torch import nn

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleDict({"[/]": nn.Linear(4, 4), "[bold]x": nn.ReLU(),
                                         ":smile:": nn.Identity()})

        def forward(self, x):
            for block in self.blocks.values():
                x = block(x)
            return x
"""


def test_rich_markup_in_user_strings_is_text(cli: Cli, tmp_path: Path) -> None:
    path = _model_file(tmp_path, MARKUP_MODEL)
    model = f"{path}:Model"
    names = ("blocks.[/]", "blocks.[bold]x", "blocks.:smile:")
    summary = cli("summary", model, "4")
    assert summary.exit_code == 0 and all(n in summary.stdout for n in names)
    diff = cli("diff", model, NET, "4")  # sizes only fit one side: compare summary files
    a, b = tmp_path / "a.json", tmp_path / "[exp1]" / "b.json"
    assert cli("summary", model, "4", "-o", str(a)).exit_code == 0
    written = cli("summary", NET, "1x28x28", "-o", str(b))
    assert written.stderr.strip() == f"note: wrote {b}"  # the [exp1] folder does not vanish
    diff = cli("diff", str(a), str(b))
    assert diff.exit_code == 0 and all(n in diff.stdout for n in names)
    board = cli("tensorboard", model, "4", "--logdir", str(tmp_path / "[runs]" / "x"),
                "--layer", "blocks.[/]", "--no-graph")
    assert board.exit_code == 0, board.stderr
    assert "activations/blocks.[/]" in board.stdout and "[runs]" in board.stderr
    report = cli("report", model, "4", "-o", str(tmp_path / "[report]"), "--layer",
                 "blocks.[/]", "--no-onnx")
    assert report.exit_code == 1  # --no-onnx: a part skipped
    assert f"open {tmp_path / '[report]' / 'index.html'}" in report.stderr
    assert json.loads((tmp_path / "[report]" / "report.json").read_text())["parts"][
        "activations"]["layers"][0]["name"] == "blocks.[/]"


def test_terminal_escapes_in_messages_are_shown_escaped(cli: Cli, tmp_path: Path) -> None:
    folder = tmp_path / "evil\x1b[2Jname"
    result = cli("summary", NET, "1x28x28", "-o", str(folder / "s.md"))
    assert result.exit_code == 0
    assert "\x1b" not in result.stderr and "evil\\x1b[2Jname" in result.stderr
