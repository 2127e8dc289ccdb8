"""Writing output files so that a failed command leaves nothing half-written behind."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from modelviz.errors import OutputError


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; move it into place only if the block succeeds."""
    final = Path(target)
    folder = final.parent if str(final.parent) else Path()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the folder {folder}: {exc.strerror}.",
                          "Choose another output path.") from exc
    handle, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=folder)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        # mkstemp makes the file private (0600); outputs get the mode any new file would get.
        temporary.chmod(new_file_mode())
        temporary.replace(final)
    finally:
        temporary.unlink(missing_ok=True)


def new_file_mode() -> int:
    """The mode ``open()`` would give a new file here (0644 under the usual umask): temporary
    files are private, the outputs they become should not be."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_text(target: str | Path, text: str) -> Path:
    with atomic_path(target) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(target)


def write_bytes(target: str | Path, data: bytes) -> Path:
    with atomic_path(target) as temporary:
        temporary.write_bytes(data)
    return Path(target)
