"""The parameters every model command shares, declared once as ``Annotated`` aliases.

Each command writes them into its own signature (``model: ModelArg``, ``device: DeviceOpt =
"auto"``...), the usual Typer idiom, so that its signature is what Typer and a reader see; the
first line of the command gathers them into one ``ModelOptions``, whose strings are parsed there
and then, before torch is imported: a bad SIZES fails in milliseconds, not after torch's import.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from modelviz.core.session import Prepared
    from modelviz.core.specs import InputSpec

PANEL = "Model and input"

ModelArg = Annotated[str, typer.Argument(
    show_default=False,
    help="torchvision name (vgg16), package.module:attr, path/file.py:attr, or a saved "
         "TorchScript / .pt2 / pickled model file.")]
SizesArg = Annotated[list[str] | None, typer.Argument(
    show_default=False,
    help="One size per model input, without the batch dimension: 3x224x224, 10, int64:128, "
         "fp16:3x32x32; NAME=SIZE for a keyword input of forward, after the positional "
         "ones: attention_mask=int64:128. Default for torchvision names: the family's usual "
         "size.")]
DeviceOpt = Annotated[str, typer.Option(
    "--device", rich_help_panel=PANEL,
    help="auto, cpu, cuda, cuda:N, mps, or meta (shapes and counts without memory).")]
DtypeOpt = Annotated[str | None, typer.Option(
    "--dtype", rich_help_panel=PANEL,
    help="Cast the model and float inputs: float32, float16, bfloat16.")]
BatchOpt = Annotated[int, typer.Option(
    "--batch-size", "-b", min=1, rich_help_panel=PANEL,
    help="Batch dimension prepended to every size.")]
KwargOpt = Annotated[list[str] | None, typer.Option(
    "--kwarg", "-k", rich_help_panel=PANEL, metavar="KEY=VALUE",
    help="Constructor argument for a class or factory (a Python literal); repeatable.")]
ForwardArgOpt = Annotated[list[str] | None, typer.Option(
    "--forward-arg", rich_help_panel=PANEL, metavar="KEY=VALUE",
    help="Non-tensor keyword argument of forward, e.g. use_cache=False (a Python literal); "
         "repeatable.")]
WeightsOpt = Annotated[Path | None, typer.Option(
    "--weights", "-w", rich_help_panel=PANEL,
    help="State dict to load: .pt/.pth (plain or a training checkpoint) or .safetensors.")]
StrictOpt = Annotated[bool, typer.Option(
    "--strict/--no-strict", rich_help_panel=PANEL,
    help="Refuse weights whose keys or shapes do not all match the model.")]
TrustPickleOpt = Annotated[bool, typer.Option(
    "--trust-pickle", rich_help_panel=PANEL,
    help="Allow what runs code from the model file: a whole pickled model, or an exported "
         "program that needs more than its weights.")]
InputFileOpt = Annotated[Path | None, typer.Option(
    "--input-file", rich_help_panel=PANEL,
    help="Saved inputs (torch.save): a tensor, a tuple of tensors, or a dict of keyword inputs. "
         "Replaces SIZES.")]
SeedOpt = Annotated[int, typer.Option(
    "--seed", rich_help_panel=PANEL, help="Seed for the random inputs.")]
TrainOpt = Annotated[bool, typer.Option(
    "--train", rich_help_panel=PANEL,
    help="Run in training mode (BatchNorm batch statistics, Dropout on).")]
#: On by default: a 7B model's 32 decoder layers are one row, not 160; --fold is still
#: accepted, for the command lines written when folding was opt-in.
FoldOpt = Annotated[bool, typer.Option(
    "--fold/--no-fold",
    help="Fold runs of identical numbered blocks (layers.0 ... layers.31) into one row (×N).")]


@dataclass
class ModelOptions:
    """MODEL, SIZES and how to build and run them, as the user gave them, and parsed."""

    model: str
    sizes: list[str] | None = None
    device: str = "auto"
    dtype: str | None = None
    batch_size: int = 1
    kwarg: list[str] | None = None
    forward_arg: list[str] | None = None
    weights: Path | None = None
    strict: bool = True
    trust_pickle: bool = False
    input_file: Path | None = None
    seed: int = 0
    train: bool = False
    specs: list[InputSpec] = field(init=False, repr=False)
    kwargs: dict[str, object] = field(init=False, repr=False)
    forward_args: dict[str, object] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Every string parsed by the torch-free parsers, before a command imports anything heavy.
        from modelviz.core.specs import (
            MODEL_DTYPES,
            check_seed,
            parse_device,
            parse_dtype,
            parse_forward_args,
            parse_kwargs,
            parse_sizes,
        )

        self.model = self.model.strip()
        self.specs = parse_sizes(self.sizes)
        self.kwargs = parse_kwargs(self.kwarg)
        self.forward_args = parse_forward_args(self.forward_arg)
        parse_device(self.device)
        if self.dtype is not None:
            parse_dtype(self.dtype, allowed=MODEL_DTYPES)
        check_seed(self.seed)

    @classmethod
    def from_locals(cls, values: dict[str, Any]) -> ModelOptions:
        """The shared options out of a command's ``locals()``, which holds them by name; a
        command without MODEL of its own (``diff A B``) fills it in per side."""
        shared = {f.name: values[f.name] for f in fields(cls) if f.init and f.name in values}
        return cls(**{"model": "", **shared})

    def prepare_options(self) -> dict[str, Any]:
        """``core.session.prepare``'s keyword arguments, from the parsed options."""
        return {"device": self.device, "dtype": self.dtype, "batch_size": self.batch_size,
                "kwargs": self.kwargs, "weights": self.weights, "strict": self.strict,
                "trust_pickle": self.trust_pickle, "input_file": self.input_file,
                "seed": self.seed, "forward_args": self.forward_args}

    def prepare(self, *, values: bool = True) -> Prepared:
        """Load the model and its inputs; ``values=False`` for a command that needs shapes and
        counts only (``core.session.prepare``)."""
        from modelviz.cli._process import heavy_imports

        with heavy_imports():
            from modelviz.core.session import prepare

            return prepare(self.model, *self.specs, **self.prepare_options(), values=values)

    def load(self, *, quiet: bool = False, values: bool = True) -> Prepared:
        """``prepare`` under a spinner, then what the loader has to say, on stderr."""
        from modelviz.cli._console import spinner

        with spinner(f"Loading {self.model}", quiet=quiet):
            prepared = self.prepare(values=values)
        tell_loaded(prepared)
        return prepared


def tell_loaded(prepared: Prepared) -> None:
    """The loader's notes (family default sizes, --no-strict key problems) for the user."""
    from modelviz.cli._console import note

    for message in prepared.loaded.notes:
        note(message)
    report = prepared.loaded.weights
    if report is not None and not report.clean:
        note(f"--no-strict: loaded {report.loaded} tensors; {report.problems()}")
