"""The backward graph through torchviz's ``make_dot``, with parameters named as in the model.

It is the seed document's ``make_dot(model(x), params=dict(model.named_parameters()))``, but on
the engine's one pass (with autograd on) and for any output: a tuple, a list or a dict of tensors.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from modelviz.core.engine import Probe
from modelviz.core.records import CallRecord
from modelviz.core.tensors import tensors
from modelviz.errors import ModelvizError
from modelviz.escape import printable

if TYPE_CHECKING:
    from modelviz.core.session import Prepared

__all__ = ["autograd_dot", "grad_outputs"]


class _ParameterNames(Probe):
    """The parameters of the module the engine really ran: on ``--device meta`` that is a
    weightless copy of the model, whose parameters are not the original's objects."""

    name = "parameter_names"

    def __init__(self) -> None:
        self.params: dict[str, torch.Tensor] = {}

    def call_start(self, call: CallRecord, module: nn.Module, args: tuple[Any, ...]) -> None:
        if not call.module and not self.params:
            self.params = dict(module.named_parameters(remove_duplicate=False))


def grad_outputs(value: Any) -> list[torch.Tensor]:
    """The tensors in ``value`` that autograd can go back from, in order."""
    return [t for t in tensors(value) if t.grad_fn is not None or t.requires_grad]


def autograd_dot(prepared: Prepared, *, show_saved: bool = False, show_attrs: bool = False,
                 train: bool = False) -> str:
    """DOT source of the backward graph, from one pass with autograd on."""
    from torchviz import make_dot

    from modelviz.core import session

    names = _ParameterNames()
    trace = session.run(prepared, train=train, grad=True, keep_output=True, probes=(names,))
    outputs = grad_outputs(trace.output_value)
    if not outputs:
        raise ModelvizError(
            f"the output of {prepared.loaded.name} does not depend on anything that requires "
            "grad, so there is no backward graph to draw.",
            "Unfreeze some parameters (requires_grad=True), or draw `view=modules`.")
    var: torch.Tensor | tuple[torch.Tensor, ...] = (
        outputs[0] if len(outputs) == 1 else tuple(outputs))
    with warnings.catch_warnings():  # torchviz 0.0.3 compares versions with distutils
        warnings.simplefilter("ignore", DeprecationWarning)
        # names as text: a control character in a parameter's name would make Graphviz fail
        params = {printable(name): value for name, value in names.params.items()}
        dot = make_dot(var, params=params, show_attrs=show_attrs, show_saved=show_saved)
    # torchviz caps the drawing at a size that grows with the graph, which shrinks big graphs
    # until the text cannot be read; legibility first, the viewer can zoom out.
    dot.graph_attr.pop("size", None)
    return str(dot.source)
