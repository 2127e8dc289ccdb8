"""Every form MODEL takes, and every way it can go wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from modelviz.core import zoo
from modelviz.core.loading import load_model
from modelviz.core.specs import InputSpec
from modelviz.errors import (
    ModelFileError,
    UnknownModelError,
    UnsafePickleError,
    UserCodeError,
)
from sample_models.seeds import Net


def test_torchvision_name_builds_random_weights() -> None:
    loaded = load_model("resnet18")
    assert loaded.source == "torchvision"
    assert type(loaded.module).__name__ == "ResNet"
    assert sum(p.numel() for p in loaded.module.parameters()) == 11_689_512
    assert loaded.default_sizes == [InputSpec((3, 224, 224))]


@pytest.mark.parametrize(("name", "sizes"), [
    ("resnet50", [(3, 224, 224)]),
    ("inception_v3", [(3, 299, 299)]),
    ("vit_b_16", [(3, 224, 224)]),
    ("swin_v2_t", [(3, 256, 256)]),
    ("fasterrcnn_resnet50_fpn", [(3, 800, 800)]),
    ("deeplabv3_resnet50", [(3, 520, 520)]),
    ("r3d_18", [(3, 16, 112, 112)]),
    ("raft_small", [(3, 128, 128), (3, 128, 128)]),
])
def test_family_default_sizes(name: str, sizes: list[tuple[int, ...]]) -> None:
    assert [s.dims for s in zoo.default_sizes(name)] == sizes


def test_detection_model_builds_without_downloading() -> None:
    loaded = load_model("fasterrcnn_mobilenet_v3_large_320_fpn", device="meta")
    assert type(loaded.module).__name__ == "FasterRCNN"


@pytest.mark.parametrize(("typo", "suggestion"), [("resnt50", "resnet50"), ("vgg61", "vgg16"),
                                                 ("mobilenet", "mobilenet_v2")])
def test_unknown_name_suggests_close_ones(typo: str, suggestion: str) -> None:
    with pytest.raises(UnknownModelError) as info:
        load_model(typo)
    assert f"unknown model {typo!r}" in str(info.value)
    assert suggestion in str(info.value).split("Did you mean")[1]
    assert "modelviz models" in str(info.value)


@pytest.mark.parametrize("spec", ["sample_models.seeds:Net", "sample_models.seeds.Net",
                                  "sample_models/seeds.py:Net"])
def test_python_specs(spec: str) -> None:
    loaded = load_model(spec)
    assert type(loaded.module).__name__ == "Net"  # a file path imports its own copy of the class
    assert loaded.source == "python"


def test_factory_and_kwargs() -> None:
    assert isinstance(load_model("sample_models.seeds:tanh_mlp").module, nn.Sequential)
    model = load_model("sample_models.seeds:SmallConvNet", kwargs={"num_classes": 7}).module
    head = model.get_submodule("fc2")
    assert isinstance(head, nn.Linear) and head.out_features == 7


def test_kwargs_reach_torchvision() -> None:
    model = load_model("resnet18", kwargs={"num_classes": 10}).module
    head = model.get_submodule("fc")
    assert isinstance(head, nn.Linear) and head.out_features == 10


def test_bad_kwarg_names_the_class(tmp_path: Path) -> None:
    with pytest.raises(UserCodeError, match=r"building sample_models.seeds:Net raised TypeError"):
        load_model("sample_models.seeds:Net", kwargs={"width": 3})


def test_missing_attribute_lists_models() -> None:
    with pytest.raises(UnknownModelError) as info:
        load_model("sample_models.seeds:Nett")
    assert "sample_models.seeds has no attribute 'Nett'" in str(info.value)
    assert "It defines: Net, SmallConvNet" in str(info.value)


def test_file_without_attribute_lists_models() -> None:
    with pytest.raises(UnknownModelError) as info:
        load_model("sample_models/multi_io.py")
    assert "needs the model's name" in str(info.value)
    assert "TwoInputNet, DictOutputNet" in str(info.value)


def test_missing_file() -> None:
    with pytest.raises(ModelFileError, match="no such file: nowhere/model.py"):
        load_model("nowhere/model.py:Net")
    with pytest.raises(ModelFileError, match="no such file: model.pt"):
        load_model("model.pt")


def test_missing_module() -> None:
    with pytest.raises(UnknownModelError, match="no module named 'not_a_package'"):
        load_model("not_a_package.models:Net")


def test_import_error_inside_user_code_is_shown(tmp_path: Path) -> None:
    source = tmp_path / "broken.py"
    source.write_text("import torch\nimport not_installed_anywhere\n")
    with pytest.raises(UserCodeError) as info:
        load_model(f"{source}:Net")
    message = str(info.value)
    assert "ModuleNotFoundError: No module named 'not_installed_anywhere'" in message
    assert "(broken.py, line 2)" in message


def test_error_in_constructor_names_the_line(tmp_path: Path) -> None:
    source = tmp_path / "bad_init.py"
    source.write_text("from torch import nn\n\nclass Net(nn.Module):\n"
                      "    def __init__(self):\n        super().__init__()\n"
                      "        self.fc = nn.Linear(3, -1)\n")
    with pytest.raises(UserCodeError, match=r"building .*:Net raised RuntimeError.*line 6"):
        load_model(f"{source}:Net")


def test_factory_returning_something_else(tmp_path: Path) -> None:
    source = tmp_path / "factory.py"
    source.write_text("def make():\n    return 42\n")
    with pytest.raises(UserCodeError, match="returned a int, not an nn.Module"):
        load_model(f"{source}:make")


def test_torchscript_file(tmp_path: Path) -> None:
    path = tmp_path / "net.pt"
    torch.jit.save(torch.jit.script(Net()), path)
    loaded = load_model(str(path))
    assert loaded.source == "torchscript"
    assert sum(p.numel() for p in loaded.module.parameters()) == 44_426


def test_exported_program_keeps_hierarchy(tmp_path: Path) -> None:
    path = tmp_path / "net.pt2"
    torch.export.save(torch.export.export(Net(), (torch.randn(1, 1, 28, 28),)), path)
    loaded = load_model(str(path))
    assert loaded.source == "exported-program"
    names = {n for n, _ in loaded.module.named_modules()}
    assert {"conv1", "conv2", "fc1", "fc2", "fc3"} <= names


def test_pickled_module_needs_trust(tmp_path: Path) -> None:
    path = tmp_path / "whole.pt"
    torch.save(Net(), path)
    with pytest.raises(UnsafePickleError) as info:
        load_model(str(path))
    assert "unpickling it runs code" in str(info.value)
    assert "`trust_pickle`" in str(info.value)
    loaded = load_model(str(path), trust_pickle=True)
    assert isinstance(loaded.module, Net)
    assert loaded.source == "pickle"


def test_state_dict_as_model_points_to_weights(tmp_path: Path) -> None:
    path = tmp_path / "weights.pth"
    torch.save(Net().state_dict(), path)
    with pytest.raises(ModelFileError, match=r"holds a state dict .* `weights="):
        load_model(str(path))


def test_onnx_and_safetensors_as_model(tmp_path: Path) -> None:
    for name, hint in (("m.onnx", "modelviz netron"), ("m.safetensors", "`weights=")):
        path = tmp_path / name
        path.write_bytes(b"\0")
        with pytest.raises(ModelFileError, match=hint):
            load_model(str(path))


def test_kwargs_refused_for_instances() -> None:
    assert isinstance(load_model("tests.models_for_tests:INSTANCE").module, Net)
    with pytest.raises(UserCodeError, match="already a model instance"):
        load_model("tests.models_for_tests:INSTANCE", kwargs={"x": 1})


def test_meta_device_allocates_nothing() -> None:
    loaded = load_model("sample_models.llama:llama_7b", device="meta")
    params = list(loaded.module.parameters())
    assert all(p.is_meta for p in params)
    assert sum(p.numel() for p in params) == 6_738_415_616


def test_dtype_cast() -> None:
    model = load_model("sample_models.seeds:Net", dtype=torch.float16).module
    assert {p.dtype for p in model.parameters()} == {torch.float16}
