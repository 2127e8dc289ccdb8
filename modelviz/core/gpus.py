"""Known accelerators: memory for `memory --fit`, peak rates for `profile`'s roofline.

Torch-free, so that option strings are checked before torch loads. Memory is what the driver
reports as the card's total (nvidia-smi's MiB); the CUDA context and the allocator's fragmentation
come off it at run time and are not counted here. Rates are the vendors' dense figures (not the
"with sparsity" ones that datasheets print larger): FLOP/s for float32 without tensor cores,
TF32, and 16-bit (bf16/fp16 with float32 accumulation); bandwidth is the main memory's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MIB = 1024**2
TERA = 1e12


@dataclass(frozen=True)
class Gpu:
    """One card's datasheet figures."""

    name: str
    memory_bytes: int
    fp32_flops: float
    tf32_flops: float
    half_flops: float
    bandwidth: float  # bytes per second

    def peak_flops(self, dtype: str, *, tf32: bool = False) -> float:
        """The peak for arithmetic in ``dtype`` (a torch dtype's short name)."""
        if dtype in ("bfloat16", "float16"):
            return self.half_flops
        return self.tf32_flops if tf32 else self.fp32_flops


def _gpu(name: str, mib: int, fp32: float, tf32: float, half: float, tbps: float) -> Gpu:
    return Gpu(name, mib * MIB, fp32 * TERA, tf32 * TERA, half * TERA, tbps * TERA)


#: Keys are what users type: lower case, the memory size where a card comes in several.
GPUS: dict[str, Gpu] = {
    "h200": _gpu("NVIDIA H200", 143_771, 67, 494.7, 989.4, 4.8),
    "h100": _gpu("NVIDIA H100 SXM 80GB", 81_559, 67, 494.7, 989.4, 3.35),
    "h100-pcie": _gpu("NVIDIA H100 PCIe 80GB", 81_559, 51, 378, 756, 2.0),
    "a100-80gb": _gpu("NVIDIA A100 SXM 80GB", 81_251, 19.5, 156, 312, 2.039),
    "a100-40gb": _gpu("NVIDIA A100 SXM 40GB", 40_536, 19.5, 156, 312, 1.555),
    "l40s": _gpu("NVIDIA L40S", 46_068, 91.6, 183, 362, 0.864),
    "a10": _gpu("NVIDIA A10", 23_028, 31.2, 62.5, 125, 0.6),
    "l4": _gpu("NVIDIA L4", 23_034, 30.3, 60, 121, 0.3),
    "v100-32gb": _gpu("NVIDIA V100 SXM2 32GB", 32_768, 15.7, 15.7, 125, 0.9),
    "v100-16gb": _gpu("NVIDIA V100 SXM2 16GB", 16_384, 15.7, 15.7, 125, 0.9),
    "t4": _gpu("NVIDIA T4", 15_360, 8.1, 8.1, 65, 0.32),
    "rtx4090": _gpu("NVIDIA GeForce RTX 4090", 24_564, 82.6, 82.6, 165.2, 1.008),
    "rtx3090": _gpu("NVIDIA GeForce RTX 3090", 24_576, 35.6, 35.6, 71, 0.936),
}
_ALIASES = {"a100": "a100-80gb", "v100": "v100-32gb", "4090": "rtx4090", "3090": "rtx3090",
            "h100-sxm": "h100"}


def find(name: str) -> Gpu | None:
    """A known card by the name users type (``h100``, ``A100-40GB``, ``rtx4090``), or None."""
    key = name.strip().lower().replace("_", "-").replace(" ", "")
    key = _ALIASES.get(key, key)
    return GPUS.get(key)


def match(device_name: str) -> Gpu | None:
    """The card torch reports by name (``NVIDIA H100 80GB HBM3``), matched loosely, or None."""
    text = device_name.lower()
    words = set(re.findall(r"[a-z0-9]+", text))
    for key, gpu in sorted(GPUS.items(), key=lambda item: "-" not in item[0]):  # specific first
        model = key.split("-")[0].removeprefix("rtx")
        if model not in words and f"rtx{model}" not in words:
            continue
        size = key.split("-")[1] if "-" in key else ""
        if size and size not in words:
            continue
        return gpu
    return None


def known() -> str:
    """The names `find` accepts, for messages."""
    return ", ".join(GPUS)
