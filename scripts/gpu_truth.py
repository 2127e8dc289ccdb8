"""Measure what a real CUDA step allocates, as the oracle for `modelviz memory` and `profile`.

Writes one JSON record per configuration: bytes of parameters, buffers and inputs, and the
peak `max_memory_allocated` of each phase (forward, backward, optimizer step) of the first and
second training steps, and of a no-grad forward. Run on a GPU machine only.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

MB = 1024**2


def gpt2(layers: int = 12) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(n_layer=layers, use_cache=False))


def tv(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision

        return torchvision.models.get_model(name)

    return build


def optimizer(name: str, params: Any) -> torch.optim.Optimizer | None:
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.01)
    if name == "momentum":
        return torch.optim.SGD(params, lr=0.01, momentum=0.9)
    if name == "adam":
        return torch.optim.Adam(params, lr=1e-4)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=1e-4)
    return None


def measure(name: str, build: Callable[[], nn.Module], make_input: Callable[[], Any],
            opt_name: str, dtype: torch.dtype = torch.float32, amp: torch.dtype | None = None,
            text: bool = False) -> dict[str, Any]:
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    model = build().to("cuda", dtype=dtype)
    model.train()
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    x = make_input()
    inputs = x.numel() * x.element_size()
    opt = optimizer(opt_name, model.parameters())
    record: dict[str, Any] = {"name": name, "optimizer": opt_name, "dtype": str(dtype),
                              "amp": str(amp), "params_bytes": params, "buffers_bytes": buffers,
                              "inputs_bytes": inputs,
                              "after_setup": torch.cuda.memory_allocated() - base, "steps": []}

    def forward(model: nn.Module = model, x: torch.Tensor = x) -> torch.Tensor:
        out = model(x)
        if text:
            out = out.logits
        elif isinstance(out, dict):
            out = out["out"]
        return out.float().mean()

    for _step in range(2):
        phases: dict[str, int] = {}
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        phases["start"] = start - base
        if amp is not None:
            with torch.autocast("cuda", dtype=amp):
                loss = forward()
        else:
            loss = forward()
        torch.cuda.synchronize()
        phases["forward_peak"] = torch.cuda.max_memory_allocated() - base
        phases["after_forward"] = torch.cuda.memory_allocated() - base
        torch.cuda.reset_peak_memory_stats()
        loss.backward()
        del loss
        torch.cuda.synchronize()
        phases["backward_peak"] = torch.cuda.max_memory_allocated() - base
        phases["after_backward"] = torch.cuda.memory_allocated() - base
        torch.cuda.reset_peak_memory_stats()
        if opt is not None:
            opt.step()
            torch.cuda.synchronize()
            phases["step_peak"] = torch.cuda.max_memory_allocated() - base
            phases["after_step"] = torch.cuda.memory_allocated() - base
            opt.zero_grad(set_to_none=True)
        else:
            model.zero_grad(set_to_none=True)
        phases["end"] = torch.cuda.memory_allocated() - base
        record["steps"].append(phases)
    model.zero_grad(set_to_none=True)
    del opt
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated() - base
    with torch.no_grad():
        if amp is not None:
            with torch.autocast("cuda", dtype=amp):
                model(x)
        else:
            model(x)
    torch.cuda.synchronize()
    record["inference_start"] = before
    record["inference_peak"] = torch.cuda.max_memory_allocated() - base
    del model, x
    torch.cuda.empty_cache()
    return record


def bare_forward_ms(build: Callable[[], nn.Module], make_input: Callable[[], Any],
                    runs: int = 30) -> dict[str, float]:
    model = build().cuda().eval()
    x = make_input()
    with torch.no_grad():
        for _ in range(5):
            model(x)
        times = []
        for _ in range(runs):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            model(x)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        wall = []
        for _ in range(runs):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            model(x)
            torch.cuda.synchronize()
            wall.append((time.perf_counter() - t0) * 1e3)
    return {"event_median_ms": statistics.median(times), "wall_median_ms": statistics.median(wall)}


def main() -> None:
    out = sys.argv[1]
    image = lambda b, s=224: (lambda: torch.randn(b, 3, s, s, device="cuda"))  # noqa: E731
    tokens = lambda b, t: (lambda: torch.randint(0, 50257, (b, t), device="cuda"))  # noqa: E731
    configs: list[tuple[Any, ...]] = [
        ("resnet18", tv("resnet18"), image(16), "adam", torch.float32, None, False),
        ("resnet18", tv("resnet18"), image(16), "sgd", torch.float32, None, False),
        ("resnet50", tv("resnet50"), image(32), "adam", torch.float32, None, False),
        ("resnet50", tv("resnet50"), image(32), "momentum", torch.float32, None, False),
        ("resnet50", tv("resnet50"), image(32), "adamw", torch.float32, torch.bfloat16, False),
        ("resnet50", tv("resnet50"), image(32), "sgd", torch.bfloat16, None, False),
        ("vit_b_16", tv("vit_b_16"), image(16), "adamw", torch.float32, None, False),
        ("vit_b_16", tv("vit_b_16"), image(16), "adamw", torch.float32, torch.bfloat16, False),
        ("gpt2", gpt2, tokens(4, 512), "adamw", torch.float32, None, True),
        ("gpt2", gpt2, tokens(4, 512), "adamw", torch.float32, torch.bfloat16, True),
        ("gpt2", gpt2, tokens(4, 512), "none", torch.bfloat16, None, True),
        ("mobilenet_v3_small", tv("mobilenet_v3_small"), image(64), "adam", torch.float32, None,
         False),
    ]
    records = []
    for cfg in configs:
        try:
            records.append(measure(*cfg))
            r = records[-1]
            print(cfg[0], cfg[3], cfg[4], cfg[5], "params MB", round(r["params_bytes"] / MB, 1),
                  "peaks MB", [round(max(s["forward_peak"], s["backward_peak"],
                                         s.get("step_peak", 0)) / MB, 1) for s in r["steps"]],
                  "inference MB", round(r["inference_peak"] / MB, 1), flush=True)
        except Exception as error:  # record and go on: one failure must not lose the rest
            records.append({"name": cfg[0], "error": repr(error)})
            print("FAILED", cfg[0], repr(error), flush=True)
    timing = {"resnet50_b32": bare_forward_ms(tv("resnet50"), image(32)),
              "vit_b_16_b16": bare_forward_ms(tv("vit_b_16"), image(16))}
    print(timing)
    meta = {"torch": torch.__version__, "device": torch.cuda.get_device_name(),
            "cudnn": torch.backends.cudnn.version()}
    Path(out).write_text(json.dumps({"meta": meta, "memory": records, "timing": timing},
                                    indent=1))


if __name__ == "__main__":
    main()
