"""--weights: state dicts, training checkpoints, safetensors, wrapper prefixes, mismatches."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest
import torch
from safetensors.torch import save_file

from modelviz.core.loading import load_model
from modelviz.core.weights import load_weights
from modelviz.errors import ModelFileError, WeightsMismatchError
from sample_models.seeds import Net, SmallConvNet


@pytest.fixture
def trained() -> Net:
    torch.manual_seed(1)
    return Net()


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                 b.state_dict().values(), strict=True))


def test_plain_state_dict(tmp_path: Path, trained: Net) -> None:
    path = tmp_path / "net.pt"
    torch.save(trained.state_dict(), path)
    loaded = load_model("sample_models.seeds:Net", weights=path)
    assert _same(loaded.module, trained)
    assert loaded.weights is not None and loaded.weights.clean
    assert loaded.weights.loaded == 10


def test_training_checkpoint_from_the_seed_post(tmp_path: Path, trained: Net) -> None:
    """torch.save({'epoch': .., 'model_state_dict': .., 'optimizer_state_dict': ..})."""
    optimizer = torch.optim.SGD(trained.parameters(), lr=0.1)
    path = tmp_path / "checkpoint_model_3.pt"
    torch.save({"epoch": 3, "model_state_dict": trained.state_dict(),
                "optimizer_state_dict": optimizer.state_dict(), "loss": 0.25}, path)
    loaded = load_model("sample_models.seeds:Net", weights=path)
    assert _same(loaded.module, trained)
    assert loaded.weights is not None and loaded.weights.source_key == "model_state_dict"


def test_data_parallel_prefix_is_stripped(tmp_path: Path, trained: Net) -> None:
    path = tmp_path / "ddp.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in trained.state_dict().items()}}, path)
    loaded = load_model("sample_models.seeds:Net", weights=path)
    assert _same(loaded.module, trained)
    assert loaded.weights is not None and loaded.weights.stripped_prefix == "module."


def test_safetensors(tmp_path: Path, trained: Net) -> None:
    path = tmp_path / "net.safetensors"
    save_file(trained.state_dict(), str(path))
    assert _same(load_model("sample_models.seeds:Net", weights=path).module, trained)


def test_mismatch_is_listed(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save(SmallConvNet().state_dict(), path)
    with pytest.raises(WeightsMismatchError) as info:
        load_model("sample_models.seeds:Net", weights=path)
    message = str(info.value)
    assert message.startswith(f"`weights={path}` does not fit the model: 6 key(s) missing from "
                              "the file: conv1.weight, conv1.bias, conv2.weight, … (6 in all); "
                              "21 key(s) unexpected in the file: layer1.0.weight, ")
    assert "fc1.weight: file [1000, 576] vs model [120, 256]" in message
    assert "`strict=False`" in message


def test_shape_mismatch_and_no_strict(tmp_path: Path, trained: Net) -> None:
    state = trained.state_dict()
    state["fc3.weight"] = torch.zeros(5, 84)
    state["fc3.bias"] = torch.zeros(5)
    path = tmp_path / "five_classes.pt"
    torch.save(state, path)
    with pytest.raises(WeightsMismatchError,
                       match=r"fc3.weight: file \[5, 84\] vs model \[10, 84\]"):
        load_model("sample_models.seeds:Net", weights=path)
    loaded = load_model("sample_models.seeds:Net", weights=path, strict=False)
    assert loaded.weights is not None
    assert loaded.weights.loaded == 8 and len(loaded.weights.mismatched) == 2
    assert torch.equal(cast(Net, loaded.module).conv1.weight, trained.conv1.weight)


def test_meta_checks_without_copying(tmp_path: Path, trained: Net) -> None:
    path = tmp_path / "net.pt"
    torch.save(trained.state_dict(), path)
    loaded = load_model("sample_models.seeds:Net", weights=path, device="meta")
    assert loaded.weights is not None and loaded.weights.checked_only
    assert cast(Net, loaded.module).conv1.weight.is_meta


def test_not_a_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(ModelFileError, match="holds a list, not a state dict"):
        load_weights(Net(), path)
    path = tmp_path / "meta.pt"
    torch.save({"epoch": 1, "lr": 0.1}, path)
    with pytest.raises(ModelFileError,
                       match=r"a dict without a state dict in it \(keys: epoch, lr\)"):
        load_weights(Net(), path)


def test_pickled_objects_refused_as_weights(tmp_path: Path) -> None:
    path = tmp_path / "whole.pt"
    torch.save(Net(), path)
    with pytest.raises(ModelFileError, match="weights_only=True.*`trust_pickle`"):
        load_weights(Net(), path)


def test_missing_weights_file() -> None:
    with pytest.raises(ModelFileError, match="`weights=nothing.pt`: no such file"):
        load_weights(Net(), "nothing.pt")
