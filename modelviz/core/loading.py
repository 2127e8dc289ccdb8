"""The one place a model is built: torchvision names, Python code, and saved files.

MODEL may be
  * a torchvision name (``vgg16``), built with random weights, never downloading;
  * ``package.module:attr`` or ``package.module.attr`` (the current directory is importable);
  * ``path/to/file.py:attr``;
  * a saved file: TorchScript, an exported program (``.pt2``), or a whole pickled module
    (that last one only with ``trust_pickle``, since unpickling runs code);
  * ``hf:NAME`` or ``timm:NAME``: Hugging Face transformers or timm, offline (see ``hub``).
``attr`` may be an ``nn.Module`` instance, a class, or a factory; ``kwargs`` go to the last two.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import sys
import traceback
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from modelviz.core import hub, meta, placeholders, untrusted, zoo
from modelviz.core.specs import MODEL_FILE_SUFFIXES, InputSpec
from modelviz.core.weights import WeightsReport, load_weights
from modelviz.errors import (
    ModelFileError,
    ModelvizError,
    UnknownModelError,
    UnsafePickleError,
    UserCodeError,
    one_line,
)
from modelviz.output import mark_input


@dataclass
class LoadedModel:
    """A built model and what we know about where it came from."""

    module: nn.Module
    spec: str  # what the user typed
    source: str  # torchvision, python, torchscript, exported-program, pickle, instance,
    # transformers, timm
    torchvision_name: str | None = None
    default_sizes: list[InputSpec] | None = None
    weights: WeightsReport | None = None
    notes: list[str] = field(default_factory=list)
    #: Set when the weights are placeholders (built without random init, for shapes and
    #: counts only): builds the model again, as ``load_model`` does by default.
    rebuild: Callable[[], LoadedModel] | None = field(default=None, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.torchvision_name or self.spec

    @property
    def placeholders(self) -> bool:
        """Whether the weights are placeholders, not the model's random init (``init=False``)."""
        return self.rebuild is not None


_Built = TypeVar("_Built")


class _Building:
    """How ``load_model`` runs the model's constructor: as it is, or with its random fills
    skipped (``placeholders.SkipRandomInit``); in that case it can run it again as it is, from
    the random state the first run started from, which gives the very model the ordinary
    build gives."""

    def __init__(self, skip: bool) -> None:
        self.skip = skip
        self.mode: placeholders.SkipRandomInit | None = None
        self.again: Callable[[], nn.Module] | None = None

    def build(self, make: Callable[[], _Built],
              module_of: Callable[[_Built], nn.Module] = lambda built: built,  # type: ignore[assignment,return-value]
              ) -> _Built:
        if not self.skip:
            return make()
        state = torch.random.get_rng_state()
        mode = placeholders.SkipRandomInit()
        try:
            with mode:
                built = make()
        except placeholders.ReadWhileBuilding:
            torch.random.set_rng_state(state)  # as if the build had been the ordinary one
            self.skip = False
            return make()
        self.mode = mode

        def again() -> nn.Module:
            with torch.random.fork_rng(devices=[]):
                torch.random.set_rng_state(state)
                return module_of(make())

        self.again = again
        return built

    def ordinary(self) -> None:
        """Build as it is from here on (a family whose forward pass reads values)."""
        self.skip = False


def _user_error(what: str, exc: BaseException) -> UserCodeError:
    """Show the user's own error with the line of their code it came from."""
    frames = traceback.extract_tb(exc.__traceback__)
    user = [f for f in frames if "site-packages" not in f.filename
            and "/modelviz/" not in f.filename.replace("\\", "/")]
    where = f" ({Path(user[-1].filename).name}, line {user[-1].lineno})" if user else ""
    if isinstance(exc, SystemExit):
        return UserCodeError(
            f"{what} exited (SystemExit {exc.code!r}){where}: the code runs a program of its "
            "own when imported.", "Put that under `if __name__ == \"__main__\":` so that "
            "importing the file only defines the model.")
    return UserCodeError(f"{what} raised {type(exc).__name__}: {one_line(exc)}{where}.",
                         "Fix that error in your code; `debug` shows the full traceback.")


@contextmanager
def _user_code(what: str, program: str | None = None) -> Iterator[None]:
    """Run the user's code: its errors become one line naming their file and line. It sees a
    command line of its own, ``program`` and no arguments, so a script that parses arguments
    or exits when imported neither reads modelviz's options nor passes for modelviz."""
    argv = sys.argv
    sys.argv = [program or (argv[0] if argv else "")]
    try:
        yield
    except (UserCodeError, UnknownModelError):
        raise
    except (Exception, SystemExit) as exc:
        raise _user_error(what, exc) from exc
    finally:
        sys.argv = argv


def _import_file(path: Path) -> Any:
    why = untrusted.not_a_file(path)
    if why is not None:
        raise ModelFileError(f"{why}: {path}.", "Check the path to your model file.")
    module_name = f"_modelviz_user_{path.stem}_{abs(hash(path.resolve())) % 10**8}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ModelFileError(f"{path} cannot be imported as Python.", "Give a .py file.")
    mark_input(path, "the model")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)  # so the file can import its neighbours
    sys.modules[module_name] = module
    try:
        with _user_code(f"importing {path}", str(path)):
            spec.loader.exec_module(module)
    except UserCodeError:
        del sys.modules[module_name]
        raise
    return module


def _import_dotted(name: str) -> Any:
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    with _user_code(f"importing {name}", name):
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
                raise UnknownModelError(
                    f"no module named {exc.name!r} (from `model` {name!r}).",
                    "Run from the folder that holds the package, or give path/to/file.py:attr.",
                ) from exc
            raise


def _returns_module(function: Any) -> bool:
    try:
        returned = typing.get_type_hints(function).get("return")
    except Exception:
        return False
    return inspect.isclass(returned) and issubclass(returned, nn.Module)


def _candidates(module: Any) -> list[str]:
    """Names in a module that could be a model: nn.Module classes and instances defined there,
    and functions annotated to return an nn.Module."""
    found = []
    for key, value in vars(module).items():
        if key.startswith("_"):
            continue
        own = getattr(value, "__module__", None) == module.__name__
        if isinstance(value, nn.Module) or (own and (
                (inspect.isclass(value) and issubclass(value, nn.Module))
                or (inspect.isfunction(value) and _returns_module(value)))):
            found.append(key)
    return found


def _get_attr(module: Any, attr: str, where: str) -> Any:
    value = module
    for part in attr.split("."):
        if not hasattr(value, part):
            options = ", ".join(_candidates(module)[:8]) or "no nn.Module classes or instances"
            raise UnknownModelError(f"{where} has no attribute {attr!r}.",
                                    f"It defines: {options}.")
        value = getattr(value, part)
    return value


def _materialize(value: Any, what: str, kwargs: dict[str, Any],
                 building: _Building) -> nn.Module:
    """An instance is used as is; a class or factory is called with ``kwargs``."""
    if isinstance(value, nn.Module):
        if kwargs:
            raise UserCodeError(f"{what} is already a model instance, so `kwargs` cannot apply.",
                                "Point `model` at its class or a factory function instead.")
        return value
    if not callable(value):
        raise UserCodeError(f"{what} is a {type(value).__name__}, not a model.",
                            "Point `model` at an nn.Module instance, class or factory.")
    with _user_code(f"building {what}"):
        built = building.build(lambda: value(**kwargs))
    if not isinstance(built, nn.Module):
        raise UserCodeError(f"{what}(...) returned a {type(built).__name__}, not an nn.Module.",
                            "Point `model` at a function that returns the model.")
    return built


def _load_saved(path: Path, trust_pickle: bool, device: torch.device) -> tuple[nn.Module, str]:
    if path.suffix == ".safetensors":
        raise ModelFileError(
            f"{path} holds weights only, not the model's code.",
            f"Give the architecture as `model` and this file as `weights={path}`.",
        )
    if path.suffix == ".onnx":
        raise ModelFileError(f"{path} is an ONNX file, not a PyTorch model.",
                             f"Open it with `modelviz netron {path}`.")
    mark_input(path, "the model")
    names = untrusted.zip_names(path, "`model`")
    map_location = "cpu" if device.type == "meta" else device
    if any("/code/" in n for n in names):
        try:
            return untrusted.load_torchscript(path, map_location), "torchscript"
        except Exception as exc:
            raise ModelFileError(f"{path} looks like TorchScript but failed to load: "
                                 f"{one_line(exc)}", "Re-save it with torch.jit.save.") from exc
    if any(n.endswith(("/archive_format", "serialized_exported_program.json")) for n in names):
        try:
            module = untrusted.load_exported_program(path, names, trust=trust_pickle)
        except ModelvizError:
            raise
        except Exception as exc:
            raise ModelFileError(f"{path} looks like an exported program but failed to load: "
                                 f"{one_line(exc)}", "Re-save it with torch.export.save.") from exc
        return module, "exported-program"
    try:
        obj = untrusted.load_data(path, "`model`")
    except UnsafePickleError as exc:
        if not trust_pickle:
            raise UnsafePickleError(
                f"{path} is a pickled Python object (a whole model saved with torch.save), "
                "and unpickling it runs code from the file.", untrusted.TRUST_FIX) from exc
        obj = _unpickle(path)
    if isinstance(obj, nn.Module):
        return obj, "pickle"
    if isinstance(obj, dict):
        raise ModelFileError(
            f"{path} holds a state dict (weights), not a model.",
            f"Give the architecture as `model` and this file as `weights={path}`.",
        )
    raise ModelFileError(f"{path} holds a {type(obj).__name__}, not a model.",
                         "Save the model with torch.jit.save, torch.export.save or torch.save.")


def _unpickle(path: Path) -> Any:
    """The whole pickled model, allowed by --trust-pickle; the user's code runs as it loads."""
    with _user_code(f"unpickling {path}"):
        try:
            return untrusted.load_pickle(path)
        except (AttributeError, ModuleNotFoundError) as err:
            raise UserCodeError(
                f"unpickling {path} needs the model's class, which cannot be imported: {err}.",
                "Run from the folder where the class's module is importable (a class defined "
                "in a script's __main__ cannot be found again).",
            ) from err


def _file_spec(spec: str) -> tuple[Path, str] | None:
    """``path/file.py:attr`` -> (path, attr); any other path-like spec -> (path, ""); else None."""
    if Path(spec).is_file():
        return Path(spec), ""
    file, sep, attr = spec.rpartition(":")
    if sep and (file.endswith(".py") or "/" in file or "\\" in file):
        return Path(file), attr
    # a suffix marks MODEL as a file path even when it does not exist
    if "/" in spec or "\\" in spec or spec.endswith(MODEL_FILE_SUFFIXES):
        return Path(spec), ""
    return None


def _from_file(path: Path, attr: str, spec: str, kwargs: dict[str, Any], trust_pickle: bool,
               device: torch.device, building: _Building) -> LoadedModel:
    why = untrusted.not_a_file(path)
    if why is not None:
        raise ModelFileError(f"{why}: {path}.", "Check the path to your model.")
    if path.suffix != ".py":
        if kwargs:
            raise UserCodeError(f"{path} is a saved model, so `kwargs` cannot apply.",
                                "Drop `kwargs`.")
        module, source = _load_saved(path, trust_pickle, device)
        return LoadedModel(module, spec, source)
    code = _import_file(path)
    if not attr:
        options = ", ".join(_candidates(code)[:8]) or "none found"
        raise UnknownModelError(f"{path} needs the model's name: {path}:NAME.",
                                f"Models in that file: {options}.")
    return LoadedModel(_materialize(_get_attr(code, attr, str(path)), spec, kwargs, building),
                       spec, "python")


def _hf_path_error(spec: str) -> ModelFileError | None:
    """A Hugging Face folder or config.json given without ``hf:``: it holds a config, not a
    model, so the saved-model loaders would misread it (as a pickle, or a missing file)."""
    path = Path(spec)
    if path.is_dir() and (path / "config.json").is_file():
        what = "a Hugging Face model folder (it holds config.json)"
    elif path.is_file() and path.suffix == ".json":
        what = "a JSON file, such as a Hugging Face config.json, not a saved model"
    else:
        return None
    return ModelFileError(f"{spec} is {what}.", f"Use hf:{spec} to build it with transformers.")


def _build(spec: str, kwargs: dict[str, Any], trust_pickle: bool,
           device: torch.device, building: _Building) -> LoadedModel:
    if hub.is_hub_spec(spec):
        built = building.build(lambda: hub.build(spec, kwargs), lambda hub_model: hub_model.module)
        return LoadedModel(built.module, spec, built.source, default_sizes=built.default_sizes,
                           notes=built.notes)
    wrong = _hf_path_error(spec)
    if wrong is not None:
        raise wrong
    file = _file_spec(spec)
    if file is not None:
        return _from_file(*file, spec, kwargs, trust_pickle, device, building)
    if zoo.is_model_name(spec):
        if device.type != "meta" and zoo.reads_values(spec):
            building.ordinary()  # its pass would find placeholders read, and build it again
        with _user_code(f"building torchvision's {spec}"):
            module = building.build(lambda: zoo.build(spec, kwargs))
        return LoadedModel(module, spec, "torchvision", torchvision_name=spec,
                           default_sizes=zoo.default_sizes(spec))
    if ":" in spec or "." in spec:
        module_name, _, attr = spec.partition(":") if ":" in spec else spec.rpartition(".")
        code = _import_dotted(module_name)
        return LoadedModel(_materialize(_get_attr(code, attr, module_name), spec, kwargs,
                                        building), spec, "python")
    raise zoo.unknown_model_error(spec)


_SMALL_ON_CPU_NOTE = "built on meta with its small tensors on the cpu first"


def _build_on_meta(spec: str, kwargs: dict[str, Any], trust_pickle: bool,
                   device: torch.device, building: _Building) -> LoadedModel:
    """Build under ``torch.device("meta")``; if the building code reads tensor values (regnet
    computes its widths with ``.tolist()``), build again with small tensors real on the cpu,
    so the model still never allocates its large weights, and say so in a note."""
    try:
        with torch.device("meta"):
            return _build(spec, kwargs, trust_pickle, device, building)
    except UserCodeError as exc:
        cause = exc.__cause__
        if cause is None or not meta.meta_failure(cause):
            raise
        first = cause
    try:
        with meta.SmallOnCpu():
            loaded = _build(spec, kwargs, trust_pickle, device, building)
    except UserCodeError as exc:
        cause = exc.__cause__
        if cause is None or not meta.meta_failure(cause):
            raise
        where = meta.culprit(cause)
        raise UserCodeError(
            f"{spec} cannot be built on the meta device: its code reads the values of large "
            f"tensors while building{f' ({where})' if where else ''}, and meta tensors have "
            f"shapes but no values ({one_line(cause, limit=160)}).",
            "Build it on a real device with `device=cpu`.",
        ) from cause
    where = meta.culprit(first, code=False)
    loaded.notes.append(
        f"{_SMALL_ON_CPU_NOTE}: building {loaded.name} reads tensor values"
        f"{f' ({where})' if where else ''}, so tensors under {meta.SMALL:,} values were made on "
        "the cpu, then moved to meta; shapes and counts only")
    return loaded


def _on(module: nn.Module, device: torch.device) -> bool:
    """Whether every weight is on ``device`` already: ``.to`` walks them all even then."""
    return all(t.device == device for t in (*module.parameters(), *module.buffers()))


def load_model(spec: str | nn.Module, *, kwargs: dict[str, Any] | None = None,
               weights: str | Path | None = None, strict: bool = True,
               trust_pickle: bool = False, device: torch.device | str = "cpu",
               dtype: torch.dtype | None = None, init: bool = True) -> LoadedModel:
    """Build the model described by ``spec`` on ``device``, load weights, cast to ``dtype``.

    On the meta device the model is built under ``torch.device("meta")``: no weight memory is
    allocated, so models far larger than memory can be summarised.

    ``init=False`` is for work that needs shapes and counts only: the random init is skipped
    (``core.placeholders``), and ``rebuild`` of the result builds the model again with it, as
    ``init=True`` would have. Where nothing could tell the two apart it is skipped anyway: on
    meta (no values to draw), and under ``weights`` that replace every skipped value.
    """
    device = torch.device(device)
    kwargs = dict(kwargs or {})
    if isinstance(spec, nn.Module):
        loaded = LoadedModel(spec, type(spec).__name__, "instance")
        if kwargs:
            raise UserCodeError("`kwargs` cannot apply to a model instance.", "Drop kwargs.")
        return _finish(loaded, None, weights, strict, device, dtype, init)
    building = _Building(skip=not init or device.type == "meta" or weights is not None)
    if device.type == "meta":
        loaded = _build_on_meta(spec.strip(), kwargs, trust_pickle, device, building)
    else:
        loaded = _build(spec.strip(), kwargs, trust_pickle, device, building)
    return _finish(loaded, building, weights, strict, device, dtype, init)


def _finish(loaded: LoadedModel, building: _Building | None, weights: str | Path | None,
            strict: bool, device: torch.device, dtype: torch.dtype | None,
            init: bool) -> LoadedModel:
    """Move to meta, load weights, move to ``device``, cast; settle what placeholders are left."""
    module = loaded.module
    held = (building.mode.placeholders(module)
            if building is not None and building.mode is not None else None)
    if held is not None and held.read is not None and device.type != "meta":
        # Its constructor read values made from placeholders, and may have decided on them.
        assert building is not None and building.again is not None
        module = loaded.module = building.again()
        held = None
    if loaded.notes and loaded.notes[-1].startswith(_SMALL_ON_CPU_NOTE):
        module = module.to("meta")  # its note already says so
    elif device.type == "meta" and any(not t.is_meta for t in module.state_dict().values()):
        loaded.notes.append("weights moved to the meta device: shapes and counts only")
        module = module.to("meta")
    if device.type == "meta":
        held = None  # nothing on meta has values: nothing can tell placeholders apart
    if weights is not None:
        loaded.weights = load_weights(module, weights, strict=strict)
        if held is not None and _replaced(module, held, loaded.weights):
            held = None
    if held is not None and held.any and init:
        # The weights left placeholders that the ordinary build would have drawn: build it so.
        assert building is not None and building.again is not None
        module = building.again()
        if weights is not None:
            loaded.weights = load_weights(module, weights, strict=strict)
        held = None
    if device.type != "meta" and not _on(module, device):
        module = module.to(device)
    if dtype is not None:
        module = module.to(dtype)
    loaded.module = module
    if held is not None and held.any:
        assert building is not None and building.again is not None
        placeholders.mark(module, held)
        again = building.again
        loaded.rebuild = lambda: _finish(
            dataclasses.replace(loaded, module=again(), weights=None, rebuild=None, notes=[
                *loaded.notes]), None, weights, strict, device, dtype, True)
    return loaded


def _replaced(module: nn.Module, held: placeholders.Placeholders, report: WeightsReport) -> bool:
    """Whether the weights loaded replaced every placeholder: then the model is the ordinary
    build with these weights (what else it holds was built as the ordinary build does)."""
    if held.others or report.checked_only:
        return False
    unloaded = set(report.missing) | {text.split(":", 1)[0] for text in report.mismatched}
    loaded = set(module.state_dict()) - unloaded
    return held.names <= loaded
