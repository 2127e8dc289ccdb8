"""The ``modelviz`` command: one Typer app, one file per command, errors mapped in one place.

Nothing here imports torch; commands import the library inside their bodies, so that
``modelviz --help`` answers at once.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from modelviz import __version__
from modelviz.cli import activations as activations_cmd
from modelviz.cli import diff as diff_cmd
from modelviz.cli import export_onnx as export_onnx_cmd
from modelviz.cli import graph as graph_cmd
from modelviz.cli import models as models_cmd
from modelviz.cli import netron as netron_cmd
from modelviz.cli import report as report_cmd
from modelviz.cli import summary as summary_cmd
from modelviz.cli import tensorboard as tensorboard_cmd
from modelviz.cli._console import error_line
from modelviz.errors import ModelvizError


def _debug(ctx: Any) -> bool:
    obj = getattr(ctx, "obj", None)
    return bool(os.environ.get("MODELVIZ_DEBUG")) or bool(
        isinstance(obj, dict) and obj.get("debug"))


class ModelvizGroup(TyperGroup):
    """Turns library exceptions into one line on stderr and an exit status, for every command.

    Living in the group, this serves ``main()`` and Typer's test runner alike.
    """

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ModelvizError as exc:
            if _debug(ctx):
                raise
            error_line(exc.problem, exc.fix)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            error_line("interrupted.", None)
            raise typer.Exit(130) from None
        except MemoryError as exc:
            if _debug(ctx):
                raise
            error_line(f"out of memory: {exc}",
                       "Try --device meta for shapes and counts, or a smaller --batch-size.")
            raise typer.Exit(2) from None


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
app.command("report")(report_cmd.report)


def main() -> None:
    app()
