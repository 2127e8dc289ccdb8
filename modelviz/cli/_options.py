"""The parameters every model command shares, declared once.

``@model_command`` adds MODEL, SIZES and the model options (device, dtype, weights...) to a
command's signature and hands them to the command as one ``ModelOptions``, so that each command
file declares only what is its own.
"""

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

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
         "fp16:3x32x32. Default for torchvision names: the family's usual size.")]
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

_EMPTY = inspect.Parameter.empty
#: (name, annotation, default) of the shared parameters, positional ones first.
SHARED: list[tuple[str, Any, Any]] = [
    ("model", ModelArg, _EMPTY),
    ("sizes", SizesArg, None),
    ("device", DeviceOpt, "auto"),
    ("dtype", DtypeOpt, None),
    ("batch_size", BatchOpt, 1),
    ("kwarg", KwargOpt, None),
    ("weights", WeightsOpt, None),
    ("strict", StrictOpt, True),
    ("trust_pickle", TrustPickleOpt, False),
    ("input_file", InputFileOpt, None),
    ("seed", SeedOpt, 0),
    ("train", TrainOpt, False),
]


@dataclass
class ModelOptions:
    """MODEL, SIZES and how to build and run them, as the user gave them."""

    model: str
    sizes: list[str] | None = None
    device: str = "auto"
    dtype: str | None = None
    batch_size: int = 1
    kwarg: list[str] | None = None
    weights: Path | None = None
    strict: bool = True
    trust_pickle: bool = False
    input_file: Path | None = None
    seed: int = 0
    train: bool = False

    def api_args(self) -> tuple[str, list["InputSpec"], dict[str, Any]]:
        """MODEL, parsed SIZES and ``api.prepare``'s keyword arguments; a bad string is named."""
        from modelviz.core.specs import parse_kwargs, parse_sizes

        return self.model.strip(), parse_sizes(self.sizes), {
            "device": self.device, "dtype": self.dtype, "batch_size": self.batch_size,
            "kwargs": parse_kwargs(self.kwarg), "weights": self.weights, "strict": self.strict,
            "trust_pickle": self.trust_pickle, "input_file": self.input_file,
            "seed": self.seed}

    def prepare(self) -> "Prepared":
        """Load the model and its inputs."""
        from modelviz.core.session import prepare

        model, sizes, options = self.api_args()
        return prepare(model, *sizes, **options)


    def load(self, *, quiet: bool = False) -> "Prepared":
        """``prepare`` under a spinner, then what the loader has to say, on stderr."""
        from modelviz.cli._console import spinner

        with spinner(f"Loading {self.model}", quiet=quiet):
            prepared = self.prepare()
        tell_loaded(prepared)
        return prepared


def tell_loaded(prepared: "Prepared") -> None:
    """The loader's notes (family default sizes, --no-strict key problems) for the user."""
    from modelviz.cli._console import note

    for message in prepared.loaded.notes:
        note(message)
    report = prepared.loaded.weights
    if report is not None and not report.clean:
        note(f"--no-strict: loaded {report.loaded} tensors; {report.problems()}")


F = TypeVar("F", bound=Callable[..., Any])
_POSITIONAL = ("model", "sizes")


def _with_shared(fn: F, *, positional: bool) -> F:
    own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
           for p in inspect.signature(fn, eval_str=True).parameters.values() if p.name != "opts"]
    shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                                default=default) for name, annotation, default in SHARED]
    arguments = [p for p in shared if p.name in _POSITIONAL]
    options = [p for p in shared if p.name not in _POSITIONAL]
    taken = [name for name, _, _ in SHARED if positional or name not in _POSITIONAL]

    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in taken}
        return fn(opts=ModelOptions(**{"model": "", **values}), **kwargs)

    parameters = (arguments if positional else []) + own + options
    wrapper.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    del wrapper.__wrapped__  # Typer must read the signature above, not fn's
    return wrapper  # type: ignore[return-value]


def model_command(fn: F) -> F:
    """Add MODEL, SIZES and the model options to ``fn``'s CLI signature; ``fn`` gets ``opts``."""
    return _with_shared(fn, positional=True)


def model_options(fn: F) -> F:
    """Add only the model options; ``fn`` declares its own arguments (``diff A B SIZES``) and
    gets ``opts`` with an empty ``model``, to fill in with ``dataclasses.replace``."""
    return _with_shared(fn, positional=False)
