"""Hugging Face transformers and timm models by name, offline, with random weights.

MODEL may be
  * ``hf:NAME[@TASK]``: NAME a transformers model type (``hf:gpt2``, ``hf:t5``), a local folder
    holding ``config.json``, a ``config.json`` file, or a Hub id already in the local cache; the
    model is built from the config, so no weights are ever downloaded. The head is the config's
    ``architectures`` entry where it has one, else the base model; TASK picks another;
  * ``timm:NAME``: ``timm.create_model(NAME, pretrained=False)``.

``kwargs`` override settings of the config (``num_hidden_layers=2``) or go to
``timm.create_model``. transformers and timm are optional: nothing here imports them until such a
model is asked for, and their absence is one line naming the extra to install.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modelviz.core.specs import InputSpec
from modelviz.errors import (
    MissingToolError,
    ModelFileError,
    SpecError,
    UnknownModelError,
    UserCodeError,
    one_line,
)

HF_PREFIX = "hf:"
TIMM_PREFIX = "timm:"
#: ``hf:NAME@TASK``: the transformers auto class that builds each head.
TASKS: dict[str, str] = {
    "base": "AutoModel",
    "causal-lm": "AutoModelForCausalLM",
    "masked-lm": "AutoModelForMaskedLM",
    "seq2seq-lm": "AutoModelForSeq2SeqLM",
    "image-classification": "AutoModelForImageClassification",
    "sequence-classification": "AutoModelForSequenceClassification",
}
#: Default lengths of text inputs, and of the decoder's for encoder-decoders (T5, BART).
TEXT_LENGTH = 128
DECODER_LENGTH = 16


@dataclass
class HubModel:
    """A model built from a hub library, with the inputs it usually takes."""

    module: nn.Module
    source: str  # transformers or timm
    default_sizes: list[InputSpec] | None
    notes: list[str] = field(default_factory=list)


def is_hub_spec(spec: str) -> bool:
    return spec.startswith((HF_PREFIX, TIMM_PREFIX))


def _require(package: str) -> Any:
    """Import an optional library, or say in one line which extra brings it."""
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError as exc:
        raise MissingToolError(f"{package} is not installed: pip install 'torch-modelviz[hf]'.",
                               f"Install it to build {package} models by name.") from exc


def build(spec: str, kwargs: dict[str, Any]) -> HubModel:
    """Build ``hf:...`` or ``timm:...`` with random weights; never downloads anything."""
    if spec.startswith(TIMM_PREFIX):
        return _build_timm(spec[len(TIMM_PREFIX):].strip(), kwargs)
    return _build_hf(spec[len(HF_PREFIX):].strip(), kwargs)


def _construct(what: str, make: Callable[[], nn.Module]) -> nn.Module:
    """Run the library's constructor; its error is one line, and stays the cause, so that a
    meta-device failure is still recognised (and retried) by the loader."""
    try:
        return make()
    except Exception as exc:
        raise UserCodeError(f"building {what} raised {type(exc).__name__}: {one_line(exc)}.",
                            "Check the `kwargs` given; `debug` shows the full traceback.") from exc


# --- timm -------------------------------------------------------------------------------------


def _build_timm(name: str, kwargs: dict[str, Any]) -> HubModel:
    timm = _require("timm")
    if not name or not timm.is_model(name):
        names = timm.list_models()
        close = difflib.get_close_matches(name, names, n=4, cutoff=0.6)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownModelError(f"unknown timm model {name!r}.{hint}",
                                "List them with python -c \"import timm; "
                                "print(timm.list_models())\".")
    if kwargs.get("pretrained"):
        raise UserCodeError("pretrained weights cannot be downloaded by modelviz.",
                            "Save them with safetensors or torch.save and pass `weights=FILE`.")
    options = {**kwargs, "pretrained": False}
    module = _construct(f"timm's {name}", lambda: timm.create_model(name, **options))
    config = getattr(module, "pretrained_cfg", None) or {}
    size = config.get("input_size")
    sizes = [InputSpec(tuple(int(d) for d in size))] if size else None
    return HubModel(module, "timm", sizes)


# --- transformers -----------------------------------------------------------------------------


def _split_task(name: str) -> tuple[str, str | None]:
    """``gpt2@causal-lm`` -> (``gpt2``, ``causal-lm``); an ``@`` not before a task is kept."""
    base, at, task = name.rpartition("@")
    if at and task in TASKS:
        return base, task
    if at and not Path(name).exists() and "/" not in task:
        raise SpecError(f"unknown task {task!r} in `model` hf:{name}.",
                        f"Use one of: {', '.join(TASKS)}.")
    return name, None


def _config(name: str, transformers: Any) -> tuple[Any, str]:
    """The config for ``name`` and where it came from, from local files only."""
    import importlib

    model_types: dict[str, str] = importlib.import_module(
        "transformers.models.auto.configuration_auto").CONFIG_MAPPING_NAMES
    path = Path(name)
    if path.exists():
        file = path / "config.json" if path.is_dir() else path
        if not file.is_file():
            raise ModelFileError(f"{path} holds no config.json.",
                                 "Give a Hugging Face model folder (with config.json) or the "
                                 "config.json itself.")
        try:
            json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ModelFileError(f"{file} is not a JSON config: {one_line(exc, limit=160)}.",
                                 "Give a config.json saved by transformers.") from exc
        try:
            return transformers.AutoConfig.from_pretrained(str(path), local_files_only=True), \
                str(file)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelFileError(f"{file} is not a transformers config: {one_line(exc)}.",
                                 "It needs a known \"model_type\"; save it with "
                                 "config.save_pretrained(FOLDER).") from exc
    if name in model_types:
        return transformers.AutoConfig.for_model(name), f"transformers' default {name} config"
    try:
        config = transformers.AutoConfig.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError) as exc:
        close = difflib.get_close_matches(name.lower(), list(model_types), n=4,
                                          cutoff=0.6)
        hint = f" Did you mean hf:{', hf:'.join(close)}?" if close else ""
        raise UnknownModelError(
            f"unknown model hf:{name}: not a transformers model type, a local folder or "
            f"config.json, nor a Hub id in the local cache.{hint}",
            "modelviz never downloads: give a model type (hf:gpt2, hf:bert, hf:llama, hf:t5) "
            "or fetch the config first, e.g. `hf download ID config.json`.") from exc
    return config, f"the cached config of {name}"


def _check_settings(config: Any, kwargs: dict[str, Any]) -> None:
    """Each of ``kwargs`` must be a setting of the config: an unknown one would be kept as a
    new attribute that nothing reads, and the model built as if it had not been given."""
    known = sorted(k for k in config.to_dict() if not k.startswith("_"))
    for key in kwargs:
        if key != "attn_implementation" and not hasattr(config, key):
            close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise SpecError(f"`kwargs` sets {key!r}, which {type(config).__name__} does not "
                            f"have.{hint}", "Give settings of the model's config, e.g. "
                            "num_hidden_layers=2.")


def _configure(name: str, transformers: Any, kwargs: dict[str, Any]) -> tuple[Any, str]:
    """The config with ``kwargs`` applied. A model type's config is made again with them, so
    that the values it derives follow (Llama's head_dim from hidden_size); a saved config keeps
    what it states, as transformers' own ``from_pretrained(..., **kwargs)`` does."""
    config, origin = _config(name, transformers)
    _check_settings(config, kwargs)
    settings = {k: v for k, v in kwargs.items() if k != "attn_implementation"}
    if settings and origin.startswith("transformers' default"):
        try:
            config = transformers.AutoConfig.for_model(name, **settings)
        except Exception as exc:
            raise UserCodeError(f"transformers refused the {name} config with {settings}: "
                                f"{one_line(exc)}.", "Check the `kwargs` values.") from exc
    else:
        for key, value in settings.items():
            setattr(config, key, value)
    if "attn_implementation" in kwargs:
        config._attn_implementation = kwargs["attn_implementation"]
    if "use_cache" not in kwargs and hasattr(config, "use_cache"):
        config.use_cache = False  # a cache is for generation; a summary wants one pass
    return config, origin


def _head(config: Any, task: str | None, transformers: Any) -> tuple[Callable[[], nn.Module],
                                                                    str]:
    """What builds the model: the task's auto class, else the config's architecture, else the
    base model."""
    if task is not None:
        auto = getattr(transformers, TASKS[task])
        return (lambda: auto.from_config(config)), f"{TASKS[task]} ({task})"
    for arch in getattr(config, "architectures", None) or ():
        cls = getattr(transformers, arch, None)
        if cls is not None:
            return (lambda: cls._from_config(config)), arch  # noqa: B023 - returned at once
    return (lambda: transformers.AutoModel.from_config(config)), "AutoModel"


def _hf_sizes(module: nn.Module, config: Any) -> list[InputSpec] | None:
    """The inputs a model of this kind takes: token ids, pixels or audio features, with the
    decoder's ids for an encoder-decoder. Masks are left out: the model makes its own."""
    import inspect

    try:
        params = set(inspect.signature(module.forward).parameters)
    except (TypeError, ValueError):
        return None
    text = getattr(config, "get_text_config", lambda **_: config)(decoder=True)
    limit = getattr(text, "max_position_embeddings", None) or getattr(config, "n_positions",
                                                                      None)
    length = min(TEXT_LENGTH, limit) if isinstance(limit, int) and limit > 0 else TEXT_LENGTH
    main = getattr(module, "main_input_name", "input_ids")
    sizes: list[InputSpec]
    if main == "input_ids" and "input_ids" in params:
        sizes = [InputSpec((length,), "int64", "input_ids")]
    elif main == "pixel_values" and "pixel_values" in params:
        vision = getattr(config, "vision_config", None) or config
        image = getattr(vision, "image_size", 224)
        height, width = (image, image) if isinstance(image, int) else tuple(image)[-2:]
        channels = getattr(vision, "num_channels", 3)
        sizes = [InputSpec((int(channels), int(height), int(width)), None, "pixel_values")]
    elif main == "input_features" and "input_features" in params:
        frames = 2 * int(getattr(config, "max_source_positions", 1500))
        sizes = [InputSpec((int(getattr(config, "num_mel_bins", 80)), frames), None,
                           "input_features")]
    elif main == "input_values" and "input_values" in params:
        sizes = [InputSpec((16000,), None, "input_values")]
    else:
        return None
    if getattr(config, "is_encoder_decoder", False) and "decoder_input_ids" in params:
        sizes.append(InputSpec((min(DECODER_LENGTH, length),), "int64", "decoder_input_ids"))
    return sizes


def _build_hf(name: str, kwargs: dict[str, Any]) -> HubModel:
    transformers = _require("transformers")
    meta_safe_masks()
    if not name:
        raise UnknownModelError("`model` hf: needs a name.",
                                "Give a model type, folder or cached Hub id, e.g. hf:gpt2.")
    name, task = _split_task(name)
    config, origin = _configure(name, transformers, kwargs)
    make, head = _head(config, task, transformers)
    module = _construct(f"hf:{name}", make)
    note = (f"{type(module).__name__} ({head}) from {origin}, with random weights")
    return HubModel(module, "transformers", _hf_sizes(module, config), [note])


_PATCHED = False


def meta_safe_masks() -> None:
    """Let transformers build attention masks from meta tensors.

    Its mask code skips work by reading mask values (``padding_mask.all()``, packed-sequence
    checks), except when ``is_tracing``: then it builds the mask from shapes alone. A meta
    tensor has no values, so reading them can only raise; treating meta tensors as traced
    takes the shape-only path there and changes nothing for any other tensor. This is one
    process-wide change to transformers, made when an ``hf:`` model is first built or a model
    first runs on meta with transformers loaded; other models see it only with meta tensors,
    which could not have worked before.
    """
    global _PATCHED  # noqa: PLW0603 - patched once per process
    if _PATCHED:
        return
    import importlib

    try:  # transformers before 4.53 has no masking_utils: nothing to adapt there
        masking_utils = importlib.import_module("transformers.masking_utils")
    except ImportError:
        return
    original = getattr(masking_utils, "is_tracing", None)
    if original is None:
        return

    def is_tracing(tensor: torch.Tensor | None = None) -> bool:
        return bool(original(tensor)) or (isinstance(tensor, torch.Tensor) and tensor.is_meta)

    setattr(masking_utils, "is_tracing", is_tracing)  # noqa: B010 - a module attribute
    _PATCHED = True
