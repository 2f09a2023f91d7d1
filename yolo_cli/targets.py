"""Ground truth → one training target per head, ``(S, S, B, 5 + C)`` each (the course's ``y`` per
cell and anchor).

A slot (head, cell, anchor) that learns an object gets ``p_c = 1``, the box in the
parameterisation :func:`yolo_cli.postprocess.activate` yields (``off_x, off_y`` = the centre's
offset from the cell's corner in cells, ``t_w = log(w / anchor_w)``, ``t_h = log(h / anchor_h)``)
and the one-hot class. Every other slot is all zeros (only its ``p_c = 0`` is used by the loss).
Two rules choose the slots:

- ``best`` (the course's; YOLOv3's over several heads): the cell holding the box's midpoint, in
  the head whose anchor has the highest shape IoU with the box, and that anchor — one slot per
  object.
- ``ratio`` (YOLOv5's): every anchor of every head whose width and height ratios to the box are
  within ``anchor_t`` (the best anchor when none is), in the midpoint cell and its two nearest
  neighbour cells (the neighbours' offsets lie in (−0.5, 1.5): decode them with ``scale_xy = 2``)
  — up to 3 cells × B anchors per head, so a large object trains several predictions.

Collisions: boxes are placed largest first and a slot holds one box. Under ``best`` a box whose
slot is taken goes to its next-best free anchor; under ``ratio`` it keeps the slots still free.
A box left with no slot is dropped and counted.
:func:`yolo_cli.postprocess.grid_to_boxes` inverts the encoding exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from yolo_cli.boxes import area, convert, iou_wh
from yolo_cli.config import DEFAULTS

RULES = ("best", "ratio")


def assign_targets(
    boxes: np.ndarray,
    classes: np.ndarray,
    heads: Sequence,
    img_size: int,
    num_classes: int,
    rule: str = "best",
    anchor_t: float = DEFAULTS.anchor_t,
) -> tuple[list[np.ndarray], int]:
    """Encode one image's boxes into one target grid per head.

    boxes: ``(N, 4)`` xyxy in model-input pixels; classes: ``(N,)`` ids in ``[0, num_classes)``;
    heads: :class:`yolo_cli.modelfile.Head` list (stride, anchors ``(B, 2)`` input px).
    Returns ``[target (S_h, S_h, B_h, 5 + num_classes) float32 per head]`` and the number of
    boxes dropped by collisions. Boxes with no area are ignored.
    """
    if rule not in RULES:
        raise ValueError(f"rule is one of {RULES}, got {rule!r}")
    grids = [
        np.zeros((h.grid(img_size), h.grid(img_size), len(h.anchors), 5 + num_classes), np.float32)
        for h in heads
    ]
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    classes = np.asarray(classes, np.int64).reshape(-1)
    keep = area(boxes) > 0
    boxes, classes = boxes[keep], classes[keep]
    if len(boxes) == 0:
        return grids, 0
    cxcywh = convert(boxes, "xyxy", "cxcywh")
    slots = [(h, a) for h in range(len(heads)) for a in range(len(heads[h].anchors))]
    anchors = np.array([heads[h].anchors[a] for h, a in slots], np.float32)
    shape_iou = iou_wh(cxcywh[:, 2:], anchors)
    dropped = 0
    for i in np.argsort(-area(boxes), kind="stable"):
        box, cls = cxcywh[i], classes[i]
        if rule == "best":
            order = [slots[k] for k in np.argsort(-shape_iou[i], kind="stable")]
            placed = any(
                _place(grids[h], heads[h], a, box, cls, _midpoint(box, heads[h], img_size))
                for h, a in order
            )
        else:
            ratio = box[None, 2:] / anchors
            fits = np.flatnonzero(np.maximum(ratio, 1 / ratio).max(axis=1) < anchor_t)
            chosen = [slots[k] for k in (fits if len(fits) else [np.argmax(shape_iou[i])])]
            placed = False
            for h, a in chosen:
                for cell in _cells(box, heads[h], img_size):
                    placed |= _place(grids[h], heads[h], a, box, cls, [cell])
        dropped += not placed
    return grids, dropped


def _midpoint(box: np.ndarray, head, img_size: int) -> list[tuple[int, int]]:
    """The cell holding the box's centre, as a one-cell list."""
    s = head.grid(img_size)
    col = min(max(int(box[0] / head.stride), 0), s - 1)
    row = min(max(int(box[1] / head.stride), 0), s - 1)
    return [(row, col)]


def _cells(box: np.ndarray, head, img_size: int) -> list[tuple[int, int]]:
    """The midpoint cell, then the horizontal and the vertical neighbour nearest the centre
    (when inside the grid)."""
    ((row, col),) = _midpoint(box, head, img_size)
    s = head.grid(img_size)
    x, y = box[0] / head.stride, box[1] / head.stride
    cells = [(row, col)]
    dx = -1 if x - col < 0.5 else 1
    dy = -1 if y - row < 0.5 else 1
    if 0 <= col + dx < s:
        cells.append((row, col + dx))
    if 0 <= row + dy < s:
        cells.append((row + dy, col))
    return cells


def _place(grid, head, a: int, box, cls: int, cells) -> bool:
    """Write ``box`` (cx, cy, w, h input px) into the first free cell of ``cells`` at anchor
    ``a``; returns whether it found one."""
    for row, col in cells:
        if grid[row, col, a, 0]:
            continue
        grid[row, col, a, 0] = 1.0
        grid[row, col, a, 1] = box[0] / head.stride - col
        grid[row, col, a, 2] = box[1] / head.stride - row
        grid[row, col, a, 3:5] = np.log(box[2:] / np.asarray(head.anchors[a], np.float32))
        grid[row, col, a, 5 + cls] = 1.0
        return True
    return False


def encode_targets(
    boxes: np.ndarray,
    classes: np.ndarray,
    anchors: np.ndarray,
    img_size: int,
    grid_size: int,
    num_classes: int,
) -> tuple[np.ndarray, int]:
    """The course's one-grid case of :func:`assign_targets`: rule ``best`` on one head of
    ``grid_size`` cells per side with ``anchors (B, 2)``. Returns ``(target, dropped)``."""
    from yolo_cli.modelfile import Head

    head = Head(img_size // grid_size, np.asarray(anchors, np.float32).reshape(-1, 2).tolist())
    (target,), dropped = assign_targets(boxes, classes, [head], img_size, num_classes)
    return target, dropped


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
