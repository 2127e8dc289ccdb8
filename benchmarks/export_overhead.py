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
inference and reading the facts for the table; it should stay within 10% of the bare call.

modelviz never writes over the user's file in place: it writes a new file and moves it over the
old one, so that a failed export leaves nothing half-written. On ext4, writing a new file costs
more than rewriting an existing one in place (about 50-100 ms for resnet18's 45 MB here), so the
bare calls write a new file each run too, replacing the previous one as modelviz does; the
``in place`` column shows the bare static call overwriting one file, for comparison. Medians of
interleaved runs. Run from the repository root:

    .venv/bin/python benchmarks/export_overhead.py [--repeat 5] [--models resnet18,net]
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
import torchvision

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._timing import interleaved  # noqa: E402
from modelviz import api  # noqa: E402
from modelviz.features.onnx.export import export  # noqa: E402
from sample_models.seeds import Net  # noqa: E402
from sample_models.transformer import TinyTransformer  # noqa: E402

MODELS = "net,tiny_transformer,resnet18,convnext_tiny"


@contextlib.contextmanager
def replacing(path: str) -> Iterator[str]:
    """A new file beside ``path``, moved over it afterwards: how modelviz writes its output."""
    staged = f"{path}.new"
    yield staged
    Path(staged).replace(path)


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
                     path: str = f"{folder}/bare.onnx") -> object:
                return torch.onnx.export(model, args, path, dynamo=True, verbose=False,
                                         external_data=False)

            def bare_new(model: torch.nn.Module = model,
                         args: tuple[torch.Tensor, ...] = args) -> object:
                with replacing(f"{folder}/bare-new.onnx") as path:
                    return bare(model, args, path)

            def bare_dynamic(model: torch.nn.Module = model,
                             wide: tuple[torch.Tensor, ...] = wide,
                             dynamic: tuple[dict[int, object], ...] = dynamic) -> object:
                with replacing(f"{folder}/dynamic.onnx") as path:
                    return torch.onnx.export(model, wide, path, dynamo=True, verbose=False,
                                             dynamic_shapes=dynamic, external_data=False)

            stages: list[dict[str, float]] = []

            def ours(verify: bool, dynamic_batch: bool = True,
                     prepared: api.Prepared = prepared,
                     stages: list[dict[str, float]] = stages) -> object:
                result = export(prepared, f"{folder}/modelviz.onnx", verify=verify,
                                dynamic_batch=dynamic_batch)
                stages.append(result.seconds)
                return result

            times = interleaved({"in place": bare, "bare": bare_new,
                                 "static": lambda: ours(False, False),
                                 "bare dynamic": bare_dynamic, "dynamic": lambda: ours(False),
                                 "verified": lambda: ours(True)},
                                repeat=options.repeat, warmup=1, collect=True)
            result = export(prepared, f"{folder}/modelviz.onnx")
            check = statistics.median(s["check"] for s in stages)
            rows.append((name, times, check, result.file_bytes, result.ok))
    print("| model            | bare static | in place | modelviz --static | bare dynamic "
          "| modelviz    | verified | checks |     file | parity |")
    print("|                  |             |          |    --no-verify    |              "
          "| --no-verify |          |        |          |        |")
    print("| ---------------- | -----------:| --------:| -----------------:| ------------:"
          "| -----------:| --------:| ------:| --------:| ------ |")
    for name, times, check, size, ok in rows:
        print(f"| {name:<16} | {times['bare'] * 1000:8.0f} ms "
              f"| {times['in place'] / times['bare']:7.2f}x "
              f"| {times['static'] / times['bare']:16.2f}x "
              f"| {times['bare dynamic'] * 1000:9.0f} ms "
              f"| {times['dynamic'] / times['bare dynamic']:10.2f}x "
              f"| {times['verified'] / times['bare dynamic']:7.2f}x "
              f"| {check * 1000:3.0f} ms | {size / 2**20:5.1f} MB | {'ok' if ok else 'FAIL':<6} |")
    print("\nRatios are to the bare call that writes the same kind of file, as a new file moved "
          "over the old one (in place: the bare static call rewriting one file instead); "
          "without verification modelviz should stay within 1.10x. checks: onnx.checker with "
          "shape inference and the facts, the median of modelviz's own timing of that stage.")


if __name__ == "__main__":
    main()
