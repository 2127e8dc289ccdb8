"""The Python API, mirroring the CLI: ``modelviz.summary(model, "3x224x224", device="cpu")``.

Each function takes the model as a spec string (anything ``modelviz`` accepts on the command line)
or an ``nn.Module``. A module you pass in is left as it was: same device, dtype and mode.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from modelviz.core import engine
from modelviz.core.devices import resolve_device
from modelviz.core.inputs import ModelInputs, build_inputs, load_inputs
from modelviz.core.loading import LoadedModel, load_model
from modelviz.core.records import Trace
from modelviz.core.specs import MODEL_DTYPES, InputSpec, check_seed, parse_dtype, parse_size
from modelviz.errors import DeviceError, SpecError
from modelviz.features.summary.summary import Summary

if TYPE_CHECKING:
    from modelviz.core.image_input import ImageInput
    from modelviz.features.activations.stats import ActivationProbe, ActivationReport
    from modelviz.features.graph.drawing import Drawing
    from modelviz.features.graph.probe import DataflowProbe
    from modelviz.features.onnx.export import ExportResult
    from modelviz.features.report.build import Report
    from modelviz.features.tensorboard.log import TensorboardLog

SizeLike = str | InputSpec | tuple[int, ...] | list[int]


@dataclass
class Prepared:
    """A model ready to run, with its inputs, on its device."""

    loaded: LoadedModel
    inputs: ModelInputs
    device: torch.device
    batch_size: int = 1

    @property
    def model(self) -> nn.Module:
        return self.loaded.module


def _as_spec(size: SizeLike) -> InputSpec:
    if isinstance(size, InputSpec):
        return size
    if isinstance(size, str):
        return parse_size(size)
    if all(isinstance(d, int) and d > 0 for d in size):
        return InputSpec(tuple(size))
    raise SpecError(f"bad size {size!r}.", "Give sizes like '3x224x224' or (3, 224, 224).")


def _torch_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    dtype_value: torch.dtype = getattr(torch, parse_dtype(dtype, allowed=MODEL_DTYPES))
    return dtype_value


def prepare(model: str | nn.Module, *sizes: SizeLike, device: str | torch.device = "cpu",
            dtype: str | torch.dtype | None = None, batch_size: int = 1,
            kwargs: dict[str, Any] | None = None, weights: str | Path | None = None,
            strict: bool = True, trust_pickle: bool = False,
            input_file: str | Path | None = None, seed: int = 0) -> Prepared:
    """Load the model (the one place models are built) and build its inputs."""
    specs = [_as_spec(s) for s in sizes]
    check_seed(seed)
    target = resolve_device(device)
    float_dtype = _torch_dtype(dtype)
    if isinstance(model, nn.Module):
        if weights is not None or (float_dtype is not None
                                   and engine.model_dtype(model) not in (None, float_dtype)):
            # Weights go into a copy, and a cast happens to a copy: yours stays as it is.
            model = copy.deepcopy(model)
            if float_dtype is not None:
                model = model.to(float_dtype)
        # The engine moves a module you pass to the device for the pass and back afterwards.
        loaded = load_model(model, weights=weights, strict=strict,
                            device=engine.model_device(model) or target)
    else:
        # Random weights come from ``seed`` too, so that two runs print the same numbers; the
        # caller's own random state is left as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            loaded = load_model(model, kwargs=kwargs, weights=weights, strict=strict,
                                trust_pickle=trust_pickle, device=target, dtype=float_dtype)
    input_dtype = float_dtype or engine.model_dtype(loaded.module) or torch.float32
    if input_file is not None:
        if specs:
            raise SpecError("give either SIZES or --input-file, not both.",
                            "Drop SIZES to use the saved inputs.")
        inputs = load_inputs(input_file, device=target, float_dtype=float_dtype)
    else:
        if not specs:
            if loaded.default_sizes is None:
                raise SpecError(
                    f"SIZES needed: modelviz cannot guess the input of {loaded.name}.",
                    "Give one size per input after MODEL, e.g. 3x224x224 or int64:128.",
                )
            specs = loaded.default_sizes
        inputs = build_inputs(specs, model=loaded.module, batch_size=batch_size, device=target,
                              float_dtype=input_dtype, seed=seed)
    return Prepared(loaded, inputs, target, batch_size)


def run(prepared: Prepared, *, train: bool = False, grad: bool = False,
        keep_output: bool = False, probes: tuple[engine.Probe, ...] = ()) -> Trace:
    """The instrumented forward pass of a prepared model."""
    return engine.run(prepared.model, prepared.inputs.args, prepared.inputs.kwargs,
                      device=prepared.device, train=train, grad=grad,
                      keep_output=keep_output, probes=probes)


def trace(model: str | nn.Module, *sizes: SizeLike, train: bool = False,
          probes: tuple[engine.Probe, ...] = (), **options: Any) -> Trace:
    """Load, build inputs and run once; ``options`` are those of ``prepare``."""
    return run(prepare(model, *sizes, **options), train=train, probes=probes)


def summarize(prepared: Prepared, trace: Trace) -> Summary:
    return Summary(model=prepared.loaded.name, trace=trace,
                   inputs=prepared.inputs.describe(prepared.model), batch_size=prepared.batch_size)


def summary(model: str | nn.Module, *sizes: SizeLike, train: bool = False,
            **options: Any) -> Summary:
    """The layer table as an object: ``.totals``, ``.rows()``, ``.to_dict()``; render it with
    ``modelviz.render``. ``print(modelviz.summary(...))`` prints the table."""
    prepared = prepare(model, *sizes, **options)
    return summarize(prepared, run(prepared, train=train))


GRAPH_VIEWS = ("modules", "autograd")


def draw(prepared: Prepared, *, view: str = "modules", depth: int | None = None,
         expand: str | tuple[str, ...] | list[str] = (), fold: bool = True,
         rankdir: str = "TB", show_saved: bool = False, show_attrs: bool = False,
         train: bool = False, dot: str | Path | None = None) -> Drawing:
    """The graph of a prepared model as a ``graphviz_tool.Drawing``, from one pass."""
    from modelviz.features.graph.dot import RANKDIRS
    from modelviz.features.graph.drawing import Drawing

    if view not in GRAPH_VIEWS:
        raise SpecError(f"unknown graph view {view!r}.", "Use modules or autograd.")
    direction = rankdir.upper()
    if direction not in RANKDIRS:
        raise SpecError(f"unknown rankdir {rankdir!r}.", "Use TB (top to bottom) or LR.")
    opened = (expand,) if isinstance(expand, str) else tuple(expand)
    if view == "autograd":
        if opened or depth is not None or not fold:
            raise SpecError("depth, expand and fold apply to the modules view only.",
                            "Drop them, or draw --view modules.")
        from modelviz.features.graph.autograd import autograd_dot

        source = autograd_dot(prepared, show_saved=show_saved, show_attrs=show_attrs,
                              train=train)
        if direction != "TB":
            source = source.replace("digraph {", f"digraph {{\n\trankdir={direction}", 1)
        return Drawing(source, view=view, dot=dot)
    if show_saved or show_attrs:
        raise SpecError("show_saved and show_attrs apply to the autograd view only.",
                        "Drop them, or draw --view autograd.")
    probe = graph_probe(prepared)
    result = run(prepared, train=train, probes=(probe,))
    return module_drawing(prepared, result, probe, depth=depth, expand=opened, fold=fold,
                          rankdir=direction, dot=dot)


def graph_probe(prepared: Prepared) -> DataflowProbe:
    """The probe that records data flow between modules, to run in a pass with other probes."""
    from modelviz.features.graph.probe import DataflowProbe, input_names

    inputs = prepared.inputs
    return DataflowProbe(inputs.args, inputs.kwargs, input_names(prepared.model, inputs.args))


def module_drawing(prepared: Prepared, trace: Trace, probe: DataflowProbe, *,
                   depth: int | None = None, expand: tuple[str, ...] = (), fold: bool = True,
                   rankdir: str = "TB", dot: str | Path | None = None) -> Drawing:
    """The module view from a pass that ran ``probe``."""
    from modelviz.features.graph.dot import to_dot
    from modelviz.features.graph.drawing import Drawing
    from modelviz.features.graph.probe import DEFAULT_DEPTH, build_graph

    chosen = DEFAULT_DEPTH if depth is None else depth
    built = build_graph(trace, trace.probes[probe.name], depth=chosen, expand=expand,
                        fold=fold, title=prepared.loaded.name)
    return Drawing(to_dot(built, rankdir=rankdir), view="modules", graph=built, dot=dot)


def graph(model: str | nn.Module, *sizes: SizeLike, view: str = "modules",
          depth: int | None = None, expand: str | tuple[str, ...] | list[str] = (),
          fold: bool = True, rankdir: str = "TB", show_saved: bool = False,
          show_attrs: bool = False, train: bool = False, dot: str | Path | None = None,
          **options: Any) -> Drawing:
    """The model as a graph: ``modelviz.graph("resnet18").save("resnet18.svg")``.

    Returns a ``Drawing``: ``.source`` is DOT, ``.save(path)`` writes png/svg/pdf/dot by
    extension, ``.graph`` holds the module view's nodes and edges. ``options`` are those of
    ``prepare``; ``dot`` is the path of Graphviz's program if it is not on PATH.
    """
    prepared = prepare(model, *sizes, **options)
    return draw(prepared, view=view, depth=depth, expand=expand, fold=fold, rankdir=rankdir,
                show_saved=show_saved, show_attrs=show_attrs, train=train, dot=dot)


# Activations: statistics of chosen layers' outputs, and their pictures.


def prepare_image(model: str | nn.Module, image: str | Path, *sizes: SizeLike,
                  resize: str | int | tuple[int, int] | None = None,
                  mean: str | tuple[float, ...] | list[float] | None = None,
                  std: str | tuple[float, ...] | list[float] | None = None,
                  batch_size: int = 1, **options: Any) -> tuple[Prepared, ImageInput]:
    """Load the model and make its input from an image file (copied ``batch_size`` times).

    SIZES, if given, is one CxHxW size: C picks greyscale or colour, and HxW is the default
    ``resize``. Without it the channels are those of the model's first convolution (else 3).
    ``options`` are those of ``prepare``, except ``input_file``.
    """
    from modelviz.core.image_input import (
        input_channels,
        open_image,
        parse_floats,
        parse_resize,
        preprocess,
    )
    from modelviz.core.inputs import ModelInputs

    if options.get("input_file") is not None:
        raise SpecError("give either --image or --input-file, not both.",
                        "Drop one of them.")
    if batch_size < 1:
        raise SpecError(f"bad --batch-size {batch_size}.", "Use a whole number of 1 or more.")
    specs = [_as_spec(s) for s in sizes]
    if len(specs) > 1 or (specs and (len(specs[0].dims) != 3 or not specs[0].is_float)):
        given = " ".join(str(s) for s in specs)
        raise SpecError(f"--image makes one image input, but SIZES {given!r} is not one CxHxW "
                        "size.", "Drop SIZES, or give one such as 3x224x224.")
    size = parse_resize(resize) if isinstance(resize, str) else resize
    means = parse_floats(mean, "--mean") if isinstance(mean, str) else mean
    stds = parse_floats(std, "--std") if isinstance(std, str) else std
    if stds is not None and any(v <= 0 for v in stds):
        raise SpecError(f"bad std {stds!r}: every value must be above 0.", "Give positive numbers.")
    picture = open_image(image)  # a missing or unreadable file fails before the model loads
    # prepare loads the model the one way models are loaded; its small noise input is replaced.
    base = prepare(model, *(specs or [InputSpec((1,))]), batch_size=1, **options)
    channels = specs[0].dims[0] if specs else (input_channels(base.model) or 3)
    if size is None and specs:
        size = (specs[0].dims[1], specs[0].dims[2])
    made = preprocess(picture, image, channels=channels,
                      torchvision_name=base.loaded.torchvision_name, resize=size,
                      mean=tuple(means) if means is not None else None,
                      std=tuple(stds) if stds is not None else None)
    placeholder = base.inputs.args[0]
    batch = made.tensor.to(placeholder.dtype).unsqueeze(0).expand(batch_size, *made.shape)
    inputs = ModelInputs(args=(batch.contiguous().to(base.device),))
    return Prepared(base.loaded, inputs, base.device, batch_size), made


def activation_probe(prepared: Prepared, *, layers: tuple[str, ...] | list[str] = (),
                     types: tuple[str, ...] | list[str] = (), images: bool = False,
                     max_channels: int = 64, hist: bool = False) -> ActivationProbe:
    """The probe measuring the chosen modules (all if neither ``layers`` nor ``types``), to run
    in a pass with other probes; with ``images`` it also keeps what their pictures need."""
    from modelviz.features.activations.stats import ActivationProbe, select_modules

    if prepared.device.type == "meta":
        raise SpecError("activation statistics need real numbers, and the meta device has only "
                        "shapes.", "Run on --device cpu or cuda; `modelviz summary --device "
                        "meta` gives the shapes.")
    if max_channels < 1:
        raise SpecError(f"bad --max-channels {max_channels}.", "Use 1 or more.")
    names = select_modules(prepared.model, tuple(layers), tuple(types),
                           model_name=prepared.loaded.name)
    return ActivationProbe(names, image_modules=names if images else (),
                           max_channels=max_channels, hist=hist)


def activation_report(prepared: Prepared, trace: Trace, probe: ActivationProbe, *,
                      layers: tuple[str, ...] | list[str] = (),
                      picture: ImageInput | None = None) -> ActivationReport:
    """The probe's measurements from ``trace``, with notes on chosen layers that did not run."""
    from modelviz.features.activations.stats import ActivationReport

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
                        picture: ImageInput | None = None) -> ActivationReport:
    """One pass measuring the chosen modules (FLOPs not counted: only the statistics matter)."""
    probe = activation_probe(prepared, layers=layers, types=types, images=images,
                             max_channels=max_channels, hist=hist)
    inputs = prepared.inputs
    trace = engine.run(prepared.model, inputs.args, inputs.kwargs, device=prepared.device,
                       train=train, count_flops=False, probes=(probe,))
    return activation_report(prepared, trace, probe, layers=layers, picture=picture)


def activations(model: str | nn.Module, *sizes: SizeLike,
                layers: str | tuple[str, ...] | list[str] = (),
                types: str | tuple[str, ...] | list[str] = (),
                output_dir: str | Path | None = None, max_channels: int = 64,
                hist: bool = False, image: str | Path | None = None,
                resize: str | int | tuple[int, int] | None = None,
                mean: str | tuple[float, ...] | list[float] | None = None,
                std: str | tuple[float, ...] | list[float] | None = None,
                train: bool = False, **options: Any) -> ActivationReport:
    """Statistics of what the chosen layers output, and with ``output_dir`` their pictures.

    ``layers`` are qualified names or globs (``"layer4.*"``, ``"*"``), ``types`` module type
    names (``"Conv2d"``); neither: every module. The input is noise of ``sizes`` (seeded), a
    saved ``input_file``, or an ``image`` (preprocessed with the torchvision weights'
    transforms, else ``resize``, ``mean`` and ``std``). Returns an ``ActivationReport``:
    ``.layers`` (``LayerStats`` with ``.stats`` and ``.image``), ``.to_dict()`` for JSON.
    ``options`` are those of ``prepare``.
    """
    from modelviz.features.activations.pictures import check_folder, write_images

    chosen_layers = (layers,) if isinstance(layers, str) else tuple(layers)
    chosen_types = (types,) if isinstance(types, str) else tuple(types)
    if output_dir is not None:
        check_folder(output_dir)
    picture: ImageInput | None = None
    if image is not None:
        prepared, picture = prepare_image(model, image, *sizes, resize=resize, mean=mean,
                                          std=std, **options)
    else:
        if resize is not None or mean is not None or std is not None:
            raise SpecError("resize, mean and std apply to an image input only.",
                            "Give image=..., or drop them.")
        prepared = prepare(model, *sizes, **options)
    report = measure_activations(prepared, layers=chosen_layers, types=chosen_types,
                                 images=output_dir is not None, max_channels=max_channels,
                                 hist=hist, train=train, picture=picture)
    if output_dir is not None:
        write_images(report, output_dir, hist=hist)
    return report


# ONNX: a checked, verified file for Netron and runtimes.


def export_onnx(model: str | nn.Module, *sizes: SizeLike, output: str | Path,
                exporter: str = "auto", opset: int | None = None, dynamic_batch: bool = True,
                verify: bool = True, atol: float | None = None,
                external_data: bool | None = None,
                train: bool = False, **options: Any) -> ExportResult:
    """Export to ``output`` (.onnx), check it with onnx.checker and, with ``verify``, compare
    ONNX Runtime's output with torch's on the same inputs.

    Returns an ``ExportResult``: ``.ok`` (parity within ``atol``), ``.parity`` per output,
    ``.inputs``/``.outputs``, ``.op_counts``, ``.notes``. A failed export raises ``ExportError``
    and leaves no file. ``options`` are those of ``prepare``.
    """
    from modelviz.features.onnx import export as onnx_export

    onnx_export.check_output(output)
    prepared = prepare(model, *sizes, **options)
    return onnx_export.export(prepared, output, exporter=exporter, opset=opset,
                              dynamic_batch=dynamic_batch, verify=verify, atol=atol,
                              external_data=external_data, train=train)


# TensorBoard: the seed posts' SummaryWriter routine from one pass.


def tensorboard(model: str | nn.Module, *sizes: SizeLike, logdir: str | Path,
                layers: str | tuple[str, ...] | list[str] = (),
                types: str | tuple[str, ...] | list[str] = (), graph: bool = True,
                histograms: bool = True, max_channels: int = 16, train: bool = False,
                **options: Any) -> TensorboardLog:
    """Write a TensorBoard run: graph, parameter histograms, activation images, summary text.

    One instrumented pass gives both the summary and the activation images of ``layers`` /
    ``types`` (default: a few representative layers, ``representative_modules``). The graph is
    TensorBoard's own ``add_graph`` trace. ``options`` are those of ``prepare``.
    """
    from modelviz.features.activations.pictures import layer_pixels
    from modelviz.features.activations.stats import representative_modules
    from modelviz.features.tensorboard.log import write_log

    chosen_layers = (layers,) if isinstance(layers, str) else tuple(layers)
    chosen_types = (types,) if isinstance(types, str) else tuple(types)
    prepared = prepare(model, *sizes, **options)
    if prepared.device.type == "meta":
        raise DeviceError("a TensorBoard log needs real weights and activations, and the meta "
                          "device has only shapes.", "Use --device cpu (or cuda).")
    if not chosen_layers and not chosen_types:
        chosen_layers = tuple(representative_modules(prepared.model))
    probe = activation_probe(prepared, layers=chosen_layers, types=chosen_types, images=True,
                             max_channels=max_channels)
    result = run(prepared, train=train, probes=(probe,))
    report = activation_report(prepared, result, probe, layers=chosen_layers)
    pictures = {layer.name: layer_pixels(layer) for layer in report.layers
                if layer.capture is not None}
    return write_log(logdir, prepared.model, prepared.inputs.args, summarize(prepared, result),
                     graph=graph, histograms=histograms, activation_images=pictures,
                     train=train)


def write_report(model: str | nn.Module, *sizes: SizeLike, output_dir: str | Path,
           layers: str | tuple[str, ...] | list[str] = (), depth: int | None = None,
           onnx: bool = True, atol: float | None = None, static: bool = False,
           max_channels: int = 16,
           train: bool = False, **options: Any) -> Report:
    """Every artifact in ``output_dir``: summary.json/.md, graph.svg, model.onnx, activation
    grids, index.html and report.json, from one pass. A part that fails is recorded in
    ``Report.parts`` (``.ok`` is False) while the others are written. ``options`` are those of
    ``prepare``."""
    from modelviz.features.report import build as reports

    reports.check_folder(output_dir)
    prepared = prepare(model, *sizes, **options)
    return reports.build(prepared, output_dir, layers=(layers,) if isinstance(layers, str)
                         else tuple(layers), depth=depth, onnx=onnx, atol=atol,
                         static=static, max_channels=max_channels, train=train)
