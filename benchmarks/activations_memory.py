"""Peak memory of ``modelviz activations --layer '*' --no-images`` against a plain forward pass.

Each way of running resnet50 runs in a fresh Python process (the CPU allocator is not
instrumented, so the only honest number is the process's own peak resident memory): the model
and its input are built, the peak-RSS mark is reset to the current RSS, the pass runs, and the
growth of the peak over that baseline is what the pass needed. On CUDA (``--device cuda``) the
figure is ``torch.cuda.max_memory_allocated`` over the memory allocated before the pass.

    plain      model(x) under torch.no_grad(): the floor
    stats      modelviz's pass measuring every module's output (what --no-images does)
    captures   the same, also keeping what every layer's picture would need (64 channels of
               sample 0 per layer)
    naive      forward hooks that keep every module's output, as activation-map tutorials do

Run from the repository root:

    .venv/bin/python benchmarks/activations_memory.py [--batch 8] [--model resnet50]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODES = {
    "plain": "plain forward pass (torch.no_grad)",
    "stats": "modelviz: statistics of every module",
    "captures": "modelviz: statistics + image captures, every module",
    "naive": "naive: hooks keep every module's output",
}


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> bool:
    """Linux resets VmHWM to the current RSS when 5 is written to clear_refs (kernel 4.0+)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def child(mode: str, model_name: str, batch: int, device: str) -> dict[str, Any]:
    import torch
    import torchvision

    sys.path.insert(0, str(ROOT))
    from modelviz import api
    from modelviz.features.activations.measure import measure_activations

    torch.set_num_threads(min(2, torch.get_num_threads()))
    model = torchvision.models.get_model(model_name, weights=None).eval().to(device)
    prepared = api.prepare(model, "3x224x224", batch_size=batch, device=device)
    x = prepared.inputs.args[0]  # seeded noise, the same in every process
    kept: dict[str, Any] = {}
    handles = []
    if mode == "naive":
        for name, module in model.named_modules():
            def keep(_m: Any, _a: Any, out: Any, name: str = name) -> None:
                if isinstance(out, torch.Tensor):
                    kept[name] = out.detach()
            handles.append(module.register_forward_hook(keep))
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        reset = _reset_peak()
        before = _status_kb("VmRSS") * 1024
    started = time.perf_counter()
    layers = 0
    if mode in ("plain", "naive"):
        with torch.no_grad():
            model(x)
    else:
        report = measure_activations(prepared, layers=["*"], images=mode == "captures")
        layers = len(report.layers)
    elapsed = time.perf_counter() - started
    if cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = _status_kb("VmHWM") * 1024
    for handle in handles:
        handle.remove()
    return {"mode": mode, "before": before, "peak": peak, "growth": peak - before,
            "seconds": elapsed, "outputs": layers or len(kept),
            # outputs of in-place layers share their input's memory: count each storage once
            "kept_bytes": sum({t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
                               for t in kept.values()}.values()),
            "reset": True if cuda else reset}


def run_child(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}
    proc = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--model", args.model, "--batch",
         str(args.batch), "--device", args.device],
        capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--child", choices=list(MODES))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.model, args.batch, args.device)))
        return

    import torch

    mib = 1024 ** 2
    print(f"{args.model}, batch {args.batch} x 3x224x224, {args.device}; torch "
          f"{torch.__version__}, Python {platform.python_version()}; each row a fresh process")
    measure = "peak CUDA memory" if args.device.startswith("cuda") else "peak RSS"
    print(f"{'':<52} {'before':>9} {measure:>12} {'growth':>9} {'x plain':>8} {'time':>7}")
    results = {mode: run_child(mode, args) for mode in MODES}
    floor = results["plain"]["growth"]
    for mode, label in MODES.items():
        r = results[mode]
        print(f"{label:<52} {r['before'] / mib:>7.0f}MB {r['peak'] / mib:>10.0f}MB "
              f"{r['growth'] / mib:>7.0f}MB {r['growth'] / floor:>7.2f}x {r['seconds']:>6.2f}s")
    naive = results["naive"]
    print(f"\nThe naive hooks kept {naive['outputs']} tensors ({naive['kept_bytes'] / mib:.0f} MB "
          f"of distinct memory); modelviz measured {results['stats']['outputs']} outputs "
          "(every call of every module) and kept seven numbers of each.")
    if not all(r["reset"] for r in results.values()):
        print("note: this kernel cannot reset the peak-RSS mark; peaks include loading.")


if __name__ == "__main__":
    main()
