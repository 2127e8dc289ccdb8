"""Our numbers against torchsummary's and torchinfo's, on the same randomly initialised models."""

from __future__ import annotations

import contextlib
import io

import pytest
import torch
import torchinfo
import torchvision
from torch import nn
from torchsummary import summary as torchsummary

from modelviz import api
from modelviz.features.summary.classic import render_classic
from tests.helpers import read_golden

MODELS = ["vgg16", "resnet18", "resnet50", "mobilenet_v2", "alexnet", "squeezenet1_0",
          "efficientnet_b0", "shufflenet_v2_x0_5"]


def _torchsummary_text(model: nn.Module, size: tuple[int, ...]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        torchsummary(model, size, device="cpu")
    return out.getvalue()


@pytest.mark.parametrize("name", MODELS)
def test_classic_equals_torchsummary_line_for_line(name: str) -> None:
    """Every row (layer, output shape, params) and every total, character for character."""
    torch.manual_seed(0)
    model = torchvision.models.get_model(name)
    expected = _torchsummary_text(model, (3, 224, 224))
    assert render_classic(api.summary(model, "3x224x224")) == expected


@pytest.mark.parametrize("name", MODELS)
def test_totals_equal_torchinfo(name: str) -> None:
    model = torchvision.models.get_model(name)
    ours = api.summary(model, "3x224x224").totals
    theirs = torchinfo.summary(model, input_size=(1, 3, 224, 224), verbose=0)
    assert ours.params == theirs.total_params
    assert ours.trainable_params == theirs.trainable_params
    # torchinfo adds Python object overhead to the input's bytes (64 here); ours are the tensor's.
    assert ours.input_size_mb * 1024**2 == pytest.approx(theirs.total_input, abs=128)
    # torchinfo's mult-adds also count bias additions and normalisation; ours are the matrix
    # products FlopCounterMode counts, so they agree to within a fraction of a percent.
    assert ours.macs == pytest.approx(theirs.total_mult_adds, rel=0.01)


def test_seed_post_vgg16_reproduced() -> None:
    """The 2020 blog post's vgg16 had no avgpool layer; without it we print its exact text."""
    model = torchvision.models.vgg16()
    model.avgpool = nn.Sequential()  # an empty container: skipped, as torchsummary skips it
    text = render_classic(api.summary(model, "3x224x224"))
    assert text == read_golden("seed_vgg16_torchsummary.txt")
    assert "Total params: 138,357,544" in text
    assert "Forward/backward pass size (MB): 218.59" in text
    assert "Estimated Total Size (MB): 746.96" in text


def test_seed_post_small_convnet_reproduced() -> None:
    text = render_classic(api.summary("sample_models.seeds:SmallConvNet", "3x224x224"))
    assert text == read_golden("seed_small_convnet_torchsummary.txt")


def test_today_vgg16_matches_torchsummary_today() -> None:
    """torchvision's vgg16 gained AdaptiveAvgPool2d since the post: 218.78 MB, as torchsummary."""
    totals = api.summary("vgg16", "3x224x224").totals
    assert round(totals.forward_backward_size_mb, 2) == 218.78
    assert round(totals.params_size_mb, 2) == 527.79
    assert round(totals.input_size_mb, 2) == 0.57
