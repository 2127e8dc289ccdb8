"""The ``modelviz`` process (cli/_process.py): the collector off while the model loads, frozen
after, and an exit by ``os._exit`` that must still do what Python's exit does first: flush
stdout and stderr, keep the exit status, run the exit handlers (temporary folders removed)."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT, Cli

MODEL = '''
import atexit, gc, json, os, tempfile
from torch import nn

OUT = os.environ["MODELVIZ_TEST_OUT"]
KEPT = tempfile.TemporaryDirectory()  # removed by its finalizer, an exit handler
with open(os.path.join(OUT, "tempdir"), "w") as handle:
    handle.write(KEPT.name)


def _at_exit():
    with open(os.path.join(OUT, "at_exit.json"), "w") as handle:
        json.dump({"gc_enabled": gc.isenabled(), "frozen": gc.get_freeze_count()}, handle)


atexit.register(_at_exit)


class Deep(nn.Module):
    """300 layers: a table long enough to fill a pipe's buffer many times over."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(*(nn.Linear(8, 8) for _ in range(300)))

    def forward(self, x):
        return self.layers(x)
'''


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    model = tmp_path / "deep.py"
    model.write_text(MODEL)
    return subprocess.run(
        [sys.executable, "-m", "modelviz", *(a.replace("MODEL", f"{model}:Deep") for a in args)],
        capture_output=True, text=True, cwd=tmp_path, timeout=300, check=False,
        env={**os.environ, "MODELVIZ_TEST_OUT": str(tmp_path), "PYTHONPATH": str(ROOT)})


def test_the_program_flushes_its_output_runs_exit_handlers_and_keeps_its_status(
        tmp_path: Path) -> None:
    done = _run(tmp_path, "summary", "MODEL", "8", "-f", "csv")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1 + 1 + 300  # the header, the Sequential, every layer
    assert lines[-1].startswith("layers.299,")
    at_exit = json.loads((tmp_path / "at_exit.json").read_text())
    assert at_exit["gc_enabled"] and at_exit["frozen"] > 10_000  # torch's objects, frozen
    assert not Path((tmp_path / "tempdir").read_text()).exists()


def test_failures_keep_their_status_and_message(tmp_path: Path) -> None:
    over = _run(tmp_path, "summary", "MODEL", "8", "--max-params", "100")
    assert over.returncode == 1
    assert over.stderr.startswith("error: params 21.60 K (21,600) exceed the budget of 100"), \
        over.stderr
    assert (tmp_path / "at_exit.json").is_file()
    wrong = _run(tmp_path, "summary", "MODEL", "9")
    assert wrong.returncode == 2
    assert "forward pass failed" in wrong.stderr


def test_a_written_file_is_whole(tmp_path: Path) -> None:
    done = _run(tmp_path, "summary", "MODEL", "8", "-o", str(tmp_path / "deep.json"))
    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / "deep.json").read_text())
    assert data["totals"]["params"] == 300 * (8 * 8 + 8)


POOLED = """
import concurrent.futures
from torch import nn

# An idle worker thread, not a daemon, as torch.compile's inductor leaves behind: Python's exit
# tells it to stop (threading._register_atexit) before it joins it.
POOL = concurrent.futures.ThreadPoolExecutor(1)
POOL.submit(int).result()
Net = lambda: nn.Linear(4, 2)
"""


def test_an_idle_thread_pool_does_not_hold_the_exit(tmp_path: Path) -> None:
    """Joining every thread that is not a daemon, without first running threading's own exit
    callbacks, waited forever on such a worker: `profile --compile` hung after printing its
    result whenever inductor compiled in a fresh cache (tests/test_profile.py)."""
    (tmp_path / "pooled.py").write_text(POOLED)
    done = subprocess.run(
        [sys.executable, "-m", "modelviz", "summary", f"{tmp_path / 'pooled.py'}:Net", "4",
         "-f", "csv"], capture_output=True, text=True, cwd=tmp_path, timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("name,")


def test_in_process_the_collector_is_left_as_it_was(cli: Cli) -> None:
    """Only the program freezes; the test runner's (or a script's) collector stays its own."""
    frozen = gc.get_freeze_count()
    result = cli("summary", "sample_models.seeds:Net", "1x28x28", "-f", "json")
    assert result.exit_code == 0, result.stderr
    assert gc.isenabled()
    assert gc.get_freeze_count() == frozen


IMPORTS = """
import sys
sys.argv = ["modelviz", *sys.argv[1:]]
from modelviz.cli import main
try:
    main()
except SystemExit as exc:
    assert exc.code == 0, exc.code
print("dynamo", "torch._dynamo" in sys.modules)
roi_align = sys.modules["torchvision.ops.roi_align"]
print("compile supported on cpu", roi_align.is_compile_supported("cpu"))
print("dynamo", "torch._dynamo" in sys.modules)
"""


def test_torchvision_comes_without_torch_dynamo_until_it_is_used(tmp_path: Path) -> None:
    """torchvision's roi_align imports one function from torch._dynamo, which imports all of
    it (0.8 s): modelviz imports torchvision with that function fetched when first called."""
    done = subprocess.run([sys.executable, "-c", IMPORTS, "summary", "resnet18", "3x32x32",
                           "-f", "json"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=300, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-3:] == [
        "dynamo False", "compile supported on cpu True", "dynamo True"]
