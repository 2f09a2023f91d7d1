"""Average precision and mAP, VOC and COCO style, for detections against ground truth.

Matching (both styles), per image and class: detections are taken by descending score (ties
keep their order in the image's :class:`~yolo_cli.postprocess.Detections`); each one is a true
positive when some ground truth box of its class, not yet matched, overlaps it with IoU ≥ the
threshold: it takes the one with the highest IoU (on equal IoU the later box, as pycocotools'
loop does); otherwise it is a false positive. IoU is on xyxy pixels without VOC's "+1".

Interpolation:
  ``voc``   all-point interpolated AP (VOC2010 and later): area under the monotone precision
            envelope of the PR curve.
  ``coco``  101-point interpolated AP as pycocotools computes it: the envelope read at recall
            thresholds ``0, 0.01, …, 1`` (the first point at or beyond each), 0 past the last.

With ``method="coco"``, ``iou_thresholds=COCO_IOU_THRESHOLDS`` and ``max_det=100`` the result
equals pycocotools' COCOeval for ``iouType="bbox"``, area ``all``, ``maxDets=100``, no crowd
boxes (``stats[0]`` = :attr:`EvalResult.map_all`, ``stats[1]`` = :attr:`EvalResult.map`).
Like pycocotools, ``max_det`` keeps the top detections per image *and class*. One difference:
an inverted detection box (x2 < x1) is a false positive here, while pycocotools' negative area
falls outside its area range and the box is ignored.

A class without ground truth has AP NaN (pycocotools stores -1): it is left out of every mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from yolo_cli.boxes import iou
from yolo_cli.config import DEFAULTS
from yolo_cli.postprocess import Detections

METHODS = ("voc", "coco")
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)


def average_precision(recall: np.ndarray, precision: np.ndarray, method: str = "coco") -> float:
    """AP of one PR curve: ``recall, precision (n,)`` cumulative, by descending score.

    ``voc``: all-point interpolation; ``coco``: 101-point interpolation (see module doc).
    An empty curve (no detections) has AP 0.
    """
    recall = np.asarray(recall, np.float64).reshape(-1)
    precision = np.asarray(precision, np.float64).reshape(-1)
    if method not in METHODS:
        raise ValueError(f"AP method is one of {METHODS}, got {method!r}")
    if recall.size == 0:
        return 0.0
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    if method == "voc":
        # segments of zero recall width add nothing, so no need to find where recall changes
        widths = np.diff(recall, prepend=0.0)
        return float(np.sum(widths * envelope))
    at = np.searchsorted(recall, RECALL_THRESHOLDS, side="left")
    sampled = np.where(at < recall.size, envelope[np.minimum(at, recall.size - 1)], 0.0)
    return float(sampled.mean())


@dataclass
class EvalResult:
    """Per-class AP and the operating point at the best F1.

    ``ap (C, T)``: AP per class at each of ``iou_thresholds (T,)``, NaN for a class without
    ground truth. ``n_gt, n_det (C,)``: ground truth boxes and evaluated detections (after
    ``max_det``). At ``iou_thresholds[0]``: ``precision, recall, f1 (C,)`` at the score
    threshold that maximizes F1 (0 for a class without detections, NaN for one without ground
    truth), ``score_threshold (C,)`` (keep detections scoring ≥ it; NaN without detections or
    ground truth), and ``curves``: per class ``(recall, precision)`` arrays, one point per
    detection by descending score, for plotting (empty without ground truth).
    """

    names: list[str]
    method: str
    iou_thresholds: np.ndarray
    ap: np.ndarray
    n_gt: np.ndarray
    n_det: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    score_threshold: np.ndarray
    curves: list[tuple[np.ndarray, np.ndarray]]

    @property
    def map(self) -> float:
        """mAP at ``iou_thresholds[0]`` over classes with ground truth (NaN if none has)."""
        return _mean_finite(self.ap[:, 0])

    @property
    def map_all(self) -> float:
        """mAP averaged over classes and all thresholds: COCO mAP@[.5:.95] with its thresholds."""
        return _mean_finite(self.ap)

    def to_dict(self) -> dict:
        """JSON-ready summary (``metrics.json``); NaN becomes ``None``. Curves are left out."""
        thresholds = [float(t) for t in self.iou_thresholds]
        out = {
            "method": self.method,
            "iou_thresholds": thresholds,
            f"mAP@{thresholds[0]:g}": _json_float(self.map),
        }
        if len(thresholds) > 1:
            out[f"mAP@[{thresholds[0]:g}:{thresholds[-1]:g}]"] = _json_float(self.map_all)
        out["classes"] = [
            {
                "name": name,
                "n_gt": int(self.n_gt[k]),
                "n_det": int(self.n_det[k]),
                "AP": {f"{t:g}": _json_float(self.ap[k, i]) for i, t in enumerate(thresholds)},
                "precision": _json_float(self.precision[k]),
                "recall": _json_float(self.recall[k]),
                "f1": _json_float(self.f1[k]),
                "score_threshold": _json_float(self.score_threshold[k]),
            }
            for k, name in enumerate(self.names)
        ]
        return out


def evaluate(
    ground_truth: Sequence[tuple[np.ndarray, np.ndarray]],
    detections: Sequence[Detections],
    num_classes: int,
    iou_thresholds=(DEFAULTS.eval_iou,),
    method: str = "coco",
    max_det: int = DEFAULTS.max_det,
    names: Sequence[str] | None = None,
) -> EvalResult:
    """Evaluate detections against ground truth over a set of images.

    ground_truth: one ``(boxes (N, 4) xyxy pixels, classes (N,) int)`` per image;
    detections: one :class:`Detections` per image, aligned with ``ground_truth``;
    iou_thresholds: ``(T,)`` match thresholds, the first is the one the operating point uses;
    method: ``"voc"`` or ``"coco"`` interpolation; max_det: detections kept per image and class,
    highest scores first; names: class names (default ``"0"``, ``"1"``, …).
    """
    if len(ground_truth) != len(detections):
        raise ValueError(
            f"{len(ground_truth)} ground truth images but {len(detections)} detections"
        )
    if method not in METHODS:
        raise ValueError(f"AP method is one of {METHODS}, got {method!r}")
    thresholds = np.atleast_1d(np.asarray(iou_thresholds, np.float64))
    names = [str(k) for k in range(num_classes)] if names is None else list(names)
    gt = _Flat.of_ground_truth(ground_truth, num_classes)
    dt = _Flat.of_detections(detections, num_classes, max_det)
    tp = _match(dt, gt, thresholds)

    n_gt = np.bincount(gt.classes, minlength=num_classes)
    n_det = np.bincount(dt.classes, minlength=num_classes)
    ap = np.full((num_classes, thresholds.size), np.nan)
    operating = np.full((num_classes, 4), np.nan)  # precision, recall, f1, score threshold
    curves = []
    for k in range(num_classes):
        of_class = np.flatnonzero(dt.classes == k)
        # pycocotools' accumulation order: score, then image, then order within the image
        of_class = of_class[
            np.lexsort((dt.index[of_class], dt.image[of_class], -dt.scores[of_class]))
        ]
        if n_gt[k] == 0:
            curves.append((np.zeros(0), np.zeros(0)))
            continue
        hits = np.cumsum(tp[of_class], axis=0, dtype=np.float64)  # (n, T)
        recall = hits / n_gt[k]
        precision = hits / np.arange(1, of_class.size + 1)[:, None]
        for i in range(thresholds.size):
            ap[k, i] = average_precision(recall[:, i], precision[:, i], method)
        operating[k] = _best_f1(recall[:, 0], precision[:, 0], dt.scores[of_class])
        curves.append((recall[:, 0], precision[:, 0]))
    return EvalResult(
        names=names,
        method=method,
        iou_thresholds=thresholds,
        ap=ap,
        n_gt=n_gt,
        n_det=n_det,
        precision=operating[:, 0],
        recall=operating[:, 1],
        f1=operating[:, 2],
        score_threshold=operating[:, 3],
        curves=curves,
    )


@dataclass
class _Flat:
    """Boxes of all images in one array, grouped in blocks of one (image, class).

    Within a block, ground truth keeps its order and detections go by descending score.
    ``index`` is each box's position in its image's input; ``scores`` is None for ground truth.
    """

    boxes: np.ndarray
    classes: np.ndarray
    image: np.ndarray
    index: np.ndarray
    scores: np.ndarray | None

    @classmethod
    def of_ground_truth(cls, ground_truth, num_classes: int) -> _Flat:
        per_image = [
            (np.asarray(b, np.float32).reshape(-1, 4), np.asarray(c).reshape(-1))
            for b, c in ground_truth
        ]
        flat = cls._concat(per_image, None, num_classes)
        return flat._take(np.lexsort((flat.index, flat.classes, flat.image)))

    @classmethod
    def of_detections(cls, detections, num_classes: int, max_det: int) -> _Flat:
        per_image = [
            (np.asarray(d.boxes, np.float32).reshape(-1, 4), np.asarray(d.classes).reshape(-1))
            for d in detections
        ]
        scores = [np.asarray(d.scores, np.float32).reshape(-1) for d in detections]
        flat = cls._concat(per_image, scores, num_classes)
        flat = flat._take(np.lexsort((flat.index, -flat.scores, flat.classes, flat.image)))
        starts = flat.block_starts()
        n = len(flat.classes)
        rank = np.arange(n) - np.repeat(starts, np.diff(starts, append=n))
        return flat._take(np.flatnonzero(rank < max_det))

    @classmethod
    def _concat(cls, per_image, scores, num_classes: int) -> _Flat:
        counts = [len(b) for b, _ in per_image]
        classes = np.concatenate(
            [np.zeros(0, np.int64)] + [c.astype(np.int64) for _, c in per_image]
        )
        if classes.size and (classes.min() < 0 or classes.max() >= num_classes):
            raise ValueError(
                f"class ids must lie in [0, {num_classes}), got {classes.min()}..{classes.max()}"
            )
        return cls(
            boxes=np.concatenate([np.zeros((0, 4), np.float32)] + [b for b, _ in per_image]),
            classes=classes,
            image=np.repeat(np.arange(len(counts)), counts),
            index=np.concatenate([np.zeros(0, np.int64)] + [np.arange(n) for n in counts]),
            scores=None if scores is None else np.concatenate([np.zeros(0, np.float32)] + scores),
        )

    def _take(self, order: np.ndarray) -> _Flat:
        return _Flat(
            self.boxes[order],
            self.classes[order],
            self.image[order],
            self.index[order],
            None if self.scores is None else self.scores[order],
        )

    def block_starts(self) -> np.ndarray:
        """Where each (image, class) block begins: ``(B,)`` indices into the arrays."""
        changed = (np.diff(self.image, prepend=-1) != 0) | (np.diff(self.classes, prepend=-1) != 0)
        return np.flatnonzero(changed)


def _match(dt: _Flat, gt: _Flat, thresholds: np.ndarray) -> np.ndarray:
    """Greedy matching (module doc) at every threshold: ``(n_dt, T)`` bool, true positives.

    IoU is computed once per (image, class) block, for all thresholds. Blocks are independent,
    so step ``r`` matches the ``r``-th detection of every block at once, at every threshold:
    the matching loop runs ``max_det`` times at most, whatever the number of images.
    """
    n_t = thresholds.size
    tp = np.zeros((len(dt.classes), n_t), bool)
    starts = dt.block_starts()
    if starts.size == 0:
        return tp
    lengths = np.diff(starts, append=len(dt.classes))
    # the same block key for both sides: image * C + class with one C for both
    n_keys = int(max(dt.classes.max(initial=0), gt.classes.max(initial=0))) + 1
    dt_keys = dt.image[starts] * n_keys + dt.classes[starts]
    gt_keys = gt.image * n_keys + gt.classes
    gt_lo = np.searchsorted(gt_keys, dt_keys, side="left")
    gt_count = np.searchsorted(gt_keys, dt_keys, side="right") - gt_lo
    width = int(gt_count.max())
    if width == 0:
        return tp

    # each detection's IoU with the ground truth of its block: rows of varying length, flat
    row_len = np.repeat(gt_count, lengths)
    row_start = np.cumsum(row_len) - row_len
    overlaps = np.empty(int(row_len.sum()))
    for start, length, lo, count in zip(starts, lengths, gt_lo, gt_count, strict=True):
        if count:
            pairs = iou(
                dt.boxes[start : start + length], gt.boxes[lo : lo + count], dtype=np.float64
            )
            overlaps[row_start[start] : row_start[start] + pairs.size] = pairs.ravel()

    column = np.arange(width)
    taken = np.zeros((starts.size, n_t, width), bool)
    for r in range(int(lengths.max())):
        live = np.flatnonzero(lengths > r)
        rows = starts[live] + r
        inside = column < gt_count[live][:, None]  # (L, G), G padded to the widest block
        at = np.minimum(row_start[rows][:, None] + column, overlaps.size - 1)
        row_iou = np.where(inside, overlaps[at], -1.0)[:, None, :]  # (L, 1, G)
        candidate = (row_iou >= thresholds[None, :, None]) & ~taken[live]  # (L, T, G)
        scored = np.where(candidate, row_iou, -np.inf)
        # the highest IoU, the last one on ties: argmax over the reversed ground truth axis
        best = width - 1 - np.argmax(scored[..., ::-1], axis=-1)  # (L, T)
        hit = candidate.any(axis=-1)
        tp[rows] = hit
        block, level = np.nonzero(hit)
        taken[live[block], level, best[block, level]] = True
    return tp


def _best_f1(recall: np.ndarray, precision: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``[precision, recall, f1, score]`` at the score threshold with the best F1.

    Only the last detection of a run of equal scores is a possible cut: a threshold cannot
    separate equal scores. Without detections: precision = recall = F1 = 0, score NaN.
    """
    if scores.size == 0:
        return np.array([0.0, 0.0, 0.0, np.nan])
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
    cut = np.flatnonzero(np.diff(scores, append=-np.inf) != 0)
    best = cut[np.argmax(f1[cut])]
    return np.array([precision[best], recall[best], f1[best], scores[best]])


def _mean_finite(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else math.nan


def _json_float(value) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value
