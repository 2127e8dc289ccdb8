"""What safety costs: modelviz's guarded loading and writing against the bare calls, in one
process, medians of interleaved runs.

- ``.pt2``: ``untrusted.load_exported_program`` (the archive's JSON checked field by field, then
  ``torch.export.load`` with every unpickling weights-only, then ``unflatten``) against the bare
  ``torch.export.load`` + ``unflatten``, the call modelviz made before;
- checkpoint: ``untrusted.load_data`` (the zip directory read for bombs, then
  ``torch.load(weights_only=True)``) against the bare ``torch.load(weights_only=True)``;
- report: ``modelviz report --static`` into a folder that already holds a report (built aside,
  swapped in whole under a lock) against the same report written straight into a fresh folder,
  as it was before (``report.build``'s own writing, with the folder swap skipped).

Run from the repository root:

    .venv/bin/python benchmarks/safety_overhead.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
import torchvision

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._timing import interleaved  # noqa: E402
from modelviz import api, output  # noqa: E402
from modelviz.core import untrusted  # noqa: E402
from modelviz.features.report import build as report  # noqa: E402


def _export(model: torch.nn.Module, size: tuple[int, ...], path: Path, dynamic: bool) -> Path:
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(model.eval(), (torch.randn(2, *size),),
                                  dynamic_shapes={"x": {0: batch}} if dynamic else None)
    torch.export.save(program, path)
    return path


def _bare_pt2(path: Path) -> object:
    return torch.export.unflatten(torch.export.load(path))


def _guarded_pt2(path: Path) -> object:
    return untrusted.load_exported_program(path, untrusted.zip_names(path, "MODEL"), trust=False)


@contextlib.contextmanager
def _unswapped() -> Iterator[None]:
    """report.build writing straight into its folder, as before the folder swap."""
    original = report.atomic_folder

    @contextlib.contextmanager
    def direct(target: object, replaceable: object) -> Iterator[Path]:
        folder = Path(str(target))
        folder.mkdir(parents=True, exist_ok=True)
        yield folder

    report.atomic_folder = direct  # type: ignore[assignment]
    try:
        yield
    finally:
        report.atomic_folder = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    options = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {platform.machine()}, "
          f"{torch.get_num_threads()} threads; medians of {options.repeat} interleaved runs\n")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        rows = []
        for name, model, size, dynamic in (
                ("resnet18", torchvision.models.resnet18(), (3, 224, 224), True),
                ("convnext_tiny", torchvision.models.convnext_tiny(), (3, 224, 224), False),
                ("vit_b_16", torchvision.models.vit_b_16(), (3, 224, 224), True)):
            path = _export(model, size, folder / f"{name}.pt2", dynamic)
            times = interleaved({"bare": lambda p=path: _bare_pt2(p),
                                 "modelviz": lambda p=path: _guarded_pt2(p)}, options.repeat,
                                warmup=1, collect=True)
            rows.append((f"{name}.pt2 ({path.stat().st_size / 2**20:.0f} MB)", times))
        weights = folder / "resnet50.pt"
        torch.save(torchvision.models.resnet50().state_dict(), weights)
        times = interleaved({
            "bare": lambda: torch.load(weights, map_location="cpu", weights_only=True),
            "modelviz": lambda: untrusted.load_data(weights, "--weights")}, options.repeat)
        rows.append((f"resnet50 state dict ({weights.stat().st_size / 2**20:.0f} MB)", times))

        prepared = api.prepare("resnet18")
        target = folder / "report"

        def swapped() -> None:
            output.reset()
            report.build(prepared, target, static=True)

        def direct() -> None:
            fresh = folder / "direct"
            shutil.rmtree(fresh, ignore_errors=True)
            with _unswapped():
                report.build(prepared, fresh, static=True)

        times = interleaved({"bare": direct, "modelviz": swapped}, max(3, options.repeat // 2),
                            warmup=1, collect=True)
        rows.append(("report resnet18 --static, over an earlier one", times))

    print("| what | before | modelviz | ratio |")
    print("| --- | ---:| ---:| ---:|")
    for label, times in rows:
        print(f"| {label} | {times['bare'] * 1e3:,.0f} ms | {times['modelviz'] * 1e3:,.0f} ms "
              f"| {times['modelviz'] / times['bare']:.2f}x |")


if __name__ == "__main__":
    main()
