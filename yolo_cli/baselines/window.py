"""Naive sliding-window detection: classify every window of an image pyramid, then NMS.

The course's first detector: slide a ``crop × crop`` window over the image at ``stride`` pixels,
classify each crop with the crop classifier (:mod:`yolo_cli.baselines.classifier`), repeat on
resized copies of the image so one window size covers objects of many sizes. Slow by design:
every window runs the whole network on its own. The geometry here (:func:`pyramid`,
:func:`window_boxes`) is shared with the convolutional implementation, so at the network's
stride both detectors classify exactly the same windows.

A window's object probability is ``p_c = 1 − P(background)`` and its class probabilities are
``P(c) / p_c``; :func:`yolo_cli.postprocess.filter_detections` then applies the same score
threshold (``p_c · P(class) > conf``) and per-class NMS as YOLO, so a kept window scores ``P(c)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from yolo_cli.baselines.classifier import model_macs, network_stride
from yolo_cli.config import DEFAULTS
from yolo_cli.postprocess import Detections, filter_detections
from yolo_cli.summary import conv_output_size


@dataclass(frozen=True)
class Level:
    """One pyramid level: the original image resized to ``width × height`` pixels.

    ``scale_x = width / original width`` and ``scale_y`` likewise (exact, after rounding).
    """

    width: int
    height: int
    scale_x: float
    scale_y: float

    def resize(self, image: np.ndarray) -> np.ndarray:
        """The level's ``(height, width, 3)`` image from the original ``(H, W, 3)`` uint8 image."""
        import cv2

        if image.shape[:2] == (self.height, self.width):
            return image
        interp = cv2.INTER_AREA if self.width < image.shape[1] else cv2.INTER_LINEAR
        return cv2.resize(image, (self.width, self.height), interpolation=interp)

    def grid(self, crop: int, stride: int) -> tuple[int, int]:
        """Windows per column and per row: ``⌊(n − crop) / stride⌋ + 1`` (course's n_out)."""
        return tuple(conv_output_size(n, crop, stride) for n in (self.height, self.width))


def pyramid(height: int, width: int, scales, crop: int) -> list[Level]:
    """The levels of an ``height × width`` image at ``scales`` (resize factors).

    A window of ``crop`` pixels at scale ``s`` covers ``crop / s`` original pixels. Levels
    smaller than one window are left out.
    """
    levels = []
    for s in scales:
        w, h = round(width * s), round(height * s)
        if w >= crop and h >= crop:
            levels.append(Level(w, h, w / width, h / height))
    return levels


def window_boxes(level: Level, crop: int, stride: int) -> np.ndarray:
    """Every window of ``level``, origins at multiples of ``stride``, in original-image pixels.

    Returns ``(rows · cols, 4)`` float32 xyxy, row-major (the order of a conv output map).
    """
    rows, cols = level.grid(crop, stride)
    ys, xs = np.meshgrid(np.arange(rows) * stride, np.arange(cols) * stride, indexing="ij")
    origin = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
    boxes = np.concatenate([origin, origin + crop], axis=1)
    return (boxes / np.array([level.scale_x, level.scale_y] * 2)).astype(np.float32)


def windows_to_detections(
    boxes: np.ndarray,
    probs: np.ndarray,
    conf_threshold: float = DEFAULTS.conf_threshold,
    nms_iou: float = DEFAULTS.nms_iou,
    max_det: int = DEFAULTS.max_det,
    box_vote: bool = DEFAULTS.box_vote,
) -> Detections:
    """Windows ``(N, 4)`` xyxy and classifier outputs ``(N, C + 1)`` (background last) → Detections.

    ``p_c = 1 − P(background)`` must exceed ``conf_threshold``; the box takes its most likely
    object class and scores ``P(class)``; then per-class NMS at ``nms_iou``, at most ``max_det``,
    and box voting (:func:`yolo_cli.postprocess.vote`) unless ``box_vote`` is False.
    """
    if not len(boxes):
        return Detections.empty()
    probs = np.asarray(probs, np.float32)
    p_c = 1.0 - probs[:, -1]
    given_object = probs[:, :-1] / np.maximum(p_c, np.finfo(np.float32).tiny)[:, None]
    return filter_detections(boxes, p_c, given_object, conf_threshold, nms_iou, max_det, box_vote)


def _classify(model, crops: np.ndarray, batch: int) -> np.ndarray:
    """Crops ``(N, crop, crop, 3)`` uint8 → probabilities ``(N, C + 1)``, ``batch`` per call."""
    out = [
        # a traced function (predict_on_batch): an eager Keras call costs ~15 ms more each
        np.asarray(model.predict_on_batch(crops[i : i + batch].astype(np.float32)))
        for i in range(0, len(crops), batch)
    ]
    return np.concatenate(out) if out else np.zeros((0, model.output_shape[-1]), np.float32)


def window_probabilities(
    model,
    meta,
    image: np.ndarray,
    scales=DEFAULTS.window_scales,
    stride: int | None = None,
    batch: int = DEFAULTS.window_batch,
) -> tuple[np.ndarray, np.ndarray]:
    """Classify every window of every pyramid level, each crop on its own (``batch`` per call).

    image: ``(H, W, 3)`` uint8 RGB; ``meta.img_size`` is the crop side; ``stride`` defaults to
    the network's total stride. Returns ``boxes (N, 4)`` float32 xyxy original pixels and
    ``probs (N, C + 1)`` float32, levels in ``scales`` order, each row-major.
    """
    crop = meta.img_size
    stride = stride or network_stride(model)
    boxes, probs = [], []
    for level in pyramid(*image.shape[:2], scales, crop):
        windows = np.lib.stride_tricks.sliding_window_view(level.resize(image), (crop, crop, 3))
        crops = windows[::stride, ::stride, 0].reshape(-1, crop, crop, 3)
        boxes.append(window_boxes(level, crop, stride))
        probs.append(_classify(model, crops, batch))
    if not boxes:
        return np.zeros((0, 4), np.float32), np.zeros((0, meta.num_classes + 1), np.float32)
    return np.concatenate(boxes), np.concatenate(probs)


def sliding_window_detect(
    model,
    meta,
    image: np.ndarray,
    scales=DEFAULTS.window_scales,
    stride: int | None = None,
    conf_threshold: float = DEFAULTS.conf_threshold,
    nms_iou: float = DEFAULTS.nms_iou,
    max_det: int = DEFAULTS.max_det,
    box_vote: bool = DEFAULTS.box_vote,
) -> tuple[Detections, int]:
    """Naive sliding-window detection of one ``(H, W, 3)`` uint8 RGB image.

    Returns the Detections in original-image pixels and the number of classifier evaluations
    (windows classified).
    """
    boxes, probs = window_probabilities(model, meta, image, scales, stride)
    detections = windows_to_detections(boxes, probs, conf_threshold, nms_iou, max_det, box_vote)
    return detections, len(boxes)


def sliding_window_cost(
    model, meta, image_shape: tuple[int, int], scales=DEFAULTS.window_scales, stride=None
) -> tuple[int, int]:
    """``(windows, multiply-adds)`` of :func:`sliding_window_detect` on an ``(H, W)`` image.

    Each window is one full pass of the crop classifier: MACs = windows × the classifier's MACs.
    """
    crop = meta.img_size
    stride = stride or network_stride(model)
    windows = sum(
        rows * cols
        for rows, cols in (lv.grid(crop, stride) for lv in pyramid(*image_shape, scales, crop))
    )
    return windows, windows * model_macs(model, crop, crop)
