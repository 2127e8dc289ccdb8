"""Consoles, spinners and the one place user errors become a line on stderr."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from pathlib import Path

    from rich.console import Console, RenderableType
    from rich.text import Text


#: How the CLI spells what library messages name by parameter (``errors.cli_terms``); the flags
#: themselves are declared in _options.py. tests/test_startup.py checks every name is here.
FLAGS = {
    "model": "MODEL", "sizes": "SIZES", "device": "--device", "dtype": "--dtype",
    "batch_size": "--batch-size", "kwargs": "--kwarg", "weights": "--weights",
    "forward_args": "--forward-arg",
    "strict=False": "--no-strict", "trust_pickle": "--trust-pickle",
    "trust_pickle=True": "--trust-pickle", "input_file": "--input-file", "seed": "--seed",
    "train": "--train", "train=True": "--train", "debug": "--debug",
    "layers": "--layer", "types": "--type", "max_channels": "--max-channels",
    "channel_dim": "--channel-dim",
    "image": "--image", "resize": "--resize", "mean": "--mean", "std": "--std",
    "depth": "--depth", "expand": "--expand", "view": "--view", "format": "--format",
    "output": "-o", "exporter": "--exporter", "opset": "--opset", "atol": "--atol",
    "dynamic": "--dynamic", "static": "--static", "with_cache": "--with-cache",
    "optimize": "--optimize",
    "onnx=False": "--no-onnx", "memory=False": "--no-memory", "profile=False": "--no-profile",
    "logdir": "--logdir", "host": "--host", "port": "--port",
    "runs": "--runs", "backward": "--backward", "compile": "--compile", "sort": "--sort",
    "trace": "--trace", "time_depth": "--time-depth",
    "optimizer": "--optimizer", "amp": "--amp", "checkpointing": "--checkpointing",
    "checkpointing=True": "--checkpointing",
    "shard": "--shard", "fit": "--fit", "kv_cache": "--kv-cache",
    "project": "--project", "dir": "--dir", "offline=True": "--offline", "server": "--server",
    "env": "--env",
}


def console(**options: Any) -> Console:
    """A Console that shows every string as it is: no Rich markup, no emoji codes and no
    highlighting, so a module named ``[/]`` or a folder named ``[exp1]`` can neither crash
    a table nor vanish from it. Our own styles are given as ``Text`` spans instead."""
    from rich.console import Console

    return Console(markup=False, emoji=False, highlight=False, **options)


def err_console() -> Console:
    return console(stderr=True, soft_wrap=True)


def out_console() -> Console:
    return console()


def print_out(renderable: RenderableType) -> None:
    """Print to stdout; in a pipe, as wide as the content needs and without colour."""
    out = out_console()
    if not out.is_terminal and not os.environ.get("COLUMNS"):
        width = out.measure(renderable, options=out.options.update_width(10_000)).maximum
        out = console(width=max(40, width))
    out.print(renderable)


def flags(message: str) -> str:
    """A library message in the CLI's words: its parameter tokens shown as flags."""
    from modelviz.errors import cli_terms

    return cli_terms(message, FLAGS)


def echo_json(data: object) -> None:
    """``--json`` on stdout, its messages in the CLI's words as on stderr."""
    import json

    typer.echo(flags(json.dumps(data, indent=2)))


def _line(label: str, style: str, message: str, fix: str | None = None) -> Text:
    """``label: message fix`` in the CLI's words, with control characters shown as escapes."""
    from rich.text import Text

    from modelviz.escape import printable

    text = Text()
    text.append(label, style=style)
    text.append(" " + printable(flags(message)))
    if fix:
        text.append(" " + printable(flags(fix)), style="yellow")
    return text


def note(message: str) -> None:
    """A side remark on stderr, so that stdout stays clean for pipes and --json."""
    err_console().print(_line("note:", "dim", message))


def error_line(problem: str, fix: str | None) -> None:
    err_console().print(_line("error:", "bold red", problem, fix))


@contextmanager
def spinner(message: str, *, quiet: bool = False) -> Iterator[None]:
    """A Rich spinner on a terminal; nothing in pipes, CI logs or with --json."""
    console = err_console()
    if quiet or not console.is_terminal:
        yield
        return
    with console.status(message):
        yield


def emit(text: str, output: Path | None) -> None:
    """Rendered text to stdout, or into ``output`` (written whole or not at all) with a note."""
    if output is None:
        typer.echo(text, nl=False)
        return
    from modelviz.output import write_text

    write_text(output, text)
    note(f"wrote {output}")
