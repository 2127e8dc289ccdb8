"""No file a user opens runs code without --trust-pickle: booby-trapped archives, checkpoints,
saved inputs and images, each of which touches a marker file if its code runs.

The check that matters is the marker, not the message: a loader that printed the right error
after running the payload would pass a message test and fail these.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from modelviz.core import untrusted
from modelviz.core.loading import load_model
from modelviz.errors import ModelFileError, UnsafePickleError
from tests import hostile
from tests.helpers import Cli, Result


@pytest.fixture(scope="module")
def traps(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], Path]:
    folder = tmp_path_factory.mktemp("traps")
    marker = folder / "MARKER"
    return hostile.exported_traps(folder, marker), marker


def _one_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("kind", ["sample inputs", "pickled weight", "guards",
                                  "shape expression", "shape expression, nested",
                                  "sample inputs, renamed .pt"])
def test_exported_program_traps_are_refused_by_every_command(
        cli: Cli, traps: tuple[dict[str, Path], Path], kind: str, tmp_path: Path) -> None:
    archives, marker = traps
    path = archives[kind]
    for command in (["summary", str(path), "4"],
                    ["graph", str(path), "4", "-o", str(tmp_path / "g.dot")],
                    ["diff", str(path), "sample_models.seeds:Net", "4"],
                    ["export-onnx", str(path), "4", "-o", str(tmp_path / "m.onnx")]):
        result = cli(*command)
        assert result.exit_code == 2, (command, result.stderr)
        line = _one_line(result)
        assert "--trust-pickle" in line and str(path) in line
        assert not marker.exists(), f"{kind}: {command[0]} ran the archive's code"
    assert not (tmp_path / "g.dot").exists() and not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("kind", ["sample inputs", "pickled weight", "guards",
                                  "shape expression", "shape expression, nested"])
def test_the_exported_program_traps_are_real(kind: str, tmp_path: Path) -> None:
    """torch's own loader, as modelviz called it before, does run each payload, and so does
    modelviz under --trust-pickle: the refusals above are the loader's doing."""
    for trusted in (False, True):
        marker = tmp_path / f"MARKER{trusted}"
        folder = tmp_path / f"{trusted}"
        folder.mkdir()
        path = hostile.exported_traps(folder, marker)[kind]
        try:  # whatever torch makes of the payload's result, the payload has run by then
            if trusted:
                load_model(str(path), trust_pickle=True).module(torch.randn(3, 4))
            else:
                torch.export.load(path).module()(torch.randn(3, 4))
        except Exception:  # the payload returns no model: it has run by then
            pass
        if not (trusted and kind == "guards"):  # unflatten rebuilds no guard function
            assert marker.exists(), (kind, trusted)


def test_genuine_exported_programs_load_without_trust(tmp_path: Path) -> None:
    for dynamic in (False, True):
        path = hostile.exported(tmp_path / f"ok{dynamic}.pt2", dynamic=dynamic)
        loaded = load_model(str(path))
        batch = 3 if dynamic else 2  # a static export keeps its batch of 2
        out = loaded.module(torch.randn(batch, 4))
        assert out.shape == (batch, 4) and loaded.source == "exported-program"
        renamed = tmp_path / f"ok{dynamic}.pt"
        renamed.write_bytes(path.read_bytes())
        assert load_model(str(renamed)).source == "exported-program"


@pytest.mark.parametrize("name", ['block"', "a');__import__('os')", "x\ny"])
def test_names_torch_would_write_into_source_are_refused(tmp_path: Path, name: str) -> None:
    """torch.fx writes attribute names from the archive into the Python it generates."""
    plain = hostile.exported(tmp_path / "plain.pt2")

    def rename(document: dict[str, object]) -> None:
        for holder in hostile.find(document, "fqn"):
            if holder["fqn"] == "block":
                holder["fqn"] = name
    path = hostile.edit_json(plain, tmp_path / "named.pt2", "models/model.json", rename)
    with pytest.raises(UnsafePickleError, match="`trust_pickle`"):
        load_model(str(path))


def test_torchscript_with_a_pickle_trap(cli: Cli, tmp_path: Path) -> None:
    """TorchScript's own unpickler refuses Python globals: the payload never runs."""
    marker = tmp_path / "MARKER"
    path = hostile.torchscript_trap(tmp_path, marker)
    result = cli("summary", str(path), "4")
    assert result.exit_code == 2
    assert "looks like TorchScript but failed to load" in _one_line(result)
    assert not marker.exists()
    result = cli("summary", str(path), "4", "--trust-pickle")  # TorchScript never unpickles it
    assert result.exit_code == 2 and not marker.exists()
    scripted = tmp_path / "scripted.ts"
    assert cli("summary", str(scripted), "4").exit_code == 0  # the genuine one loads


def test_pickled_model_runs_only_with_trust(cli: Cli, tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    path = tmp_path / "model.pt"
    path.write_bytes(hostile.pickled(marker))
    result = cli("summary", str(path), "4")
    assert result.exit_code == 2 and "--trust-pickle" in _one_line(result)
    assert not marker.exists()
    cli("summary", str(path), "4", "--trust-pickle")
    assert marker.exists()  # the payload is real


@pytest.mark.parametrize("option", ["--weights", "--input-file"])
def test_weights_and_input_files_never_unpickle(cli: Cli, tmp_path: Path, option: str) -> None:
    marker = tmp_path / "MARKER"
    path = tmp_path / "trap.pt"
    path.write_bytes(hostile.pickled(marker))
    args = ["summary", "sample_models.seeds:Net", option, str(path)]
    sizes = ["1x28x28"] if option == "--weights" else []
    for trust in ([], ["--trust-pickle"]):  # --trust-pickle is for MODEL only
        result = cli(*args, *sizes, *trust)
        assert result.exit_code == 2, result.stderr
        line = _one_line(result)
        assert option in line and "holds more than tensors" in line
        assert not marker.exists()


def test_zip_bomb_refused_before_inflating(cli: Cli, tmp_path: Path) -> None:
    bomb = hostile.zip_bomb(tmp_path / "bomb.pt", inflated=2**29)
    assert bomb.stat().st_size < 2**20
    for args in (["summary", str(bomb), "4"],
                 ["summary", "sample_models.seeds:Net", "1x28x28", "--weights", str(bomb)],
                 ["summary", "sample_models.seeds:Net", "--input-file", str(bomb)]):
        started = time.perf_counter()
        result = cli(*args)
        assert result.exit_code == 2
        assert "zip bomb" in _one_line(result)
        assert time.perf_counter() - started < 5  # refused from the directory, not inflated
    with pytest.raises(ModelFileError, match="claims to inflate to 536,870,912 bytes"):
        untrusted.load_data(bomb, "--weights")


def test_image_decompression_bomb(cli: Cli, tmp_path: Path) -> None:
    bomb = hostile.png_bomb(tmp_path / "bomb.png")
    result = cli("activations", "sample_models.seeds:Net", "--image", str(bomb),
                 "--layer", "conv1", "-o", str(tmp_path / "acts"))
    assert result.exit_code == 2
    line = _one_line(result)
    assert "10,000,000,000 pixels" in line and "--image" in line
    assert not (tmp_path / "acts").exists()
