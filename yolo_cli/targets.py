"""Ground truth → the ``(S, S, B, 5 + C)`` training target (the course's ``y`` per cell and anchor).

Each box goes to the grid cell holding its midpoint and to the anchor whose shape has the highest
IoU with it. That slot gets ``p_c = 1``, the box in the parameterisation :func:`activate` yields
(``off_x, off_y`` in the cell, ``t_w = log(w / anchor_w)``, ``t_h = log(h / anchor_h)``) and the
one-hot class. Every other slot is all zeros (only its ``p_c = 0`` is ever used by the loss).

Collisions: boxes are placed largest first; a box whose best anchor in its cell is already taken
goes to its next-best free anchor there; when every anchor of the cell is taken it is dropped and
counted. :func:`yolo_cli.postprocess.grid_to_boxes` inverts the encoding exactly.
"""

from __future__ import annotations

import numpy as np

from yolo_cli.boxes import area, convert, iou_wh


def encode_targets(
    boxes: np.ndarray,
    classes: np.ndarray,
    anchors: np.ndarray,
    img_size: int,
    grid_size: int,
    num_classes: int,
) -> tuple[np.ndarray, int]:
    """Encode one image's boxes into its target grid.

    boxes: ``(N, 4)`` xyxy in model-input pixels; classes: ``(N,)`` ids in ``[0, num_classes)``;
    anchors: ``(B, 2)`` (w, h) in model-input pixels.
    Returns ``target (grid_size, grid_size, B, 5 + num_classes)`` float32 and the number of boxes
    dropped by collisions. Boxes with no area are ignored.
    """
    anchors = np.asarray(anchors, np.float32).reshape(-1, 2)
    target = np.zeros((grid_size, grid_size, len(anchors), 5 + num_classes), np.float32)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    classes = np.asarray(classes, np.int64).reshape(-1)
    keep = area(boxes) > 0
    boxes, classes = boxes[keep], classes[keep]
    if len(boxes) == 0:
        return target, 0
    cxcywh = convert(boxes, "xyxy", "cxcywh")
    cell_size = img_size / grid_size
    cols = np.clip((cxcywh[:, 0] / cell_size).astype(np.int64), 0, grid_size - 1)
    rows = np.clip((cxcywh[:, 1] / cell_size).astype(np.int64), 0, grid_size - 1)
    anchor_rank = np.argsort(-iou_wh(cxcywh[:, 2:], anchors), axis=1, kind="stable")
    collisions = 0
    for i in np.argsort(-area(boxes), kind="stable"):
        r, c = rows[i], cols[i]
        free = [a for a in anchor_rank[i] if target[r, c, a, 0] == 0]
        if not free:
            collisions += 1
            continue
        a = free[0]
        target[r, c, a, 0] = 1.0
        target[r, c, a, 1] = cxcywh[i, 0] / cell_size - c
        target[r, c, a, 2] = cxcywh[i, 1] / cell_size - r
        target[r, c, a, 3:5] = np.log(cxcywh[i, 2:] / anchors[a])
        target[r, c, a, 5 + classes[i]] = 1.0
    return target, collisions


def pad_boxes(boxes: np.ndarray, max_boxes: int) -> np.ndarray:
    """``(N, 4)`` boxes → ``(max_boxes, 4)``, zero-padded (zero boxes have IoU 0 with anything).

    The loss uses these to spare predictions that already overlap a ground truth; boxes past
    ``max_boxes`` are dropped (largest kept first).
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    boxes = boxes[np.argsort(-area(boxes), kind="stable")][:max_boxes]
    out = np.zeros((max_boxes, 4), np.float32)
    out[: len(boxes)] = boxes
    return out
