"""Graphviz's ``dot`` program: finding it, running it with a time limit, and saying what went wrong.

DOT source is plain text that modelviz writes itself, so ``-o model.dot`` needs no Graphviz at
all; only PNG, SVG and PDF are laid out by ``dot``, which we run as a program (the Python
``graphviz`` package would only run the same program, with less control over errors and time).
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from modelviz.errors import MissingToolError, OutputError, SpecError
from modelviz.output import format_from_suffix, write_bytes

if TYPE_CHECKING:
    from modelviz.features.graph.build import ModuleGraph

__all__ = ["EXTENSIONS", "FORMATS", "PNG_DPI", "PNG_LIMIT", "Drawing", "Rendered", "find_dot",
           "format_for", "png_size", "render"]

FORMATS = ("png", "svg", "pdf", "dot")
EXTENSIONS = {".png": "png", ".svg": "svg", ".pdf": "pdf", ".dot": "dot", ".gv": "dot"}
#: Cairo's bitmap limit: Graphviz shrinks any PNG with a side longer than this to fit.
PNG_LIMIT = 32767
DEFAULT_TIMEOUT = 300.0
#: PNGs are drawn at 2x (Graphviz's default is 96 dpi), sharp on high-density screens and when
#: zoomed; the SVG and PDF are vector drawings and need none.
PNG_DPI = 192


def format_for(fmt: str | None, output: str | Path | None) -> str:
    """The output format: ``fmt`` if given, else from the file's extension, else DOT."""
    if fmt is not None:
        chosen = fmt.lower().lstrip(".")
        chosen = "dot" if chosen == "gv" else chosen
        if chosen not in FORMATS:
            raise SpecError(f"unknown graph format {fmt!r}.", "Use png, svg, pdf or dot.")
        return chosen
    return format_from_suffix(output, EXTENSIONS, "dot", name_only=True)


def find_dot(dot: str | Path | None = None, *, fmt: str = "svg") -> str:
    """The path of Graphviz's ``dot``: ``dot`` if given, else ``$MODELVIZ_DOT``, else PATH."""
    wanted = dot if dot is not None else os.environ.get("MODELVIZ_DOT")
    if wanted is not None:
        path = Path(wanted)
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
        found = shutil.which(str(wanted))
        if found is not None:
            return found
        raise MissingToolError(
            f"Graphviz's dot program was not found at {wanted}; it is needed to write "
            f"{fmt.upper()}.",
            "Install Graphviz (apt-get install graphviz, or brew install graphviz), or write "
            "`output=model.dot`, which needs no Graphviz.")
    found = shutil.which("dot")
    if found is None:
        raise MissingToolError(
            f"Graphviz's dot program is not on PATH; it is needed to write {fmt.upper()}.",
            "Install Graphviz (apt-get install graphviz, or brew install graphviz), or write "
            "`output=model.dot`, which needs no Graphviz.")
    return found


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


@dataclass
class Rendered:
    """A drawing in one format, and anything the user should know about it."""

    data: bytes
    format: str
    warnings: list[str] = field(default_factory=list)


_SCALED = re.compile(r"too large for cairo-renderer bitmaps\. Scaling by ([0-9.eE+-]+)")


def render(source: str, fmt: str, *, dot: str | Path | None = None,
           timeout: float = DEFAULT_TIMEOUT) -> Rendered:
    """Lay out DOT ``source`` with Graphviz into png, svg or pdf; ``dot`` returns it as is."""
    if fmt == "dot":
        return Rendered(source.encode(), fmt)
    if fmt not in FORMATS:
        raise SpecError(f"unknown graph format {fmt!r}.", "Use png, svg, pdf or dot.")
    program = find_dot(dot, fmt=fmt)
    try:
        dpi = [f"-Gdpi={PNG_DPI}"] if fmt == "png" else []
        proc = subprocess.run([program, f"-T{fmt}", *dpi], input=source.encode(),
                              capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise OutputError(
            f"Graphviz took longer than {timeout:.0f} s to lay out the graph.",
            "Draw fewer nodes with a smaller `depth`, or write `output=model.dot`.") from exc
    except OSError as exc:
        raise MissingToolError(f"cannot run Graphviz's dot at {program}: {exc.strerror}.",
                               "Reinstall Graphviz, or write `output=model.dot`, which needs no "
                               "Graphviz.") from exc
    stderr = proc.stderr.decode(errors="replace")
    if proc.returncode != 0 or not proc.stdout:
        first = next((line for line in stderr.splitlines() if line.strip()), "no message")
        raise OutputError(f"Graphviz's dot failed (exit status {proc.returncode}): {first}",
                          "Write `output=model.dot` and run dot on it to see the whole message.")
    result = Rendered(proc.stdout, fmt)
    scaled = _SCALED.search(stderr)
    if fmt == "png" and scaled is not None:
        scale = float(scaled.group(1))
        width, height = png_size(proc.stdout)
        result.warnings.append(
            f"the graph is {round(width / scale):,} x {round(height / scale):,} px, over the "
            f"{PNG_LIMIT:,} px a side that PNG allows here, so Graphviz shrank it to "
            f"{width:,} x {height:,} ({scale:.2f}x) and small text may be unreadable; "
            "write SVG (`output=model.svg`) or draw fewer nodes (a smaller `depth`).")
    return result


class Drawing:
    """A graph as DOT source, able to render itself: what ``modelviz.graph(...)`` returns.

    ``str(drawing)`` and ``drawing.source`` are the DOT text; ``drawing.save("model.svg")`` writes
    any format; in Jupyter the drawing shows itself as SVG.
    """

    def __init__(self, source: str, *, view: str = "modules",
                 graph: ModuleGraph | None = None, dot: str | Path | None = None) -> None:
        self.source = source
        self.view = view
        self.graph = graph  # the module view's nodes and edges; None for the autograd view
        self.dot = dot

    def __str__(self) -> str:
        return self.source

    def __repr__(self) -> str:
        size = f"{len(self.graph.nodes)} nodes, " if self.graph is not None else ""
        return f"<Drawing {self.view}: {size}{len(self.source):,} characters of DOT>"

    def render(self, fmt: str = "svg", *, timeout: float = DEFAULT_TIMEOUT) -> Rendered:
        """The drawing in ``fmt``; its warnings start with the graph's notes (what was drawn
        closed to keep the default graph readable)."""
        rendered = render(self.source, fmt, dot=self.dot, timeout=timeout)
        if self.graph is not None and self.graph.notes:
            rendered.warnings[:0] = self.graph.notes
        return rendered

    def pipe(self, fmt: str = "svg") -> bytes:
        return self.render(fmt).data

    def save(self, path: str | Path, fmt: str | None = None, *,
             timeout: float = DEFAULT_TIMEOUT) -> Rendered:
        """Write the drawing; the format comes from ``fmt`` or the extension (.png .svg .pdf
        .dot .gv). Nothing is written if rendering fails."""
        rendered = self.render(format_for(fmt, path), timeout=timeout)
        write_bytes(path, rendered.data)
        return rendered

    def _repr_svg_(self) -> str:
        return self.pipe("svg").decode()
