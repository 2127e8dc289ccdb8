"""The instrumented forward pass: records, nested inputs and outputs, and leaving no trace."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn.modules import module as module_globals

from modelviz import api
from modelviz.core import engine
from modelviz.core.records import CallRecord, TensorMeta, Trace, shapes_json
from modelviz.errors import ForwardError
from sample_models.lstm_lm import LSTMLanguageModel
from sample_models.multi_io import DictOutputNet, TwoInputNet
from sample_models.seeds import Net, SmallConvNet, tanh_mlp
from sample_models.transformer import TinyTransformer


def _global_hook_count() -> int:
    return len(module_globals._global_forward_pre_hooks) + len(module_globals._global_forward_hooks)


def test_records_of_a_small_convnet() -> None:
    trace = engine.run(SmallConvNet(), (torch.randn(1, 3, 224, 224),))
    conv = trace.modules["layer1.0"]
    assert (conv.type, conv.depth, conv.parent) == ("Conv2d", 2, "layer1")
    assert conv.params == 448 and conv.trainable == 448
    assert conv.extra["kernel_size"] == [3, 3]
    assert shapes_json(conv.output_shapes) == [1, 16, 111, 111]
    assert shapes_json(conv.input_shapes) == [[1, 3, 224, 224]]
    bn = trace.modules["layer1.1"]
    assert bn.params == 32 and bn.buffers == 33  # running mean, var, num_batches_tracked
    assert trace.modules["layer1"].children == ["layer1.0", "layer1.1", "layer1.2", "layer1.3"]
    assert trace.modules["layer1"].params_total == 448 + 32
    assert trace.params == 601_809
    assert [c.module for c in trace.calls[:3]] == ["", "layer1", "layer1.0"]
    assert trace.calls[0].end_index == len(trace.calls) - 1  # the root finishes last


def test_several_inputs_and_dict_outputs() -> None:
    trace = engine.run(TwoInputNet(), (torch.randn(2, 3, 32, 32), torch.randn(2, 10)))
    assert shapes_json(trace.root.input_shapes) == [[2, 3, 32, 32], [2, 10]]
    assert shapes_json(trace.output) == [2, 5]
    trace = engine.run(DictOutputNet(), (torch.randn(1, 16),))
    assert shapes_json(trace.output) == {"logits": [1, 3], "embedding": [1, 8]}


def test_keyword_inputs_are_recorded() -> None:
    trace = engine.run(TwoInputNet(), (), {"image": torch.randn(1, 3, 8, 8),
                                           "features": torch.randn(1, 10)})
    assert shapes_json(trace.root.input_shapes) == [{"image": [1, 3, 8, 8], "features": [1, 10]}]


def test_rnn_tuples_tied_weights_and_repeated_calls() -> None:
    model = LSTMLanguageModel()
    trace = engine.run(model, (torch.randint(0, 1000, (1, 35)),))
    rnn = trace.modules["rnn"].output_shapes
    assert shapes_json(rnn) == [[1, 35, 64], [[2, 1, 64], [2, 1, 64]]]
    assert trace.modules["decoder"].shared == {"weight": "encoder.weight"}
    assert trace.modules["decoder"].params == 1000  # its bias; the weight belongs to encoder
    assert trace.params == sum(p.numel() for p in model.parameters()) == 131_560
    assert len(trace.modules["drop"].calls) == 2


def test_integer_and_float_dtypes_recorded() -> None:
    trace = engine.run(LSTMLanguageModel(), (torch.randint(0, 10, (1, 5)),))
    meta = trace.modules["encoder"].calls[0].args[0]
    assert isinstance(meta, TensorMeta) and meta.dtype == "int64" and meta.nbytes == 40


def test_model_is_left_as_it_was() -> None:
    model = SmallConvNet()
    model.train()
    model.layer2.eval()  # a mixed state must survive too
    before = {k: v.clone() for k, v in model.state_dict().items()}
    hooks = _global_hook_count()
    engine.run(model, (torch.randn(2, 3, 224, 224),), train=True)
    assert model.training and model.layer1.training and not model.layer2.training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert _global_hook_count() == hooks
    assert torch._C._len_torch_dispatch_stack() == 0


def test_failure_names_the_module_and_cleans_up() -> None:
    model = SmallConvNet()
    hooks = _global_hook_count()
    with pytest.raises(ForwardError) as info:
        engine.run(model, (torch.randn(1, 3, 128, 128),))
    # torch's own wording varies between releases ("addmm: " appeared in 2.15); ours does not.
    message = re.sub(r"RuntimeError: (\w+: )?", "RuntimeError: ", str(info.value))
    assert message == (
        "forward pass failed in fc1 (Linear) given input [1, 64]: RuntimeError: mat1 and mat2 "
        "shapes cannot be multiplied (1x64 and 576x1000); 16 module call(s) ran before it, the "
        "last: layer3.3, layer3, dropout. Check `sizes` (given without the batch dimension) "
        "and their dtypes; `debug` shows the traceback.")  # Python's terms; the CLI shows flags
    assert _global_hook_count() == hooks
    assert torch._C._len_torch_dispatch_stack() == 0
    assert model.training is True


def test_failure_in_the_models_own_code() -> None:
    with pytest.raises(ForwardError) as info:
        engine.run(Net(), (torch.randn(1, 1, 32, 32),))
    assert str(info.value).startswith(
        "forward pass failed in Net.forward itself, given input [1, 1, 32, 32]: RuntimeError: "
        "shape '[-1, 256]' is invalid for input of size 400; 4 module call(s) ran before it, "
        "the last: pool, conv2, pool.")


def test_failure_in_the_first_module() -> None:
    with pytest.raises(ForwardError, match=r"in W0 \(Linear\) given input \[1, 9\].*it was the "
                                           r"first module to run"):
        engine.run(tanh_mlp(), (torch.randn(1, 9),))


def test_meta_run_of_a_real_model_leaves_it_on_cpu() -> None:
    model = Net()
    weight = model.conv1.weight.clone()
    trace = engine.run(model, (torch.empty(1, 1, 28, 28, device="meta"),),
                       device=torch.device("meta"))
    assert trace.device == "meta" and shapes_json(trace.output) == [1, 10]
    assert torch.equal(model.conv1.weight, weight)


def test_transformer_fast_path_does_not_hide_submodules() -> None:
    model = TinyTransformer().eval()
    trace = engine.run(model, (torch.randint(0, 1000, (1, 16)),))
    assert len(trace.modules["encoder.layers.0.self_attn"].calls) == 1
    assert len(trace.modules["encoder.layers.1.linear2"].calls) == 1
    assert torch.backends.mha.get_fastpath_enabled()


def test_torchscript_model_runs_as_one_call(tmp_path: Path) -> None:
    path = tmp_path / "net.pt"
    torch.jit.save(torch.jit.script(Net()), path)
    prepared = api.prepare(str(path), "1x28x28")
    trace = api.run(prepared)
    assert shapes_json(trace.output) == [1, 10]
    assert trace.params == 44_426
    assert [c.module for c in trace.calls] == [""]


def test_no_grad_by_default_and_output_on_request() -> None:
    trace = engine.run(Net(), (torch.randn(1, 1, 28, 28),), keep_output=True)
    assert isinstance(trace.output_value, torch.Tensor)
    assert trace.output_value.grad_fn is None
    trace = engine.run(Net(), (torch.randn(1, 1, 28, 28),), grad=True, keep_output=True)
    assert trace.output_value.grad_fn is not None


def test_probes_see_every_call() -> None:
    seen: list[tuple[str, tuple[int, ...]]] = []

    class Shapes(engine.Probe):
        name = "shapes"

        def call_end(self, call: CallRecord, module: nn.Module, args: tuple[Any, ...],
                     kwargs: dict[str, Any], output: Any) -> None:
            seen.append((call.module, tuple(output.shape)))

        def finish(self, trace: Trace) -> int:
            return len(seen)

    trace = engine.run(nn.Sequential(nn.Linear(4, 3), nn.ReLU()), (torch.randn(2, 4),),
                       probes=(Shapes(),))
    assert seen == [("0", (2, 3)), ("1", (2, 3)), ("", (2, 3))]
    assert trace.probes["shapes"] == 3
