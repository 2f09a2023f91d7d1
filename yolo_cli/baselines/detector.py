"""One interface for every detection method: ``detector.detect(images) → [Detections]``.

``yolo`` is :class:`yolo_cli.inference.Detector`; ``window`` and ``conv-window`` are
:class:`WindowDetector`, the crop classifier slid over an image pyramid one crop at a time
(:mod:`yolo_cli.baselines.window`) or in its convolutional form
(:mod:`yolo_cli.baselines.conv_window`). Each has ``meta`` (:class:`~yolo_cli.modelfile.ModelMeta`),
``detect(images)`` and ``detect_stream(images, batch)``, and gives Detections in the pixels of
the original images, so ``yolo detect``, ``yolo eval`` and ``yolo bench`` need not know which
one they hold. Light at import time (the CLI reads :data:`METHODS` while building its options).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from yolo_cli.config import DEFAULTS
from yolo_cli.device import device_scope
from yolo_cli.errors import YoloError

if TYPE_CHECKING:
    import numpy as np

    from yolo_cli.postprocess import Detections

METHODS = ("yolo", "window", "conv-window")
WINDOW_METHODS = ("window", "conv-window")


class WindowDetector:
    """The crop classifier ready to detect by sliding windows.

    model: the crop classifier (kind ``window``); method: ``window`` classifies every crop on
    its own, ``conv-window`` runs the classifier once per pyramid level with its dense layers
    as convolutions (converted here, once). Both classify the same windows — the network's
    total stride apart, at the pyramid scales the model file records (``meta.extra["scales"]``,
    else :data:`DEFAULTS.window_scales`) — and agree to float precision.
    thresholds: a :class:`yolo_cli.inference.Thresholds` (score threshold, NMS IoU, cap).
    """

    def __init__(self, model, meta, method: str = "conv-window", thresholds=None, device=None):
        from yolo_cli.baselines.conv_window import to_convolutional
        from yolo_cli.inference import Thresholds

        if method not in WINDOW_METHODS:
            raise ValueError(f"method is one of {WINDOW_METHODS}, got {method!r}")
        self.method = method
        self.meta = meta
        self.classifier = model
        self.thresholds = thresholds or Thresholds()
        self.scales = tuple(meta.extra.get("scales") or DEFAULTS.window_scales)
        self.device = device
        with device_scope(device):
            self.model = to_convolutional(model) if method == "conv-window" else model

    @classmethod
    def from_file(cls, path, method: str, thresholds=None, device=None) -> WindowDetector:
        """Load a ``window`` model file (:func:`yolo_cli.modelfile.load_model`)."""
        from yolo_cli.modelfile import load_model

        with device_scope(device):
            model, meta = load_model(path)
        if meta.kind != "window":
            raise YoloError(
                f"{path}: a {meta.kind!r} model; --method {method} needs a window classifier "
                "(train one with `yolo train --method window`)"
            )
        return cls(model, meta, method, thresholds, device)

    def detect_image(self, image: np.ndarray) -> tuple[Detections, int]:
        """One ``(H, W, 3)`` uint8 RGB image → ``(Detections, windows classified)``."""
        from yolo_cli.baselines.conv_window import conv_window_detect
        from yolo_cli.baselines.window import sliding_window_detect

        t = self.thresholds
        post = (t.conf, t.nms_iou, t.max_det, t.box_vote)
        with device_scope(self.device):
            if self.method == "window":
                return sliding_window_detect(self.model, self.meta, image, self.scales, None, *post)
            return conv_window_detect(self.model, self.meta, image, self.scales, *post)

    def detect(self, images: list[np.ndarray]) -> list[Detections]:
        """RGB uint8 images ``(H, W, 3)`` of any sizes → one Detections each, original pixels."""
        return [self.detect_image(image)[0] for image in images]

    def detect_stream(self, images: Iterable[np.ndarray], batch: int) -> Iterator[Detections]:
        """Detections for a stream of images, in order. Each image is its own pyramid (its own
        batches of windows), so ``batch`` does not group images here."""
        for image in images:
            yield self.detect_image(image)[0]

    def cost(self, height: int, width: int) -> tuple[int, int]:
        """``(windows classified, multiply-adds)`` on one ``height × width`` image."""
        from yolo_cli.baselines.conv_window import conv_window_cost
        from yolo_cli.baselines.window import sliding_window_cost

        if self.method == "window":
            return sliding_window_cost(self.model, self.meta, (height, width), self.scales)
        return conv_window_cost(self.model, self.meta, (height, width), self.scales)


def open_detector(method: str, path: str | Path, thresholds=None, device=None):
    """The detector of ``method`` for the model at ``path``.

    ``yolo`` → :class:`yolo_cli.inference.Detector` for a ``yolo`` model: a ``.keras`` file run
    by TensorFlow, or an exported artifact run by its runtime (``.tflite`` → LiteRT, ``.onnx`` →
    ONNX Runtime, a SavedModel folder → TensorFlow; :mod:`yolo_cli.runtimes`). ``window`` and
    ``conv-window`` → :class:`WindowDetector` (a ``window`` ``.keras`` file). A model of the
    other kind raises :class:`YoloError` naming the method that fits it.
    """
    from yolo_cli.inference import Detector
    from yolo_cli.modelfile import read_meta
    from yolo_cli.runtimes import artifact_format

    if method not in METHODS:
        raise YoloError(f"--method {method!r}: expected one of {', '.join(METHODS)}")
    if method in WINDOW_METHODS:
        if Path(path).exists() and artifact_format(path) != "keras":
            raise YoloError(f"{path}: --method {method} runs a window classifier's .keras file")
        return WindowDetector.from_file(path, method, thresholds, device)
    if read_meta(path).kind == "window":
        raise YoloError(
            f"{path}: a window classifier, not a YOLO detector; use --method window or conv-window"
        )
    return Detector.from_file(path, thresholds, device)
