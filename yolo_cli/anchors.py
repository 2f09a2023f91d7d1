"""Anchor shapes by k-means on box (w, h) with the distance ``1 − IoU`` (YOLOv2)."""

from __future__ import annotations

import numpy as np

from yolo_cli.boxes import iou_wh
from yolo_cli.config import LIMITS


def mean_best_iou(wh: np.ndarray, anchors: np.ndarray) -> float:
    """Mean over boxes ``(N, 2)`` of the IoU with their best-matching anchor ``(K, 2)``."""
    if len(wh) == 0:
        return 0.0
    return float(iou_wh(wh, anchors).max(axis=1).mean())


def kmeans_plus_plus(wh: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding under ``1 − IoU``: each next centre drawn ∝ squared distance."""
    centres = [wh[rng.integers(len(wh))]]
    for _ in range(1, k):
        d = 1.0 - iou_wh(wh, np.array(centres)).max(axis=1)
        p = d**2
        total = p.sum()
        idx = rng.integers(len(wh)) if total <= 0 else rng.choice(len(wh), p=p / total)
        centres.append(wh[idx])
    return np.array(centres, np.float32)


def lloyd(wh: np.ndarray, centres: np.ndarray, max_iter: int = 300) -> np.ndarray:
    """Lloyd iterations under ``1 − IoU``: assign each box to the anchor of highest IoU, move
    each anchor to the median (w, h) of its boxes, until the assignment stops changing."""
    centres = centres.copy()
    assign = None
    for _ in range(max_iter):
        new_assign = iou_wh(wh, centres).argmax(axis=1)
        if assign is not None and np.array_equal(new_assign, assign):
            break
        assign = new_assign
        for j in range(len(centres)):
            members = wh[assign == j]
            if len(members):
                centres[j] = np.median(members, axis=0)
    return centres


def kmeans_anchors(
    wh: np.ndarray, k: int, seed: int = 0, restarts: int = 10
) -> tuple[np.ndarray, float]:
    """Cluster box shapes into ``k`` anchors.

    wh: ``(N, 2)`` box widths and heights (any unit; anchors come back in the same unit).
    :func:`lloyd` from ``restarts`` k-means++ starts; each run is kept only if it does not lower
    its start's mean best IoU, and the best run wins (restarts avoid local optima where two
    seeds fall in one cluster).
    Returns anchors ``(k, 2)`` sorted by area and their mean best IoU. Deterministic per seed.
    """
    wh = np.asarray(wh, np.float32).reshape(-1, 2)
    wh = wh[(wh > 0).all(axis=1)]
    if not LIMITS.num_anchors.holds(k):
        raise ValueError(f"k must be in {LIMITS.num_anchors.describe()}, got {k}")
    if len(wh) < k:
        raise ValueError(f"{len(wh)} boxes cannot make {k} anchors")
    rng = np.random.default_rng(seed)
    best, best_score = None, -1.0
    for _ in range(restarts):
        start = kmeans_plus_plus(wh, k, rng)
        centres = lloyd(wh, start)
        if mean_best_iou(wh, centres) < mean_best_iou(wh, start):
            centres = start
        score = mean_best_iou(wh, centres)
        if score > best_score:
            best, best_score = centres, score
    best = best[np.argsort(best[:, 0] * best[:, 1], kind="stable")]
    return best.astype(np.float32), best_score
