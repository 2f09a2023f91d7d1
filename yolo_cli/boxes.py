"""Box formats, area, IoU (numpy and TensorFlow), clipping, and the letterbox transform.

Formats, as in torchvision / KerasCV:
  xyxy    (x1, y1, x2, y2) corners, x2 >= x1 and y2 >= y1
  xywh    (x1, y1, w, h) top-left corner and size (COCO)
  cxcywh  (cx, cy, w, h) centre and size (YOLO txt, when normalized)
Inside the library boxes are float32 ``(N, 4)`` xyxy in pixels of the image they belong to;
other formats exist only at readers and writers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from yolo_cli.config import DEFAULTS

_FORMATS = ("xyxy", "xywh", "cxcywh")


def convert(boxes: np.ndarray, src: str, dst: str) -> np.ndarray:
    """Convert ``(N, 4)`` boxes between ``xyxy``, ``xywh`` and ``cxcywh``; returns float32."""
    if src not in _FORMATS or dst not in _FORMATS:
        raise ValueError(f"box formats are {_FORMATS}, got {src!r} -> {dst!r}")
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    if src == "xywh":
        b = np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)
    elif src == "cxcywh":
        b = np.concatenate([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], axis=1)
    if dst == "xywh":
        b = np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)
    elif dst == "cxcywh":
        b = np.concatenate([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]], axis=1)
    return b.astype(np.float32)


def normalize(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pixel boxes ``(N, 4)`` (any format) → fractions of the image size."""
    return (np.asarray(boxes, np.float32) / np.array([width, height] * 2, np.float32)).reshape(
        -1, 4
    )


def denormalize(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Normalized boxes ``(N, 4)`` (any format) → pixels of a ``width × height`` image."""
    return (np.asarray(boxes, np.float32) * np.array([width, height] * 2, np.float32)).reshape(
        -1, 4
    )


def area(boxes: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Area of ``(N, 4)`` xyxy boxes → ``(N,)`` of ``dtype``; inverted boxes have area 0."""
    b = np.asarray(boxes, dtype).reshape(-1, 4)
    return np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)


def iou(boxes1: np.ndarray, boxes2: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Pairwise IoU of xyxy boxes: ``(N, 4) × (M, 4) → (N, M)`` of ``dtype`` in [0, 1].

    Pairs whose union is empty (two zero-area boxes) have IoU 0. ``dtype=np.float64`` gives
    pycocotools' IoU bit for bit (same operations in double), which matters at thresholds that
    integer boxes hit exactly.
    """
    a = np.asarray(boxes1, dtype).reshape(-1, 4)
    b = np.asarray(boxes2, dtype).reshape(-1, 4)
    # (N, M) planes per coordinate, reused in place: NMS calls this on large matrices
    inter = np.minimum(a[:, None, 2], b[None, :, 2])
    inter -= np.maximum(a[:, None, 0], b[None, :, 0])
    np.maximum(inter, 0, out=inter)
    h = np.minimum(a[:, None, 3], b[None, :, 3])
    h -= np.maximum(a[:, None, 1], b[None, :, 1])
    inter *= np.maximum(h, 0, out=h)
    union = np.add(area(a, dtype)[:, None], area(b, dtype)[None, :], out=h)
    union -= inter
    # an empty union (two zero-area boxes) has inter 0 too: leaving it in place gives IoU 0
    return np.divide(inter, union, out=inter, where=union > 0)


def iou_wh(wh1: np.ndarray, wh2: np.ndarray) -> np.ndarray:
    """IoU of box shapes aligned at a common corner: ``(N, 2) × (M, 2) → (N, M)``.

    The distance of YOLOv2 anchor k-means and the anchor choice of target encoding.
    """
    a = np.asarray(wh1, np.float32).reshape(-1, 2)
    b = np.asarray(wh2, np.float32).reshape(-1, 2)
    inter = np.minimum(a[:, None, 0], b[None, :, 0]) * np.minimum(a[:, None, 1], b[None, :, 1])
    union = (a[:, 0] * a[:, 1])[:, None] + (b[:, 0] * b[:, 1])[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0).astype(np.float32)


def iou_tf(boxes1, boxes2):
    """Pairwise IoU in TensorFlow: ``(..., N, 4) × (..., M, 4) → (..., N, M)``, xyxy.

    Batch dimensions broadcast; empty unions give 0, never NaN.
    """
    import tensorflow as tf

    a = tf.convert_to_tensor(boxes1, tf.float32)
    b = tf.convert_to_tensor(boxes2, tf.float32)
    a = a[..., :, None, :]
    b = b[..., None, :, :]
    lt = tf.maximum(a[..., :2], b[..., :2])
    rb = tf.minimum(a[..., 2:], b[..., 2:])
    wh = tf.maximum(rb - lt, 0.0)
    inter = wh[..., 0] * wh[..., 1]

    def _area(x):
        return tf.maximum(x[..., 2] - x[..., 0], 0.0) * tf.maximum(x[..., 3] - x[..., 1], 0.0)

    union = _area(a) + _area(b) - inter
    return tf.math.divide_no_nan(inter, union)


def ciou_tf(boxes1, boxes2, eps: float = 1e-7):
    """Complete IoU of aligned box pairs in TensorFlow: ``(..., 4) × (..., 4) → (...)``, xyxy.

    ``CIoU = IoU − d² / c² − α·v`` (Zheng et al. 2020): ``d`` the distance between the centres,
    ``c`` the diagonal of the smallest box enclosing both, ``v`` the aspect-ratio mismatch
    ``(4/π²)(atan(w₁/h₁) − atan(w₂/h₂))²`` and ``α = v / (1 − IoU + v)`` (held constant in the
    gradient, as the paper does). In [−1.5, 1]; 1 only for identical boxes.
    """
    import math

    import tensorflow as tf

    a = tf.convert_to_tensor(boxes1, tf.float32)
    b = tf.convert_to_tensor(boxes2, tf.float32)
    wa, ha = a[..., 2] - a[..., 0], a[..., 3] - a[..., 1]
    wb, hb = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]
    iw = tf.maximum(tf.minimum(a[..., 2], b[..., 2]) - tf.maximum(a[..., 0], b[..., 0]), 0.0)
    ih = tf.maximum(tf.minimum(a[..., 3], b[..., 3]) - tf.maximum(a[..., 1], b[..., 1]), 0.0)
    inter = iw * ih
    iou = inter / (wa * ha + wb * hb - inter + eps)
    cw = tf.maximum(a[..., 2], b[..., 2]) - tf.minimum(a[..., 0], b[..., 0])
    ch = tf.maximum(a[..., 3], b[..., 3]) - tf.minimum(a[..., 1], b[..., 1])
    d2 = (
        (a[..., 0] + a[..., 2] - b[..., 0] - b[..., 2]) ** 2
        + (a[..., 1] + a[..., 3] - b[..., 1] - b[..., 3]) ** 2
    ) / 4
    v = (4 / math.pi**2) * tf.square(tf.atan(wa / (ha + eps)) - tf.atan(wb / (hb + eps)))
    alpha = tf.stop_gradient(v / (1 - iou + v + eps))
    return iou - d2 / (cw**2 + ch**2 + eps) - alpha * v


def clip(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Clip ``(N, 4)`` xyxy pixel boxes to the image ``[0, width] × [0, height]``."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, width)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, height)
    return b


@dataclass(frozen=True)
class Letterbox:
    """How an image was fitted into a square model input: ``input = original * scale + pad``.

    scale: one factor for both axes (aspect ratio kept); pad_x, pad_y: border in input pixels.
    """

    scale: float
    pad_x: float
    pad_y: float
    size: int

    @classmethod
    def fit(cls, width: int, height: int, size: int) -> Letterbox:
        """The letterbox that fits a ``width × height`` image centred in a ``size × size`` input."""
        scale = min(size / width, size / height)
        # a sliver (say 2000 × 1) still keeps one row: cv2.resize rejects a zero side
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        return cls(scale, (size - new_w) // 2, (size - new_h) // 2, size)

    def apply(self, boxes: np.ndarray) -> np.ndarray:
        """Original-image xyxy pixel boxes ``(N, 4)`` → model-input pixels."""
        off = np.array([self.pad_x, self.pad_y] * 2, np.float32)
        return (np.asarray(boxes, np.float32).reshape(-1, 4) * self.scale + off).astype(np.float32)

    def invert(self, boxes: np.ndarray) -> np.ndarray:
        """Model-input xyxy pixel boxes ``(N, 4)`` → original-image pixels (exact inverse)."""
        off = np.array([self.pad_x, self.pad_y] * 2, np.float32)
        return ((np.asarray(boxes, np.float32).reshape(-1, 4) - off) / self.scale).astype(
            np.float32
        )


def letterbox_image(
    image: np.ndarray, size: int, fill: int = DEFAULTS.letterbox_fill
) -> tuple[np.ndarray, Letterbox]:
    """Resize an ``(H, W, 3)`` uint8 image into ``(size, size, 3)``, aspect kept, grey borders.

    Returns the input image and the :class:`Letterbox` whose ``invert`` maps boxes back.
    """
    import cv2

    h, w = image.shape[:2]
    lb = Letterbox.fit(w, h, size)
    new_w, new_h = max(1, round(w * lb.scale)), max(1, round(h * lb.scale))
    interp = cv2.INTER_AREA if lb.scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interp)
    out = np.full((size, size, 3), fill, np.uint8)
    out[int(lb.pad_y) : int(lb.pad_y) + new_h, int(lb.pad_x) : int(lb.pad_x) + new_w] = resized
    return out, lb


@dataclass(frozen=True)
class Stretch:
    """A plain resize into a square model input (Darknet's): ``input = original * scale``,
    with one factor per axis (aspect ratio not kept, no border)."""

    scale_x: float
    scale_y: float
    size: int

    @classmethod
    def fit(cls, width: int, height: int, size: int) -> Stretch:
        return cls(size / width, size / height, size)

    def apply(self, boxes: np.ndarray) -> np.ndarray:
        """Original-image xyxy pixel boxes ``(N, 4)`` → model-input pixels."""
        scale = np.array([self.scale_x, self.scale_y] * 2, np.float32)
        return (np.asarray(boxes, np.float32).reshape(-1, 4) * scale).astype(np.float32)

    def invert(self, boxes: np.ndarray) -> np.ndarray:
        """Model-input xyxy pixel boxes ``(N, 4)`` → original-image pixels."""
        scale = np.array([self.scale_x, self.scale_y] * 2, np.float32)
        return (np.asarray(boxes, np.float32).reshape(-1, 4) / scale).astype(np.float32)


def resize_image(
    image: np.ndarray, size: int, mode: str = "letterbox"
) -> tuple[np.ndarray, Letterbox | Stretch]:
    """An ``(H, W, 3)`` uint8 image → the ``(size, size, 3)`` model input and the transform
    whose ``invert`` maps boxes back: ``letterbox`` (:func:`letterbox_image`) or ``stretch``
    (a plain resize, as Darknet models were trained)."""
    if mode == "letterbox":
        return letterbox_image(image, size)
    import cv2

    h, w = image.shape[:2]
    st = Stretch.fit(w, h, size)
    interp = cv2.INTER_AREA if size < min(w, h) else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp), st
