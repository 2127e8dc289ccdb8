"""Which modules to measure: qualified names, globs and type names, or a representative few.

A name that matches nothing is named in the error with the closest real names, since a typo in
``--layer`` is the most common mistake with ``modelviz activations``.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Sequence

from torch import nn

from modelviz.errors import SpecError
from modelviz.escape import printable

__all__ = ["is_glob", "representative_modules", "select_modules"]

_GLOB_CHARS = frozenset("*?[")

def is_glob(pattern: str) -> bool:
    """Whether ``pattern`` would be read as a glob; an exact module name is matched first anyway,
    since names may hold ``[`` (``blocks.stage[1]``), ``*`` or ``?``."""
    return any(c in _GLOB_CHARS for c in pattern)


def _listing(items: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" … ({len(items)} in all)" if len(items) > limit else "")


def _layer_error(pattern: str, names: list[str], model_name: str) -> SpecError:
    """The error for a ``--layer`` that matches nothing; names in it go through ``printable``,
    as the message is printed on a terminal."""
    probe = pattern.replace("*", "").replace("?", "").strip(".") if is_glob(pattern) else pattern
    close = difflib.get_close_matches(probe, names, n=3, cutoff=0.6)
    if close:
        hint = f"Did you mean {', '.join(printable(n) for n in close)}?"
    else:
        top = [printable(n) for n in names if "." not in n]
        hint = f"Its top-level modules: {_listing(top)}."
    return SpecError(
        f"`layers={pattern!r}` matches no module of {printable(model_name)}.",
        f"{hint} Give qualified names (layer1.0.conv1) or globs ('layer4.*'); "
        "`modelviz summary MODEL --depth 9` lists them all.",
    )


def _type_matches(pattern: str, type_name: str) -> bool:
    wanted = pattern.rsplit(".", 1)[-1]  # torch.nn.Conv2d -> Conv2d
    if is_glob(wanted):
        return fnmatch.fnmatchcase(type_name.lower(), wanted.lower())
    return type_name.lower() == wanted.lower()


def select_modules(model: nn.Module, layers: Sequence[str] = (), types: Sequence[str] = (), *,
                   model_name: str = "the model") -> list[str]:
    """Qualified names of the modules chosen by name or glob (``layers``) or by type name
    (``types``), in definition order; neither given: every module. The model itself is never
    chosen: its output is its last layer's."""
    modules = {name: type(m).__name__ for name, m in model.named_modules() if name}
    names = list(modules)
    if not layers and not types:
        return names
    chosen: set[str] = set()
    for pattern in layers:
        text = pattern.strip()
        if not text:
            raise SpecError("`layers=''` is empty.", "Give a module name or a glob such as '*'.")
        # an exact name is itself, before any glob: ``blocks.stage[1]`` is no character class
        exact = [pattern] if pattern in modules else [text] if text in modules else []
        found = exact or ([n for n in names if fnmatch.fnmatchcase(n, text)] if is_glob(text)
                          else [])
        if not found:
            raise _layer_error(text, names, model_name)
        chosen.update(found)
    for pattern in types:
        text = pattern.strip()
        found = [n for n, t in modules.items()
                 if text and (t.lower() == text.lower() or _type_matches(text, t))]
        if not found:
            kinds = sorted({printable(t) for t in modules.values()})
            raise SpecError(f"`types={pattern!r}` matches no module of {printable(model_name)}.",
                            f"Its module types: {_listing(kinds)}.")
        chosen.update(found)
    return [n for n in names if n in chosen]


# Types that rarely make an informative picture on their own: the layer before them shows the same.
_PLAIN_TYPES = re.compile(r"\w*(Norm|Pool|Dropout)\dd|\w*(Norm|Pool)|ReLU\d*|LeakyReLU|GELU|SiLU|"
                          r"Sigmoid|Tanh|Softmax|Identity|Flatten|Hardswish|Hardsigmoid|Mish|"
                          r"Dropout")
_CONTAINERS = (nn.ModuleList, nn.ModuleDict, nn.ParameterList, nn.ParameterDict)


def representative_modules(model: nn.Module, count: int = 4) -> list[str]:
    """A few modules spread from input to output, for reports that cannot ask the user.

    The shallowest depth with ``count`` modules worth drawing (convolutions, blocks, linear
    layers rather than norms and activations), then evenly spaced picks from first to last.
    """
    named = [(n, m) for n, m in model.named_modules()
             if n and not isinstance(m, _CONTAINERS)]
    if not named:
        return []
    deepest = max(n.count(".") for n, _ in named) + 1
    candidates: list[str] = []
    for depth in range(1, deepest + 1):
        level = [n for n, m in named if n.count(".") + 1 == depth]
        wanted = [n for n, m in named if n.count(".") + 1 == depth
                  and not _PLAIN_TYPES.fullmatch(type(m).__name__)]
        candidates = wanted if len(wanted) >= min(count, 2) else level
        if len(candidates) >= count:
            break
    if len(candidates) <= count:
        return candidates
    picks = sorted({round(i * (len(candidates) - 1) / (count - 1)) for i in range(count)})
    return [candidates[i] for i in picks]
