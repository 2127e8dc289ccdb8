"""``hf:NAME`` and ``timm:NAME``: real transformers and timm models, built offline from configs
with random weights, kept small with config overrides."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from modelviz import api
from modelviz.core.loading import load_model
from modelviz.core.specs import InputSpec
from tests.helpers import ROOT, Cli

transformers = pytest.importorskip("transformers")
timm = pytest.importorskip("timm")

GPT2 = {"n_layer": 2}
LLAMA = {"num_hidden_layers": 2, "hidden_size": 256, "intermediate_size": 512,
         "num_attention_heads": 4, "num_key_value_heads": 4}


def _flags(settings: dict[str, int]) -> list[str]:
    return [arg for key, value in settings.items() for arg in ("-k", f"{key}={value}")]


def _total_params(stdout: str) -> int:
    match = re.search(r"Total params\s+([\d,]+)", stdout)
    assert match, stdout
    return int(match.group(1).replace(",", ""))


def _unique_params(model: torch.nn.Module) -> int:
    """Parameters counted once each, as ``parameters()`` yields tied weights once."""
    return sum(p.numel() for p in model.parameters())


def test_gpt2_params_and_flops_match_the_model_built_directly(cli: Cli) -> None:
    result = cli("summary", "hf:gpt2@causal-lm", *_flags(GPT2), "--depth", "1")
    assert result.exit_code == 0, result.stderr
    config = transformers.AutoConfig.for_model("gpt2", **GPT2)
    direct = transformers.GPT2LMHeadModel(config)
    assert direct.lm_head.weight is direct.transformer.wte.weight  # tied: counted once
    assert _total_params(result.stdout) == _unique_params(direct)
    assert "GPT2LMHeadModel" in result.stderr  # the note names the head

    summary = api.summary("hf:gpt2", kwargs=GPT2, device="meta")
    config.use_cache = False
    with torch.device("meta"):
        model = transformers.GPT2Model(config).eval()
    ids = torch.empty((1, 128), dtype=torch.int64, device="meta")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(input_ids=ids)
    assert summary.totals.flops == counter.get_total_flops() > 0
    assert summary.totals.params == _unique_params(model)


def test_bert_with_named_inputs(cli: Cli) -> None:
    result = cli("summary", "hf:bert", "input_ids=int64:128", "attention_mask=int64:128",
                 "-k", "num_hidden_layers=2", "--depth", "1")
    assert result.exit_code == 0, result.stderr
    assert "BertModel" in result.stdout


def test_t5_gets_default_inputs_with_no_sizes() -> None:
    summary = api.summary("hf:t5", kwargs={"num_layers": 2, "num_decoder_layers": 2},
                          device="meta")
    assert summary.totals.flops > 0
    loaded = load_model("hf:t5", kwargs={"num_layers": 2, "num_decoder_layers": 2},
                        device="meta")
    assert loaded.default_sizes == [InputSpec((128,), "int64", "input_ids"),
                                    InputSpec((16,), "int64", "decoder_input_ids")]
    assert getattr(loaded.module, "config").use_cache is False  # noqa: B009 - typed as Any


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_llama_overrides_reach_the_config(cli: Cli, device: str) -> None:
    result = cli("summary", "hf:llama", *_flags(LLAMA), "--device", device, "--depth", "1")
    assert result.exit_code == 0, result.stderr
    direct = transformers.LlamaModel(transformers.AutoConfig.for_model("llama", **LLAMA))
    assert _total_params(result.stdout) == _unique_params(direct)  # head_dim follows


def test_timm_params_and_default_size() -> None:
    loaded = load_model("timm:convnext_tiny", device="meta")
    assert loaded.default_sizes == [InputSpec((3, 224, 224))]
    direct = timm.create_model("convnext_tiny", pretrained=False)
    assert api.summary("timm:convnext_tiny", device="meta").totals.params == \
        _unique_params(direct)


def test_missing_extra_is_one_line() -> None:
    code = ("import sys; sys.modules['transformers'] = None; "
            "sys.argv = ['modelviz', 'summary', 'hf:gpt2']; "
            "from modelviz.cli import main; main()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: transformers is not installed: pip install 'torch-modelviz[hf]'. Install it "
        "to build transformers models by name."]


def test_local_folder_and_weights(cli: Cli, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    config = transformers.AutoConfig.for_model("gpt2", **GPT2)
    config.save_pretrained(tmp_path)
    model = transformers.GPT2Model(config)
    weights = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    result = cli("summary", f"hf:{tmp_path}", "--weights", str(weights), "--depth", "1")
    assert result.exit_code == 0, result.stderr
    assert _total_params(result.stdout) == _unique_params(model)

    loaded = load_model(f"hf:{tmp_path / 'config.json'}", weights=weights)
    assert loaded.weights is not None and loaded.weights.clean
    assert torch.equal(loaded.module.state_dict()["wte.weight"], model.wte.weight)


def test_wrong_specs_get_the_right_message(cli: Cli, tmp_path: Path) -> None:
    transformers.AutoConfig.for_model("gpt2", **GPT2).save_pretrained(tmp_path)
    for spec in (str(tmp_path), str(tmp_path / "config.json")):
        result = cli("summary", spec)
        assert result.exit_code == 2
        assert f"Use hf:{spec}" in result.stderr, result.stderr
    cases = {
        "timm:resnet5": "unknown timm model 'resnet5'. Did you mean resnet50",
        "hf:gpt3": "not a transformers model type",
        "hf:gpt2@chat": "unknown task 'chat'",
    }
    for spec, message in cases.items():
        result = cli("summary", spec)
        assert result.exit_code == 2 and message in result.stderr, result.stderr
    result = cli("summary", "hf:gpt2", "-k", "n_layers=2")
    assert result.exit_code == 2 and "Did you mean n_layer" in result.stderr, result.stderr
