"""The options ``tensorboard``, ``wandb`` and ``visdom`` share: they log the same content
(``features.dashboard``), so they choose it with the same flags and the same help."""

from __future__ import annotations

from typing import Annotated

import typer

LayerOpt = Annotated[list[str] | None, typer.Option(
    "--layer", "-l", metavar="NAME",
    help="Log this module's activation card: a name or a glob; repeatable. Default: a few "
         "layers spread from input to output.")]
TypeOpt = Annotated[list[str] | None, typer.Option(
    "--type", "-t", metavar="TYPE", help="Log every module of this type; repeatable.")]
HistogramsOpt = Annotated[bool, typer.Option(
    "--histograms/--no-histograms", help="One histogram per parameter tensor.")]
MemoryPeaksOpt = Annotated[bool, typer.Option(
    "--memory", help="Add the peaks of `modelviz memory`'s plan (inference, a training step "
                     "with Adam) to the totals.")]
MaxChannelsOpt = Annotated[int, typer.Option(
    "--max-channels", min=1, max=16, help="Most channel maps per activation card.")]
