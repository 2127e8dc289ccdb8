"""``hf:`` and ``timm:`` models at their real sizes: params and FLOPs exactly those of the same
model built by transformers or timm directly (``parameters()`` yields a tied weight once) and
counted by ``FlopCounterMode`` on the same inputs, on the meta device; and the commands of the
README, run with the network cut off. tests/test_hf_timm.py covers spec handling, errors and
small configurations."""

from __future__ import annotations

import re
import socket
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from modelviz import api
from tests.helpers import Cli

transformers = pytest.importorskip("transformers")
timm = pytest.importorskip("timm")

META = torch.device("meta")


def _ids(length: int) -> torch.Tensor:
    return torch.empty((1, length), dtype=torch.int64, device=META)


def _counted(model: nn.Module, *args: torch.Tensor, **kwargs: torch.Tensor) -> tuple[int, int]:
    """Parameters (each tensor once) and FlopCounterMode's FLOPs of one eval pass on meta."""
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*args, **kwargs)
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops()


def _direct_hf(model_type: str, settings: dict[str, Any],
               inputs: dict[str, torch.Tensor]) -> tuple[int, int]:
    """The model transformers' AutoModel builds from the default config of ``model_type``,
    without cache, counted on ``inputs``. Masks are made after an ``hf:`` model was built, so
    transformers' mask code takes its shape-only path on meta tensors (hub._meta_safe_masks)."""
    config = transformers.AutoConfig.for_model(model_type, **settings)
    config.use_cache = False
    with META:
        model = transformers.AutoModel.from_config(config)
    return _counted(model, **inputs)


#: spec, SIZES, ``-k`` settings, the class transformers builds, and the same inputs by hand.
HF_CASES: dict[str, tuple[list[str], dict[str, Any], str, dict[str, torch.Tensor]]] = {
    "gpt2": ([], {}, "GPT2Model", {"input_ids": _ids(128)}),
    "bert": (["input_ids=int64:128", "attention_mask=int64:128"], {}, "BertModel",
             {"input_ids": _ids(128), "attention_mask": _ids(128)}),
    "t5": ([], {}, "T5Model", {"input_ids": _ids(128), "decoder_input_ids": _ids(16)}),
    "llama": ([], {"num_hidden_layers": 2}, "LlamaModel", {"input_ids": _ids(128)}),
    "whisper": ([], {}, "WhisperModel",
                {"input_features": torch.empty((1, 80, 3000), device=META),
                 "decoder_input_ids": _ids(16)}),
    "vit": ([], {}, "ViTModel", {"pixel_values": torch.empty((1, 3, 224, 224), device=META)}),
    "wav2vec2": ([], {}, "Wav2Vec2Model",
                 {"input_values": torch.empty((1, 16000), device=META)}),
}


@pytest.mark.parametrize("model_type", list(HF_CASES))
def test_hf_model_equals_transformers_built_directly(model_type: str) -> None:
    sizes, settings, cls, inputs = HF_CASES[model_type]
    summary = api.summary(f"hf:{model_type}", *sizes, kwargs=settings, device="meta")
    assert summary.trace.model_type == cls
    assert summary.trace.uncounted == {}
    params, flops = _direct_hf(model_type, settings, inputs)
    assert (summary.totals.params, summary.totals.flops) == (params, flops)
    assert flops > 0


def test_gpt2_flops_by_hand() -> None:
    """GPT-2 small (12 layers, d = 768) on L = 128 tokens: per layer and token, the matrix
    products are q, k, v and the output projection (4·d²) and the MLP (8·d²), 2 FLOPs per
    multiply-add, and attention's Q·Kᵀ and P·V are 2·L·d each: 24·L·d² + 4·L²·d per layer.
    The embeddings are lookups, and the base model has no LM head."""
    layers, d, length = 12, 768, 128
    by_hand = layers * (24 * length * d * d + 4 * length * length * d)
    assert api.summary("hf:gpt2", device="meta").totals.flops == by_hand == 22_347_251_712


def test_gpt2_lm_head_counts_its_tied_weight_once() -> None:
    """GPT2LMHeadModel's lm_head is the token embedding: 124,439,808 parameters, not the
    163,037,184 of counting it twice (torchinfo's figure), while its FLOPs are counted."""
    summary = api.summary("hf:gpt2@causal-lm", device="meta")
    assert summary.totals.params == 124_439_808
    assert summary.totals.flops == 22_347_251_712 + 2 * 128 * 768 * 50257


@pytest.mark.parametrize("name", ["convnext_tiny", "vit_base_patch16_224"])
def test_timm_model_equals_timm_built_directly(name: str) -> None:
    summary = api.summary(f"timm:{name}", device="meta")
    with META:
        model = timm.create_model(name, pretrained=False)
    assert (summary.totals.params, summary.totals.flops) == _counted(
        model, torch.empty((1, 3, 224, 224), device=META))


def test_timm_vit_equals_torchvisions_published_vit_b_16() -> None:
    """timm's ViT-B/16 and torchvision's vit_b_16 are the same network (class token, 197
    tokens, 1000 classes): the same parameters and FLOPs, and torchvision's published 17.564
    GMACs."""
    ours = api.summary("timm:vit_base_patch16_224", device="meta").totals
    theirs = api.summary("vit_b_16", device="meta").totals
    assert (ours.params, ours.flops) == (theirs.params, theirs.flops) == (86_567_656,
                                                                          35_127_656_448)
    assert round(ours.macs / 1e9, 3) == 17.564


def _totals(stdout: str) -> tuple[int, int]:
    params = re.search(r"Total params\s+([\d,]+)", stdout)
    flops = re.search(r"^FLOPs\b.* \(([\d,]+)\)$", stdout, re.MULTILINE)
    assert params and flops, stdout
    return int(params.group(1).replace(",", "")), int(flops.group(1).replace(",", ""))


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No connection can be opened: any attempt fails the command that makes it."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


#: The README's commands, on the cpu as typed there (llama on meta: its two layers at full
#: width are 536 M parameters, slow to initialise and no different on the cpu).
COMMANDS = {
    "gpt2": (["hf:gpt2"], 124_439_808, 22_347_251_712),
    "bert": (["hf:bert", "input_ids=int64:128", "attention_mask=int64:128"], 109_482_240,
             22_348_431_360),
    "t5": (["hf:t5"], 60_506_624, 6_571_425_792),
    "llama": (["hf:llama", "-k", "num_hidden_layers=2", "--device", "meta"], 535_842_816,
              104_152_956_928),
    "timm": (["timm:convnext_tiny"], 28_589_128, 8_911_062_528),
}


@pytest.mark.parametrize("case", list(COMMANDS))
@pytest.mark.usefixtures("offline")
def test_readme_commands_work_offline_with_exact_figures(cli: Cli, case: str) -> None:
    """The figures are those the tests above get from transformers and timm directly; on the
    cpu modelviz counts the fused attention kernel too, so they equal the meta figures."""
    args, params, flops = COMMANDS[case]
    result = cli("summary", *args, "--depth", "1")
    assert result.exit_code == 0, result.stderr
    assert _totals(result.stdout) == (params, flops)


@pytest.mark.parametrize(("typed", "hint"), [("gpt2", "hf:gpt2"), ("convnext_nano",
                                                                     "timm:convnext_nano")])
def test_a_hub_name_without_its_prefix_is_suggested(cli: Cli, typed: str, hint: str) -> None:
    result = cli("summary", typed)
    assert result.exit_code == 2
    assert f"Did you mean {hint}" in result.stderr and len(result.stderr.splitlines()) == 1
