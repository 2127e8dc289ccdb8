"""The module tree of a ``Trace`` in the order it ran, and runs of identical sibling blocks.

The summary's rows and the graph's clusters both fold ``layers.0`` ... ``layers.31`` into one
``layers.0–31 ×32``; they agree because both fold with these functions.
"""

from __future__ import annotations

import re
from typing import Any

from modelviz.core.records import ModuleRecord, Trace, shapes_json


def fold_label(names: list[str]) -> str:
    """``layers.0`` ... ``layers.31`` -> ``layers.0–31``."""
    first, last = names[0], names[-1]
    a, b = re.match(r"^(.*?)(\d+)$", first), re.match(r"^(.*?)(\d+)$", last)
    if a and b and a.group(1) == b.group(1):
        return f"{first}–{b.group(2)}"
    return f"{first} … {last}"


def signature(trace: Trace, record: ModuleRecord, memo: dict[str, tuple[Any, ...]]) -> (
        tuple[Any, ...]):
    """Modules with equal signatures are interchangeable blocks and may be folded together."""
    known = memo.get(record.name)
    if known is None:
        call = record.first_call
        shapes = (repr(shapes_json(call.inputs)), repr(shapes_json(call.output))) if call else ()
        children = tuple(signature(trace, c, memo) for c in trace.children(record.name))
        known = memo[record.name] = (record.type, record.params_total, record.trainable_total,
                                     record.flops, len(record.calls), shapes, children)
    return known


def first_activity(trace: Trace, record: ModuleRecord) -> int | None:
    """When the module, or for a ModuleList anything inside it, first ran."""
    if record.calls:
        return record.calls[0].index
    starts = [first_activity(trace, c) for c in trace.children(record.name)]
    known = [s for s in starts if s is not None]
    return min(known) if known else None


def ordered_children(trace: Trace, name: str) -> list[ModuleRecord]:
    """Children in the order they first ran; never-run ones last, in definition order."""
    children = trace.children(name)
    never = len(trace.calls)
    starts: dict[str, int] = {}
    for child in children:
        start = first_activity(trace, child)
        starts[child.name] = never if start is None else start
    return sorted(children, key=lambda r: starts[r.name])


def fold_runs(trace: Trace, siblings: list[ModuleRecord], memo: dict[str, tuple[Any, ...]]) -> (
        list[list[ModuleRecord]]):
    """Split siblings (in order) into runs of interchangeable blocks; most runs have one member."""
    runs: list[list[ModuleRecord]] = []
    i = 0
    while i < len(siblings):
        run = [siblings[i]]
        first = signature(trace, siblings[i], memo)
        while (i + len(run) < len(siblings)
               and signature(trace, siblings[i + len(run)], memo) == first):
            run.append(siblings[i + len(run)])
        runs.append(run)
        i += len(run)
    return runs


def numbered(names: list[str]) -> bool:
    """``layers.0``, ``layers.1``...: one prefix, then a number, as the graph folds them."""
    prefixes = {re.sub(r"\d+$", "", name) for name in names}
    return len(prefixes) == 1 and all(re.search(r"\d$", name) for name in names)


def block_runs(trace: Trace, name: str, memo: dict[str, tuple[Any, ...]]) -> (
        list[list[ModuleRecord]]):
    """The children of ``name`` in run order, runs of identical numbered blocks together;
    identical siblings with names of their own (``q_proj``, ``k_proj``) keep their rows."""
    return [part for run in fold_runs(trace, ordered_children(trace, name), memo)
            for part in ([run] if numbered([r.name for r in run]) else [[r] for r in run])]


#: How deep a default may go to reach repeated blocks: summary's table and graph's drawing.
MAX_REACH = 6


def blocks_depth(trace: Trace, reach: int = MAX_REACH) -> int:
    """The depth of the deepest first run of repeated numbered blocks (0 if there is none), a
    branch's outermost run only, as the blocks inside a folded block show under it: what the
    default depth of ``summary`` and ``graph`` reaches for (CLIP's encoder layers at 4)."""
    memo: dict[str, tuple[Any, ...]] = {}
    deepest = 0

    def visit(name: str, level: int) -> None:
        nonlocal deepest
        if level > reach:
            return
        for run in block_runs(trace, name, memo):
            if len(run) > 1:
                deepest = max(deepest, level)
            else:
                visit(run[0].name, level + 1)

    visit("", 1)
    return deepest
