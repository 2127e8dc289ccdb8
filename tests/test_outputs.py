"""The one output writer: never over an input, through devices and pipes, folders swapped in
whole under a lock, no staging left where TensorBoard or the user looks, Ctrl-C exits 130.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import torch

from modelviz import output
from modelviz.errors import OutputError
from tests.helpers import ROOT, Cli, Result, RunModelviz

NET = "sample_models.seeds:Net"


def _error(result: Result) -> str:
    assert result.exit_code == 2, (result.stderr, result.stdout)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def _net_file(tmp_path: Path) -> Path:
    path = tmp_path / "net.py"
    path.write_text("from sample_models.seeds import Net\n")
    return path


def test_output_never_replaces_an_input(cli: Cli, tmp_path: Path) -> None:
    from sample_models.seeds import Net

    source = _net_file(tmp_path)
    weights = tmp_path / "weights.pt"
    torch.save(Net().state_dict(), weights)
    inputs = tmp_path / "inputs.pt"
    torch.save(torch.randn(1, 1, 28, 28), inputs)
    before = {p: p.read_bytes() for p in (source, weights, inputs)}
    cases = [
        (["summary", f"{source}:Net", "1x28x28", "-f", "json", "-o", str(source)], "the model"),
        (["summary", NET, "1x28x28", "--weights", str(weights), "-f", "csv", "-o",
          str(weights)], "--weights"),
        (["graph", NET, "--input-file", str(inputs), "-f", "dot", "-o", str(inputs)],
         "--input-file"),
    ]
    for args, read_as in cases:
        line = _error(cli(*args))
        assert line.startswith(f"error: refusing to write {args[-1]}: it is {read_as}"), line
    summary = tmp_path / "a.json"
    assert cli("summary", NET, "1x28x28", "-o", str(summary)).exit_code == 0
    before[summary] = summary.read_bytes()
    line = _error(cli("diff", str(summary), str(summary), "-o", str(summary)))
    assert "it is the summary" in line
    assert {p: p.read_bytes() for p in before} == before


def test_a_fifo_and_a_device_are_written_through(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.md"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    output.write_text(fifo, "# through the pipe\n")
    reader.join(timeout=10)
    assert received == [b"# through the pipe\n"] and fifo.is_fifo()
    # A character device: written, not replaced. A null device of the test's own, so that a
    # writer that regressed would replace that node rather than the machine's /dev/null.
    device = tmp_path / "null"
    try:
        os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device node needs root")
    output.write_text(device, "gone")
    assert device.is_char_device()


def test_dev_stdout(run_modelviz: RunModelviz, tmp_path: Path) -> None:
    """``-o /dev/stdout``: a link to the process's descriptor 1, here a pipe. The test uses a
    link of its own to the same place: a writer that regressed to replacing the link would
    otherwise replace the machine's /dev/stdout with a file (the old writer did, as root)."""
    stdout = tmp_path / "stdout"
    stdout.symlink_to("/proc/self/fd/1")
    result = run_modelviz("summary", NET, "1x28x28", "-f", "json", "-o", str(stdout))
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["totals"]["params"] == 44_426
    assert stdout.is_symlink()


def test_a_symlink_is_followed(cli: Cli, tmp_path: Path) -> None:
    real = tmp_path / "runs" / "latest.md"
    real.parent.mkdir()
    real.write_text("old")
    link = tmp_path / "summary.md"
    link.symlink_to(real)
    assert cli("summary", NET, "1x28x28", "-o", str(link)).exit_code == 0
    assert link.is_symlink() and real.read_text().startswith("### ")


def _report(cli: Cli, folder: Path, *extra: str) -> Result:
    return cli("report", NET, "1x28x28", "-o", str(folder), "--no-onnx", *extra)


def test_report_replaces_its_folder_whole(cli: Cli, tmp_path: Path) -> None:
    folder = tmp_path / "report"
    assert _report(cli, folder, "-l", "conv1").exit_code == 1  # --no-onnx: exit 1
    assert sorted(p.name for p in (folder / "activations").iterdir()) == ["conv1.png"]
    assert _report(cli, folder, "-l", "conv2").exit_code == 1
    # the earlier run's picture is gone with it: nothing stale, nothing unlisted
    assert sorted(p.name for p in (folder / "activations").iterdir()) == ["conv2.png"]
    listed = json.loads((folder / "report.json").read_text())
    assert listed["folder"] == str(folder) and listed["schema"] == "modelviz.report/1"
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_report_refuses_a_folder_it_did_not_write(cli: Cli, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    line = _error(_report(cli, home))
    assert line == (f"error: {home} is not empty, and it holds no modelviz report "
                    "(report.json). Give a new or empty folder: the report replaces it whole.")
    folder = tmp_path / "report"
    _report(cli, folder)
    (folder / "notes.txt").write_text("mine")
    assert "it holds files a report does not write: notes.txt" in _error(_report(cli, folder))
    assert (home / "thesis.tex").read_text() == "years of work"
    assert (folder / "notes.txt").read_text() == "mine"


def test_a_second_writer_fails_clearly(cli: Cli, tmp_path: Path) -> None:
    folder = tmp_path / "report"
    _report(cli, folder)
    before = (folder / "report.json").read_bytes()
    with output.exclusive(folder):  # as another modelviz writing it would
        line = _error(_report(cli, folder))
        assert line == (f"error: another modelviz (process {os.getpid()}) is writing {folder}. "
                        "Wait for it to finish, or choose another output path.")
        with pytest.raises(OutputError, match="another modelviz"), output.exclusive(folder):
            pass
    assert (folder / "report.json").read_bytes() == before


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_staging_left_by_a_killed_process_is_cleaned(cli: Cli, tmp_path: Path) -> None:
    dead = _dead_pid()
    stale_dir = tmp_path / f".modelviz-{dead}-abc123"
    stale_dir.mkdir()
    (stale_dir / "model.onnx").write_bytes(b"half")
    stale_file = tmp_path / f".modelviz-{dead}-def456.part"
    stale_file.write_bytes(b"half")
    alive = tmp_path / f".modelviz-{os.getppid()}-ghi789.part"  # a live process's: kept
    alive.write_bytes(b"busy")
    assert cli("summary", NET, "1x28x28", "-o", str(tmp_path / "s.md")).exit_code == 0
    assert not stale_dir.exists() and not stale_file.exists() and alive.exists()


def test_tensorboard_staging_stays_out_of_the_runs_folder(
        cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = tmp_path / "runs"
    watched: list[list[str]] = []
    original = output.commit_files

    def watching(staging: Path, folder: Path, names: list[str] | None = None) -> list[Path]:
        # TensorBoard lists folders as runs; only the lock file (hidden, no events) is there
        watched.append(sorted(p.name for p in runs.iterdir() if p.is_dir())
                       if runs.exists() else [])
        assert not staging.is_relative_to(runs)
        return original(staging, folder, names)

    import modelviz.features.tensorboard.log as board

    monkeypatch.setattr(board, "commit_files", watching)
    assert cli("tensorboard", NET, "1x28x28", "--logdir", str(runs / "net"),
               "--no-graph").exit_code == 0
    assert watched == [[]]  # nothing in runs/ while the events were written
    assert [p.name for p in runs.iterdir()] == ["net"]
    assert all("tfevents" in p.name for p in (runs / "net").iterdir())


SELF_INTERRUPT = """
    import os
    import signal
    import torch
    from torch import nn

    class Model(nn.Module):
        '''Sends itself Ctrl-C in its forward and swallows it, as some libraries do.'''

        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            try:
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(100):
                    torch.ones(1)
            except BaseException:
                pass
            return self.fc(x)
"""


@pytest.mark.parametrize("command", ["tensorboard", "summary", "report"])
def test_ctrl_c_always_exits_130_and_leaves_nothing(tmp_path: Path, command: str) -> None:
    source = tmp_path / "swallow.py"
    source.write_text(textwrap.dedent(SELF_INTERRUPT))
    target = tmp_path / "out"
    args = {"tensorboard": ["--logdir", str(target)], "summary": ["-o", str(target) + ".md"],
            "report": ["-o", str(target)]}[command]
    proc = subprocess.run([sys.executable, "-m", "modelviz", command, f"{source}:Model", "4",
                           *args], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          check=False)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip() == "error: interrupted."
    assert sorted(p.name for p in tmp_path.iterdir()) == ["swallow.py"]


def test_a_report_folder_behind_a_link(cli: Cli, tmp_path: Path) -> None:
    real = tmp_path / "reports" / "today"
    real.mkdir(parents=True)
    link = tmp_path / "latest"
    link.symlink_to(real, target_is_directory=True)
    assert _report(cli, link).exit_code == 1  # --no-onnx
    assert link.is_symlink() and (real / "report.json").is_file()
