"""``export-onnx`` on the models people export: Hugging Face language models with and without
their KV cache, encoder-decoders, timm's vision transformers, torchvision's detection models
and optical flow. Small configs and images, random weights; each file is run by ONNX Runtime
against torch at two sizes of every dynamic axis (inside the export), and the language model's
cached step again here, in a generation loop of our own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from modelviz import api
from modelviz.features.onnx.compare import MATCHED
from modelviz.features.onnx.result import ExportResult

GPT2 = {"n_layer": 2, "n_embd": 64, "n_head": 4, "vocab_size": 1000, "n_positions": 64}
NO_CACHE_NOTE = ("exported without the KV cache (use_cache=False): the file runs the whole "
                 "sequence in each call; `with_cache` exports the decoder step with past "
                 "key/values as inputs and outputs")


def _shapes(result: ExportResult) -> dict[str, list[int | str]]:
    return {t.name: t.shape for t in [*result.inputs, *result.outputs]}


def _passed_twice(result: ExportResult) -> None:
    """Parity within atol at the export's sizes and at the second run's."""
    assert result.ok, (result.problems, result.notes)
    assert result.parity and all(p.ok for p in result.parity)
    assert result.batch_parity and all(p.ok for p in result.batch_parity)
    assert result.informative is True


# ----------------------------------------------------------------------------------------------
# Language models.


def test_gpt2_without_cache_and_with_a_dynamic_length(tmp_path: Path) -> None:
    result = api.export_onnx("hf:gpt2@causal-lm", "input_ids=int64:8", output=tmp_path / "g.onnx",
                             kwargs=GPT2, dynamic="seq")
    _passed_twice(result)
    assert NO_CACHE_NOTE in result.notes
    assert _shapes(result) == {"input_ids": ["batch", "seq"], "logits": ["batch", "seq", 1000]}
    assert result.sizes_checked == {"batch": 2, "seq": 11}


def _step(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, cache: Any) -> Any:
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, cache=cache, use_cache=True)


def test_gpt2_with_cache_runs_a_generation_loop_in_onnx_runtime(tmp_path: Path) -> None:
    """The cached step in optimum's layout: prefill from an empty past (a length the export
    never saw), then three decoded tokens feeding each step's present back as the next past;
    logits and presents against transformers' own loop with its DynamicCache, at batch 2."""
    path = tmp_path / "step.onnx"
    result = api.export_onnx("hf:gpt2@causal-lm", "input_ids=int64:8", output=path,
                             kwargs=GPT2, with_cache=True)
    _passed_twice(result)
    assert result.with_cache and result.sizes_checked == {
        "batch": 2, "seq": 1, "total_seq": 16, "past_seq": 15}
    shapes = _shapes(result)
    assert list(shapes) == [
        "input_ids", "attention_mask", "position_ids", "past_key_values.0.key",
        "past_key_values.0.value", "past_key_values.1.key", "past_key_values.1.value", "logits",
        "present.0.key", "present.0.value", "present.1.key", "present.1.value"]
    assert shapes["past_key_values.1.value"] == ["batch", 4, "past_seq", 16]
    assert shapes["present.0.key"] == ["batch", 4, "past_seq + seq", 16]
    assert shapes["attention_mask"] == ["batch", "total_seq"]

    prepared = api.prepare("hf:gpt2@causal-lm", "input_ids=int64:8", kwargs=GPT2)
    model = prepared.model.eval()
    ids = prepared.inputs.kwargs["input_ids"]
    ids = torch.cat([ids, ids.flip(1)])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = [o.name for o in session.get_outputs()]
    feeds: dict[str, Any] = {
        "input_ids": ids.numpy(), "attention_mask": np.ones(ids.shape, np.int64),
        "position_ids": np.arange(8)[None].repeat(2, 0)}
    feeds |= {f"past_key_values.{i}.{kind}": np.zeros((2, 4, 0, 16), np.float32)
              for i in range(2) for kind in ("key", "value")}
    cache = None
    mask = torch.ones(ids.shape, dtype=torch.long)
    for _ in range(4):
        got = dict(zip(outputs, session.run(None, feeds), strict=True))
        out = _step(model, ids, mask, cache)
        np.testing.assert_allclose(got["logits"], out.logits.numpy(), atol=1e-4, rtol=1e-3)
        cache = out.cache
        np.testing.assert_allclose(got["present.1.value"], cache.layers[1].values.numpy(),
                                   atol=1e-5)
        ids = torch.from_numpy(got["logits"][:, -1].argmax(-1))[:, None]
        length = feeds["attention_mask"].shape[1]
        mask = torch.ones(2, length + 1, dtype=torch.long)
        feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy(),
                 "position_ids": np.full((2, 1), length, np.int64)}
        feeds |= {f"past_key_values.{i}.{kind}": got[f"present.{i}.{kind}"]
                  for i in range(2) for kind in ("key", "value")}


def test_encoder_decoder_with_cache_is_refused_in_one_line(cli: Any, tmp_path: Path) -> None:
    result = cli("export-onnx", "hf:t5", "-k", "num_layers=1", "-k", "num_decoder_layers=1",
                 "-k", "d_model=32", "-k", "d_ff=32", "-k", "num_heads=2", "-k", "d_kv=16",
                 "input_ids=int64:8", "decoder_input_ids=int64:4", "--with-cache", "-o",
                 str(tmp_path / "t5.onnx"))
    assert result.exit_code == 2 and list(tmp_path.iterdir()) == []
    assert result.stderr.splitlines()[-1] == (
        "error: --with-cache exports a decoder-only model's step (GPT-2, Llama); T5Model is an "
        "encoder-decoder. Export it without --with-cache: one pass of encoder and decoder, no "
        "cache.")


def test_a_returned_cache_is_one_line_with_the_fix(cli: Any, tmp_path: Path) -> None:
    """The exporter's own message is 600 characters cut mid-word; ours says what to do."""
    result = cli("export-onnx", "hf:gpt2", *[f"-k{k}={v}" for k, v in GPT2.items()],
                 "input_ids=int64:8", "--forward-arg", "use_cache=True", "-o",
                 str(tmp_path / "g.onnx"))
    assert result.exit_code == 2 and list(tmp_path.iterdir()) == []
    assert result.stderr.splitlines()[-1] == (
        "error: ONNX export failed: the model returns a KV cache (DynamicCache), an object no "
        "ONNX file can hold. Leave use_cache=True out of --forward-arg and --kwarg to export "
        "without the cache, or export the decoder step with --with-cache.")


def test_t5(tmp_path: Path) -> None:
    """T5's attention fails the dynamo exporter (a view of sdpa's output that torch cannot
    decompose); the TorchScript exporter writes it, and its outputs' batch axis is named from
    what the two runs showed."""
    result = api.export_onnx("hf:t5", "input_ids=int64:8", "decoder_input_ids=int64:4",
                             output=tmp_path / "t5.onnx",
                             kwargs={"num_layers": 1, "num_decoder_layers": 1, "d_model": 32,
                                     "d_ff": 32, "num_heads": 2, "d_kv": 16})
    _passed_twice(result)
    assert NO_CACHE_NOTE in result.notes
    assert _shapes(result)["last_hidden_state"][0] == "batch"
    assert _shapes(result)["input_ids"] == ["batch", 8]


def test_bert_with_a_mask_and_a_dynamic_length(tmp_path: Path) -> None:
    result = api.export_onnx("hf:bert", "input_ids=int64:12", "attention_mask=int64:12",
                             output=tmp_path / "bert.onnx", dynamic="seq",
                             kwargs={"num_hidden_layers": 1, "hidden_size": 32,
                                     "num_attention_heads": 2, "intermediate_size": 32,
                                     "vocab_size": 500})
    _passed_twice(result)
    shapes = _shapes(result)
    assert shapes["input_ids"] == shapes["attention_mask"] == ["batch", "seq"]
    assert shapes["last_hidden_state"] == ["batch", "seq", 32]
    assert result.sizes_checked == {"batch": 2, "seq": 15}


def test_whisper(tmp_path: Path) -> None:
    result = api.export_onnx("hf:whisper", "input_features=80x32", "decoder_input_ids=int64:4",
                             output=tmp_path / "whisper.onnx",
                             kwargs={"encoder_layers": 1, "decoder_layers": 1, "d_model": 32,
                                     "encoder_attention_heads": 2,
                                     "decoder_attention_heads": 2, "encoder_ffn_dim": 32,
                                     "decoder_ffn_dim": 32, "max_source_positions": 16})
    _passed_twice(result)
    assert NO_CACHE_NOTE in result.notes
    assert _shapes(result)["encoder_last_hidden_state"] == ["batch", 16, 32]


# ----------------------------------------------------------------------------------------------
# timm vision transformers.


@pytest.mark.parametrize(("spec", "kwargs"), [
    ("timm:vit_base_patch16_224", {"depth": 1, "embed_dim": 32, "num_heads": 2,
                                   "img_size": 32, "num_classes": 10}),
    ("timm:swin_tiny_patch4_window7_224", {"depths": (1, 1), "num_heads": (2, 2),
                                           "embed_dim": 16, "window_size": 4, "img_size": 32,
                                           "num_classes": 10}),
])
def test_timm_transformers(tmp_path: Path, spec: str, kwargs: dict[str, Any]) -> None:
    result = api.export_onnx(spec, "3x32x32", output=tmp_path / "m.onnx", kwargs=kwargs)
    _passed_twice(result)
    assert result.exporter == "dynamo"
    assert _shapes(result) == {"x": ["batch", 3, 32, 32], "output": ["batch", 10]}


# ----------------------------------------------------------------------------------------------
# torchvision: detection and optical flow.


@pytest.mark.parametrize(("spec", "kwargs"), [
    ("fasterrcnn_resnet50_fpn", {"min_size": 96, "max_size": 96, "num_classes": 3,
                                 "rpn_pre_nms_top_n_test": 100, "rpn_post_nms_top_n_test": 50,
                                 "box_detections_per_img": 20}),
    ("ssd300_vgg16", {"num_classes": 3, "topk_candidates": 50, "detections_per_img": 20}),
])
def test_detection_models_fix_the_batch_and_match_detections(tmp_path: Path, spec: str,
                                                            kwargs: dict[str, Any]) -> None:
    path = tmp_path / "det.onnx"
    result = api.export_onnx(spec, "3x96x96", output=path, kwargs=kwargs)
    assert result.ok, (result.problems, result.notes)
    assert not result.dynamic_batch and result.batch_parity is None
    assert result.notes[0] == (
        "the batch dimension is fixed at 1: the model returns one output per image (a list of "
        "dicts), and the number of a file's outputs cannot follow the batch")
    shapes = _shapes(result)
    assert shapes["images"] == [1, 3, 96, 96]
    assert shapes["boxes"] == ["num_detections", 4]
    assert shapes["scores"] == shapes["labels"] == ["num_detections"]
    assert {(p.output, p.comparison) for p in result.parity or []} == {
        (name, MATCHED) for name in ("boxes", "scores", "labels")}
    # Our own ONNX Runtime run: the same set of detections as torch's.
    prepared = api.prepare(spec, "3x96x96", kwargs=kwargs)
    with torch.no_grad():
        (expected,) = prepared.model.eval()(*prepared.inputs.args)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in session.get_outputs()],
                   session.run(None, {"images": prepared.inputs.args[0].numpy()}), strict=True))
    assert len(got["boxes"]) == len(expected["boxes"]) > 0
    assert sorted(got["labels"].tolist()) == sorted(expected["labels"].tolist())


def test_raft_small_fixes_the_batch_the_exporter_could_not_keep(tmp_path: Path) -> None:
    """raft_small's batch came out fixed at the example's 2, and ONNX Runtime failed at 1; now
    the export notices, and exports the batch fixed at the user's size, with a note."""
    result = api.export_onnx("raft_small", "3x128x128", "3x128x128",
                             output=tmp_path / "raft.onnx", forward_args={"num_flow_updates": 2})
    assert result.ok, (result.problems, result.notes)
    assert not result.dynamic_batch
    assert result.notes[0].startswith("the batch dimension is fixed")
    assert _shapes(result) == {"image1": [1, 3, 128, 128], "image2": [1, 3, 128, 128],
                               "output0": [1, 2, 128, 128], "output1": [1, 2, 128, 128]}
    assert result.parity and all(p.ok and p.informative for p in result.parity)
    assert onnx.load(str(tmp_path / "raft.onnx")).graph.input[0].name == "image1"
