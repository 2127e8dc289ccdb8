"""The ``modelviz`` command: one Typer app, one file per command, errors mapped in one place.

Nothing here imports torch; commands import the library inside their bodies, so that
``modelviz --help`` answers at once.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from modelviz import __version__
from modelviz.cli import _process
from modelviz.cli import activations as activations_cmd
from modelviz.cli import diff as diff_cmd
from modelviz.cli import export_onnx as export_onnx_cmd
from modelviz.cli import graph as graph_cmd
from modelviz.cli import memory as memory_cmd
from modelviz.cli import models as models_cmd
from modelviz.cli import netron as netron_cmd
from modelviz.cli import profile as profile_cmd
from modelviz.cli import report as report_cmd
from modelviz.cli import summary as summary_cmd
from modelviz.cli import tensorboard as tensorboard_cmd
from modelviz.cli import visdom as visdom_cmd
from modelviz.cli import wandb as wandb_cmd
from modelviz.cli._console import error_line, note
from modelviz.errors import ExitStatus, ModelvizError, one_line


def _debug(ctx: Any) -> bool:
    """--debug (parsed before the group runs its callback) or MODELVIZ_DEBUG."""
    params = getattr(ctx, "params", None) or {}
    return bool(os.environ.get("MODELVIZ_DEBUG")) or bool(params.get("debug"))


@contextmanager
def _interrupts() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt as usual, and is also remembered: a library that
    swallows it cannot make the command commit its files or exit 0."""
    from modelviz import output

    def interrupted(signum: int, frame: Any) -> None:
        output.note_interrupt()
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGINT, interrupted)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def _diagnostics(debug: bool) -> Iterator[list[warnings.WarningMessage]]:
    """Python's and torch's warnings, held back: shown as one-line notes after a command that
    succeeded, dropped when it failed, so that an error stays the one line it should be."""
    if debug:
        yield []
        return
    torch_log = logging.getLogger("torch")
    level = torch_log.level
    torch_log.setLevel(logging.ERROR)  # torch's own log lines are for torch's developers
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            yield caught
    finally:
        torch_log.setLevel(level)


def _show(caught: list[warnings.WarningMessage]) -> None:
    shown: set[str] = set()
    for warning in caught:
        if issubclass(warning.category, (DeprecationWarning, PendingDeprecationWarning)):
            continue  # about libraries' futures, not the user's model
        if issubclass(warning.category, ResourceWarning):
            continue  # the interpreter's housekeeping (a Ctrl-C mid-import leaves a file open)
        text = one_line(warning.message)
        if text and text not in shown:
            shown.add(text)
            note(f"{warning.category.__name__}: {text}")


def _usage_errors() -> tuple[type[Exception], ...]:
    """click's UsageError: vendored inside recent Typer, click's own under older ones."""
    for module in ("typer._click.exceptions", "click.exceptions"):
        with suppress(ImportError):
            return (importlib.import_module(module).UsageError,)
    return ()  # pragma: no cover - Typer always brings one of the two


_USAGE_ERRORS = _usage_errors()


class ModelvizGroup(TyperGroup):
    """Turns library exceptions into one line on stderr and an exit status, for every command.

    Living in the group, this serves ``main()`` and Typer's test runner alike.
    """

    def invoke(self, ctx: Any) -> Any:
        from modelviz import output

        debug = _debug(ctx)
        output.reset()
        try:
            with _interrupts(), _diagnostics(debug) as caught:
                result = super().invoke(ctx)
                if output.was_interrupted():
                    raise KeyboardInterrupt
            _show(caught)
            return result
        except ModelvizError as exc:
            if debug:
                raise
            error_line(exc.problem, exc.fix)
            raise typer.Exit(int(exc.exit_code)) from None
        except _USAGE_ERRORS as exc:  # a bad option value or a missing argument: one line too
            if debug or type(exc).__name__ == "NoArgsIsHelpError":
                raise
            usage: Any = exc
            command = usage.ctx.command_path if usage.ctx is not None else "modelviz"
            message = str(usage.format_message()).strip()
            error_line(message if message.endswith((".", "?")) else message + ".",
                       f"See '{command} --help'.")
            raise typer.Exit(int(ExitStatus.USER_ERROR)) from None
        except KeyboardInterrupt:
            error_line("interrupted.", None)
            raise typer.Exit(int(ExitStatus.INTERRUPTED)) from None
        except MemoryError as exc:
            if debug:
                raise
            error_line(f"out of memory{': ' + str(exc) if str(exc) else ''}.",
                       "Try --device meta for shapes and counts, or a smaller --batch-size.")
            raise typer.Exit(int(ExitStatus.USER_ERROR)) from None


app = typer.Typer(
    cls=ModelvizGroup,
    name="modelviz",
    help="Look inside PyTorch models: layer tables, graphs, verified ONNX, activation maps.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"modelviz {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option(
        "--debug", help="Show full tracebacks instead of one-line errors.")] = False,
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    ctx.obj = {"debug": debug}


app.command("summary")(summary_cmd.summary)
app.command("diff")(diff_cmd.diff)
app.command("models")(models_cmd.models)
app.command("activations")(activations_cmd.activations)
app.command("graph")(graph_cmd.graph)
app.command("export-onnx")(export_onnx_cmd.export_onnx)
app.command("netron")(netron_cmd.netron)
app.command("tensorboard")(tensorboard_cmd.tensorboard)
app.command("wandb")(wandb_cmd.wandb)
app.command("visdom")(visdom_cmd.visdom)
app.command("report")(report_cmd.report)
app.command("memory")(memory_cmd.memory)
app.command("profile")(profile_cmd.profile)


def main() -> None:
    app()


def run() -> NoReturn:
    """The ``modelviz`` program: ``main``, then a quick exit once outputs are flushed and exit
    handlers have run, without sweeping torch's objects (``_process``)."""
    _process.start()
    try:
        main()
    except SystemExit as exc:
        _process.exit_now(exc.code)
    _process.exit_now(0)
