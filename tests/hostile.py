"""Booby-trapped files for the safety tests: each one touches a marker file if its code runs.

Every payload is real: the tests that refuse a file also show, where the file format allows it,
that the same file does touch its marker when the user says ``--trust-pickle`` (or when torch's
own loader is called on it), so a test that finds no marker proves the loader, not a dud.
"""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn


class Touch:
    """Unpickling this opens ``path`` for appending: the file appears if the pickle ran."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "a"))


def pickled(marker: Path) -> bytes:
    """A ``torch.save`` file whose unpickling touches ``marker``."""
    buffer = io.BytesIO()
    torch.save(Touch(marker), buffer)
    return buffer.getvalue()


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
        self.register_buffer("offset", torch.ones(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.block(x) + self.offset
        return out


def exported(path: Path, *, dynamic: bool = False) -> Path:
    """A genuine ``torch.export.save`` archive of ``Tiny`` (dynamic batch: symbolic shapes)."""
    model = Tiny().eval()
    shapes = {"x": {0: torch.export.Dim("batch", min=1, max=64)}} if dynamic else None
    program = torch.export.export(model, (torch.randn(2, 4),), dynamic_shapes=shapes)
    torch.export.save(program, path)
    return path


def rewrite(source: Path, target: Path,
            change: Callable[[str, bytes], bytes | None]) -> Path:
    """Copy the zip ``source`` to ``target``, passing each entry through ``change(name, data)``
    (None keeps it as it is)."""
    with zipfile.ZipFile(source) as archive:
        entries = [(info.filename, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in entries:
            new = change(name, data)
            archive.writestr(name, data if new is None else new)
    return target


def edit_json(source: Path, target: Path, suffix: str,
              edit: Callable[[dict[str, Any]], None]) -> Path:
    """Copy the archive, editing the JSON entry whose name ends with ``suffix``."""
    def change(name: str, data: bytes) -> bytes | None:
        if not name.endswith(suffix):
            return None
        document = json.loads(data)
        edit(document)
        return json.dumps(document).encode()
    return rewrite(source, target, change)


def find(document: Any, key: str) -> list[dict[str, Any]]:
    """Every dict in ``document`` that holds ``key``."""
    found: list[dict[str, Any]] = []
    if isinstance(document, dict):
        if key in document:
            found.append(document)
        for value in document.values():
            found += find(value, key)
    elif isinstance(document, list):
        for value in document:
            found += find(value, key)
    return found


def python_call(marker: Path) -> str:
    """A Python expression that touches ``marker`` when evaluated."""
    return f"__import__('builtins').open({str(marker)!r}, 'a').close()"


def exported_traps(folder: Path, marker: Path) -> dict[str, Path]:
    """One archive per way torch.export.load (and the module it returns) can run code."""
    plain = exported(folder / "plain.pt2")
    dynamic = exported(folder / "dynamic.pt2", dynamic=True)
    payload = pickled(marker)
    traps: dict[str, Path] = {}
    # 1. the sample inputs: torch falls back to weights_only=False when weights-only fails
    traps["sample inputs"] = rewrite(plain, folder / "inputs.pt2", lambda name, _: (
        payload if "/sample_inputs/" in name else None))

    # 2. a weight marked for pickle, loaded with weights_only=False
    def pickled_weight(document: dict[str, Any]) -> None:
        first = next(iter(document["config"].values()))
        first["use_pickle"] = True
    weights = edit_json(plain, folder / "weights.tmp", "model_weights_config.json",
                        pickled_weight)
    first_weight = json.loads(zipfile.ZipFile(weights).read(next(
        n for n in zipfile.ZipFile(weights).namelist()
        if n.endswith("model_weights_config.json"))))["config"]
    weight_file = next(iter(first_weight.values()))["path_name"]
    traps["pickled weight"] = rewrite(weights, folder / "weight.pt2", lambda name, _: (
        payload if name.endswith(f"/weights/{weight_file}") else None))
    weights.unlink()

    # 3. input guards, exec'd by ExportedProgram.module()
    def guard(document: dict[str, Any]) -> None:
        document["guards_code"] = [python_call(marker) + " or True"]
    traps["guards"] = edit_json(dynamic, folder / "guards.pt2", "models/model.json", guard)

    # 4. a symbolic shape, parsed by sympy.sympify, which evals its string
    def shape(document: dict[str, Any]) -> None:
        for holder in find(document, "expr_str"):
            holder["expr_str"] = f"({python_call(marker)}) or {holder['expr_str']}"
    traps["shape expression"] = edit_json(dynamic, folder / "shape.pt2", "models/model.json",
                                          shape)

    # 5. the same through sympy's S("..."), which sympifies its string: a string with no quote
    # or backslash in it, built from chr() calls, still runs code
    quiet = "open(" + "+".join(f"chr({b})" for b in str(marker).encode()) + ",chr(97))"

    def nested(document: dict[str, Any]) -> None:
        for holder in find(document, "expr_str"):
            holder["expr_str"] = f'S("{quiet}")*0 + {holder["expr_str"]}'
    traps["shape expression, nested"] = edit_json(dynamic, folder / "nested.pt2",
                                                  "models/model.json", nested)
    # 6. the same archive renamed: the loader goes by content, not by name
    renamed = folder / "inputs_renamed.pt"
    renamed.write_bytes(traps["sample inputs"].read_bytes())
    traps["sample inputs, renamed .pt"] = renamed
    return traps


def torchscript_trap(folder: Path, marker: Path) -> Path:
    """A TorchScript archive whose data.pkl is a pickle that touches ``marker``."""
    source = folder / "scripted.ts"
    torch.jit.save(torch.jit.script(Tiny()), source)
    payload = pickled(marker)
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        data_pkl = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    return rewrite(source, folder / "trap.ts", lambda name, _: (
        data_pkl if name.endswith("/data.pkl") else None))


def zip_bomb(path: Path, inflated: int = 2**30) -> Path:
    """A checkpoint-shaped zip whose data.pkl inflates from about a megabyte to ``inflated``."""
    zeros = b"\0" * 2**20
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive, \
            archive.open("bomb/data.pkl", "w", force_zip64=True) as entry:
        for _ in range(inflated // len(zeros)):
            entry.write(zeros)
    return path


def png_bomb(path: Path, width: int = 100_000, height: int = 100_000) -> Path:
    """A PNG whose header claims ``width`` x ``height`` pixels (10 gigapixels by default)
    around a few bytes of data: decoding it would take tens of gigabytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b""))
    return path
