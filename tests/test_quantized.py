"""Quantized and low-bit models: weights held outside nn.Parameters are counted at their real
dtype and bytes, quantized ops get the float ops' FLOPs, and the totals say which are integer.

Oracles: torchvision's published ``_ops`` (GMACs) for its quantized weights, and the float
models the quantized ones were converted from.
"""

from __future__ import annotations

import json
import warnings
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import modelviz
from modelviz.core import engine
from modelviz.errors import ForwardError
from modelviz.features.summary.summary import MB, Summary
from tests.helpers import Cli

#: quantized_resnet50's weights: every conv and the fc, int8; float resnet50 has the same
#: 25,557,032 parameters less one per BatchNorm channel (26,560 of them): folding a BatchNorm
#: into its conv turns its weight and bias (2 per channel) into the conv's bias (1 per channel).
RESNET50_INT8 = 25_502_912
RESNET50_FLOAT32 = 26_560 + 1_000  # the folded conv biases, the fc bias
RESNET50_FLOAT_PARAMS = 25_557_032
RESNET50_FLOPS = 8_178_368_512  # float resnet50's, at 3x224x224


#: torch warns that torch.ao quantization and quantized tensors are deprecated, on every call.
pytestmark = [pytest.mark.filterwarnings("ignore:torch.ao.quantization is deprecated"),
              pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor")]


@pytest.fixture(scope="module")
def resnet50() -> Summary:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return modelviz.summary("quantized_resnet50", kwargs={"quantize": True})


def test_quantized_resnet50_counts_its_int8_weights_and_float_biases(resnet50: Summary) -> None:
    totals = resnet50.totals
    assert totals.params == RESNET50_INT8 + RESNET50_FLOAT32 == RESNET50_FLOAT_PARAMS - 26_560
    assert totals.param_dtypes == {
        "qint8": {"params": RESNET50_INT8, "bytes": RESNET50_INT8},
        "float32": {"params": RESNET50_FLOAT32, "bytes": 4 * RESNET50_FLOAT32},
    }
    assert totals.packed_params == totals.params  # none of them is an nn.Parameter
    assert totals.trainable_params == 0
    assert totals.params_size_mb == pytest.approx((RESNET50_INT8 + 4 * RESNET50_FLOAT32) / MB)
    conv1 = resnet50.trace.modules["conv1"]
    assert conv1.param_dtypes == {"qint8": 64 * 3 * 7 * 7, "float32": 64}
    assert resnet50.trace.modules["fc"].params_total == 2048 * 1000 + 1000


def test_quantized_resnet50_flops_are_float_resnet50s_and_integer(resnet50: Summary) -> None:
    from torchvision.models.quantization import ResNet50_QuantizedWeights

    totals = resnet50.totals
    assert totals.flops == RESNET50_FLOPS
    assert round(totals.macs / 1e9, 3) == ResNet50_QuantizedWeights.DEFAULT.meta["_ops"]
    assert totals.int_flops == totals.flops  # every conv and the fc run in int8 kernels
    assert resnet50.not_counted() == []
    layer = resnet50.trace.modules["layer1.0.conv3"]  # quantized::conv2d, 64 -> 256, 1x1
    assert layer.flops == layer.int_flops == 2 * 64 * 256 * 56 * 56


def test_quantized_resnet50_json_and_table_say_dtype_and_integer_flops(
        resnet50: Summary) -> None:
    data = resnet50.to_dict()
    assert data["totals"]["int_flops"] == RESNET50_FLOPS
    assert data["totals"]["param_dtypes"]["qint8"]["params"] == RESNET50_INT8
    fc = next(layer for layer in data["layers"] if layer["name"] == "fc._packed_params")
    assert fc["param_dtypes"] == {"qint8": 2_048_000, "float32": 1000}
    assert fc["param_bytes"] == 2_048_000 + 4000
    text = str(resnet50)
    assert "Params by dtype: 25,502,912 qint8 (24.32 MB), 27,560 float32 (107.66 KB)" in text
    assert "Integer FLOPs (quantized kernels): 8.18 G of 8.18 G (8,178,368,512)" in text


@pytest.mark.parametrize(("name", "weights"), [
    ("quantized_mobilenet_v3_large", "MobileNet_V3_Large_QuantizedWeights"),
    ("quantized_googlenet", "GoogLeNet_QuantizedWeights"),
])
def test_quantized_torchvision_macs_match_published_ops(name: str, weights: str) -> None:
    import torchvision
    from torchvision.models import quantization

    model = torchvision.models.get_model(name, weights=None, quantize=True)
    trace = engine.run(model, (torch.randn(1, 3, 224, 224),))
    published = getattr(quantization, weights).DEFAULT.meta["_ops"]
    assert round(trace.flops / 2e9, 3) == published
    assert trace.int_flops == trace.flops and trace.uncounted == {}
    assert set(trace.param_dtypes) == {"qint8", "float32"}


class Recurrent(nn.Module):
    """An LSTM, a Linear and a GRU: what quantize_dynamic converts."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(32, 64, num_layers=2, bidirectional=True)
        self.fc = nn.Linear(128, 10)
        self.gru = nn.GRU(10, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(x)
        out: torch.Tensor = self.gru(self.fc(y))[0]
        return out


def _recurrent_weights(model: nn.Module) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if "weight" in name)


@pytest.mark.parametrize("dtype", [torch.qint8, torch.float16])
def test_dynamic_quantized_lstm_and_linear_are_counted(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    model = Recurrent().eval()
    x = torch.randn(5, 3, 32)
    float_trace = engine.run(model, (x,))
    quantized = torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
        model, {nn.LSTM, nn.Linear, nn.GRU}, dtype=dtype)
    trace = engine.run(quantized, (x,))
    weights = _recurrent_weights(model)
    biases = float_trace.params - weights
    assert float_trace.params == 152_138 and weights == 149_984
    assert trace.params == float_trace.params
    assert trace.trainable_params == 0
    kind, size = ("qint8", 1) if dtype == torch.qint8 else ("float16", 2)
    assert trace.param_dtypes == {kind: (weights, size * weights), "float32": (biases, 4 * biases)}
    assert trace.flops == float_trace.flops == 4_499_520  # LSTM, Linear, GRU: same products
    assert trace.uncounted == {}
    assert trace.int_flops == (trace.flops if dtype == torch.qint8 else 0)
    assert trace.modules["lstm"].int_flops == (4_423_680 if dtype == torch.qint8 else 0)


def test_quantized_model_refuses_meta_in_one_line() -> None:
    quantized = torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
        Recurrent().eval(), {nn.Linear})
    with pytest.raises(ForwardError, match=r"quantized kernels run only on the CPU, not on meta"):
        engine.run(quantized, (torch.randn(5, 3, 32),), device=torch.device("meta"))


class Int8Linear(nn.Module):
    """An 8-bit linear layer as weight-only quantization libraries write it: an int8 weight
    buffer with a float16 scale per output."""

    def __init__(self, features: int, outputs: int) -> None:
        super().__init__()
        self.register_buffer("weight", torch.randint(-127, 127, (outputs, features),
                                                     dtype=torch.int8))
        self.register_buffer("scale", torch.ones(outputs, dtype=torch.float16))

    weight: torch.Tensor
    scale: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ (self.weight.to(x.dtype) * self.scale[:, None]).t()


def test_half_and_int8_buffer_mix() -> None:
    model = nn.Sequential(nn.Linear(16, 32), Int8Linear(32, 8)).half()
    trace = engine.run(model, (torch.randn(2, 16, dtype=torch.float16),))
    assert trace.param_dtypes == {"float16": (16 * 32 + 32, 2 * 544), "int8": (256, 256)}
    assert trace.params == 544 + 256 and trace.trainable_params == 544
    assert trace.modules["1"].packed == 256
    assert trace.buffer_bytes == 8 * 2  # the scales stay buffers
    assert trace.param_bytes == 2 * 544 + 256
    assert trace.int_flops == 0  # the int8 weight is dequantized: float arithmetic


class FourBit(nn.Module):
    """bitsandbytes' Linear4bit, as it stores its weight: a uint8 Parameter with two values a
    byte, whose ``quant_state`` knows the real shape (bitsandbytes is not installed here)."""

    def __init__(self) -> None:
        super().__init__()
        weight = nn.Parameter(torch.zeros(32 * 64 // 2, 1, dtype=torch.uint8),
                              requires_grad=False)
        weight.quant_state = SimpleNamespace(shape=torch.Size([32, 64]),  # type: ignore[attr-defined]
                                             quant_type="nf4")
        self.weight = weight
        self.bias = nn.Parameter(torch.zeros(32))


class Gptq(nn.Module):
    """GPTQ's QuantLinear, as it stores its weight: eight 4-bit values in each int32."""

    def __init__(self) -> None:
        super().__init__()
        self.bits, self.in_features, self.out_features = 4, 64, 32
        self.register_buffer("qweight", torch.zeros(64 * 4 // 32, 32, dtype=torch.int32))
        self.register_buffer("qzeros", torch.zeros(1, 32 * 4 // 32, dtype=torch.int32))
        self.register_buffer("scales", torch.ones(1, 32, dtype=torch.float16))


class Unknown(nn.Module):
    """A uint8 weight with nothing to say whether it packs two values a byte."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("weight_packed", torch.zeros(100, dtype=torch.uint8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_four_bit_weights_counted_two_a_byte_only_when_known() -> None:
    model = nn.ModuleDict({"nf4": FourBit(), "gptq": Gptq(), "unknown": Unknown()})
    records = engine.scan(model)
    assert records["nf4"].param_dtypes == {"nf4": 2048, "float32": 32}
    assert records["nf4"].param_bytes == 1024 + 128
    assert records["gptq"].param_dtypes == {"int4": 2048}
    assert records["gptq"].param_bytes == 1024
    assert records["gptq"].buffers == 4 + 32  # zeros and scales
    assert records["unknown"].param_dtypes == {"uint8": 100}
    assert records["unknown"].opaque == ["weight_packed"]
    assert records[""].params_total == 2048 + 32 + 2048 + 100


def test_opaque_weights_are_named_in_the_notes() -> None:
    summary = modelviz.summary(nn.Sequential(Unknown(), nn.Linear(4, 4)), "4")
    notes = summary.storage_notes()
    assert any("Counted as stored" in n and "0.weight_packed" in n for n in notes)
    assert summary.to_dict()["layers"][0]["opaque_weights"] == ["weight_packed"]


def test_float_model_has_no_notes_and_no_integer_flops() -> None:
    summary = modelviz.summary(nn.Linear(8, 4), "8")
    assert summary.storage_notes() == []
    assert summary.totals.int_flops == 0
    assert summary.totals.param_dtypes == {"float32": {"params": 36, "bytes": 144}}


def test_cli_json_has_integer_flops(cli: Cli) -> None:
    result = cli("summary", "quantized_mobilenet_v3_large", "-k", "quantize=True", "-f", "json")
    assert result.exit_code == 0, result.stderr
    totals = json.loads(result.stdout)["totals"]
    assert totals["int_flops"] == totals["flops"] == 433_179_520
    assert totals["param_dtypes"]["qint8"]["params"] == 5_451_272
