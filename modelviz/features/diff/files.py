"""Which modelviz file a diff side is, told by its ``schema`` key, and the comparison it gets.

A summary, a memory plan and a profile are each compared with one of their kind; two kinds
mixed are one line (exit 2) rather than a table of figures that mean different things.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelviz.errors import ModelFileError
from modelviz.features.diff import memory, profile
from modelviz.features.diff.compare import ModelDiff, compare, load_json, summary_problem
from modelviz.output import mark_input

#: Each kind: its schema's prefix, what it is called, and the command that writes one.
KINDS: dict[str, tuple[str, str, str]] = {
    "summary": ("modelviz.summary/", "summary", "`modelviz summary MODEL -o summary.json`"),
    "memory": (memory.SCHEMA_PREFIX, "memory plan", "`modelviz memory MODEL -o memory.json`"),
    "profile": (profile.SCHEMA_PREFIX, "profile",
                "`modelviz profile MODEL --format json -o profile.json`"),
}
_PROBLEMS: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "summary": summary_problem, "memory": memory.memory_problem,
    "profile": profile.profile_problem}
_COMPARE: dict[str, Callable[..., ModelDiff]] = {
    "summary": compare, "memory": memory.compare_memory, "profile": profile.compare_profiles}


def kind_of(data: Any) -> str | None:
    """``summary``, ``memory`` or ``profile``, from the JSON's ``schema`` key; None otherwise."""
    if not isinstance(data, dict):
        return None
    schema = str(data.get("schema", ""))
    return next((kind for kind, (prefix, _, _) in KINDS.items() if schema.startswith(prefix)),
                None)


def read_side(path: str | Path) -> tuple[str, dict[str, Any]]:
    """A summary, memory plan or profile written by modelviz, and which of them it is; checked
    for what the comparison reads, so a hand-edited or truncated file is one line."""
    fix = ("Write one with `modelviz summary MODEL -o summary.json` (or `modelviz memory`, "
           "`modelviz profile`).")
    data = load_json(path, "file", fix)
    kind = kind_of(data)
    if kind is None:
        raise ModelFileError(f"{path} is JSON, but not a modelviz summary, memory plan or "
                             "profile.", fix)
    _, noun, command = KINDS[kind]
    mark_input(path, f"the {noun}")  # so that -o cannot overwrite it
    problem = _PROBLEMS[kind](data)
    if problem is not None:
        raise ModelFileError(f"{path} is a damaged modelviz {noun}: {problem}.",
                             f"Write it again with {command}.")
    return kind, data


def same_kind(a: str, a_kind: str, b: str, b_kind: str) -> None:
    """Refuse to compare a memory plan with a profile (or a summary): one line, exit 2."""
    if a_kind != b_kind:
        raise ModelFileError(
            f"{a} is a modelviz {KINDS[a_kind][1]} and {b} a {KINDS[b_kind][1]}: diff compares "
            "two files of one kind.",
            f"Give B as a {KINDS[a_kind][1]} too, written by {KINDS[a_kind][2]}.")


def compare_sides(kind: str, a: dict[str, Any], b: dict[str, Any], *, a_label: str | None = None,
                  b_label: str | None = None) -> ModelDiff:
    """Two summaries, memory plans or profiles (``kind``), compared as their kind is."""
    return _COMPARE[kind](a, b, a_label=a_label, b_label=b_label)
