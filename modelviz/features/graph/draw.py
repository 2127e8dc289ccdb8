"""A prepared model's graph, the modules view or the autograd view, from one pass.

``draw`` is what ``modelviz graph`` and ``modelviz.graph`` call; ``graph_probe`` and
``module_drawing`` let the report draw the modules view from a pass it shares with other probes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from modelviz.core import session
from modelviz.errors import SpecError
from modelviz.features.graph.autograd import autograd_dot
from modelviz.features.graph.build import build_graph
from modelviz.features.graph.dot import RANKDIRS, to_dot
from modelviz.features.graph.drawing import Drawing
from modelviz.features.graph.probe import DataflowProbe, input_names

if TYPE_CHECKING:
    from modelviz.core.records import Trace
    from modelviz.core.session import Prepared

GRAPH_VIEWS = ("modules", "autograd")


def draw(prepared: Prepared, *, view: str = "modules", depth: int | None = None,
         expand: str | tuple[str, ...] | list[str] = (), fold: bool = True,
         rankdir: str = "TB", show_saved: bool = False, show_attrs: bool = False,
         train: bool = False, dot: str | Path | None = None, wrap: bool = True) -> Drawing:
    """The graph of a prepared model as a ``Drawing``, from one pass; ``wrap``: a long
    left-to-right graph wraps into rows."""
    if view not in GRAPH_VIEWS:
        raise SpecError(f"unknown graph view {view!r}.", "Use modules or autograd.")
    direction = rankdir.upper()
    if direction not in RANKDIRS:
        raise SpecError(f"unknown rankdir {rankdir!r}.", "Use TB (top to bottom) or LR.")
    opened = (expand,) if isinstance(expand, str) else tuple(expand)
    if view == "autograd":
        if opened or depth is not None or not fold:
            raise SpecError("depth, expand and fold apply to the modules view only.",
                            "Drop them, or draw `view=modules`.")
        source = autograd_dot(prepared, show_saved=show_saved, show_attrs=show_attrs,
                              train=train)
        if direction != "TB":
            source = source.replace("digraph {", f"digraph {{\n\trankdir={direction}", 1)
        return Drawing(source, view=view, dot=dot)
    if show_saved or show_attrs:
        raise SpecError("show_saved and show_attrs apply to the autograd view only.",
                        "Drop them, or draw `view=autograd`.")
    probe = graph_probe(prepared)
    result = session.run(prepared, train=train, probes=(probe,))
    return module_drawing(prepared, result, probe, depth=depth, expand=opened, fold=fold,
                          rankdir=direction, dot=dot, wrap=wrap)


def graph_probe(prepared: Prepared) -> DataflowProbe:
    """The probe that records data flow between modules, to run in a pass with other probes."""
    inputs = prepared.inputs
    return DataflowProbe(inputs.args, inputs.kwargs, input_names(prepared.model, inputs.args))


def module_drawing(prepared: Prepared, trace: Trace, probe: DataflowProbe, *,
                   depth: int | None = None, expand: tuple[str, ...] = (), fold: bool = True,
                   rankdir: str = "TB", dot: str | Path | None = None,
                   wrap: bool = True) -> Drawing:
    """The module view from a pass that ran ``probe``."""
    built = build_graph(trace, trace.probes[probe.name], depth=depth, expand=expand,
                        fold=fold, title=prepared.loaded.name)
    return Drawing(to_dot(built, rankdir=rankdir, wrap=wrap), view="modules", graph=built,
                   dot=dot)
