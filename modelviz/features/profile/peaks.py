"""The device's peak FLOP/s and memory bandwidth, for the roofline, and where they come from.

On a known GPU they are its datasheet figures (``core.gpus``); on the CPU they are measured here,
quickly (well under half a second): the best of a few matrix products and of a few large copies,
with the threads and dtype the model runs with. An unknown GPU has none, and no bound is given.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import torch

from modelviz.core.gpus import match

MATMUL_N = 1024  # a 1024x1024 product: 2.1 GFLOP, large enough to reach the BLAS's stride
COPY_BYTES = 32 * 1024**2  # larger than any last-level cache, small enough to be quick


@dataclass(frozen=True)
class Peaks:
    """Peak rates of the device the profile ran on; None where they are not known."""

    flops: float | None  # FLOP/s
    bandwidth: float | None  # bytes/s
    source: str  # how they were found, in words

    @property
    def ridge(self) -> float | None:
        """The arithmetic intensity (FLOP/byte) above which a layer is compute-bound."""
        if self.flops is None or not self.bandwidth:
            return None
        return self.flops / self.bandwidth

    def bound(self, intensity: float) -> str | None:
        ridge = self.ridge
        if ridge is None:
            return None
        return "compute" if intensity >= ridge else "memory"

    def to_dict(self) -> dict[str, object]:
        return {"flops_per_s": self.flops, "bytes_per_s": self.bandwidth,
                "ridge_flops_per_byte": self.ridge, "source": self.source}


@cache
def cpu_peaks(dtype: torch.dtype = torch.float32, threads: int | None = None) -> Peaks:
    """The best of 3 ``MATMUL_N``-square products and of 5 ``COPY_BYTES`` copies, measured."""
    del threads  # part of the cache key: a peak measured with 1 thread is not one with 2
    n = MATMUL_N
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    out = torch.empty(n, n, dtype=dtype)
    torch.mm(a, b, out=out)  # warm-up: the BLAS's threads and buffers
    best = min(_timed(lambda: torch.mm(a, b, out=out)) for _ in range(3))
    flops = 2 * n**3 / best
    elements = COPY_BYTES // 4
    src = torch.ones(elements, dtype=torch.float32)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best_copy = min(_timed(lambda: dst.copy_(src)) for _ in range(5))
    bandwidth = 2 * COPY_BYTES / best_copy  # read one buffer, write the other
    name = str(dtype).removeprefix("torch.")
    return Peaks(flops, bandwidth,
                 f"measured on this CPU ({torch.get_num_threads()} threads): a {n}x{n} {name} "
                 f"matmul and a {COPY_BYTES // 1024**2} MB copy")


def _timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def cuda_peaks(device: torch.device, dtype: str) -> Peaks:
    """The datasheet figures of the GPU torch names, for the model's dtype: float32 runs as TF32
    where cuDNN or cuBLAS is allowed to use it (cuDNN is by default)."""
    name = torch.cuda.get_device_name(device)
    gpu = match(name)
    if gpu is None:
        return Peaks(None, None, f"{name} is not among the known GPUs: no peak, no bound")
    tf32 = bool(torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32)
    kind = ("16-bit" if dtype in ("bfloat16", "float16")
            else "TF32" if tf32 else "float32")
    return Peaks(gpu.peak_flops(dtype, tf32=tf32), gpu.bandwidth,
                 f"datasheet of the {gpu.name} ({kind}, dense)")


def peaks_for(device: torch.device, dtype: str) -> Peaks:
    """The peaks of ``device`` for a model whose weights are ``dtype``."""
    if device.type == "cuda":
        return cuda_peaks(device, dtype)
    torch_dtype = getattr(torch, dtype, torch.float32)
    if not isinstance(torch_dtype, torch.dtype) or not torch_dtype.is_floating_point:
        torch_dtype = torch.float32
    return cpu_peaks(torch_dtype, torch.get_num_threads())
