"""A Weights & Biases run of a model: the layer table, the totals, the graph, activation cards,
parameter histograms, and the verified ONNX file with ``summary.json`` as a versioned artifact.

What is logged is ``features.dashboard``'s (shared with TensorBoard and Visdom); this module only
says how W&B holds it: a ``wandb.Table`` (sortable in the UI), the run summary, ``wandb.Html``
for the SVG graph and the interactive page, ``wandb.Image`` and ``wandb.Histogram``, and a
``wandb.Artifact``, so a new run of a changed model is a new version of the same artifact.

Offline (``offline=True`` or ``WANDB_MODE=offline``) the run is written under ``dir`` for
``wandb sync`` later, with no account and no network: W&B's process-wide settings are put
offline too, as its telemetry reads those and not the run's. Online, a missing login is one
error before the model is even loaded (W&B would otherwise prompt, or fail in a thread), and no
API key is read, printed or stored here: W&B finds it where ``wandb login`` put it. W&B's own
terminal output is turned off (``silent``, no console capture), so it cannot garble ours.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelviz.core.stages import Stage, quiet
from modelviz.errors import MissingToolError, OutputError, ServiceError, SpecError, one_line
from modelviz.output import staging_dir

if TYPE_CHECKING:
    from collections.abc import Sequence

    from modelviz.core.session import Prepared
    from modelviz.features.dashboard.content import DashboardContent

__all__ = ["EXTRA", "WandbRun", "artifact_name", "check_ready", "log_run"]

EXTRA = "pip install 'torch-modelviz[wandb]'"
MODES = {"online": "online", "run": "online", "offline": "offline", "dryrun": "offline",
         "disabled": "disabled"}
#: Strings that look like credentials are cut out of W&B's error messages before they are shown.
_SECRET = re.compile(r"[A-Za-z0-9_-]{40,}")


@dataclass
class WandbRun:
    """What was logged, where, and what could not be (with why)."""

    project: str
    mode: str  # online, offline, or disabled (WANDB_MODE=disabled: nothing logged)
    name: str | None = None
    run_id: str = ""
    run_dir: Path | None = None  # the local run folder, the one `wandb sync` takes
    url: str | None = None
    table_rows: int = 0
    summary: dict[str, float] = field(default_factory=dict)
    images: list[str] = field(default_factory=list)
    histograms: list[str] = field(default_factory=list)
    graph: list[str] = field(default_factory=list)
    artifact: str | None = None
    artifact_files: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # part -> reason

    def to_dict(self) -> dict[str, Any]:
        return {"project": self.project, "mode": self.mode, "name": self.name,
                "run_id": self.run_id,
                "run_dir": str(self.run_dir) if self.run_dir is not None else None,
                "url": self.url, "table_rows": self.table_rows, "summary": self.summary,
                "images": self.images, "histograms": len(self.histograms),
                "graph": self.graph, "artifact": self.artifact,
                "artifact_files": self.artifact_files, "skipped": self.skipped}


def _wandb() -> Any:
    try:
        return importlib.import_module("wandb")
    except ImportError as exc:
        raise MissingToolError("the wandb package is not installed.",
                               f"Install the extra: {EXTRA}") from exc


def _mode(offline: bool) -> str:
    if offline:
        return "offline"
    given = os.environ.get("WANDB_MODE", "").strip().lower() or "online"
    if given not in MODES:
        raise SpecError(f"WANDB_MODE={given!r} is not a W&B mode.",
                        "Use online, offline or disabled (or unset it).")
    return MODES[given]


def _scrub(text: str) -> str:
    """W&B's message without anything that could be a key: the environment's key, if any, and
    any run of 40 or more key characters."""
    key = os.environ.get("WANDB_API_KEY", "").strip()
    if key:
        text = text.replace(key, "***")
    return _SECRET.sub("***", text)


def _settings(wandb: Any, mode: str) -> Any:
    """Quiet settings: no terminal output, no console capture, no system metrics sampling."""
    return wandb.Settings(mode=mode, silent=True, console="off", x_disable_stats=True,
                          show_info=False, show_warnings=False)


def check_ready(*, project: str, offline: bool = False, folder: str | Path | None = None) -> str:
    """Fail before any work when the run cannot be made: no wandb, a bad project name, a
    ``folder`` that is a file, or no login online. Returns the mode."""
    if not project.strip() or any(c in project for c in "/\\#?%:") or len(project) > 128:
        raise SpecError(f"bad W&B `project={project}`.",
                        "Use letters, digits, '-', '_' and '.', at most 128 characters.")
    if folder is not None and Path(folder).exists() and not Path(folder).is_dir():
        raise OutputError(f"`dir={folder}` is a file, not a folder.",
                          "Give the folder W&B writes its run into.")
    wandb = _wandb()
    mode = _mode(offline)
    if mode == "online":
        wandb.setup(settings=_settings(wandb, mode))
        if not wandb.login(prompt=False, verify=False):
            raise ServiceError("not logged in to W&B.",
                               "Run `wandb login` (or set WANDB_API_KEY), or log offline with "
                               "`offline=True`.")
    return mode


def artifact_name(model: str) -> str:
    """The artifact a model's runs version: ``modelviz-`` and the model's name in the letters
    W&B allows (``sample_models.seeds:Net`` -> ``modelviz-sample_models.seeds-Net``)."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", model).strip("-.") or "model"
    return f"modelviz-{stem}"[:128]


def _log_content(content: DashboardContent, *, mode: str, project: str,
                 run_name: str | None, folder: str | Path | None, histograms: bool,
                 staging: Path, onnx: bool, stage: Stage) -> WandbRun:
    """Log ``content`` as one W&B run; ``staging`` holds the exported model.onnx (with
    ``onnx``) and takes summary.json beside it."""
    result = WandbRun(project=project, mode=mode, name=run_name)
    wandb = _wandb()
    directory = Path(folder) if folder is not None else Path(os.environ.get("WANDB_DIR", "."))
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {directory}: {exc.strerror or exc}.",
                          "Give another folder with `dir=`.") from exc
    wandb.setup(settings=_settings(wandb, mode))
    try:
        with stage(f"Logging to W&B ({mode})"):
            try:
                run = wandb.init(project=project, name=run_name, dir=str(directory),
                                 config=content.config(), job_type="model-inspection",
                                 tags=["modelviz"], settings=_settings(wandb, mode))
            except Exception as exc:  # wandb.errors.Error and what its transport raises
                raise ServiceError(f"W&B refused the run: {_scrub(one_line(exc))}",
                                   "Check `wandb login` and the project, or log offline "
                                   "with `offline=True`.") from None
            try:
                _log(wandb, run, content, result, staging, histograms=histograms, onnx=onnx)
            finally:
                run.finish()
    finally:
        wandb.teardown()
    return result


def _log(wandb: Any, run: Any, content: DashboardContent, result: WandbRun, staging: Path, *,
         histograms: bool, onnx: bool) -> None:
    from modelviz.features.dashboard.content import COLUMNS

    result.run_id = run.id
    result.run_dir = Path(run.dir).parent
    result.url = run.url if result.mode == "online" else None
    result.skipped.update(content.skipped)
    logged: dict[str, Any] = {"layers": wandb.Table(columns=list(COLUMNS),
                                                    data=[list(r) for r in content.rows])}
    result.table_rows = len(content.rows)
    for card in content.cards:
        logged[f"activations/{card.name}"] = wandb.Image(card.pixels,
                                                         caption=f"{card.name} ({card.type})")
        result.images.append(card.name)
    if histograms:
        for histogram in content.histograms():
            logged[f"parameters/{histogram.name}"] = wandb.Histogram(
                np_histogram=(histogram.counts, histogram.edges))
            result.histograms.append(histogram.name)
    if content.graph_svg is not None:
        logged["graph/modules"] = wandb.Html(content.graph_svg, inject=False,
                                             data_is_not_path=True)
        result.graph.append("graph/modules")
    if content.graph_html is not None:
        logged["graph/interactive"] = wandb.Html(content.graph_html, inject=False,
                                                 data_is_not_path=True)
        result.graph.append("graph/interactive")
    run.log(logged, step=0)
    run.summary.update(content.totals)
    result.summary = dict(content.totals)
    _artifact(wandb, run, content, result, staging, onnx)


def _artifact(wandb: Any, run: Any, content: DashboardContent, result: WandbRun,
              staging: Path, onnx: bool) -> None:
    """summary.json and the verified ONNX file (and its external data, if any) as one version
    of the model's artifact, with the totals and the parity check in its metadata."""
    metadata: dict[str, Any] = {**content.totals, "model": content.model,
                                "inputs": content.summary.inputs}
    files: dict[str, Path] = {}
    summary_file = staging / "summary.json"
    summary_file.write_text(content.summary_json, encoding="utf-8")
    files["summary.json"] = summary_file
    exported = content.onnx
    if exported is not None and onnx:
        files["model.onnx"] = exported.path
        for extra in exported.data_files:
            files[extra.name] = extra
        worst = max((p.max_abs_error for p in exported.parity or []), default=None)
        metadata["onnx"] = {"opset": exported.opset, "exporter": exported.exporter,
                            "verified": exported.parity is not None, "parity_ok": exported.ok,
                            "max_abs_error": worst, "atol": exported.atol,
                            "dynamic_batch": exported.dynamic_batch}
    artifact = wandb.Artifact(artifact_name(content.model), type="model",
                              description=f"modelviz: {content.model}", metadata=metadata)
    for name, path in files.items():
        artifact.add_file(str(path), name=name)
    run.log_artifact(artifact)
    result.artifact = artifact.name
    result.artifact_files = sorted(files)


def log_run(prepared: Prepared, *, project: str, run_name: str | None = None,
            offline: bool = False, folder: str | Path | None = None,
            layers: Sequence[str] = (), types: Sequence[str] = (), graph: bool = True,
            histograms: bool = True, onnx: bool = True, static: bool = False,
            max_channels: int = 16, memory: bool = False, train: bool = False,
            stage: Stage = quiet) -> WandbRun:
    """One W&B run of a prepared model, from one pass (``features.dashboard``)."""
    from modelviz.features.dashboard.content import build_content

    mode = check_ready(project=project, offline=offline, folder=folder)
    if mode == "disabled":
        return WandbRun(project=project, mode=mode, name=run_name)
    staging = staging_dir()  # the ONNX file and summary.json, until the run has them
    try:
        content = build_content(prepared, what="a W&B run", layers=tuple(layers),
                                types=tuple(types), max_channels=max_channels, train=train,
                                graph=graph, onnx_to=staging if onnx else None, static=static,
                                memory=memory, stage=stage)
        if not onnx:
            content.skipped["onnx"] = "skipped (`onnx=False`)."
        return _log_content(content, mode=mode, project=project, run_name=run_name,
                            folder=folder, histograms=histograms, staging=staging, onnx=onnx,
                            stage=stage)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
