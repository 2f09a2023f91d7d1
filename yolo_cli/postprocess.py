"""From the raw model grids to detections: decode, score threshold, per-class non-max suppression.

A model has one or more heads (:class:`yolo_cli.modelfile.Head`), each a grid of shape
``(batch, S, S, B, 5 + C)``; per cell and anchor the channels are the course's
``[p_c, b_x, b_y, b_w, b_h, c_1 … c_C]`` as raw logits ``t``. Decoding follows YOLOv2/v3:
``x = (σ(t_x)·s − (s − 1)/2 + col) / S`` with Darknet's ``scale_xy`` s (1 by default),
likewise y; ``w = anchor_w · exp(t_w)``, ``h = anchor_h · exp(t_h)``, ``p_c = σ(t_c)``, class
probabilities by softmax (YOLOv2) or sigmoid (YOLOv3). The boxes of every head are pooled;
each takes its most likely class and the score ``p_c · P(class)``, which the threshold, NMS,
ranking and labels all use.

Two NMS paths share those semantics: :func:`select` in TensorFlow (batched, runs inside a
``tf.function`` on any device) and :func:`batched_nms` in numpy (the course's loop, vectorized).

Box voting (:func:`vote`; Gidaris and Komodakis, "Object detection via a multi-region and
semantic segmentation-aware CNN model", ICCV 2015; YOLOv5's merge-NMS) then moves each kept box
to the score-weighted mean of the boxes NMS dropped for it and itself. A YOLO model predicts an
object from several slots (neighbour cells, anchors, heads) whose boxes scatter around it; NMS
keeps the best-scoring one, the mean is tighter. Which boxes are kept, and their scores, do not
change.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from yolo_cli.boxes import iou

_MAX_LOG_WH = 8.0  # exp(8) ≈ 3000× the anchor: larger is overflow, not a box
# boxes nms resolves together: larger blocks waste IoU work on boxes suppressed inside the
# block, smaller ones loop more in Python (128 is fastest for 300 to 10k clustered boxes)
_NMS_BLOCK = 128


@dataclass
class Detections:
    """Detections of one image: ``boxes (N, 4)`` xyxy pixels, ``scores (N,)``, ``classes (N,)``.

    Sorted by descending score. Coordinates are in the pixels of whichever image the producer
    states (the original image once the letterbox is undone).
    """

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32))

    def __len__(self) -> int:
        return len(self.scores)

    def take(self, index) -> Detections:
        """The detections at ``index`` (indices or a boolean mask), order kept."""
        return Detections(self.boxes[index], self.scores[index], self.classes[index])


def activate(raw, class_activation: str = "softmax", scale_xy: float = 1.0):
    """Raw logits ``(..., 5 + C)`` → ``[p_c, off_x, off_y, t_w, t_h, P(c_1) … P(c_C)]``.

    ``off_x, off_y`` are the box centre's offset from its cell's corner in cells,
    ``σ(t)·scale_xy − (scale_xy − 1)/2``: in [0, 1] for YOLOv2's ``scale_xy = 1``; ``t_w, t_h``
    stay log-space. Class scores: ``softmax`` over the classes or an independent ``sigmoid``
    each (YOLOv3). Targets (:mod:`yolo_cli.targets`) are written in this same activated form.
    """
    import tensorflow as tf

    raw = tf.convert_to_tensor(raw, tf.float32)
    classes = raw[..., 5:]
    probs = tf.sigmoid(classes) if class_activation == "sigmoid" else tf.nn.softmax(classes, -1)
    offsets = tf.sigmoid(raw[..., 1:3]) * scale_xy - (scale_xy - 1.0) / 2.0  # exact for 1
    return tf.concat([tf.sigmoid(raw[..., 0:1]), offsets, raw[..., 3:5], probs], axis=-1)


def grid_to_boxes(grid, anchors, img_size: int):
    """Activated grid ``(batch, S, S, B, 5 + C)`` → boxes, p_c and class probabilities.

    anchors: ``(B, 2)`` anchor (w, h) in model-input pixels.
    Returns ``boxes (batch, S·S·B, 4)`` xyxy model-input pixels, ``p_c (batch, S·S·B)``,
    ``probs (batch, S·S·B, C)``; the flattening order is (row, col, anchor).
    """
    import tensorflow as tf

    grid = tf.convert_to_tensor(grid, tf.float32)
    s = tf.shape(grid)[1]
    n_anchors = tf.shape(grid)[3]
    rows, cols = tf.meshgrid(tf.range(s), tf.range(s), indexing="ij")
    cell = tf.cast(tf.stack([cols, rows], axis=-1), tf.float32)[None, :, :, None, :]
    s_f = tf.cast(s, tf.float32)
    centre = (grid[..., 1:3] + cell) / s_f * img_size
    wh = tf.convert_to_tensor(anchors, tf.float32) * tf.exp(tf.minimum(grid[..., 3:5], _MAX_LOG_WH))
    boxes = tf.concat([centre - wh / 2, centre + wh / 2], axis=-1)
    batch = tf.shape(grid)[0]
    flat = s * s * n_anchors
    return (
        tf.reshape(boxes, [batch, flat, 4]),
        tf.reshape(grid[..., 0], [batch, flat]),
        tf.reshape(grid[..., 5:], [batch, flat, -1]),
    )


def decode(raws, heads, img_size: int, class_activation: str = "softmax"):
    """Raw heads → ``(boxes, p_c, probs)`` over every head, as :func:`grid_to_boxes`.

    raws: one raw grid ``(batch, S_h, S_h, B_h, 5 + C)`` per head (a single tensor for a
    one-grid model); heads: the :class:`yolo_cli.modelfile.Head` of each, same order.
    Returns ``boxes (batch, N, 4)`` xyxy model-input pixels, ``p_c (batch, N)`` and
    ``probs (batch, N, C)``, ``N = Σ S_h²·B_h``, heads concatenated in order.

    Called eagerly, each head runs as one traced graph: op by op, its few dozen small ops
    would cost ~7 ms of overhead against ~1 ms for the graph (13×13×5 grid, 2-core CPU).
    Inside a graph it is inlined, keeping static shapes.
    """
    import tensorflow as tf

    if not isinstance(raws, list | tuple):
        raws = [raws]
    if len(raws) != len(heads):
        raise ValueError(f"{len(raws)} raw grids for {len(heads)} heads")
    parts = []
    for raw, head in zip(raws, heads):
        anchors = np.asarray(head.anchors, np.float32)
        if tf.executing_eagerly():
            one = _decode_graph(class_activation)(
                tf.convert_to_tensor(raw, tf.float32),
                tf.convert_to_tensor(anchors),
                float(img_size),  # a Python number costs no eager op, unlike tf.cast
                float(head.scale_xy),
            )
        else:
            grid = activate(raw, class_activation, head.scale_xy)
            one = grid_to_boxes(grid, anchors, img_size)
        parts.append(one)
    if len(parts) == 1:
        return parts[0]
    return tuple(tf.concat(p, axis=1) for p in zip(*parts))


@functools.cache
def _decode_graph(class_activation: str):
    import tensorflow as tf

    # one trace for every grid shape; a shape-specialized trace also lets grappler reorder
    # the float arithmetic, and boxes would then differ from eager by an ulp
    spec = [
        tf.TensorSpec([None] * 5),
        tf.TensorSpec([None, 2]),
        tf.TensorSpec([]),
        tf.TensorSpec([]),
    ]

    def one_head(raw, anchors, img_size, scale_xy):
        return grid_to_boxes(activate(raw, class_activation, scale_xy), anchors, img_size)

    return tf.function(one_head, input_signature=spec)


def select(
    boxes, p_c, probs, conf_threshold: float, nms_iou: float, max_det: int, box_vote: bool = False
):
    """Score threshold, then per-class NMS, batched, in TensorFlow (``tf.function``-safe).

    boxes ``(batch, N, 4)`` xyxy; p_c ``(batch, N)``; probs ``(batch, N, C)``.
    Each box takes its most likely class and the score ``p_c · P(class)`` (the course's
    class score); boxes scoring ``<= conf_threshold`` are discarded; a box is suppressed when
    its IoU with a higher-scoring kept box of its class exceeds ``nms_iou``; ``box_vote``: each
    kept box is then :func:`vote`'s mean.
    Returns padded ``boxes (batch, max_det, 4)``, ``scores (batch, max_det)``,
    ``classes (batch, max_det)`` int32 and ``count (batch,)``; rows past ``count`` are zeros.
    """
    import tensorflow as tf

    num_classes = tf.shape(probs)[-1]
    cls = tf.argmax(probs, axis=-1, output_type=tf.int32)
    score = p_c * tf.reduce_max(probs, axis=-1)
    score = tf.where(score > conf_threshold, score, tf.zeros_like(score))
    per_class = tf.one_hot(cls, num_classes, dtype=tf.float32) * score[..., None]
    # combined NMS keeps boxes scoring above score_threshold; any kept box has score > 0.
    nb, ns, nc, count = tf.image.combined_non_max_suppression(
        boxes[:, :, None, :],
        per_class,
        max_output_size_per_class=max_det,
        max_total_size=max_det,
        iou_threshold=nms_iou,
        score_threshold=1e-9,
        pad_per_class=False,
        clip_boxes=False,
    )
    nc = tf.cast(nc, tf.int32)
    if box_vote:
        # the candidates above the threshold, all that can vote: few at a detection threshold
        above = tf.reduce_max(tf.reduce_sum(tf.cast(score > 0, tf.int32), axis=-1))
        score, index = tf.math.top_k(score, k=tf.maximum(above, 0))
        boxes, cls = (tf.gather(t, index, batch_dims=1) for t in (boxes, cls))
        nb = _vote_tf(nb, nc, boxes, score, cls, nms_iou)
    return nb, ns, nc, count


def vote(
    kept: np.ndarray,
    kept_classes: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    iou_threshold: float,
) -> np.ndarray:
    """Box voting: each kept box → the score-weighted mean of the candidates of its class that
    overlap it by more than ``iou_threshold`` (itself among them, and every box NMS dropped for
    it).

    kept ``(K, 4)`` xyxy, kept_classes ``(K,)``; candidates ``boxes (N, 4)``, ``scores (N,)``
    (0 weighs nothing), ``classes (N,)``. Returns ``(K, 4)``; a kept box no candidate overlaps
    (zero area, or ``iou_threshold`` 1) stays as it is.
    """
    kept = np.asarray(kept, np.float32).reshape(-1, 4)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    same = np.asarray(kept_classes).reshape(-1, 1) == np.asarray(classes).reshape(1, -1)
    scores = np.asarray(scores, np.float32).reshape(1, -1)
    weights = np.where(same & (iou(kept, boxes) > iou_threshold), scores, np.float32(0))
    total = weights.sum(axis=1, keepdims=True)
    fused = (weights @ boxes) / np.where(total > 0, total, 1.0)
    return np.where(total > 0, fused, kept).astype(np.float32)


def _vote_tf(kept, kept_classes, boxes, scores, classes, iou_threshold: float):
    """:func:`vote` over a batch in TensorFlow: kept ``(batch, K, 4)``, kept_classes
    ``(batch, K)``; candidates ``(batch, N, 4)``, ``(batch, N)``, ``(batch, N)``."""
    import tensorflow as tf

    from yolo_cli.boxes import iou_tf

    same = tf.equal(kept_classes[:, :, None], classes[:, None, :])
    near = iou_tf(kept, boxes) > iou_threshold
    weights = tf.where(same & near, scores[:, None, :], 0.0)
    total = tf.reduce_sum(weights, axis=-1, keepdims=True)
    fused = tf.linalg.matmul(weights, boxes) / tf.where(total > 0, total, 1.0)
    return tf.where(total > 0, fused, kept)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-max suppression, the course's loop: indices kept, by descending score.

    boxes ``(N, 4)`` xyxy, scores ``(N,)``. Take the highest-scoring box, keep it, drop every
    remaining box whose IoU with it exceeds ``iou_threshold``; repeat. Equal scores keep the
    lower index first (stable sort).

    The loop runs a block of boxes at a time (as torchvision's CUDA kernel does): inside a
    block on its small IoU matrix, then the block's kept boxes suppress all later boxes in one
    vectorized IoU. Memory stays O(block · N) and the Python loop visits each box once.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, np.float32).reshape(-1), kind="stable")
    boxes = boxes[order]
    alive = np.ones(len(order), bool)
    for start in range(0, len(order), _NMS_BLOCK):
        stop = start + _NMS_BLOCK
        block = start + np.flatnonzero(alive[start:stop])
        # suppresses[k, j]: k would drop the later box j; boxes that would drop none need no visit
        suppresses = np.triu(iou(boxes[block], boxes[block]) > iou_threshold, 1)
        alive_in_block = np.ones(len(block), bool)
        for k in np.flatnonzero(suppresses.any(axis=1)):
            if alive_in_block[k]:
                alive_in_block[suppresses[k]] = False
        alive[block] = alive_in_block
        later = stop + np.flatnonzero(alive[stop:])
        if later.size:
            kept = block[alive_in_block]
            alive[later] = (iou(boxes[kept], boxes[later]) <= iou_threshold).all(axis=0)
    return order[alive]


def batched_nms(
    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float
) -> np.ndarray:
    """Per-class NMS: boxes of different classes never suppress each other.

    boxes ``(N, 4)`` xyxy, scores ``(N,)``, classes ``(N,)`` int. Runs :func:`nms` on each
    class's boxes and merges the kept indices by descending score, equal scores lower index
    first. (Splitting is exact where torchvision's class-offset trick shifts float32
    coordinates, and it compares fewer pairs.)
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = np.asarray(scores, np.float32).reshape(-1)
    classes = np.asarray(classes).reshape(-1)
    members = (np.flatnonzero(classes == c) for c in np.unique(classes))
    kept = np.concatenate(
        [np.zeros(0, np.int64)] + [i[nms(boxes[i], scores[i], iou_threshold)] for i in members]
    )
    return kept[np.lexsort((kept, -scores[kept]))]


def filter_detections(
    boxes: np.ndarray,
    p_c: np.ndarray,
    probs: np.ndarray,
    conf_threshold: float,
    nms_iou: float,
    max_det: int,
    box_vote: bool = False,
) -> Detections:
    """numpy counterpart of :func:`select` for one image: ``(N, 4)``, ``(N,)``, ``(N, C)`` → Detections."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    probs = np.asarray(probs, np.float32)
    probs = probs.reshape(len(boxes), probs.shape[-1])
    p_c = np.asarray(p_c, np.float32).reshape(-1)
    cls = probs.argmax(axis=-1).astype(np.int32) if len(probs) else np.zeros(0, np.int32)
    score = p_c * probs.max(axis=-1, initial=0.0)
    keep = score > conf_threshold
    dets = Detections(boxes[keep], score[keep], cls[keep])
    kept = dets.take(batched_nms(dets.boxes, dets.scores, dets.classes, nms_iou)[:max_det])
    if not box_vote:
        return kept
    fused = vote(kept.boxes, kept.classes, dets.boxes, dets.scores, dets.classes, nms_iou)
    return Detections(fused, kept.scores, kept.classes)
