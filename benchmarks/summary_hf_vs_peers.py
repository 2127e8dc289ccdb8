"""modelviz summary against torchinfo and calflops on a Hugging Face GPT-2 and a timm ViT.

In one process, on the same model objects and inputs: GPT-2 with its language-model head
(``hf:gpt2@causal-lm``: transformers' default gpt2 config, 128 tokens) and timm's
vit_base_patch16_224 (``timm:vit_base_patch16_224``, 3x224x224). Prints each tool's time as a
ratio to a bare ``torch.no_grad()`` forward pass (lower is better; 1.00 would be free), then
the parameters and FLOPs each tool reports, with how they differ from modelviz's (whose figures
the tests check against FlopCounterMode on the same models and against figures worked by hand).
Run from the repository root:

    .venv/bin/python benchmarks/summary_hf_vs_peers.py [--repeat 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torchinfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._timing import interleaved  # noqa: E402
from modelviz import api  # noqa: E402

TOKENS = 128


def gpt2() -> tuple[torch.nn.Module, dict[str, torch.Tensor], list[str]]:
    import transformers

    config = transformers.AutoConfig.for_model("gpt2")
    config.use_cache = False  # as modelviz builds hf:gpt2: one pass, no cache
    model = transformers.GPT2LMHeadModel(config).eval()
    ids = torch.randint(0, config.vocab_size, (1, TOKENS))
    return model, {"input_ids": ids}, [f"input_ids=int64:{TOKENS}"]


def vit() -> tuple[torch.nn.Module, dict[str, torch.Tensor], list[str]]:
    import timm

    model = timm.create_model("vit_base_patch16_224", pretrained=False).eval()
    return model, {"x": torch.randn(1, 3, 224, 224)}, ["3x224x224"]


MODELS: dict[str, Callable[[], tuple[torch.nn.Module, dict[str, torch.Tensor], list[str]]]] = {
    "hf:gpt2@causal-lm": gpt2,
    "timm:vit_base_patch16_224": vit,
}


def figures(model: torch.nn.Module, inputs: dict[str, torch.Tensor],
            sizes: list[str]) -> dict[str, tuple[int, int] | str]:
    """(params, FLOPs) as each tool reports them, or how the tool failed."""
    from calflops import calculate_flops

    result: dict[str, tuple[int, int] | str] = {}
    totals = api.summary(model, *sizes).totals
    result["modelviz"] = (totals.params, totals.flops)
    try:
        info = torchinfo.summary(model, input_data=_torchinfo_data(inputs), verbose=0)
        result["torchinfo"] = (info.total_params, 2 * info.total_mult_adds)
    except Exception as exc:
        result["torchinfo"] = f"fails: {type(exc).__name__}: {exc}"[:120]
    try:
        flops, macs, params = calculate_flops(model, **_calflops_args(inputs),
                                              print_results=False, output_as_string=False)
        result["calflops"] = (int(params), int(flops))
        result["calflops 2 x MACs"] = (int(params), 2 * int(macs))
    except Exception as exc:
        result["calflops"] = f"fails: {type(exc).__name__}: {exc}"[:120]
    return result


def _torchinfo_data(inputs: dict[str, torch.Tensor]) -> Any:
    """A lone positional input as a tensor; keyword inputs as the dict torchinfo passes on."""
    return inputs["x"] if list(inputs) == ["x"] else dict(inputs)


def _calflops_args(inputs: dict[str, torch.Tensor]) -> dict[str, Any]:
    """calflops moves the values of ``kwargs`` in place: a fresh dict for every call."""
    return {"args": [inputs["x"]]} if list(inputs) == ["x"] else {"kwargs": dict(inputs)}


def bench_model(model: torch.nn.Module, inputs: dict[str, torch.Tensor], sizes: list[str],
                repeat: int) -> dict[str, float]:
    from calflops import calculate_flops

    def call() -> None:
        if list(inputs) == ["x"]:
            model(inputs["x"])
        else:
            model(**inputs)

    def bare() -> None:
        with torch.no_grad():
            call()

    def modelviz() -> None:
        api.summary(model, *sizes).totals  # noqa: B018 - the totals are part of the work

    def with_torchinfo() -> None:
        torchinfo.summary(model, input_data=_torchinfo_data(inputs), verbose=0)

    def with_calflops() -> None:
        calculate_flops(model, **_calflops_args(inputs), print_results=False,
                        output_as_string=False)

    return interleaved({"bare forward": bare, "modelviz": modelviz, "torchinfo": with_torchinfo,
                        "calflops": with_calflops}, repeat)


def ratio(seconds: float, base: float) -> str:
    return "fails" if math.isnan(seconds) else f"{seconds / base:.2f}x"


def difference(theirs: tuple[int, int] | str, ours: tuple[int, int]) -> str:
    if isinstance(theirs, str):
        return theirs
    notes = []
    for what, a, b in (("params", theirs[0], ours[0]), ("FLOPs", theirs[1], ours[1])):
        if a != b:
            notes.append(f"{what} {a - b:+,} ({a / b:.3f}x)")
    return "; ".join(notes) or "same"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch's CPU threads (default: torch's own choice); 1 keeps the "
                             "timings steady on a machine that other work shares")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")

    import calflops  # noqa: F401 - fail here, before any timing, when it is missing
    import timm
    import transformers

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, timm "
          f"{timm.__version__}, torchinfo {torchinfo.__version__}, calflops 0.3, "
          f"{torch.get_num_threads()} CPU threads, {platform.processor() or platform.machine()};"
          f" median of {args.repeat} interleaved runs, batch 1, CPU\n")
    built = {}
    for name, make in MODELS.items():
        torch.manual_seed(0)
        built[name] = make()
    print(f"| {'model':<25} | {'bare forward':>12} | {'modelviz':>9} | {'torchinfo':>9} | "
          f"{'calflops':>9} |")
    print(f"| {'-' * 25} | {'-' * 12}:| {'-' * 9}:| {'-' * 9}:| {'-' * 9}:|")
    for name, (model, inputs, sizes) in built.items():
        times = bench_model(model, inputs, sizes, args.repeat)
        base = times["bare forward"]
        ratios = [ratio(times[k], base) for k in ("modelviz", "torchinfo", "calflops")]
        print(f"| {name:<25} | {base * 1e3:>9.1f} ms | {ratios[0]:>9} | {ratios[1]:>9} | "
              f"{ratios[2]:>9} |", flush=True)
    print("\nWhat each tool reports (FLOPs: torchinfo's mult-adds x 2; calflops' own FLOPs, "
          "which add element-wise work, and its MACs x 2):\n")
    print(f"| {'model':<25} | {'tool':<17} | {'params':>11} | {'FLOPs':>15} | against modelviz")
    print(f"| {'-' * 25} | {'-' * 17} | {'-' * 11}:| {'-' * 15}:| ---")
    for name, (model, inputs, sizes) in built.items():
        found = figures(model, inputs, sizes)
        ours = found["modelviz"]
        assert isinstance(ours, tuple)
        for tool, value in found.items():
            if isinstance(value, str):
                print(f"| {name:<25} | {tool:<17} | {'':>11} | {'':>15} | {value}")
                continue
            print(f"| {name:<25} | {tool:<17} | {value[0]:>11,} | {value[1]:>15,} | "
                  f"{'reference' if tool == 'modelviz' else difference(value, ours)}",
                  flush=True)


if __name__ == "__main__":
    main()
