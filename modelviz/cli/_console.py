"""Consoles, spinners and the one place user errors become a line on stderr."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from pathlib import Path

    from rich.console import Console, RenderableType


def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def out_console() -> Console:
    from rich.console import Console

    return Console(highlight=False)


def print_out(renderable: RenderableType) -> None:
    """Print to stdout; in a pipe, as wide as the content needs and without colour."""
    console = out_console()
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        from rich.console import Console

        width = console.measure(renderable, options=console.options.update_width(10_000)).maximum
        console = Console(highlight=False, width=max(40, width))
    console.print(renderable)


def note(message: str) -> None:
    """A side remark on stderr, so that stdout stays clean for pipes and --json."""
    err_console().print(f"[dim]note:[/] {message}")


def error_line(problem: str, fix: str | None) -> None:
    text = f"[bold red]error:[/] {_escape(problem)}"
    if fix:
        text += f" [yellow]{_escape(fix)}[/]"
    err_console().print(text)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


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
