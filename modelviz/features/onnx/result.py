"""What an ONNX export wrote and what its checks found: the types every ONNX view reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelviz.errors import OutputError

#: A relative error this small is float32 arithmetic done in another order, not a wrong op.
ROUNDING = 1e-4


def sizes_text(sizes: dict[str, int] | None) -> str:
    """``batch 2, seq 9``: the sizes a dynamic file was also run at."""
    return ", ".join(f"{name} {size}" for name, size in (sizes or {}).items())


@dataclass
class TensorInfo:
    """A graph input or output as the ONNX file declares it; a str dimension is symbolic."""

    name: str
    dtype: str
    shape: list[int | str]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": self.shape}


@dataclass
class Parity:
    """How far ONNX Runtime's output is from torch's, for one output at one batch size.

    ``max_rel_error`` is the largest ``|onnx - torch| / max(|torch|, atol)``: relative where the
    value is large, and not blown up by values near zero. Positions equal on both sides agree
    whatever their value (inf with the same inf, NaN with NaN); a NaN or an infinity on one side
    only is an infinite error. ``uninformative`` says why a passing check proves nothing (torch's
    output is constant, all NaN...): a graph that computed anything else would have matched too.
    """

    output: str
    max_abs_error: float
    max_rel_error: float
    ok: bool
    batch: int | None = None  # the inputs' batch size, where they share one
    uninformative: str | None = None  # what torch's output is, when that makes the check moot
    #: "elementwise", or "detections matched by label and IoU" (compare.py says why)
    comparison: str = "elementwise"
    #: The size of each dynamic axis in this run (``{"batch": 2, "seq": 19}``), if any.
    sizes: dict[str, int] | None = None
    #: The largest error allowed, where it is not ``atol`` (matched detections: compare.py).
    tolerance: float | None = None

    @property
    def informative(self) -> bool:
        return self.uninformative is None

    def to_dict(self) -> dict[str, Any]:
        return {"output": self.output, "batch": self.batch, "sizes": self.sizes,
                "comparison": self.comparison, "tolerance": self.tolerance,
                "max_abs_error": self.max_abs_error,
                "max_rel_error": self.max_rel_error, "ok": self.ok,
                "informative": self.informative, "uninformative_reason": self.uninformative}


@dataclass
class Divergence:
    """Where ONNX Runtime's values first part from torch's beyond ``atol`` (``locate``).

    Usually inside ``module``: its output differs while its input agreed. With ``before`` set,
    in ``module``'s own forward code, between its submodules: ``before`` is the first submodule
    whose input already differed (``before=""``: after every submodule). ``module`` "" is the
    model itself."""

    module: str
    type: str
    max_abs_error: float
    value: str  # the ONNX value compared with the module's output
    ops: dict[str, int]  # the ONNX operators made for that module, by count
    agreed: int  # modules compared before it, all within atol
    max_rel_error: float | None = None  # the error over the output's largest magnitude
    before: str | None = None

    @property
    def rounding(self) -> bool:
        """Whether the module's error is float32's rounding (1e-4 of its largest value or less,
        what a different order of additions gives), not a wrong translation."""
        return self.max_rel_error is not None and self.max_rel_error <= ROUNDING

    @property
    def where(self) -> str:
        return f"{self.module} ({self.type})" if self.module else f"{self.type}'s own forward"

    def text(self) -> str:
        if self.before == "":
            return (f"every module's output agrees ({self.agreed} compared), so the difference "
                    f"is made in {self.type}'s own forward, after its modules")
        if self.before is not None:
            code = f"{self.where}'s own forward" if self.module else self.where
            return (f"the modules before {self.before} agree ({self.agreed} compared), but its "
                    f"input already differs by {self.max_abs_error:.3g}: the difference is made "
                    f"in {code}, before {self.before}")
        ops = ", ".join(f"{op} {n}" if n > 1 else op for op, n in list(self.ops.items())[:6])
        return (f"the first module whose output differs is {self.module} ({self.type}), by "
                f"{self.max_abs_error:.3g}"
                + (f" (relative {self.max_rel_error:.2g}: float rounding)" if self.rounding
                   else "") + (f"; its ONNX nodes: {ops}" if ops else "")
                + (f" ({self.agreed} modules before it agree)" if self.agreed else ""))

    def to_dict(self) -> dict[str, Any]:
        return {"module": self.module, "type": self.type, "before": self.before,
                "max_abs_error": self.max_abs_error, "error_to_scale": self.max_rel_error,
                "rounding": self.rounding, "onnx_value": self.value, "onnx_ops": self.ops,
                "modules_agreeing": self.agreed}


@dataclass
class Optimization:
    """What ``optimize`` did: the graph before and after, and whether the result was kept (a
    file that no longer matches torch is not)."""

    tool: str
    nodes_before: int
    nodes_after: int
    bytes_before: int
    bytes_after: int
    kept: bool = True
    reason: str | None = None  # why it was not kept

    def to_dict(self) -> dict[str, Any]:
        return {"tool": self.tool, "nodes_before": self.nodes_before,
                "nodes_after": self.nodes_after, "bytes_before": self.bytes_before,
                "bytes_after": self.bytes_after, "kept": self.kept, "reason": self.reason}


@dataclass
class ExportResult:
    """What was written and what the checks found.

    ``ok`` fails on a parity error beyond ``atol`` (at the export's sizes or at the second run's,
    batch + 1 and longer dynamic axes) and on
    any problem, but not on an uninformative check: a constant output says nothing against the
    file, which may well be right, and failing would make an untrained model (a zero-initialised
    head) unexportable. The check is flagged instead (``informative``), in the table and JSON.
    """

    path: Path
    exporter: str
    opset: int
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    op_counts: dict[str, int]
    node_count: int
    file_bytes: int
    data_files: list[Path] = field(default_factory=list)  # external weights, when over 2 GB
    data_bytes: int = 0  # of file_bytes, how many are in data_files
    dynamic_batch: bool = False
    parity: list[Parity] | None = None  # None: not verified
    atol: float = 1e-4
    batch_checked: int | None = None  # another batch size that ran in ONNX Runtime
    batch_parity: list[Parity] | None = None  # its values against torch's at that batch
    problems: list[str] = field(default_factory=list)  # beyond parity at the export's batch
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    #: Per input, its dynamic axes and their names, as the file declares them.
    dynamic_axes: dict[str, dict[str, str]] = field(default_factory=dict)
    #: The dynamic axes' sizes in the second run (``{"batch": 2, "seq": 19}``).
    sizes_checked: dict[str, int] | None = None
    with_cache: bool = False  # the decoder step with past key/values (cache.py)
    divergence: Divergence | None = None  # where a parity failure starts (locate.py)
    divergence_unknown: str | None = None  # why it could not be found
    optimization: Optimization | None = None
    #: What to do about the failure, when its cause is known (a frozen axis, a module).
    advice: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems and all(p.ok for p in [*(self.parity or []),
                                                        *(self.batch_parity or [])])

    @property
    def informative(self) -> bool | None:
        """Whether every comparison made can tell a right file from a wrong one; None when
        nothing was compared."""
        checks = [*(self.parity or []), *(self.batch_parity or [])]
        return all(p.informative for p in checks) if self.parity is not None else None

    @property
    def worst(self) -> Parity | None:
        """The failed comparison at the export's batch that is furthest from torch: what a
        one-line verdict names (a failure at batch + 1 alone is in ``problems``)."""
        failed = [p for p in self.parity or [] if not p.ok]
        return max(failed, key=lambda p: p.max_abs_error, default=None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path), "data_files": [str(f) for f in self.data_files],
            "file_bytes": self.file_bytes, "data_bytes": self.data_bytes,
            "exporter": self.exporter, "opset": self.opset,
            "dynamic_batch": self.dynamic_batch, "node_count": self.node_count,
            "op_counts": self.op_counts,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "verified": self.parity is not None, "ok": self.ok,
            "informative": self.informative, "atol": self.atol,
            "parity": [p.to_dict() for p in self.parity] if self.parity is not None else None,
            "batch_checked": self.batch_checked,
            "batch_parity": ([p.to_dict() for p in self.batch_parity]
                             if self.batch_parity is not None else None),
            "dynamic_axes": self.dynamic_axes, "sizes_checked": self.sizes_checked,
            "with_cache": self.with_cache,
            "first_divergence": (self.divergence.to_dict() if self.divergence is not None
                                 else None),
            "optimization": (self.optimization.to_dict() if self.optimization is not None
                             else None),
            "problems": self.problems, "notes": self.notes, "advice": self.advice,
            "seconds": self.seconds,
        }


def check_output(output: str | Path) -> Path:
    """An ONNX target is checked before any work: a typo must not cost a model load."""
    target = Path(output)
    if target.suffix.lower() != ".onnx":
        raise OutputError(f"{output}: an ONNX file should end in .onnx.",
                          "Give -o model.onnx.")
    if target.is_dir():
        raise OutputError(f"{output} is a folder.", "Give a file name, e.g. -o model.onnx.")
    return target
