"""Test-time augmentation and ensembles: several detection passes over each image, merged.

The course's test-time tricks (multi-crop at test time, ensembling several networks) as one
detector. A *pass* is one detector (a model at one input size) run on the image or on its
horizontal mirror; its boxes are mapped back onto the image (the mirror undone), and the
boxes of every pass are merged per class by weighted boxes fusion.

- ``--augment``: each model at its input size and at :data:`~yolo_cli.config.TTA_SCALES` of
  it (multiples of 32, rebuilt by :func:`yolo_cli.model.resized_model` where the model file
  says how it was built; other models run at their own size only), each on the image and on
  its mirror: six passes per model, or two.
- several ``--model``: one set of passes per model; the models must name the same classes
  in the same order.

Why weighted boxes fusion (Solovyev, Wang and Gabruseva, "Weighted boxes fusion: ensembling
boxes from different object detection models", Image and Vision Computing 2021) rather than
NMS over the pooled boxes (YOLOv5's TTA): the passes see the same object with slightly
different boxes; NMS keeps the best-scoring one and discards the rest, fusion averages them,
which is what improves localisation (the mAP@[.5:.95] part of the gain). And it lowers the
score of a box only some passes found (mean score × found-by share), where NMS keeps a
single pass's false positive at its full score. On one pass it is greedy NMS: a model's own
boxes of a class overlap by at most the NMS IoU, so each is its own cluster, except where
clipping to the image edge made two overlap more (the lower one is dropped).

Fusion, per class (boxes of different classes never merge): boxes of every pass by
descending score (ties: pass order, then the pass's own order); each joins the cluster whose
fused box it overlaps most when that IoU exceeds the NMS IoU, else starts a cluster. A
cluster takes one box of each pass, its best: a later box of a pass already in the cluster
is dropped. A cluster's box is the score-weighted mean of its boxes, its score the sum of
their scores over ``P`` passes (their mean times the share of passes that found it). Scores
at or below ``conf`` are dropped and the ``max_det`` best kept, as a single detector does.

One box per pass, not every box that matches as in the paper: a pass's NMS keeps a
low-scoring box that overlaps its best one by up to the NMS IoU, and once the cluster's box
has moved towards the other passes' boxes, that duplicate overlaps it by more. Counted in
the mean, such boxes pulled a found object's score down by a different amount in each image:
on raccoon's test split, a model fused with its own mirror fell from 0.770 to 0.691
mAP@0.5 that way, and scores 0.791 with one box per pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from yolo_cli.boxes import iou
from yolo_cli.config import DEFAULTS, TTA_SCALES
from yolo_cli.errors import YoloError
from yolo_cli.postprocess import Detections


@dataclass(frozen=True)
class Pass:
    """One detector run over the images, or over their horizontal mirrors (``mirror``).

    detector: anything with ``meta`` and ``detect(images) → [Detections]`` in original pixels
    (:class:`yolo_cli.inference.Detector`, :class:`yolo_cli.baselines.detector.WindowDetector`).
    """

    detector: object
    mirror: bool = False

    @property
    def label(self) -> str:
        size = self.detector.meta.img_size
        return f"{size}px{' mirrored' if self.mirror else ''}"

    def detect(self, images: list[np.ndarray]) -> list[Detections]:
        """RGB uint8 ``(H, W, 3)`` images → their Detections, xyxy pixels of each image."""
        if not self.mirror:
            return self.detector.detect(images)
        mirrored = [np.ascontiguousarray(im[:, ::-1]) for im in images]
        found = self.detector.detect(mirrored)
        return [mirror(d, im.shape[1]) for d, im in zip(found, images, strict=True)]


def mirror(detections: Detections, width: int) -> Detections:
    """Detections on an image's horizontal mirror → the same boxes on the image itself
    (``x ↦ width − x``); boxes ``(N, 4)`` xyxy pixels of a ``width``-pixel-wide image."""
    boxes = detections.boxes.copy()
    boxes[:, [0, 2]] = width - detections.boxes[:, [2, 0]]
    return Detections(boxes, detections.scores, detections.classes)


def fuse(
    per_pass: Sequence[Detections],
    iou_threshold: float = DEFAULTS.nms_iou,
    conf: float = 0.0,
    max_det: int = DEFAULTS.max_det,
) -> Detections:
    """Weighted boxes fusion (module doc) of one image's detections from ``P = len(per_pass)``
    passes, each ``boxes (N, 4)`` xyxy pixels of the image, ``scores (N,)``, ``classes (N,)``.

    Returns the fused Detections, sorted by descending score (ties: lower class, then the
    cluster made first), scores above ``conf``, at most ``max_det``.
    """
    n_pass = len(per_pass)
    if n_pass == 0:
        return Detections.empty()
    boxes = np.concatenate([np.zeros((0, 4), np.float32)] + [d.boxes for d in per_pass])
    scores = np.concatenate([np.zeros(0, np.float32)] + [d.scores for d in per_pass])
    classes = np.concatenate([np.zeros(0, np.int32)] + [d.classes for d in per_pass])
    passes = np.concatenate(
        [np.zeros(0, np.int64)] + [np.full(len(d), p) for p, d in enumerate(per_pass)]
    )
    fused = [
        _fuse_class(boxes[of], scores[of], passes[of], iou_threshold, n_pass) + (c,)
        for c in np.unique(classes)
        for of in [np.flatnonzero(classes == c)]
    ]
    out = Detections(
        np.concatenate([np.zeros((0, 4), np.float32)] + [b for b, _, _ in fused]),
        np.concatenate([np.zeros(0, np.float32)] + [s for _, s, _ in fused]),
        np.concatenate(
            [np.zeros(0, np.int32)] + [np.full(len(s), c, np.int32) for _, s, c in fused]
        ),
    )
    out = out.take(out.scores > conf)
    return out.take(np.argsort(-out.scores, kind="stable")[:max_det])


def _fuse_class(
    boxes: np.ndarray, scores: np.ndarray, passes: np.ndarray, iou_threshold: float, n_pass: int
) -> tuple[np.ndarray, np.ndarray]:
    """One class's boxes ``(N, 4)``, scores ``(N,)`` and the pass of each ``(N,)`` (of
    ``n_pass``) → fused ``(K, 4)`` float32 and ``(K,)``."""
    order = np.argsort(-scores, kind="stable")
    weighted = np.zeros((len(order), 4), np.float64)  # Σ score · box per cluster
    total = np.zeros(len(order), np.float64)  # Σ score
    voted = np.zeros((len(order), n_pass), bool)  # which passes have their box in a cluster
    fused = np.zeros((len(order), 4), np.float64)
    k = 0
    for i in order:
        box, score = boxes[i].astype(np.float64), float(scores[i])
        j = k
        if k:
            overlaps = iou(box[None], fused[:k], dtype=np.float64)[0]
            best = int(np.argmax(overlaps))
            if overlaps[best] > iou_threshold:
                j = best
        if voted[j, passes[i]]:
            continue
        k += j == k
        voted[j, passes[i]] = True
        weighted[j] += score * box
        total[j] += score
        fused[j] = weighted[j] / total[j] if total[j] > 0 else box
    return fused[:k].astype(np.float32), (total[:k] / n_pass).astype(np.float32)


class MergedDetector:
    """Several passes (:class:`Pass`) as one detector: ``meta``, ``detect(images)``,
    ``detect_stream(images, batch)``, like :class:`yolo_cli.inference.Detector`.

    meta: the first pass's model metadata (every pass names the same classes). thresholds:
    the fused result's score threshold, fusion IoU (the NMS IoU) and cap per image.
    """

    def __init__(self, passes: Sequence[Pass], thresholds=None):
        from yolo_cli.inference import Thresholds

        if not passes:
            raise ValueError("a merged detector needs at least one pass")
        self.passes = list(passes)
        self.meta = self.passes[0].detector.meta
        self.thresholds = thresholds or Thresholds()

    def detect_passes(self, images: list[np.ndarray]) -> list[list[Detections]]:
        """Each pass's Detections of ``images`` (outer: passes), in the images' pixels."""
        return [p.detect(images) for p in self.passes]

    def detect(self, images: list[np.ndarray]) -> list[Detections]:
        """RGB uint8 images ``(H, W, 3)`` → one fused :class:`Detections` each, xyxy pixels of
        the original image, sorted by score."""
        if not images:
            return []
        t = self.thresholds
        per_pass = self.detect_passes(images)
        return [fuse(found, t.nms_iou, t.conf, t.max_det) for found in zip(*per_pass, strict=True)]

    def detect_stream(self, images: Iterable[np.ndarray], batch: int) -> Iterator[Detections]:
        """Detections for a stream of images, computed ``batch`` at a time, in order."""
        from yolo_cli.inference import detect_in_batches

        return detect_in_batches(self.detect, images, batch)

    def describe(self) -> str:
        """The passes in words, e.g. ``6 passes fused (WBF): 416px, 416px mirrored, …``."""
        labels = ", ".join(p.label for p in self.passes)
        return f"{len(self.passes)} passes fused (WBF): {labels}"


def tta_sizes(img_size: int, scales: Sequence[float] = TTA_SCALES) -> list[int]:
    """Input sides for ``--augment``: ``img_size`` times each scale, rounded to a multiple of
    the stride; a scale other than 1 moves at least one stride (none below one stride);
    each size once, in ``scales`` order."""
    stride = DEFAULTS.stride
    sizes = []
    for s in scales:
        size = round(img_size * s / stride) * stride
        if s < 1:
            size = min(size, img_size - stride)
        elif s > 1:
            size = max(size, img_size + stride)
        if size >= stride:
            sizes.append(size)
    return list(dict.fromkeys(sizes))


def augmented_passes(detector, path, scales: Sequence[float] = TTA_SCALES) -> list[Pass]:
    """``--augment``'s passes of one detector: at each :func:`tta_sizes` input side the model
    can be rebuilt at (a YOLO model that records how it was built, on its device; otherwise its
    own side only), each plain and mirrored."""
    from yolo_cli.inference import Detector

    detectors = [detector]
    if isinstance(detector, Detector):
        for size in tta_sizes(detector.meta.img_size, scales):
            if size == detector.meta.img_size:
                continue
            try:
                detectors.append(detector.resized(size, path))
            except YoloError:
                break  # the model cannot be rebuilt at any other size either
    return [Pass(d, flip) for d in detectors for flip in (False, True)]


def open_detectors(
    paths: Sequence[str | Path],
    method: str = DEFAULTS.method,
    thresholds=None,
    device=None,
    augment: bool = False,
):
    """The detector for one or more model files, with ``--augment``'s passes when asked
    (:func:`combine` of each file's :func:`yolo_cli.baselines.detector.open_detector`)."""
    from yolo_cli.baselines.detector import open_detector

    detectors = [open_detector(method, p, thresholds, device) for p in paths]
    return combine(detectors, paths, augment)


def combine(detectors: Sequence, paths: Sequence[str | Path], augment: bool = False):
    """Detectors already open (``paths``: their model files, for messages and rebuilding) as
    one: a single detector without ``augment`` is itself; otherwise a :class:`MergedDetector`
    over every detector's passes (:func:`augmented_passes` with ``augment``), with the first
    detector's thresholds. Raises :class:`YoloError` when the models name different classes.
    """
    if not detectors:
        raise YoloError("no model given")
    first = detectors[0].meta.names
    for path, d in zip(paths, detectors, strict=True):
        if d.meta.names != first:
            raise YoloError(
                f"{path}: classes {d.meta.names} differ from {paths[0]}'s {first}; "
                "an ensemble's models name the same classes in the same order"
            )
    if len(detectors) == 1 and not augment:
        return detectors[0]
    passes = [
        p
        for path, d in zip(paths, detectors, strict=True)
        for p in (augmented_passes(d, path) if augment else [Pass(d)])
    ]
    return MergedDetector(passes, detectors[0].thresholds)
