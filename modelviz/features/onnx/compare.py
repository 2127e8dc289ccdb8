"""ONNX Runtime's outputs against torch's: element by element, or, for detections, as sets.

A detection model's rows are in score order, and with random weights many scores tie (near 1.0
after a softmax): ONNX Runtime and torch then list the same detections in another order, and an
element-wise comparison reports a box "differing by 95.8" that is only the next row. Outputs
that form a detection (``boxes`` with ``scores`` and ``labels``, and ``masks`` or
``keypoints``, in one dict) are compared as sets instead: each torch detection is paired with
the ONNX Runtime detection of the same label that overlaps it most (IoU), the pairs are
compared, and a detection left without a partner is a failure. Which comparison was used is
stated beside every figure (``Parity.comparison``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from modelviz.core.formatting import dims_text
from modelviz.features.onnx.axes import DETECTION_KEYS
from modelviz.features.onnx.result import Parity

ELEMENTWISE = "elementwise"
MATCHED = "detections matched by label and IoU"
#: A pair of boxes is the same detection from this overlap on; below it, rows are unmatched.
#: High, since a model's detections overlap each other (NMS keeps boxes of IoU up to 0.5 to
#: 0.7): a lower bar pairs a box with its neighbour when its twin was cut on the other side.
MIN_IOU = 0.9
#: Matched detections agree within this fraction of each output's largest value (or within
#: atol, if larger): a tenth of a pixel at 128 pixels, under one at 800. Box decoding sends the
#: regression through exp() and multiplies it by the anchor's size, so float32's rounding in
#: the backbone (relative 1e-6 there) comes out near 3e-4 of the image in the boxes: atol,
#: meant for values near 1, does not fit pixel coordinates.
DETECTION_RTOL = 1e-3
#: Masks are pasted into the image at their box's corners rounded to whole pixels, so a box
#: that moves by a hundredth of a pixel across an integer moves or rescales its whole mask:
#: masks are compared by their mean difference per detection, within this.
MASK_MEAN_TOL = 0.05
#: The keys that make a dict a detection (torchvision's): the first two must be there.


def numpy(tensor: torch.Tensor) -> Any:
    return tensor.detach().to("cpu").contiguous().numpy()


def uninformative(name: str, values: Any) -> str | None:
    """Why comparing with torch's ``values`` proves nothing, or None: with no element, no
    finite one, or one value everywhere (an untrained zero-initialised head gives 0 for every
    logit, whatever the layers before it computed), any graph of the right shape would match."""
    import numpy as np

    finite = np.isfinite(values)
    if values.size == 0:
        what = "is empty"
    elif np.isnan(values).all():
        what = "is all NaN"
    elif (values.size > 1 or not finite.all()) and (values == values.flat[0]).all():
        first = float(values.flat[0])
        what = ("is all zeros (a layer initialised to zero, such as an untrained head?)"
                if first == 0 else f"is {first:g}" + (" everywhere" if values.size > 1 else ""))
    elif not finite.any():
        what = (f"is never finite ({int(np.isnan(values).sum()):,} NaN, "
                f"{int(np.isinf(values).sum()):,} infinite)")
    else:
        return None
    return f"torch's {name} {what}"


def errors(actual: Any, expected: Any, atol: float) -> tuple[float, float]:
    """The largest absolute and relative differences. A position counts only where the two
    differ: equal infinities and NaN against NaN agree; a NaN or an infinity facing anything
    else is an infinite error, never the NaN that subtracting them gives."""
    import numpy as np

    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        same = (actual == expected) | (np.isnan(actual) & np.isnan(expected))
        diff = np.where(same, 0.0, np.abs(actual - expected))
        diff = np.where(np.isnan(diff), np.inf, diff)
        rel = np.where(np.isinf(diff), np.inf, diff / np.fmax(np.abs(expected), atol))
    return (float(diff.max()) if diff.size else 0.0, float(rel.max()) if rel.size else 0.0)


def compare(name: str, got: Any, reference: torch.Tensor | Any, atol: float,
            batch: int | None, sizes: dict[str, int] | None = None) -> Parity | str:
    """One output's parity, or why it cannot be compared (its shapes differ)."""
    import numpy as np

    expected = (numpy(reference) if isinstance(reference, torch.Tensor)
                else np.asarray(reference)).astype(np.float64)
    actual = np.asarray(got).astype(np.float64)
    if actual.shape != expected.shape:
        return (f"{name}: shape {dims_text(actual.shape)} in ONNX Runtime, "
                f"{dims_text(expected.shape)} in torch")
    abs_err, rel_err = errors(actual, expected, atol)
    return Parity(name, abs_err, rel_err, abs_err <= atol, batch,
                  uninformative(name, expected), sizes=sizes)


# ----------------------------------------------------------------------------------------------
# Detections, as sets.


def detection_groups(paths: Sequence[str]) -> list[dict[str, int]]:
    """The outputs that form detections: for each dict holding ``boxes`` and ``scores``, its
    detection keys and their positions among ``paths`` (pytree paths such as ``0.boxes``)."""
    parents: dict[str, dict[str, int]] = {}
    for index, path in enumerate(paths):
        parent, _, key = path.rpartition(".")
        if key in DETECTION_KEYS:
            parents.setdefault(parent, {})[key] = index
    return [keys for keys in parents.values() if "boxes" in keys and "scores" in keys]


def _iou(a: Any, b: Any) -> Any:
    """Pairwise IoU of boxes ``a`` [N, 4] and ``b`` [M, 4] (x1, y1, x2, y2)."""
    import numpy as np

    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    left = np.maximum(a[:, None, 0], b[None, :, 0])
    top = np.maximum(a[:, None, 1], b[None, :, 1])
    right = np.minimum(a[:, None, 2], b[None, :, 2])
    bottom = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
    # Two empty boxes at one place are the same box.
    same = np.all(a[:, None, :] == b[None, :, :], axis=-1)
    return np.where(same, 1.0, iou)


def match(torch_boxes: Any, torch_scores: Any, torch_labels: Any | None, onnx_boxes: Any,
          onnx_scores: Any, onnx_labels: Any | None) -> list[tuple[int, int]]:
    """Pairs (torch row, ONNX Runtime row): the same label, the most overlap first, the
    closest score breaking ties; greedy, which is exact when each detection has one near twin."""
    import numpy as np

    if len(torch_boxes) == 0 or len(onnx_boxes) == 0:
        return []
    iou = _iou(torch_boxes, onnx_boxes)
    if torch_labels is not None and onnx_labels is not None:
        iou = np.where(torch_labels[:, None] == onnx_labels[None, :], iou, -1.0)
    closeness = -np.abs(torch_scores[:, None] - onnx_scores[None, :])
    order = np.lexsort((-closeness.ravel(), -iou.ravel()))
    pairs: list[tuple[int, int]] = []
    used_t: set[int] = set()
    used_o: set[int] = set()
    columns = iou.shape[1]
    for flat_index in order:
        t, o = divmod(int(flat_index), columns)
        if iou[t, o] < MIN_IOU:
            break
        if t in used_t or o in used_o:
            continue
        used_t.add(t)
        used_o.add(o)
        pairs.append((t, o))
    return pairs


def _at_the_cut(pairs: list[tuple[int, int]], t_scores: Any, o_scores: Any,
                atol: float) -> float | None:
    """The cut-off score, when every detection left without a partner ties with it: which of
    several equal scores survive a top-k or a threshold is up to the order of the sums."""
    import numpy as np

    tolerance = max(atol, DETECTION_RTOL)
    t_left = np.delete(t_scores, [t for t, _ in pairs])
    o_left = np.delete(o_scores, [o for _, o in pairs])
    cut = min(float(t_scores.min(initial=np.inf)), float(o_scores.min(initial=np.inf)))
    left = np.concatenate([t_left, o_left])
    if not np.isfinite(cut) or not left.size:
        return None
    paired = np.concatenate([t_scores[[t for t, _ in pairs]], o_scores[[o for _, o in pairs]]])
    # Every unpaired score within tolerance of the lowest kept, and a paired detection scoring
    # the same too: equal scores were kept on both sides, and which made the cut is arbitrary.
    tied = paired.size and float(paired.min()) - cut <= tolerance
    return cut if tied and float(left.max()) - cut <= tolerance else None


def compare_detections(names: Sequence[str], keys: dict[str, int], got: Sequence[Any],
                       reference: Sequence[Any], atol: float, batch: int | None,
                       sizes: dict[str, int] | None = None
                       ) -> tuple[list[Parity], list[str], list[str]]:
    """One Parity per output of the detection ``keys``, over matched rows; the problems
    (detections of either side without a partner); and notes (those at a tied cut-off)."""
    import numpy as np

    def side(values: Sequence[Any], key: str) -> Any:
        if key not in keys:
            return None
        value = values[keys[key]]
        array = numpy(value) if isinstance(value, torch.Tensor) else np.asarray(value)
        return array.astype(np.float64)

    t_boxes, o_boxes = side(reference, "boxes"), side(got, "boxes")
    t_scores, o_scores = side(reference, "scores"), side(got, "scores")
    t_labels, o_labels = side(reference, "labels"), side(got, "labels")
    problems: list[str] = []
    boxes_name = names[keys["boxes"]]
    for what, t_value, o_value in (("boxes", t_boxes, o_boxes), ("scores", t_scores, o_scores)):
        expected_rank = 2 if what == "boxes" else 1
        if t_value.ndim != expected_rank or o_value.ndim != expected_rank:
            return [], [f"{names[keys[what]]}: shape {dims_text(o_value.shape)} in ONNX Runtime, "
                        f"{dims_text(t_value.shape)} in torch"], []
    pairs = match(t_boxes, t_scores, t_labels, o_boxes, o_scores, o_labels)
    notes: list[str] = []
    if len(pairs) < max(len(t_boxes), len(o_boxes)):
        cut = _at_the_cut(pairs, t_scores, o_scores, atol)
        if cut is None:
            problems.append(
                f"{boxes_name}: {len(t_boxes)} detections in torch, {len(o_boxes)} in ONNX "
                f"Runtime; {len(pairs)} pair up (same label, IoU ≥ {MIN_IOU:g})")
        else:
            notes.append(
                f"{boxes_name}: {len(pairs)} of {len(t_boxes)} detections pair up; the "
                f"{max(len(t_boxes), len(o_boxes)) - len(pairs)} others score {cut:.6g} like "
                "the last one kept, so ties at the cut-off (the top-k or the score threshold) "
                "decided which were kept")
    t_rows = np.array([t for t, _ in pairs], dtype=np.int64)
    o_rows = np.array([o for _, o in pairs], dtype=np.int64)
    results: list[Parity] = []
    for key, index in keys.items():
        expected = side(reference, key)[t_rows]
        actual = side(got, key)[o_rows]
        if expected.shape != actual.shape:
            problems.append(f"{names[index]}: shape {dims_text(side(got, key).shape)} in ONNX "
                            f"Runtime, {dims_text(side(reference, key).shape)} in torch")
            continue
        abs_err, rel_err = errors(actual, expected, atol)
        finite = np.abs(expected[np.isfinite(expected)])
        tolerance = atol if key == "labels" else max(
            atol, DETECTION_RTOL * float(finite.max()) if finite.size else 0.0)
        if key == "masks" and len(pairs):
            per_pair = np.abs(actual - expected).reshape(len(pairs), -1).mean(axis=1)
            abs_err = rel_err = float(per_pair.max())
            tolerance = max(atol, MASK_MEAN_TOL)
        results.append(Parity(names[index], abs_err, rel_err,
                              abs_err <= tolerance and not problems, batch,
                              uninformative(names[index], expected) if len(pairs)
                              else f"torch's {names[index]} is empty", comparison=MATCHED,
                              sizes=sizes, tolerance=tolerance))
    return results, problems, notes


def compare_all(names: Sequence[str], paths: Sequence[str], got: Sequence[Any],
                reference: Sequence[Any], atol: float, batch: int | None,
                sizes: dict[str, int] | None = None,
                notes: list[str] | None = None) -> tuple[list[Parity], list[str]]:
    """Every output: detections as sets, the rest element by element; in the file's order.
    What the detections' comparison has to say besides is added to ``notes``."""
    groups = detection_groups(paths)
    grouped = {index for keys in groups for index in keys.values()}
    found: dict[int, Parity] = {}
    problems: list[str] = []
    for keys in groups:
        checks, trouble, said = compare_detections(names, keys, got, reference, atol, batch,
                                                   sizes)
        problems += trouble
        if notes is not None:
            notes += [n for n in said if n not in notes]
        for check in checks:
            found[names.index(check.output)] = check
    for index, (name, ours, theirs) in enumerate(zip(names, got, reference, strict=True)):
        if index in grouped:
            continue
        compared = compare(name, ours, theirs, atol, batch, sizes)
        if isinstance(compared, str):
            problems.append(compared)
        else:
            found[index] = compared
    return [found[i] for i in sorted(found)], problems
