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

GPT-2 (4 of its layers at full width, 64 tokens) is exported without its KV cache, and with it
(``--with-cache``, the decoder step); a detection model (fasterrcnn_mobilenet_v3_large_320_fpn
at 320x320) shows what modelviz's route costs where the dynamo exporter fails: its attempt, then
the TorchScript exporter, and a batch fixed because the outputs are per image.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torchvision

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._timing import interleaved  # noqa: E402
from modelviz import api  # noqa: E402
from modelviz.features.onnx.export import export  # noqa: E402
from sample_models.seeds import Net  # noqa: E402
from sample_models.transformer import TinyTransformer  # noqa: E402

MODELS = "net,tiny_transformer,resnet18,convnext_tiny,gpt2,gpt2_cache,fasterrcnn"
#: GPT-2 at full width (768, 12 heads, its 50,257-token vocabulary) with 4 of its 12 layers,
#: on 64 tokens: the real model's blocks, at a size this benchmark can repeat.
GPT2 = {"n_layer": 4}
GPT2_SIZES = ("input_ids=int64:64",)
DETECTION = "fasterrcnn_mobilenet_v3_large_320_fpn"


@contextlib.contextmanager
def replacing(path: str) -> Iterator[str]:
    """A new file beside ``path``, moved over it afterwards: how modelviz writes its output."""
    staged = f"{path}.new"
    yield staged
    Path(staged).replace(path)


@dataclass
class Case:
    """One row: the prepared model, and the bare calls that write the same kinds of file."""

    name: str
    prepared: api.Prepared
    bare_static: Callable[[str], object]
    bare_dynamic: Callable[[str], object] | None  # None: the file cannot have a dynamic batch
    options: dict[str, Any] = field(default_factory=dict)  # modelviz's export options


def _plain(name: str) -> Case:
    torch.manual_seed(0)
    if name == "net":
        model, size = Net().eval(), "1x28x28"
    elif name == "tiny_transformer":
        model, size = TinyTransformer().eval(), "int64:64"
    else:
        model, size = torchvision.models.get_model(name).eval(), "3x224x224"
    prepared = api.prepare(model, size)
    args = prepared.inputs.args
    batch = torch.export.Dim("batch")
    dynamic = tuple({0: batch} for _ in args)
    wide = tuple(torch.cat([a, a]) for a in args)  # as modelviz does, see onnx_export

    def static(path: str) -> object:
        return torch.onnx.export(model, args, path, dynamo=True, verbose=False,
                                 external_data=False)

    def dynamic_call(path: str) -> object:
        return torch.onnx.export(model, wide, path, dynamo=True, verbose=False,
                                 dynamic_shapes=dynamic, external_data=False)

    return Case(name, prepared, static, dynamic_call)


def _gpt2(cache: bool) -> Case:
    """The bare calls a user writes for GPT-2: ``use_cache=False`` (the cache object cannot be
    exported), or the decoder step around the model with its cache as tensors, which modelviz
    builds for --with-cache (the same module here, so the ratio is modelviz's own work)."""
    from modelviz.features.onnx import cache as kv

    prepared = api.prepare("hf:gpt2@causal-lm", *GPT2_SIZES, kwargs=GPT2)
    model = prepared.model.eval()
    ids = prepared.inputs.kwargs["input_ids"]
    if not cache:
        inputs = {"input_ids": ids, "use_cache": False}
        wide = {"input_ids": torch.cat([ids, ids]), "use_cache": False}
        shapes = {"input_ids": {0: torch.export.Dim("batch")}, "use_cache": None}

        def static(path: str) -> object:
            return torch.onnx.export(model, (), path, kwargs=inputs, dynamo=True,
                                     verbose=False, external_data=False)

        def dynamic_call(path: str) -> object:
            return torch.onnx.export(model, (), path, kwargs=wide, dynamo=True, verbose=False,
                                     dynamic_shapes=shapes, external_data=False)

        return Case("gpt2", prepared, static, dynamic_call)
    layout = kv.probe(model, ids)
    step = kv.CacheStep(model, layout).eval()
    flat = kv.step_inputs(layout, torch.cat([ids, ids]))
    args = (flat[0], flat[1], flat[2], tuple(flat[3:]))
    auto = torch.export.Dim.DYNAMIC
    shapes = ({0: auto, 1: auto}, {0: auto, 1: auto}, {0: auto, 1: auto},
              tuple({0: auto, 2: auto} for _ in flat[3:]))

    def dynamic_step(path: str) -> object:
        return torch.onnx.export(step, args, path, dynamo=True, verbose=False,
                                 dynamic_shapes=shapes, external_data=False)

    return Case("gpt2 --with-cache", prepared, dynamic_step, dynamic_step,
                {"with_cache": True})


def _detection() -> Case:
    """The dynamo exporter cannot export torchvision's detection models (their code branches
    on tensor values), and their per-image outputs fix the batch: the bare call is the
    TorchScript exporter's, static; modelviz tries the dynamo exporter first, and that failure
    is part of its time."""
    torch.manual_seed(0)
    prepared = api.prepare(DETECTION, "3x320x320")
    model, args = prepared.model.eval(), prepared.inputs.args

    def static(path: str) -> object:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.onnx.export(model, args, path, dynamo=False)

    return Case(DETECTION, prepared, static, None)


def build(name: str) -> Case:
    if name in ("gpt2", "gpt2_cache"):
        return _gpt2(cache=name == "gpt2_cache")
    if name == "fasterrcnn":
        return _detection()
    return _plain(name)


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
            case = build(name)

            def bare(case: Case = case) -> object:
                with replacing(f"{folder}/bare.onnx") as path:
                    return case.bare_static(path)

            def in_place(case: Case = case) -> object:
                return case.bare_static(f"{folder}/in-place.onnx")

            def bare_dynamic(case: Case = case) -> object:
                assert case.bare_dynamic is not None
                with replacing(f"{folder}/dynamic.onnx") as path:
                    return case.bare_dynamic(path)

            stages: list[dict[str, float]] = []

            def ours(verify: bool, dynamic_batch: bool = True, case: Case = case,
                     stages: list[dict[str, float]] = stages) -> object:
                result = export(case.prepared, f"{folder}/modelviz.onnx", verify=verify,
                                dynamic_batch=dynamic_batch, **case.options)
                stages.append(result.seconds)
                return result

            candidates: dict[str, Callable[[], object]] = {"in place": in_place, "bare": bare}
            if not case.options:
                candidates["static"] = lambda: ours(False, False)
            if case.bare_dynamic is not None:
                candidates["bare dynamic"] = bare_dynamic
            candidates |= {"dynamic": lambda: ours(False), "verified": lambda: ours(True)}
            times = interleaved(candidates, repeat=options.repeat, warmup=1, collect=True)
            result = export(case.prepared, f"{folder}/modelviz.onnx", **case.options)
            check = statistics.median(s["check"] for s in stages)
            rows.append((case.name, times, check, result.file_bytes, result.ok))
    print("| model                                 | bare static | in place | modelviz --static "
          "| bare dynamic | modelviz    | verified | checks |     file | parity |")
    print("|                                       |             |          |    --no-verify    "
          "|              | --no-verify |          |        |          |        |")
    print("| ------------------------------------- | -----------:| --------:| -----------------:"
          "| ------------:| -----------:| --------:| ------:| --------:| ------ |")
    for name, times, check, size, ok in rows:
        dynamic_base = times.get("bare dynamic", times["bare"])

        def cell(key: str, base: float, width: int,
                 times: dict[str, float] = times) -> str:
            return f"{times[key] / base:{width - 1}.2f}x" if key in times else "–".rjust(width)

        print(f"| {name:<37} | {times['bare'] * 1000:8.0f} ms "
              f"| {times['in place'] / times['bare']:7.2f}x "
              f"| {cell('static', times['bare'], 17)} "
              + (f"| {times['bare dynamic'] * 1000:9.0f} ms " if "bare dynamic" in times
                 else f"| {'–':>12} ")
              + f"| {cell('dynamic', dynamic_base, 11)} "
              f"| {cell('verified', dynamic_base, 8)} "
              f"| {check * 1000:3.0f} ms | {size / 2**20:5.1f} MB | {'ok' if ok else 'FAIL':<6} |")
    print("\nRatios are to the bare call that writes the same kind of file, as a new file moved "
          "over the old one (in place: the bare static call rewriting one file instead); "
          "without verification modelviz should stay within 1.10x. checks: onnx.checker with "
          "shape inference and the facts, the median of modelviz's own timing of that stage. "
          "gpt2 --with-cache: the bare call exports modelviz's own decoder-step module, so the "
          "ratio is the rest of modelviz's work. A detection model's ratios are to the bare "
          "TorchScript export, static: modelviz tries the dynamo exporter first.")


if __name__ == "__main__":
    main()
