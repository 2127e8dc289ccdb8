r"""Named exceptions for user mistakes.

The library raises these; the CLI maps every one of them, in one place, to a single line and an
exit status. Each message names the problem and carries a ``fix`` so that the user knows what to
type next.

Messages speak the library's language: an option is named as the Python parameter it is, in
backticks (``\`input_file\```, ``\`device=cpu\```, ``\`strict=False\```), which is what a caller
of ``modelviz.summary(...)`` types. The CLI shows the same token as its flag (``--input-file``,
``--device cpu``, ``--no-strict``) through ``cli_terms``, so that one message serves both.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import IntEnum

#: A parameter named in a message: `name` or `name=value`.
_TOKEN = re.compile(r"`([a-z][a-z_]*)(?:=([^`]*))?`")


def cli_terms(text: str, flags: Mapping[str, str]) -> str:
    """``text`` with each parameter token that ``flags`` knows shown as the CLI's flag: a
    whole ``name=value`` first (``strict=False`` is ``--no-strict``), else ``--flag value``."""

    def flag(match: re.Match[str]) -> str:
        name, value = match.group(1), match.group(2)
        if value is None:
            return flags.get(name, match.group(0))
        whole = flags.get(f"{name}={value}")
        if whole is not None:
            return whole
        return f"{flags[name]} {value}" if name in flags else match.group(0)

    return _TOKEN.sub(flag, text)


def one_line(text: object, limit: int = 300) -> str:
    """Another library's message (an exception, a warning) as part of one line: whitespace and
    newlines folded, cut at ``limit`` characters with an ellipsis."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def failure_line(exc: BaseException, limit: int = 300) -> str:
    """Why a part of a larger job failed, in one line: modelviz's own errors as they read,
    another library's with its type (``RuntimeError: ...``), folded to ``limit`` characters."""
    if isinstance(exc, ModelvizError):
        return str(exc)
    return f"{type(exc).__name__}: {one_line(exc, limit=limit)}"


def chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions behind it (``raise ... from``, or raised while handling),
    outermost first: the cause a library wraps is often the one that says what went wrong."""
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in found:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


class ExitStatus(IntEnum):
    """What ``modelviz`` exits with."""

    OK = 0
    CHECK_FAILED = 1  # a budget exceeded, ONNX parity off, a report part that failed
    USER_ERROR = 2  # a mistake the user can fix: the one line on stderr says how
    INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


class ModelvizError(Exception):
    """A mistake the user can fix; shown as one line, exit status 2."""

    exit_code: int = ExitStatus.USER_ERROR

    def __init__(self, problem: str, fix: str | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.problem} {self.fix}" if self.fix else self.problem


class UnknownModelError(ModelvizError):
    """No torchvision model, module attribute or file matches the MODEL argument."""


class ModelFileError(ModelvizError):
    """A model, weights or input file is missing or not in a format we can read."""


class UserCodeError(ModelvizError):
    """Importing or building the user's own model raised; the message carries their error."""


class UnsafePickleError(ModelvizError):
    """The file needs full unpickling, which runs code, and the user did not allow it."""


class SpecError(ModelvizError):
    """A size, dtype, device, number or option string is malformed."""


class WeightsMismatchError(ModelvizError):
    """A state dict does not fit the model (missing, unexpected or differently shaped keys)."""


class DeviceError(ModelvizError):
    """The requested device (cuda, mps) is not available here."""


class ForwardError(ModelvizError):
    """The forward pass failed; the message names the module that failed and what ran before."""


class MissingToolError(ModelvizError):
    """An external program (Graphviz's ``dot``, a browser) is not installed."""


class OutputError(ModelvizError):
    """An output path cannot be written or has an unknown extension."""


class ExportError(ModelvizError):
    """ONNX export failed; the message carries the operator or construct that caused it."""


class CheckFailed(ModelvizError):
    """A CI check failed (budget exceeded, numerical parity off): exit status 1, not 2."""

    exit_code = ExitStatus.CHECK_FAILED


class ServiceError(ModelvizError):
    """A service modelviz logs to (a Visdom server, W&B) cannot be reached or refused it."""
