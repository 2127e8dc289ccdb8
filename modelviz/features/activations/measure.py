"""Measuring chosen modules of a prepared model: the probe, one pass, and the report.

``activation_probe`` and ``activation_report`` are separate so that the report and TensorBoard
can run the probe in a pass they share with other probes; ``measure_activations`` is the whole.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelviz.core import engine
from modelviz.errors import SpecError
from modelviz.features.activations.select import select_modules
from modelviz.features.activations.stats import (
    ActivationProbe,
    ActivationReport,
    patch_embedding,
)

if TYPE_CHECKING:
    from modelviz.core.image_input import ImageInput
    from modelviz.core.records import Trace
    from modelviz.core.session import Prepared

def activation_probe(prepared: Prepared, *, layers: tuple[str, ...] | list[str] = (),
                     types: tuple[str, ...] | list[str] = (), images: bool = False,
                     max_channels: int = 64, hist: bool = False,
                     channel_dim: int | None = None) -> ActivationProbe:
    """The probe measuring the chosen modules (all if neither ``layers`` nor ``types``), to run
    in a pass with other probes; with ``images`` it also keeps what their pictures need.
    ``channel_dim`` says where 4-D and larger outputs keep their channels (``-1``: last); by
    default 1, or the last where the module's own layers say so (see ``ActivationProbe``)."""
    prepared.require_values(
        "activation statistics need real numbers, and the meta device has only shapes.",
        "Run on `device=cpu` or cuda; `modelviz summary --device meta` gives the shapes.",
        error=SpecError)
    if max_channels < 1:
        raise SpecError(f"bad `max_channels={max_channels}`.", "Use 1 or more.")
    if channel_dim is not None and channel_dim == 0:
        raise SpecError("bad `channel_dim=0`: dimension 0 is the batch.",
                        "Use 1 for channels first, -1 for channels last.")
    names = select_modules(prepared.model, tuple(layers), tuple(types),
                           model_name=prepared.loaded.name)
    return ActivationProbe(names, image_modules=names if images else (),
                           max_channels=max_channels, hist=hist, channel_dim=channel_dim,
                           token_grid=images and patch_embedding(prepared.model))


def activation_report(prepared: Prepared, trace: Trace, probe: ActivationProbe, *,
                      layers: tuple[str, ...] | list[str] = (),
                      picture: ImageInput | None = None) -> ActivationReport:
    """The probe's measurements from ``trace``, with notes on chosen layers that did not run."""
    report = ActivationReport(model=prepared.loaded.name,
                              inputs=prepared.inputs.describe(prepared.model),
                              layers=trace.probes[probe.name], device=trace.device,
                              picture=picture)
    for pattern in layers:
        name = pattern.strip()
        record = trace.modules.get(name)
        # an exact name first, as select_modules matches it: blocks.stage[1] is no glob here
        if record is not None and not record.calls:
            hint = (f"; a {record.type} only holds layers: try '{name}.*'"
                    if record.extra.get("container") else "")
            report.notes.append(f"{name} ({record.type}) did not run in the forward pass, so "
                                f"it has no output{hint}")
    if probe.skipped:
        report.notes.append(f"not measured (sparse or nested tensors): {', '.join(probe.skipped)}")
    if not report.layers:
        why = "; ".join(report.notes) or "none of them ran, or none returned a tensor"
        raise SpecError(f"the chosen modules produced no tensor in the forward pass: {why}.",
                        "Choose modules that run; `modelviz summary` lists what ran.")
    return report


def measure_activations(prepared: Prepared, *, layers: tuple[str, ...] | list[str] = (),
                        types: tuple[str, ...] | list[str] = (), images: bool = False,
                        max_channels: int = 64, hist: bool = False, train: bool = False,
                        picture: ImageInput | None = None,
                        channel_dim: int | None = None) -> ActivationReport:
    """One pass measuring the chosen modules (FLOPs not counted: only the statistics matter)."""
    probe = activation_probe(prepared, layers=layers, types=types, images=images,
                             max_channels=max_channels, hist=hist, channel_dim=channel_dim)
    inputs = prepared.inputs
    trace = engine.run(prepared.model, inputs.args, inputs.kwargs, device=prepared.device,
                       train=train, count_flops=False, probes=(probe,))
    return activation_report(prepared, trace, probe, layers=layers, picture=picture)
