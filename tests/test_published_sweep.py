"""Every classification model of torchvision against the figures torchvision publishes.

Each weights entry's ``meta`` holds ``num_params`` and ``_ops``, the "GFLOPS" column of
torchvision's model table, which is in fact billions of multiply-adds at the weights' crop size,
rounded to three decimals (resnet18: 1.814 = 3,628,146,688 FLOPs / 2). They were computed by
torchvision's own script, outside modelviz, so they are an oracle from outside for every family:
convolutions, grouped and depthwise ones, squeeze-excitation, shifted-window and plain attention,
MaxViT's blocks. The meta device makes the whole sweep (80 models, 115 weights entries, 128 GB
of parameters if they were real) take seconds.

Where the two sides disagree the model is not the same one; the table below builds what the
weights' builder builds, and the tests after the sweep say what differs and who is right.
"""

from __future__ import annotations

from typing import Any

import pytest
import torchvision

from modelviz import api
from modelviz.core.records import shapes_json

MODELS = torchvision.models.list_models(module=torchvision.models)
WEIGHTS = [(name, weights) for name in MODELS
           for weights in torchvision.models.get_model_weights(name)]


def _builder_settings(name: str, weights: Any) -> dict[str, Any]:
    """What torchvision's builder sets when it is given these weights, and ``get_model(name)``
    without weights does not:

    * the ViTs take ``image_size`` from the weights (``min_size``): vit_h_14's default weights
      are at 518 px, and a ViT built at the default 224 refuses a 518 px image
      ("Wrong image height! Expected 224 but got 518!");
    * googlenet's builder loads the weights into a model with its two auxiliary classifiers,
      then drops them (``aux1 = aux2 = None``) unless ``aux_logits=True`` was asked for; the
      published ``num_params`` is of that model (see the googlenet test below);
    * googlenet's and inception_v3's builders also set ``transform_input=True`` (a per-channel
      rescaling, no multiply-adds) and ``init_weights=False`` (no effect on the figures).
    """
    if name.startswith("vit_"):
        return {"image_size": weights.meta["min_size"][0]}
    if name == "googlenet":
        return {"aux_logits": False, "init_weights": False, "transform_input": True}
    if name == "inception_v3":
        return {"init_weights": False, "transform_input": True}
    return {}


def test_the_sweep_covers_every_classification_model() -> None:
    assert len(MODELS) >= 80 and len(WEIGHTS) >= 115
    assert {"vit_b_16", "vit_h_14", "swin_v2_b", "maxvit_t", "regnet_y_128gf",
            "efficientnet_v2_l", "googlenet", "inception_v3"} <= set(MODELS)


@pytest.mark.parametrize(("name", "weights"), WEIGHTS,
                         ids=[f"{name}-{w.name}" for name, w in WEIGHTS])
def test_published_macs_and_params_on_meta(name: str, weights: Any) -> None:
    size = weights.transforms().crop_size[0]
    totals = api.summary(name, f"3x{size}x{size}", device="meta",
                         kwargs=_builder_settings(name, weights)).totals
    assert round(totals.macs / 1e9, 3) == weights.meta["_ops"]
    assert totals.params == weights.meta["num_params"]


@pytest.mark.filterwarnings("ignore:The default weight initialization of GoogleNet")
def test_googlenet_as_get_model_builds_it_has_its_auxiliary_heads() -> None:
    """The two oracles disagree on googlenet's parameters, and both are right about a different
    model. ``get_model("googlenet")`` (no weights) keeps GoogLeNet's default ``aux_logits=True``:
    13,004,888 parameters, which modelviz counts and torchinfo would too. torchvision publishes
    6,624,904: the model its builder returns with the weights, which has dropped the auxiliary
    classifiers (6,379,984 parameters, aux1 + aux2). The MACs agree, 1.498 G, since the
    auxiliary heads run only in training mode; with ``train=True`` they add 8,372,224."""
    published = torchvision.models.GoogLeNet_Weights.DEFAULT.meta
    plain = api.summary("googlenet", "3x224x224", device="meta").totals
    assert plain.params == 13_004_888 == published["num_params"] + 6_379_984
    assert round(plain.macs / 1e9, 3) == published["_ops"] == 1.498
    training = api.summary("googlenet", "3x224x224", device="meta", train=True).totals
    assert training.macs == plain.macs + 8_372_224


def test_vit_h_14_runs_at_its_default_sizes() -> None:
    """Built without weights, vit_h_14 takes 224 px; its first weights are at 518 px, which the
    default SIZES once took (and the model refused)."""
    summary = api.summary("vit_h_14", device="meta")
    assert shapes_json(summary.trace.inputs) == [[1, 3, 224, 224]]
    # the 224-px weights' published figures (IMAGENET1K_SWAG_LINEAR_V1)
    assert summary.totals.params == 632_045_800
    assert round(summary.totals.flops / 2e9, 3) == 167.295


#: On the cpu the attention of vit_b_16 and swin_t runs the fused CPU kernel, and regnet's
#: widths are computed from tensor values: the same figures as on meta, exactly.
CPU_SUBSET = ["vit_b_16", "swin_t", "regnet_y_400mf", "mobilenet_v3_small"]


@pytest.mark.parametrize("name", CPU_SUBSET)
def test_published_figures_on_cpu_equal_meta(name: str) -> None:
    weights = torchvision.models.get_model_weights(name).DEFAULT
    size = weights.transforms().crop_size[0]
    cpu = api.summary(name, f"3x{size}x{size}", device="cpu").totals
    meta = api.summary(name, f"3x{size}x{size}", device="meta").totals
    assert (cpu.flops, cpu.params) == (meta.flops, meta.params)
    assert round(cpu.macs / 1e9, 3) == weights.meta["_ops"]
    assert cpu.params == weights.meta["num_params"]
