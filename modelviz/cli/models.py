"""``modelviz models``: the torchvision names MODEL accepts, with their usual input size."""

from __future__ import annotations

from typing import Annotated

import typer

from modelviz.cli._console import print_out


def models(
    pattern: Annotated[str | None, typer.Argument(
        help="Only names containing this text.", show_default=False)] = None,
) -> None:
    """List torchvision models by family, with the input size used when SIZES is left out."""
    from rich.table import Table

    from modelviz.core import zoo

    table = Table("Model", "Family", "Default SIZES", header_style="bold")
    for name in zoo.model_names():
        if pattern and pattern.lower() not in name:
            continue
        sizes = " ".join(str(s) for s in zoo.default_sizes(name))
        table.add_row(name, zoo.family(name), sizes)
    print_out(table)
