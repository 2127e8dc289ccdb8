"""The CLI as a user meets it: outputs, formats, budgets, and one clear line per mistake."""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests.helpers import ROOT, Cli, RunModelviz, read_golden


def test_summary_vgg16(cli: Cli) -> None:
    result = cli("summary", "vgg16", "3x224x224", "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any("features.0 (Conv2d)" in line and "[1, 64, 224, 224]" in line
               and "1,792" in line for line in lines)
    assert any(line.startswith("Total params") and line.endswith("138,357,544") for line in lines)
    assert any("Estimated Total Size (MB)" in line and line.endswith("747.15") for line in lines)
    assert result.stderr == ""


def test_classic_format_reproduces_the_seed_post(cli: Cli) -> None:
    result = cli("summary", "sample_models.seeds:SmallConvNet", "3x224x224", "-f", "classic")
    assert result.exit_code == 0
    assert result.stdout == read_golden("seed_small_convnet_torchsummary.txt")


def test_json_to_stdout_is_pure_json(cli: Cli) -> None:
    result = cli("summary", "sample_models.multi_io:TwoInputNet", "3x32x32", "10", "-f", "json",
                 "--batch-size", "4")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert [i["shape"] for i in data["inputs"]] == [[4, 3, 32, 32], [4, 10]]
    assert data["batch_size"] == 4 and data["outputs"] == [4, 5]


def test_title_names_several_inputs_after_forward(cli: Cli) -> None:
    result = cli("summary", "sample_models.multi_io:TwoInputNet", "3x32x32", "10", "--depth", "1")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0] == (
        "sample_models.multi_io:TwoInputNet (TwoInputNet) · inputs image float32[1, 3, 32, 32], "
        "features float32[1, 10] · cpu")


@pytest.mark.parametrize(("name", "check"), [
    ("out.json", lambda text: json.loads(text)["totals"]["params"] == 44_426),
    ("out.md", lambda text: "| `conv1` (Conv2d) | [1, 6, 24, 24] | 156 |" in text),
    ("out.csv", lambda text: text.splitlines()[1].startswith("conv1,Conv2d,1,,1,")),
    ("out.txt", lambda text: "conv1 (Conv2d)" in text and "\x1b[" not in text),
])
def test_output_format_from_extension(cli: Cli, tmp_path: Path, name: str,
                                      check: Callable[[str], bool]) -> None:
    target = tmp_path / "nested" / name
    result = cli("summary", "sample_models.seeds:Net", "1x28x28", "-o", str(target))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert check(target.read_text())
    assert [p.name for p in target.parent.iterdir()] == [name]  # no temporary files left


def test_budgets_fail_with_status_1(cli: Cli) -> None:
    result = cli("summary", "vgg16", "--max-params", "25M", "--max-flops", "100G")
    assert result.exit_code == 1
    assert "Total params" in result.stdout  # the table is still shown
    assert result.stderr.strip() == (
        "error: params 138.36 M (138,357,544) exceed the budget of 25.00 M by 113.36 M (5.53x). "
        "Shrink the model or raise the budget.")
    assert cli("summary", "resnet18", "--max-params", "12M", "--max-flops", "5G").exit_code == 0


def test_columns_and_depth(cli: Cli) -> None:
    result = cli("summary", "resnet18", "--depth", "1", "--columns", "flops,macs,input_shape")
    assert result.exit_code == 0
    header = result.stdout.splitlines()[2]
    expected = ["Layer (type)", "Input Shape", "Output Shape", "Param #", "FLOPs", "MACs"]
    assert [h.strip() for h in header.strip("┃").split("┃")] == expected
    assert "layer1.0" not in result.stdout and "layer1 (Sequential)" in result.stdout


def test_fold_joins_identical_blocks(cli: Cli) -> None:
    result = cli("summary", "resnet18", "--depth", "2", "--fold", "-f", "markdown")
    assert result.exit_code == 0, result.stderr
    assert "`layer1.0–1` (BasicBlock ×2) | [1, 64, 56, 56] | 147,968 |" in result.stdout
    assert "`layer1.0` (BasicBlock)" not in result.stdout
    # blocks that differ (layer2.0 has a downsample) stay apart
    assert "`layer2.0` (BasicBlock) | [1, 128, 28, 28] | 230,144 |" in result.stdout


def test_meta_device_and_int_tokens(cli: Cli) -> None:
    result = cli("summary", "sample_models/lstm_lm.py:LSTMLanguageModel", "int64:35",
                 "--device", "meta", "-f", "json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["device"] == "meta" and data["totals"]["params"] == 131_560
    assert data["inputs"][0]["dtype"] == "int64"


def test_kwarg_and_weights(cli: Cli, tmp_path: Path) -> None:
    from sample_models.seeds import SmallConvNet

    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 1, "model_state_dict": SmallConvNet(num_classes=3).state_dict()}, path)
    result = cli("summary", "sample_models.seeds:SmallConvNet", "3x224x224", "-k", "num_classes=3",
                 "--weights", str(path), "-f", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["outputs"] == [1, 3]


def test_input_file_with_keyword_inputs(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "inputs.pt"
    torch.save({"image": torch.randn(2, 3, 16, 16), "features": torch.randn(2, 10)}, path)
    result = cli("summary", "sample_models.multi_io:TwoInputNet", "--input-file", str(path),
                 "-f", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["inputs"] == [
        {"name": "image", "shape": [2, 3, 16, 16], "dtype": "float32"},
        {"name": "features", "shape": [2, 10], "dtype": "float32"}]


ERRORS = [
    (["summary", "resnt50"], "error: unknown model 'resnt50': it is not a torchvision model, a "
     "file, or module:attr. Did you mean resnet50, resnet152, resnet101, fcn_resnet50? Run "
     "`modelviz models` to list torchvision names, or give path/to/file.py:ClassName."),
    (["summary", "vgg16", "3x224x"], "error: bad size '3x224x': each dimension must be a positive "
     "whole number. Write sizes without the batch dimension, e.g. 3x224x224, 10 or int64:128."),
    (["summary", "missing/model.py:Net", "3"], "error: no such file: missing/model.py. Check the "
     "path to your model."),
    (["summary", "sample_models.seeds:Nett", "3"], "error: sample_models.seeds has no attribute "
     "'Nett'. It defines: Net, SmallConvNet, tanh_mlp, ActivationNet."),
    (["summary", "sample_models.seeds:Net"], "error: SIZES needed: modelviz cannot guess the input "
     "of sample_models.seeds:Net. Give one size per input after MODEL, e.g. 3x224x224 or "
     "int64:128."),
    (["summary", "sample_models.seeds:Net", "3x28x28"], "error: forward pass failed in conv1 "
     "(Conv2d) given input [1, 3, 28, 28]: RuntimeError: Given groups=1, weight of size "
     "[6, 1, 5, 5], expected input[1, 3, 28, 28] to have 1 channels, but got 3 channels instead; "
     "it was the first module to run. Check SIZES (given without the batch dimension) and their "
     "dtypes; --debug shows the traceback."),
    (["summary", "vgg16", "--device", "gpu"], "error: unknown device 'gpu'. Use auto, cpu, cuda, "
     "cuda:N, mps or meta."),
    (["summary", "vgg16", "--dtype", "int8"], "error: unknown dtype 'int8'. Use one of: float32, "
     "float16, bfloat16, float64."),
    (["summary", "vgg16", "-c", "flop"], "error: unknown column 'flop'. Use any of: input_shape, "
     "kernel_size, params_percent, trainable, flops, macs, output_memory, or all."),
    (["summary", "vgg16", "-o", "out.xlsx"], "error: cannot tell the format of out.xlsx from its "
     "extension. Use .txt, .md, .json or .csv, or pass --format."),
    (["summary", "vgg16", "--max-params", "lots"], "error: bad --max-params 'lots'. Write a "
     "number with an optional K, M, G or T suffix, e.g. 25M."),
    (["summary", "resnet18", "-k", "num_classes"], "error: bad --kwarg 'num_classes'. Write "
     "key=value, e.g. --kwarg num_classes=10."),
]


@pytest.mark.parametrize(("args", "message"), [
    *(pytest.param(args, message, id=" ".join(args)) for args, message in ERRORS),
    # The one row that needs a machine without CUDA: only it is skipped where CUDA is present.
    pytest.param(["summary", "vgg16", "--device", "cuda"], f"error: --device cuda asked for "
                 f"CUDA, but torch {torch.__version__} sees no CUDA GPU here. Use --device cpu "
                 "(or --device meta for shapes and counts without memory).",
                 id="summary vgg16 --device cuda",
                 marks=pytest.mark.skipif(torch.cuda.is_available(),
                                          reason="checks the message for absent CUDA")),
])
def test_user_mistakes_get_one_line_and_status_2(cli: Cli, args: list[str], message: str) -> None:
    result = cli(*args)
    assert result.exit_code == 2
    assert result.stderr.strip() == message
    assert "Traceback" not in result.stderr + result.stdout


def test_import_error_in_users_file(cli: Cli, tmp_path: Path) -> None:
    source = tmp_path / "mine.py"
    source.write_text("import torch\nfrom torch import nn\nimport tensorflow_is_not_here\n")
    result = cli("summary", f"{source}:Model", "3")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: importing {source} raised ModuleNotFoundError: No module named "
        "'tensorflow_is_not_here' (mine.py, line 3). Fix that error in your code; --debug shows "
        "the full traceback.")


def test_weights_mismatch_and_pickle(cli: Cli, tmp_path: Path) -> None:
    from sample_models.seeds import Net

    path = tmp_path / "w.pt"
    torch.save({"fc.weight": torch.zeros(1)}, path)
    result = cli("summary", "sample_models.seeds:Net", "1x28x28", "--weights", str(path))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: --weights {path} does not fit the model: 10 key(s) "
                                    "missing from the file: conv1.weight")
    assert result.stderr.strip().endswith("or pass --no-strict to load the keys that fit.")
    pickled = tmp_path / "whole.pt"
    torch.save(Net(), pickled)
    result = cli("summary", str(pickled), "1x28x28")
    assert result.exit_code == 2 and "add --trust-pickle" in result.stderr
    result = cli("summary", str(pickled), "1x28x28", "--trust-pickle", "-f", "json")
    assert result.exit_code == 0 and json.loads(result.stdout)["totals"]["params"] == 44_426


def test_failed_command_leaves_no_file(cli: Cli, tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    result = cli("summary", "sample_models.seeds:Net", "2x28x28", "-o", str(target))
    assert result.exit_code == 2
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_written_files_get_the_usual_mode(cli: Cli, tmp_path: Path) -> None:
    target = tmp_path / "summary.md"
    previous = os.umask(0o022)
    try:
        result = cli("summary", "sample_models.seeds:Net", "1x28x28", "-o", str(target))
        assert result.exit_code == 0
    finally:
        os.umask(previous)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # readable by others, like any new file
    assert target.read_text().startswith("#") and list(tmp_path.iterdir()) == [target]


def test_debug_shows_the_traceback(run_modelviz: RunModelviz) -> None:
    result = run_modelviz("--debug", "summary", "sample_models.seeds:Net", "3x28x28")
    assert result.exit_code == 1
    assert "Traceback" in result.stderr and "ForwardError" in result.stderr
    plain = run_modelviz("summary", "sample_models.seeds:Net", "3x28x28")
    assert plain.exit_code == 2 and "Traceback" not in plain.stderr
    assert len(plain.stderr.strip().splitlines()) == 1


def test_help_does_not_import_torch() -> None:
    import subprocess

    code = ("import sys\nfrom modelviz.cli import app\ntry:\n    app(['--help'])\n"
            "except SystemExit:\n    pass\nassert 'torch' not in sys.modules, 'torch imported'\n"
            "from typer.main import get_command\n"
            "names = list(get_command(app).commands)\n"
            "assert len(names) >= 6, names\n"
            "for name in names:\n"
            "    try:\n        app([name, '--help'])\n"
            "    except SystemExit:\n        pass\nassert 'torch' not in sys.modules\n"
            "heavy = {'wandb', 'visdom', 'numpy', 'matplotlib'} & set(sys.modules)\n"
            "assert not heavy, heavy\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Commands" in proc.stdout


def test_pipes_get_no_colour_codes(run_modelviz: RunModelviz) -> None:
    result = run_modelviz("summary", "sample_models.seeds:tanh_mlp", "8",
                          env={"NO_COLOR": "", "COLUMNS": ""})
    assert result.exit_code == 0
    assert "\x1b[" not in result.stdout + result.stderr
    assert "W0 (Linear)" in result.stdout and "tanh (Tanh)" in result.stdout


def test_models_command(cli: Cli) -> None:
    result = cli("models", "resnet")
    assert result.exit_code == 0
    assert "resnet50" in result.stdout and "3x224x224" in result.stdout
    assert "vgg16" not in result.stdout


def test_version(cli: Cli) -> None:
    from modelviz import __version__

    assert cli("--version").stdout.strip() == f"modelviz {__version__}"


def test_dtype_batch_and_train(cli: Cli) -> None:
    result = cli("summary", "sample_models.seeds:Net", "1x28x28", "--dtype", "bf16", "-f", "json")
    data = json.loads(result.stdout)
    assert data["dtype"] == "bfloat16" and data["inputs"][0]["dtype"] == "bfloat16"
    assert data["totals"]["params_size_mb"] == round(44_426 * 2 / 1024**2, 4)
    result = cli("summary", "sample_models.seeds:SmallConvNet", "3x224x224", "--train", "-b", "2",
                 "-f", "json")
    assert json.loads(result.stdout)["outputs"] == [2, 1]


def test_detection_model(cli: Cli) -> None:
    result = cli("summary", "fasterrcnn_mobilenet_v3_large_320_fpn", "3x320x320", "--depth", "1",
                 "-f", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["totals"]["params"] == 19_410_754
    top = {layer["name"] for layer in data["layers"] if layer["depth"] == 1}
    assert top == {"transform", "backbone", "rpn", "roi_heads"}
    backbone = next(layer for layer in data["layers"] if layer["name"] == "backbone")
    assert set(backbone["output_shapes"]) == {"0", "1", "pool"}  # a dict of feature maps


def test_detection_model_in_training_mode(cli: Cli) -> None:
    """A torchvision detector refuses to train without targets; --train gives it one made-up
    box per image (core.inputs.training_targets), as memory's training step does. The pass is
    then training's: the losses come out, and the box head sees torchvision's 512 sampled
    proposals per image (box_batch_size_per_image), where eval keeps the RPN's top ones."""
    result = cli("summary", "fasterrcnn_mobilenet_v3_large_320_fpn", "3x320x320", "--train",
                 "-f", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["outputs"] == {"loss_classifier": [], "loss_box_reg": [], "loss_objectness": [],
                               "loss_rpn_box_reg": []}
    assert [i["name"] for i in data["inputs"]] == ["images"]
    scores = next(layer for layer in data["layers"]
                  if layer["name"] == "roi_heads.box_predictor.cls_score")
    assert scores["output_shapes"] == [512, 91]


def test_python_dash_m(run_modelviz: RunModelviz) -> None:
    result = run_modelviz("summary", "sample_models.seeds:tanh_mlp", "8", "-f", "csv")
    assert result.exit_code == 0
    expected = 'W0,Linear,1,,1,"[[1, 8]]","[1, 16]",144,144,144,256,128,64,'
    assert result.stdout.splitlines()[1] == expected
