"""A language model's decoder step, with its KV cache as named inputs and outputs.

A Hugging Face decoder returns its cache as an object (``DynamicCache``) that no ONNX file can
hold. By default the model is exported without it (``use_cache=False``: one full pass per
call). ``with_cache`` exports the step a generation loop runs instead, in the layout of optimum
and ONNX Runtime GenAI:

* inputs ``input_ids`` [batch, seq], ``attention_mask`` [batch, total_seq] (the past and the
  new tokens), ``position_ids`` [batch, seq] where the model takes them, and per layer N
  ``past_key_values.N.key`` and ``past_key_values.N.value`` [batch, heads, past_seq, head_dim];
* outputs ``logits`` (or ``last_hidden_state`` for a model without a head) and per layer
  ``present.N.key`` and ``present.N.value`` [batch, heads, past_seq + seq, head_dim].

The step is a small module around the model (``CacheStep``) that builds the cache from the
flat tensors and flattens the new one, so that the exporter, the engine's reference pass and
ONNX Runtime all see plain tensors.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from modelviz.errors import ExportError
from modelviz.features.onnx.axes import BATCH, Axis, AxisPlan

#: The past length of the export's example and of the first check; the second check runs
#: with a past this much longer, at batch + 1.
PAST = 4
PAST_GROWTH = 3


@dataclass
class CacheLayout:
    """What the step takes and gives, probed from one short run of the model."""

    layers: int
    key_shapes: list[tuple[int, int]]  # per layer: (heads, head_dim) of the keys
    value_shapes: list[tuple[int, int]]
    dtype: torch.dtype
    cache_arg: str  # ``cache`` (transformers 5.25 on) or ``past_key_values``
    positions: bool  # forward takes position_ids
    output: str  # logits or last_hidden_state

    def input_names(self) -> list[str]:
        names = ["input_ids", "attention_mask"] + (["position_ids"] if self.positions else [])
        for i in range(self.layers):
            names += [f"past_key_values.{i}.key", f"past_key_values.{i}.value"]
        return names

    def output_names(self) -> list[str]:
        names = [self.output]
        for i in range(self.layers):
            names += [f"present.{i}.key", f"present.{i}.value"]
        return names

    def plan(self) -> AxisPlan:
        axes = [Axis(name, 0, BATCH, True) for name in self.input_names()]
        axes += [Axis("input_ids", 1, "seq", True), Axis("attention_mask", 1, "total_seq", True)]
        if self.positions:
            axes.append(Axis("position_ids", 1, "seq", True))
        axes += [Axis(name, 2, "past_seq", True) for name in self.input_names()
                 if name.startswith("past_key_values.")]
        return AxisPlan(axes)


def _parameters(model: nn.Module) -> set[str]:
    try:
        return set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return set()


def takes_cache(model: nn.Module) -> bool:
    """A Hugging Face model whose forward can return a KV cache."""
    params = _parameters(model)
    return "use_cache" in params and bool(params & {"cache", "past_key_values"})


def probe(model: nn.Module, input_ids: torch.Tensor) -> CacheLayout:
    """The cache's shape per layer, from one run on two tokens."""
    params = _parameters(model)
    name = type(model).__name__
    config = getattr(model, "config", None)
    if not takes_cache(model) or "input_ids" not in params:
        raise ExportError(f"`with_cache`: {name}'s forward takes no KV cache (no "
                          "past_key_values and use_cache).",
                          "Export it without `with_cache`.")
    if getattr(config, "is_encoder_decoder", False):
        raise ExportError(f"`with_cache` exports a decoder-only model's step (GPT-2, Llama); "
                          f"{name} is an encoder-decoder.",
                          "Export it without `with_cache`: one pass of encoder and decoder, "
                          "no cache.")
    cache_arg = "cache" if "cache" in params else "past_key_values"
    with torch.no_grad():
        out = model(input_ids=input_ids[:1, :2], use_cache=True)
    cache = _cache_of(out)
    layers = getattr(cache, "layers", None)
    if cache is None or not layers or not all(
            isinstance(getattr(layer, "keys", None), torch.Tensor) for layer in layers):
        raise ExportError(f"`with_cache`: {name} returned no key/value cache "
                          f"({type(cache).__name__}) to export.",
                          "Export it without `with_cache`.")
    output = "logits" if _field(out, "logits") is not None else "last_hidden_state"
    return CacheLayout(
        layers=len(layers),
        key_shapes=[(int(layer.keys.shape[1]), int(layer.keys.shape[-1])) for layer in layers],
        value_shapes=[(int(layer.values.shape[1]), int(layer.values.shape[-1]))
                      for layer in layers],
        dtype=layers[0].keys.dtype, cache_arg=cache_arg, positions="position_ids" in params,
        output=output)


def _field(out: Any, name: str) -> Any:
    if isinstance(out, dict) or hasattr(out, "keys"):
        try:
            return out[name]
        except (KeyError, IndexError, TypeError):
            return None
    return getattr(out, name, None)


def _cache_of(out: Any) -> Any:
    for name in ("cache", "past_key_values"):
        found = _field(out, name)
        if found is not None:
            return found
    return None


class CacheStep(nn.Module):
    """The model's decoder step on flat tensors: what the file holds."""

    def __init__(self, model: nn.Module, layout: CacheLayout) -> None:
        super().__init__()
        self.model = model
        self.layout = layout

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                position_ids: torch.Tensor | None,
                past_key_values: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        from transformers import DynamicCache

        layout = self.layout
        positions = position_ids
        past = past_key_values
        cache = DynamicCache(ddp_cache_data=[(past[2 * i], past[2 * i + 1])
                                             for i in range(layout.layers)],
                             config=getattr(self.model, "config", None))
        options: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask,
                                   layout.cache_arg: cache, "use_cache": True}
        if positions is not None:
            options["position_ids"] = positions
        out = self.model(**options)
        present = _cache_of(out)
        result = {layout.output: _field(out, layout.output)}
        for i, layer in enumerate(present.layers):
            result[f"present.{i}.key"] = layer.keys
            result[f"present.{i}.value"] = layer.values
        return result


def step_inputs(layout: CacheLayout, input_ids: torch.Tensor, *, past: int = PAST,
                seed: int = 0) -> tuple[torch.Tensor, ...]:
    """The step's inputs for ``input_ids`` after ``past`` cached positions: a mask of ones,
    positions past..past+seq-1, and seeded noise for the cached keys and values (any values
    are a valid cache; torch and ONNX Runtime get the same)."""
    batch, seq = input_ids.shape
    device = input_ids.device
    generator = torch.Generator().manual_seed(seed)
    tensors: list[torch.Tensor] = [
        input_ids, torch.ones(batch, past + seq, dtype=torch.int64, device=device)]
    if layout.positions:
        tensors.append(torch.arange(past, past + seq, device=device).expand(batch, seq)
                       .contiguous())
    for (k_heads, k_dim), (v_heads, v_dim) in zip(layout.key_shapes, layout.value_shapes,
                                                  strict=True):
        for heads, dim in ((k_heads, k_dim), (v_heads, v_dim)):
            tensors.append(torch.randn(batch, heads, past, dim, generator=generator)
                           .to(device=device, dtype=layout.dtype))
    return tuple(tensors)


def grown(layout: CacheLayout, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """The second check's inputs: what a generation loop feeds a later step, at batch + 1: one
    new token per sequence after a past that holds the first check's tokens and
    ``PAST_GROWTH`` more, with the positions that follow on from it."""
    input_ids = inputs[0]
    past = inputs[1].shape[1] - input_ids.shape[1]
    wider = torch.cat([input_ids, input_ids[:1]])[:, -1:]  # one new token per sequence
    return step_inputs(layout, wider, past=past + input_ids.shape[1] + PAST_GROWTH, seed=1)
