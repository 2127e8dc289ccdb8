"""Serving a decoder with a KV cache: the prefill of a prompt, then one decoded token.

The cache is whatever the model's own forward returns with ``use_cache=True`` (transformers'
``DynamicCache`` and its layers, or plain tuples), so its bytes are the model's, grouped-query
heads and all. As ``generate`` does, the prefill keeps only the last position's logits where the
model can (``logits_to_keep=1``).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from modelviz.core import engine
from modelviz.core.allocations import round_up
from modelviz.errors import SpecError
from modelviz.features.memory.simulate import autocast_for, tracker_for

CACHE_NAMES = ("cache", "past_key_values")  # transformers 5 renamed past_key_values to cache


@dataclass
class KvCache:
    """Bytes of serving ``tokens`` of context at the plan's batch size."""

    tokens: int
    cache_bytes: int  # the KV cache alone
    prefill_peak_bytes: int  # the prompt's pass, weights included
    decode_peak_bytes: int  # one more token on top of the cache, weights included


def _tensors(value: Any, seen: set[int], depth: int = 0) -> list[torch.Tensor]:
    """Every tensor inside a cache object: its attributes, lists, tuples and dicts."""
    if depth > 6 or id(value) in seen:
        return []
    seen.add(id(value))
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        items: Any = value.values()
    elif isinstance(value, (list, tuple)):
        items = value
    elif hasattr(value, "__dict__") and not isinstance(value, (nn.Module, type)):
        items = vars(value).values()
    else:
        return []
    return [t for item in items for t in _tensors(item, seen, depth + 1)]


def _ids(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str | None, torch.Tensor]:
    """The token ids input: keyword ``input_ids`` or the first positional integer tensor."""
    ids = kwargs.get("input_ids")
    if isinstance(ids, torch.Tensor):
        return "input_ids", ids
    for arg in args:
        if isinstance(arg, torch.Tensor) and not arg.is_floating_point() and arg.dim() == 2:
            return None, arg
    raise SpecError("`kv_cache` needs token ids as the input (int64:TOKENS).",
                    "Give SIZES such as int64:128, or input_ids=int64:128.")


def _call(model: nn.Module, name: str | None, ids: torch.Tensor,
          extra: dict[str, Any]) -> Any:
    if name is None:
        return model(ids, **extra)
    return model(**{name: ids}, **extra)


def plan_kv_cache(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
                  device: torch.device, tokens: int, *, amp: str | None = None) -> KvCache:
    """Prefill ``tokens`` tokens with the cache on, keep the cache, decode one more token."""
    if tokens < 1:
        raise SpecError(f"bad `kv_cache={tokens}`.", "Give the context length in tokens.")
    parameters = inspect.signature(model.forward).parameters
    cache_name = next((n for n in CACHE_NAMES if n in parameters), None)
    if "use_cache" not in parameters or cache_name is None:
        raise SpecError(f"{type(model).__name__}.forward takes no use_cache and no cache "
                        "argument: `kv_cache` plans decoders that keep one.",
                        "Use a Hugging Face decoder (hf:gpt2, hf:llama), or drop `kv_cache`.")
    name, ids = _ids(args, kwargs)
    prompt = ids[:, :1].expand(ids.shape[0], tokens).contiguous()
    extra: dict[str, Any] = {"use_cache": True}
    if "logits_to_keep" in parameters:
        extra["logits_to_keep"] = 1
    tracker = tracker_for(device)
    tracker.adopt(model.parameters(), "parameters")
    tracker.adopt(model.buffers(), "buffers")
    tracker.adopt([prompt], "inputs")
    amp_context = autocast_for(device, amp)
    with engine.as_run(model, None), torch.no_grad():
        tracker.start_phase("prefill", "activations")
        with tracker.following(), amp_context():
            out = _call(model, name, prompt, extra)
        key = next((k for k in CACHE_NAMES if k in out), None) if hasattr(out, "keys") else None
        cache = out[key] if key is not None else None
        held = _tensors(cache, set())
        if not held:
            raise SpecError(f"{type(model).__name__} returned no cache with use_cache=True.",
                            "`kv_cache` plans decoders that return one; drop it.")
        cache_bytes = sum(round_up(t.untyped_storage().nbytes(), tracker.block)
                          for t in {id(t.untyped_storage()): t for t in held}.values())
        prefill = tracker.peak.total
        del out
        tracker.reset_peak()
        tracker.start_phase("decode", "activations")
        step = prompt[:, :1].contiguous()
        with tracker.following(), amp_context():
            _call(model, name, step, {**extra, cache_name: cache})
        decode = tracker.peak.total
    return KvCache(tokens, cache_bytes, prefill, decode)
