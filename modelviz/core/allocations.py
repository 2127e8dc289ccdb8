"""Following every tensor storage a pass allocates and frees, as a caching allocator sees them.

A dispatch mode registers each new storage that an op returns; a finalizer on the storage
object (torch keeps one Python object per live storage) frees it the moment the last tensor or
view goes. Saved-tensor hooks tell which storages autograd keeps for backward, and which module
saved them. The same code follows a real CPU or CUDA step and a simulated one on the meta device,
where nothing holds data but every storage still has its size.

Not seen by the mode: memory that a kernel allocates and frees inside one op (cuDNN workspaces,
a fused kernel's scratch); a ``scratch`` function that knows a kernel's figure adds it for the
instant the op runs. Not seen at all: the CUDA context, and fragmentation in the allocator's cache.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakIdKeyDictionary

__all__ = ["CUDA_BLOCK", "Scratch", "Tracker", "round_up"]

#: What one op allocates and frees inside itself, from its overload and arguments (0: nothing
#: known); the tracker counts it on top of what is live, for the instant the op runs.
Scratch = Callable[[Any, tuple[Any, ...], dict[str, Any]], int]

#: The CUDA caching allocator hands out multiples of 512 bytes; a simulated CUDA (or meta) step
#: rounds the same way, so a model of many small biases is not undercounted.
CUDA_BLOCK = 512


def round_up(nbytes: int, block: int) -> int:
    """``nbytes`` as an allocator handing out multiples of ``block`` bytes sees it."""
    return -(-nbytes // block) * block if block > 1 else nbytes


@dataclass
class Snapshot:
    """What was live at one moment: bytes by kind, and the phase it happened in."""

    total: int = 0
    phase: str = ""
    by_kind: dict[str, int] = field(default_factory=dict)


class Tracker:
    """Live bytes over a pass: the running total, the peak and what the peak was made of.

    ``kind`` labels what new storages are ("activations" during the forward pass, "backward" in
    backward, "optimizer" in the step); ``adopt`` labels storages that exist already (parameters,
    buffers, inputs) so that a peak includes them. ``scratch`` knows kernels' own temporaries.
    """

    def __init__(self, *, block: int = 1, scratch: Scratch | None = None) -> None:
        self.block = block
        self.scratch = scratch
        self.kind = "activations"
        self.phase = "forward"
        self.module = ""  # the innermost module running, for what autograd saves
        self.current = 0
        self.peak = Snapshot()
        self.phase_peaks: dict[str, int] = {}
        self.phase_at: dict[str, dict[str, int]] = {}  # what was live at each phase's peak
        self._by_kind: dict[str, int] = {}
        self._live: dict[int, tuple[int, str]] = {}  # key -> (bytes, kind)
        self._keys: WeakIdKeyDictionary = WeakIdKeyDictionary()  # storage -> key
        self._next = 0
        self.saved: dict[int, tuple[int, str]] = {}  # key -> (bytes, module) kept for backward
        self._skip_saved: set[int] = set()  # parameters and buffers: saved, but not activations

    # -- storages ---------------------------------------------------------------------------

    def _storage(self, tensor: torch.Tensor) -> Any:
        try:
            return tensor.untyped_storage()
        except (RuntimeError, NotImplementedError):  # sparse, nested or wrapper tensors
            return None

    def key(self, tensor: torch.Tensor) -> int | None:
        """The tracked storage behind ``tensor``, or None when it is not tracked."""
        storage = self._storage(tensor)
        if storage is None:
            return None
        found: int | None = self._keys.get(storage)  # type: ignore[no-untyped-call]
        return found

    def register(self, tensor: torch.Tensor, kind: str | None = None) -> int | None:
        """Count ``tensor``'s storage from now until it is freed; a storage seen before is not
        counted again (views, in-place results, a parameter saved for backward)."""
        storage = self._storage(tensor)
        if storage is None:
            return None
        known: int | None = self._keys.get(storage)  # type: ignore[no-untyped-call]
        if known is not None:
            return known
        size = round_up(int(storage.nbytes()), self.block)
        key = self._next
        self._next += 1
        self._keys[storage] = key
        weakref.finalize(storage, self._free, key)
        label = kind or self.kind
        self._live[key] = (size, label)
        self._by_kind[label] = self._by_kind.get(label, 0) + size
        self.current += size
        self._note_peak(self.current, self._by_kind)
        return key

    def _note_peak(self, total: int, by_kind: dict[str, int]) -> None:
        if total > self.peak.total:
            self.peak = Snapshot(total, self.phase, dict(by_kind))
        if total > self.phase_peaks.get(self.phase, 0):
            self.phase_peaks[self.phase] = total
            self.phase_at[self.phase] = dict(by_kind)

    def spike(self, nbytes: int) -> None:
        """``nbytes`` live on top of everything else for an instant: a kernel's workspace, taken
        and given back inside one op (labelled "workspace" at a peak it makes)."""
        size = round_up(nbytes, self.block)
        self._note_peak(self.current + size,
                        {**self._by_kind, "workspace": self._by_kind.get("workspace", 0) + size})

    def adopt(self, tensors: Iterable[torch.Tensor], kind: str) -> int:
        """Storages that exist before the pass; returns the bytes newly counted."""
        before = self.current
        for tensor in tensors:
            if isinstance(tensor, torch.Tensor):
                self.register(tensor, kind)
        return self.current - before

    def relabel(self, tensors: Iterable[torch.Tensor], kind: str) -> int:
        """Move live storages to another kind (a gradient is known as one only once it lands
        in ``.grad``); returns their bytes."""
        moved = 0
        for tensor in tensors:
            key = self.key(tensor)
            if key is None or key not in self._live:
                continue
            size, old = self._live[key]
            if old != kind:
                self._live[key] = (size, kind)
                self._by_kind[old] -= size
                self._by_kind[kind] = self._by_kind.get(kind, 0) + size
            moved += size
        return moved

    def _free(self, key: int) -> None:
        entry = self._live.pop(key, None)
        if entry is None:
            return
        size, kind = entry
        self.current -= size
        self._by_kind[kind] -= size
        self.saved.pop(key, None)

    def reset_peak(self) -> None:
        """Peaks from now on (a second step's, say); what is live stays counted."""
        self.peak = Snapshot(self.current, self.phase, dict(self._by_kind))
        self.phase_peaks = {}
        self.phase_at = {}

    def start_phase(self, phase: str, kind: str) -> None:
        self.phase, self.kind = phase, kind
        if self.current > self.phase_peaks.get(phase, -1):
            self.phase_peaks[phase] = self.current
            self.phase_at[phase] = dict(self._by_kind)

    # -- what autograd keeps -----------------------------------------------------------------

    def not_activations(self, tensors: Iterable[torch.Tensor]) -> None:
        """Parameters and buffers: autograd saves them too, but they are no activation."""
        for tensor in tensors:
            key = self.register(tensor, "parameters")
            if key is not None:
                self._skip_saved.add(key)

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        key = self.register(tensor)
        if key is not None and key not in self._skip_saved and key not in self.saved:
            self.saved[key] = (self._live[key][0], self.module)
        return tensor

    def saved_bytes(self) -> int:
        """Bytes autograd holds for backward now (each storage once)."""
        return sum(size for size, _ in self.saved.values())

    def saved_by_module(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for size, module in self.saved.values():
            totals[module] = totals.get(module, 0) + size
        return totals

    @contextmanager
    def following(self, *, saved: bool = False) -> Iterator[Tracker]:
        """Inside: every op's new storage is counted; with ``saved``, so is what autograd keeps
        (``saved_tensors_hooks`` see every tensor saved, deduplicated here by storage)."""
        mode = _Follow(self)
        with mode:
            if saved:
                with torch.autograd.graph.saved_tensors_hooks(self._pack, _unpack):
                    yield self
            else:
                yield self


def _unpack(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


class _Follow(TorchDispatchMode):  # type: ignore[no-untyped-call]  # torch's mode is untyped
    """Registers what each op returns; everything else runs as it would."""

    def __init__(self, tracker: Tracker) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.tracker = tracker

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                self.tracker.register(leaf)
        # the kernel's outputs exist before it gives its scratch back, so the spike sits on them
        extra = self.tracker.scratch(func, args, kwargs) if self.tracker.scratch else 0
        if extra:
            self.tracker.spike(extra)
        return out
