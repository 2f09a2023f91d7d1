"""Running a YOLO model on images: resize → model → decode → threshold + NMS → original pixels.

The model, decoding of every head and NMS run in one ``tf.function`` with a fixed input
signature (any batch size, fixed square input), so a stream of images never retraces, and it
runs on whichever device :mod:`yolo_cli.device` chose. Images are letterboxed or stretched as
the model file says (``meta.resize``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from yolo_cli.boxes import Letterbox, Stretch, clip, resize_image
from yolo_cli.config import DEFAULTS
from yolo_cli.device import device_scope
from yolo_cli.modelfile import ModelMeta
from yolo_cli.postprocess import Detections


@dataclass
class Thresholds:
    """Score threshold (boxes with ``p_c · P(class) <= conf`` are discarded), NMS IoU, and the
    cap per image."""

    conf: float = DEFAULTS.conf_threshold
    nms_iou: float = DEFAULTS.nms_iou
    max_det: int = DEFAULTS.max_det


class Detector:
    """A YOLO model ready to detect: ``detect(images) → [Detections]`` in original pixels."""

    def __init__(self, model, meta: ModelMeta, thresholds: Thresholds | None = None, device=None):
        import tensorflow as tf

        from yolo_cli.modelfile import model_outputs
        from yolo_cli.postprocess import decode, select

        self.model = model
        self.meta = meta
        self.thresholds = thresholds or Thresholds()
        self.device = device
        t = self.thresholds
        size = meta.img_size

        @tf.function(input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32)])
        def run(images):
            raws = model_outputs(model, images)
            boxes, p_c, probs = decode(raws, meta.heads, size, meta.class_activation)
            return select(boxes, p_c, probs, t.conf, t.nms_iou, t.max_det)

        self._run = run

    @classmethod
    def from_file(cls, path, thresholds: Thresholds | None = None, device=None) -> Detector:
        """Load a ``yolo`` model file (:func:`yolo_cli.modelfile.load_model`)."""
        from yolo_cli.errors import YoloError
        from yolo_cli.modelfile import load_model

        with device_scope(device):
            model, meta = load_model(path)
        if meta.kind != "yolo":
            raise YoloError(f"{path}: a {meta.kind!r} model, not a YOLO detector")
        return cls(model, meta, thresholds, device)

    def raw(self, batch: np.ndarray):
        """Model input ``(N, size, size, 3)`` → padded (boxes, scores, classes, count) numpy."""
        import tensorflow as tf

        x = tf.convert_to_tensor(batch, tf.float32)
        with device_scope(self.device):
            out = self._run(x)
        return tuple(o.numpy() for o in out)

    def detect(self, images: list[np.ndarray]) -> list[Detections]:
        """RGB uint8 images ``(H, W, 3)`` of any sizes → one :class:`Detections` each.

        Boxes are xyxy pixels of each original image (resize undone, clipped), sorted by score.
        """
        if not images:
            return []
        size, mode = self.meta.img_size, self.meta.resize
        inputs, letterboxes = zip(*(resize_image(im, size, mode) for im in images))
        boxes, scores, classes, count = self.raw(np.stack(inputs).astype(np.float32))
        return [
            _unletterbox(
                boxes[i, : count[i]], scores[i, : count[i]], classes[i, : count[i]], lb, im
            )
            for i, (lb, im) in enumerate(zip(letterboxes, images))
        ]

    def detect_stream(self, images: Iterable[np.ndarray], batch: int) -> Iterator[Detections]:
        """Detections for a stream of images, computed ``batch`` at a time, in order."""
        chunk: list[np.ndarray] = []
        for image in images:
            chunk.append(image)
            if len(chunk) == batch:
                yield from self.detect(chunk)
                chunk = []
        yield from self.detect(chunk)


def _unletterbox(boxes, scores, classes, lb: Letterbox | Stretch, image: np.ndarray) -> Detections:
    h, w = image.shape[:2]
    return Detections(
        clip(lb.invert(boxes), w, h), scores.astype(np.float32), classes.astype(np.int32)
    )
