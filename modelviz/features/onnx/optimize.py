"""``optimize``: a smaller graph for deployment, kept only if it still matches torch.

The dynamo exporter already runs onnxscript's optimizer (constant folding, its rewrite rules,
dead nodes) on every file it writes, so running it again changes nothing. onnxslim goes
further: it folds the shape arithmetic that dynamic axes leave behind (Shape, Gather, Concat
chains) with symbolic shape inference, removes no-op casts and reshapes, and merges duplicate
weights, using standard ONNX operators only; on the TorchScript exporter's files, which nothing
optimised, it removes most of the graph (T5: 762 nodes to 190). It rebuilds the nodes without
their metadata, so an optimised file no longer says which module made which node; the
divergence finder (``locate``) runs on the file before optimisation.

The optimised file is checked with onnx.checker and compared with torch again at every size the
export was; where it no longer matches (while the plain file did), the plain file is kept, and
the result says why.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable
from pathlib import Path

from modelviz.errors import MissingToolError, one_line
from modelviz.features.onnx.diagnose import captured
from modelviz.features.onnx.metadata import MODELVIZ_KEY
from modelviz.features.onnx.result import ExportResult, Optimization
from modelviz.features.onnx.verify import check_file, facts_from_file
from modelviz.output import staging_dir

TOOL = "onnxslim"


def _bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.iterdir())


def optimize_file(path: Path, result: ExportResult,
                  reverify: Callable[[], None] | None) -> None:
    """Optimise ``path`` in place; ``reverify`` compares it with torch again (filling
    ``result``'s parity afresh). Records ``result.optimization``; keeps the plain file when the
    optimised one fails a check the plain one passed."""
    import onnx

    try:
        import onnxslim
    except ImportError as exc:
        raise MissingToolError("onnxslim is not installed: pip install onnxslim.",
                               "Install it to use `optimize`.") from exc
    proto = onnx.load(str(path))
    external = any(onnx.external_data_helper.uses_external_data(t)
                   for t in onnx.load(str(path), load_external_data=False).graph.initializer)
    nodes_before, bytes_before = result.node_count, _bytes(path)
    backup = staging_dir(path.parent)  # beside the staging folder: a private one of its own
    for file in path.parent.iterdir():
        shutil.copyfile(file, backup / file.name)
    kept = {p.key: p.value for p in proto.metadata_props}
    try:
        with captured():  # onnxslim prints its own progress and tables
            slim = onnxslim.slim(proto)
    except Exception as exc:
        shutil.rmtree(backup, ignore_errors=True)
        result.optimization = Optimization(TOOL, nodes_before, nodes_before, bytes_before,
                                           bytes_before, kept=False,
                                           reason=f"onnxslim failed: {one_line(exc, 200)}")
        return
    del slim.metadata_props[:]
    for key, value in kept.items():  # the producer's and modelviz's version, as written
        entry = slim.metadata_props.add()
        entry.key, entry.value = key, value
    if MODELVIZ_KEY not in kept:  # pragma: no cover - every modelviz file has it
        entry = slim.metadata_props.add()
        entry.key, entry.value = MODELVIZ_KEY, "unknown"
    for extra in path.parent.iterdir():
        if extra != path:
            extra.unlink()
    if external:
        onnx.save(slim, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=f"{path.name}.data")
    else:
        onnx.save(slim, str(path))
    before = copy.deepcopy((result.parity, result.batch_parity, result.problems,
                            result.batch_checked, result.sizes_checked, result.notes))
    passed = result.ok
    facts = facts_from_file(path)
    nodes_after = sum(facts.op_counts.values())
    reason: str | None = None
    try:
        check_file(path)
    except Exception as exc:
        reason = f"the optimised file fails onnx.checker ({one_line(exc, 200)})"
    if reason is None and reverify is not None:
        result.problems = list(before[2])
        result.notes = list(before[5])
        reverify()
        if passed and not result.ok:
            worst = result.worst
            reason = ("the optimised file no longer matches torch ("
                      + (f"{worst.output} differs by {worst.max_abs_error:.3g}" if worst
                         else "; ".join(result.problems)) + ")")
    bytes_after = _bytes(path)
    if reason is not None:
        for file in path.parent.iterdir():
            file.unlink()
        for file in backup.iterdir():
            file.replace(path.parent / file.name)
        shutil.rmtree(backup, ignore_errors=True)
        (result.parity, result.batch_parity, result.problems, result.batch_checked,
         result.sizes_checked, result.notes) = before
        result.optimization = Optimization(TOOL, nodes_before, nodes_after, bytes_before,
                                           bytes_after, kept=False, reason=reason)
        result.notes.append(f"`optimize`: {reason}; the file is the exporter's, unoptimised")
        return
    shutil.rmtree(backup, ignore_errors=True)
    result.optimization = Optimization(TOOL, nodes_before, nodes_after, bytes_before,
                                       bytes_after)
    result.op_counts = dict(facts.op_counts.most_common())
    result.node_count = nodes_after
    result.inputs, result.outputs = facts.inputs, facts.outputs
