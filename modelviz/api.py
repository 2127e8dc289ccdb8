"""The Python API, mirroring the CLI: ``modelviz.summary(model, "3x224x224", device="cpu")``.

Each function takes the model as a spec string (anything ``modelviz`` accepts on the command line)
or an ``nn.Module``, prepares it once (``core.session``) and hands it to its feature package. A
module you pass in is left as it was: same device, dtype and mode.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from modelviz.core.session import Prepared, SizeLike, prepare, prepare_image, run, shapes_only
from modelviz.errors import SpecError

if TYPE_CHECKING:
    from modelviz.core.engine import Probe
    from modelviz.core.image_input import ImageInput
    from modelviz.core.records import Trace
    from modelviz.features.activations.stats import ActivationReport
    from modelviz.features.graph.drawing import Drawing
    from modelviz.features.memory.plan import MemoryPlan
    from modelviz.features.onnx.result import ExportResult
    from modelviz.features.profile.measure import Profile
    from modelviz.features.report.build import Report
    from modelviz.features.summary.summary import Summary
    from modelviz.features.tensorboard.log import TensorboardLog
    from modelviz.features.visdom.push import VisdomPush
    from modelviz.features.wandb.log import WandbRun

__all__ = ["Prepared", "activations", "export_onnx", "graph", "memory", "prepare", "profile",
           "run", "summary", "tensorboard", "trace", "visdom", "wandb", "write_report"]


def _names(value: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """One layer or type name, or several: Python callers write either."""
    return (value,) if isinstance(value, str) else tuple(value)


def trace(model: str | nn.Module, *sizes: SizeLike, train: bool = False,
          probes: tuple[Probe, ...] = (), **options: Any) -> Trace:
    """Load, build inputs and run once; ``options`` are those of ``prepare``."""
    return run(prepare(model, *sizes, **options), train=train, probes=probes)


def summary(model: str | nn.Module, *sizes: SizeLike, train: bool = False,
            **options: Any) -> Summary:
    """The layer table as an object: ``.totals``, ``.rows()``, ``.to_dict()``; render it with
    the modules in ``modelviz.features.summary``. ``print(modelviz.summary(...))`` prints the
    table."""
    from modelviz.features.summary.summary import summarize

    prepared = prepare(model, *sizes, **{"values": False, **options})  # shapes and counts
    return shapes_only(prepared, lambda p: summarize(p, run(p, train=train)))


def graph(model: str | nn.Module, *sizes: SizeLike, view: str = "modules",
          depth: int | None = None, expand: str | tuple[str, ...] | list[str] = (),
          fold: bool = True, rankdir: str = "TB", show_saved: bool = False,
          show_attrs: bool = False, train: bool = False, dot: str | Path | None = None,
          wrap: bool = True, **options: Any) -> Drawing:
    """The model as a graph: ``modelviz.graph("resnet18").save("resnet18.svg")``.

    Returns a ``Drawing``: ``.source`` is DOT, ``.save(path)`` writes png/svg/pdf/dot by
    extension, ``.graph`` holds the module view's nodes and edges. ``options`` are those of
    ``prepare``; ``dot`` is the path of Graphviz's program if it is not on PATH.
    """
    from modelviz.features.graph.draw import draw

    prepared = prepare(model, *sizes, **{"values": False, **options})  # shapes and counts
    return shapes_only(prepared, lambda p: draw(
        p, view=view, depth=depth, expand=expand, fold=fold, rankdir=rankdir,
        show_saved=show_saved, show_attrs=show_attrs, train=train, dot=dot, wrap=wrap))


# Activations: statistics of chosen layers' outputs, and their pictures.


def activations(model: str | nn.Module, *sizes: SizeLike,
                layers: str | tuple[str, ...] | list[str] = (),
                types: str | tuple[str, ...] | list[str] = (),
                output_dir: str | Path | None = None, max_channels: int = 64,
                hist: bool = False, image: str | Path | None = None,
                resize: str | int | tuple[int, int] | None = None,
                mean: str | tuple[float, ...] | list[float] | None = None,
                std: str | tuple[float, ...] | list[float] | None = None,
                train: bool = False, channel_dim: int | None = None,
                shared_scale: bool = False, **options: Any) -> ActivationReport:
    """Statistics of what the chosen layers output, and with ``output_dir`` their pictures.

    ``layers`` are qualified names or globs (``"layer4.*"``, ``"*"``), ``types`` module type
    names (``"Conv2d"``); neither: every module. The input is noise of ``sizes`` (seeded), a
    saved ``input_file``, or an ``image`` (preprocessed with the torchvision weights'
    transforms, else ``resize``, ``mean`` and ``std``). Returns an ``ActivationReport``:
    ``.layers`` (``LayerStats`` with ``.stats`` and ``.image``), ``.to_dict()`` for JSON.
    ``channel_dim``: where the channels are (``-1`` for channels-last), when the detection
    should be overridden; ``shared_scale``: every map on one colour scale with one colour bar.
    ``options`` are those of ``prepare``.
    """
    from modelviz.features.activations.measure import measure_activations
    from modelviz.features.activations.pictures import check_folder, write_images

    chosen_layers = _names(layers)
    chosen_types = _names(types)
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
                                 hist=hist, train=train, picture=picture,
                                 channel_dim=channel_dim)
    if output_dir is not None:
        write_images(report, output_dir, hist=hist, shared_scale=shared_scale)
    return report


# ONNX: a checked, verified file for Netron and runtimes.


def export_onnx(model: str | nn.Module, *sizes: SizeLike, output: str | Path,
                exporter: str = "auto", opset: int | None = None, dynamic_batch: bool = True,
                dynamic: str | list[str] | None = None, with_cache: bool = False,
                optimize: bool = False, verify: bool = True, atol: float | None = None,
                external_data: bool | None = None,
                train: bool = False, **options: Any) -> ExportResult:
    """Export to ``output`` (.onnx), check it with onnx.checker and, with ``verify``, compare
    ONNX Runtime's output with torch's on the same inputs.

    ``dynamic``: the axes that may vary (``"auto"``, ``"batch"``, ``"seq"``, ``"none"``,
    ``"input_ids:1=seq"``, or a list of them); ``dynamic_batch=False`` fixes the batch.
    ``with_cache``: a language model's decoder step with its KV cache as inputs and outputs.
    ``optimize``: onnxslim's passes, kept only if the file still matches torch.

    Returns an ``ExportResult``: ``.ok`` (parity within ``atol``), ``.parity`` per output,
    ``.inputs``/``.outputs``, ``.op_counts``, ``.notes``, ``.divergence`` (the first module
    that differs, on a failure). A failed export raises ``ExportError`` and leaves no file.
    ``options`` are those of ``prepare``.
    """
    from modelviz.features.onnx import export as onnx_export
    from modelviz.features.onnx.result import check_output

    check_output(output)
    prepared = prepare(model, *sizes, **options)
    return onnx_export.export(prepared, output, exporter=exporter, opset=opset,
                              dynamic_batch=dynamic_batch, dynamic=dynamic,
                              with_cache=with_cache, optimize=optimize, verify=verify,
                              atol=atol, external_data=external_data, train=train)


# Memory: will it train, or serve, at this batch size, on this card?


def memory(model: str | nn.Module, *sizes: SizeLike, optimizer: str = "adam",
           amp: str | None = None, checkpointing: bool = False, shard: int = 1,
           fit: str | None = None, depth: int = 1, kv_cache: int | None = None,
           **options: Any) -> MemoryPlan:
    """The peak memory of inference and of a training step, simulated allocation by allocation
    (on ``device="meta"`` without any memory), with what makes it up layer by layer.

    ``optimizer``: sgd, momentum, adam, adamw, adafactor, or none for inference only. ``amp``:
    bf16 or fp16 autocast over float32 weights. ``checkpointing``: activation checkpointing of
    the repeated blocks. ``shard``: the peak per device under FSDP / ZeRO-3 over that many.
    ``fit``: a budget (``80GB``, ``24GiB``, ``h100``); ``.fit.max_batch_size`` is the largest
    batch whose peak fits. ``kv_cache``: for a decoder, serving with a KV cache of that many
    tokens (prefill, then one decoded token). The optimizer steps with a learning rate of 0:
    weights stay as they were. ``options`` are those of ``prepare``.
    """
    from modelviz.features.memory.budget import parse_budget
    from modelviz.features.memory.plan import plan

    budget = parse_budget(fit) if fit is not None else None
    # Shapes decide the figures; a KV cache's decoding runs outside the watched pass.
    prepared = prepare(model, *sizes, **{"values": kv_cache is not None, **options})
    return shapes_only(prepared, lambda p: plan(
        p, optimizer=optimizer, amp=amp, checkpointing=checkpointing, shard_over=shard,
        budget=budget, depth=depth, kv_cache=kv_cache))


# TensorBoard: the seed posts' SummaryWriter routine from one pass.


def tensorboard(model: str | nn.Module, *sizes: SizeLike, logdir: str | Path,
                layers: str | tuple[str, ...] | list[str] = (),
                types: str | tuple[str, ...] | list[str] = (), graph: bool = True,
                histograms: bool = True, max_channels: int = 16, memory: bool = False,
                train: bool = False, **options: Any) -> TensorboardLog:
    """Write a TensorBoard run: graph, parameter histograms, activation cards, summary text.

    One instrumented pass gives both the summary and the activation cards of ``layers`` /
    ``types`` (default: a few representative layers, ``representative_modules``), sized for
    the Images tab (``features.activations.cards``). The graph is TensorBoard's own
    ``add_graph`` trace. ``memory`` adds ``modelviz memory``'s peaks to the scalars.
    ``options`` are those of ``prepare``.
    """
    from modelviz.features.tensorboard.log import write_run

    prepared = prepare(model, *sizes, **options)
    return write_run(prepared, logdir, layers=_names(layers), types=_names(types), graph=graph,
                     histograms=histograms, max_channels=max_channels, memory=memory,
                     train=train)


def wandb(model: str | nn.Module, *sizes: SizeLike, project: str, run_name: str | None = None,
          offline: bool = False, folder: str | Path | None = None,
          layers: str | tuple[str, ...] | list[str] = (),
          types: str | tuple[str, ...] | list[str] = (), graph: bool = True,
          histograms: bool = True, onnx: bool = True, static: bool = False,
          max_channels: int = 16, memory: bool = False, train: bool = False,
          **options: Any) -> WandbRun:
    """Log a W&B run: the layer table (``wandb.Table``), the totals in the run summary, the
    module graph (SVG and the interactive page), activation cards, parameter histograms, and
    the verified ONNX file with summary.json as a versioned artifact, from one pass (the same
    content as ``tensorboard`` and ``visdom``). ``offline`` (or WANDB_MODE=offline) writes the
    run under ``folder`` for ``wandb sync``, with no account or network; online needs
    ``wandb login``. ``static`` exports a fixed batch (faster than the dynamic one).
    ``memory`` adds ``modelviz memory``'s peaks to the summary. ``options`` are those of
    ``prepare``."""
    from modelviz.features.wandb.log import check_ready, log_run

    check_ready(project=project, offline=offline, folder=folder)
    prepared = prepare(model, *sizes, **options)
    return log_run(prepared, project=project, run_name=run_name, offline=offline,
                   folder=folder, layers=_names(layers), types=_names(types), graph=graph,
                   histograms=histograms, onnx=onnx, static=static,
                   max_channels=max_channels, memory=memory, train=train)


def visdom(model: str | nn.Module, *sizes: SizeLike, server: str = "http://127.0.0.1",
           port: int = 8097, env: str | None = None,
           layers: str | tuple[str, ...] | list[str] = (),
           types: str | tuple[str, ...] | list[str] = (), graph: bool = True,
           histograms: bool = True, max_channels: int = 16, memory: bool = False,
           train: bool = False, **options: Any) -> VisdomPush:
    """Push to a running Visdom server (``python -m visdom.server``): the layer table and the
    totals (escaped HTML), the module graph (SVG), activation cards, parameter histograms,
    from one pass (the same content as ``tensorboard`` and ``wandb``), into ``env`` (default
    ``modelviz_MODEL``). ``options`` are those of ``prepare``."""
    from modelviz.features.visdom.push import check_server, log_run

    check_server(server, port)
    prepared = prepare(model, *sizes, **options)
    return log_run(prepared, server=server, port=port, env=env,
                   layers=_names(layers), types=_names(types), graph=graph,
                   histograms=histograms, max_channels=max_channels, memory=memory,
                   train=train)


def write_report(model: str | nn.Module, *sizes: SizeLike, output_dir: str | Path,
           layers: str | tuple[str, ...] | list[str] = (), depth: int | None = None,
           onnx: bool = True, atol: float | None = None, static: bool = False,
           max_channels: int = 16, memory: bool = True, profile: bool = True,
           train: bool = False, **options: Any) -> Report:
    """Every artifact in ``output_dir``: summary.json/.md, graph.svg, model.onnx, activation
    grids, memory.json (an Adam training step's plan), profile.json (5 timed runs), index.html
    and report.json, from one pass. A part that fails is recorded in ``Report.parts`` (``.ok``
    is False) while the others are written; ``memory=False`` / ``profile=False`` skip a part
    (as the meta device skips the profile), which is no failure. ``options`` are those of
    ``prepare``."""
    from modelviz.features.report import build as reports

    reports.check_folder(output_dir)
    prepared = prepare(model, *sizes, **options)
    return reports.build(prepared, output_dir, layers=_names(layers), depth=depth, onnx=onnx,
                         atol=atol, static=static, max_channels=max_channels, memory=memory,
                         profile=profile, train=train)


# Profile: measured time per module beside its FLOPs and bytes.


def profile(model: str | nn.Module, *sizes: SizeLike, runs: int | None = None,
            warmup: int = 2, backward: bool = False, compile: bool = False,
            trace: str | Path | None = None, trace_kernels: bool = False,
            train: bool = False, time_depth: int | None = None, **options: Any) -> Profile:
    """Time each module's forward (median of ``runs`` after ``warmup``; ``runs=None``: about
    1.5 s of runs) beside the engine's FLOPs and bytes, with a roofline against the device's
    peaks. Returns a ``Profile``: ``.modules`` by name (``total_ms``, ``self_ms``, ``share``,
    ``flops_per_s``, ``bound``...), ``.total_ms``, ``.bare_forward_ms``, ``.hook_overhead``,
    ``.slowest()``, ``.to_dict()`` for JSON. ``backward`` times the backward pass as a whole;
    ``compile`` profiles ``torch.compile(model)``; ``trace`` writes a Chrome/Perfetto trace of
    the module calls (with torch.profiler's kernels inside with ``trace_kernels``);
    ``time_depth`` times only the modules down to that depth, whose hooks then cost less.
    ``options`` are those of ``prepare``.
    """
    from modelviz.features.profile import trace as traces
    from modelviz.features.profile.measure import profile_model

    prepared = prepare(model, *sizes, **options)
    result = profile_model(prepared, runs=runs, warmup=warmup, backward=backward,
                           compile=compile, train=train, time_depth=time_depth)
    if trace is not None:
        if trace_kernels:
            traces.write_kernel_trace(result, prepared, trace, train=train)
        else:
            traces.write_trace(result, trace)
    return result
