"""An offline W&B run read back from its transaction log (``run-ID.wandb``), for the tests.

wandb 0.31 dropped its Python reader of that file (``wandb.sdk.internal.datastore``); the file
is still the LevelDB log format W&B has always written: a 7-byte header (``:W&B``, 0xBEE1,
version 0), then 32 KiB blocks of chunks, each with a CRC-32 (seeded with the chunk's type),
a length and a type (full, first, middle, last). This reads the chunks, checks every checksum,
joins them into records and parses each with W&B's own protobuf, ``wandb_internal_pb2.Record``:
the records are exactly what ``wandb sync`` would upload.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

BLOCK = 32768
HEADER = struct.Struct("<4sHB")
CHUNK = struct.Struct("<IHB")
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
_SEED = {kind: zlib.crc32(bytes([kind])) for kind in (FULL, FIRST, MIDDLE, LAST)}


def read_records(path: Path) -> list[Any]:
    """Every record of a ``.wandb`` file, in order, checksums checked."""
    raw = path.read_bytes()
    ident, magic, version = HEADER.unpack_from(raw)
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), (ident, magic, version)
    records, pieces, pos = [], [], HEADER.size
    while pos + CHUNK.size <= len(raw):
        if BLOCK - pos % BLOCK < CHUNK.size:  # the block's tail is padding
            pos += BLOCK - pos % BLOCK
            continue
        checksum, length, kind = CHUNK.unpack_from(raw, pos)
        data = raw[pos + CHUNK.size: pos + CHUNK.size + length]
        pos += CHUNK.size + length
        if kind == 0:  # zero padding
            continue
        assert zlib.crc32(data, _SEED[kind]) & 0xFFFFFFFF == checksum, f"bad chunk at {pos}"
        pieces.append(data)
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()  # type: ignore[attr-defined]
            record.ParseFromString(b"".join(pieces))
            records.append(record)
            pieces = []
    assert not pieces, "the file ends inside a record"
    return records


def _put(target: dict[str, Any], items: Any) -> None:
    """Items as W&B sends them (``key``, or a ``nested_key`` path for a dict's leaves) back into
    nested dicts: ``{"layers": {"_type": "table-file", "path": ...}}``."""
    for item in items:
        path = [item.key] if item.key else list(item.nested_key)
        place = target
        for part in path[:-1]:
            place = place.setdefault(part, {})
        place[path[-1]] = json.loads(item.value_json)


@dataclass
class OfflineRun:
    """What a run logged: its run record, history (step 0), summary, artifacts and files."""

    folder: Path
    run: Any = None
    history: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    artifacts: list[Any] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    kinds: list[str] = field(default_factory=list)

    @property
    def files(self) -> Path:
        return self.folder / "files"


def read_run(folder: Path) -> OfflineRun:
    """The run in ``folder`` (``.../wandb/offline-run-...``)."""
    (log,) = folder.glob("run-*.wandb")
    found = OfflineRun(folder)
    for record in read_records(log):
        kind = record.WhichOneof("record_type")
        found.kinds.append(kind)
        if kind == "run":
            found.run = record.run
            _put(found.config, record.run.config.update)
        elif kind == "history":
            _put(found.history, record.history.item)
        elif kind == "summary":
            _put(found.summary, record.summary.update)
        elif kind == "artifact":
            found.artifacts.append(record.artifact)
    return found
