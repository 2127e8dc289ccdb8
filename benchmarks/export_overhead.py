"""modelviz export-onnx against a bare ``torch.onnx.export`` of the same model, in one process.

Each modelviz export is compared with the bare call that writes the same kind of file:

- static: ``torch.onnx.export(model, args, f, dynamo=True, external_data=False)``, the seed
  posts' call asked for one file, against ``modelviz export-onnx --static --no-verify``
  (torch's default, weights in a separate ``f.data``, saves another 4-8% on writing);
- dynamic: the bare call asked for what modelviz gives by default (a dynamic batch, weights
  inside the file) against ``modelviz export-onnx --no-verify``;
- verified: the default ``modelviz export-onnx`` (the engine's pass for the reference output,
  ONNX Runtime at two batch sizes) against the same dynamic bare call.

modelviz's extra work in the first two is naming inputs and outputs, ``onnx.checker`` with shape
inference, reading the facts for the table, and writing through a staging folder; it should stay
within 10% of the bare call. Medians of interleaved runs. Run from the repository root:

    .venv/bin/python benchmarks/export_overhead.py [--repeat 5] [--models resnet18,net]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import torch
import torchvision

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._timing import interleaved  # noqa: E402
from modelviz import api  # noqa: E402
from modelviz.onnx_export import export  # noqa: E402
from sample_models.seeds import Net  # noqa: E402
from sample_models.transformer import TinyTransformer  # noqa: E402

MODELS = "net,tiny_transformer,resnet18,convnext_tiny"


def build(name: str) -> tuple[torch.nn.Module, str]:
    torch.manual_seed(0)
    if name == "net":
        return Net().eval(), "1x28x28"
    if name == "tiny_transformer":
        return TinyTransformer().eval(), "int64:64"
    return torchvision.models.get_model(name).eval(), "3x224x224"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--models", default=MODELS)
    options = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads; median of {options.repeat} interleaved runs\n")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in options.models.split(","):
            model, size = build(name)
            prepared = api.prepare(model, size)
            args = prepared.inputs.args
            batch = torch.export.Dim("batch")
            dynamic = tuple({0: batch} for _ in args)
            wide = tuple(torch.cat([a, a]) for a in args)  # as modelviz does, see onnx_export

            def bare(model: torch.nn.Module = model, args: tuple[torch.Tensor, ...] = args,
                     ) -> object:
                return torch.onnx.export(model, args, f"{folder}/bare.onnx", dynamo=True,
                                         verbose=False, external_data=False)

            def bare_dynamic(model: torch.nn.Module = model,
                             wide: tuple[torch.Tensor, ...] = wide,
                             dynamic: tuple[dict[int, object], ...] = dynamic) -> object:
                return torch.onnx.export(model, wide, f"{folder}/dynamic.onnx", dynamo=True,
                                         verbose=False, dynamic_shapes=dynamic,
                                         external_data=False)

            stages: list[dict[str, float]] = []

            def ours(verify: bool, dynamic_batch: bool = True,
                     prepared: api.Prepared = prepared,
                     stages: list[dict[str, float]] = stages) -> object:
                result = export(prepared, f"{folder}/modelviz.onnx", verify=verify,
                                dynamic_batch=dynamic_batch)
                stages.append(result.seconds)
                return result

            times = interleaved({"bare": bare, "static": lambda: ours(False, False),
                                 "bare dynamic": bare_dynamic, "dynamic": lambda: ours(False),
                                 "verified": lambda: ours(True)},
                                repeat=options.repeat, warmup=1, collect=True)
            result = export(prepared, f"{folder}/modelviz.onnx")
            check = statistics.median(s["check"] for s in stages)
            rows.append((name, times, check, result.file_bytes, result.ok))
    print("| model            | bare static | modelviz --static | bare dynamic | modelviz "
          "| verified | checks |     file | parity |")
    print("|                  |             |    --no-verify    |              | --no-verify "
          "|          |        |          |        |")
    print("| ---------------- | -----------:| -----------------:| ------------:| -----------:"
          "| --------:| ------:| --------:| ------ |")
    for name, times, check, size, ok in rows:
        print(f"| {name:<16} | {times['bare'] * 1000:8.0f} ms "
              f"| {times['static'] / times['bare']:16.2f}x "
              f"| {times['bare dynamic'] * 1000:9.0f} ms "
              f"| {times['dynamic'] / times['bare dynamic']:10.2f}x "
              f"| {times['verified'] / times['bare dynamic']:7.2f}x "
              f"| {check * 1000:3.0f} ms | {size / 2**20:5.1f} MB | {'ok' if ok else 'FAIL':<6} |")
    print("\nmodelviz's ratios are to the bare call that writes the same kind of file; without "
          "verification they should stay within 1.10x. checks: onnx.checker with shape "
          "inference and the facts, the median of modelviz's own timing of that stage.")


if __name__ == "__main__":
    main()
