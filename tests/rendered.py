"""Rendered test data whose detections are known exactly: a hand-set network and the scenes,
datasets and model files made for it.

The network is the real one with hand-set weights: every convolution
passes the red channel of its centre tap through (BatchNorm set to identity), so each grid
cell ends up holding the brightest red value inside it; the head turns a white cell (v = 1)
into p_c = σ(5) for anchor 0 and the class ``detects``, and anything darker into nothing.
A white patch inside grid cell (row, col) of a square ``SIZE`` image is therefore found as
the box centred on that cell with anchor 0's size, at score :data:`SCORE`.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import keras
import numpy as np

from yolo_cli.model import build_model
from yolo_cli.modelfile import Head, ModelMeta, save_model

SIZE = 128
ANCHORS = [[20.0, 24.0], [60.0, 50.0]]


def score(num_classes: int) -> float:
    """The score of the one box found: p_c · P(class) = σ(5) · e^10 / (e^10 + C − 1)."""
    return float(1 / (1 + np.exp(-5.0)) * np.exp(10) / (np.exp(10) + num_classes - 1))


def hand_model(num_classes: int, detects: int, img_size: int = SIZE):
    """The hand-set network (module doc), finding white cells as class ``detects``."""
    model = build_model(num_classes, np.array(ANCHORS), img_size, width=0.25)
    red_in_block7 = model.get_layer("passthrough_fold").output.shape[-1]
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D) and layer.name != "head":
            kernel = np.zeros(layer.kernel.shape, np.float32)
            c = kernel.shape[0] // 2
            if layer.name == "block7_conv":
                kernel[c, c, red_in_block7, 0] = 1
            elif layer.name != "passthrough_conv":
                kernel[c, c, 0, 0] = 1
            layer.set_weights([kernel])
        elif isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            ones, zeros = np.ones(n), np.zeros(n)
            layer.set_weights([ones, zeros, zeros, np.full(n, 1 - layer.epsilon)])
    head = model.get_layer("head")
    kernel = np.zeros(head.kernel.shape, np.float32)
    kernel[0, 0, 0, 0] = 20
    bias = np.zeros((len(ANCHORS), 5 + num_classes), np.float32)
    bias[:, 0] = -30
    bias[0, 0] = -15
    bias[0, 5 + detects] = 10
    head.set_weights([kernel, bias.reshape(-1)])
    return model


def save_hand_model(path: Path, names: list[str], detects: int, resizable: bool = False) -> Path:
    """The hand-set network as a model file; ``resizable``: it records its build, so
    ``resized_model`` can rebuild it at other input sizes."""
    extra = {"config": {"width": 0.25}} if resizable else {}
    meta = ModelMeta("yolo", names, SIZE, [Head(32, ANCHORS)], extra=extra)
    return save_model(hand_model(len(names), detects), path, meta)


def patch_scene(cells: list[tuple[int, int]], size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """A black ``size × size`` RGB image with a 16-pixel white patch in the middle of each
    grid cell (row, col), and the xyxy box the hand-set network finds for each: ``(N, 4)``."""
    image = np.zeros((size, size, 3), np.uint8)
    boxes = []
    aw, ah = ANCHORS[0]
    for row, col in cells:
        image[row * 32 + 8 : row * 32 + 24, col * 32 + 8 : col * 32 + 24] = 255
        cx, cy = (col + 0.5) * 32, (row + 0.5) * 32
        boxes.append([cx - aw / 2, cy - ah / 2, cx + aw / 2, cy + ah / 2])
    return image, np.array(boxes, np.float32).reshape(-1, 4)


def write_rgb(path: Path, image: np.ndarray, *params) -> Path:
    """Write an RGB image; ``params``: OpenCV's (``cv2.IMWRITE_JPEG_QUALITY, 80``)."""
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), list(params))
    return path


def write_coco(
    folder: Path,
    images: list[tuple[str, np.ndarray, np.ndarray, list[int]]],
    categories: dict[int, str],
    image_ids: list[int] | None = None,
) -> Path:
    """A COCO dataset in ``folder``: the images (``(file name, RGB image, boxes (N, 4) xyxy,
    category ids)``) written beside ``labels.json``, under ``image_ids`` (default 1, 2, …).
    Returns the JSON's path."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = image_ids or list(range(1, len(images) + 1))
    entries, annotations = [], []
    for image_id, (name, image, boxes, cats) in zip(ids, images, strict=True):
        write_rgb(folder / name, image)
        h, w = image.shape[:2]
        entries.append({"id": image_id, "file_name": name, "width": w, "height": h})
        for box, cat in zip(boxes, cats, strict=True):
            x1, y1, x2, y2 = (float(v) for v in box)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": cat,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
    cats = [{"id": cid, "name": name} for cid, name in categories.items()]
    path = folder / "labels.json"
    path.write_text(json.dumps({"images": entries, "annotations": annotations, "categories": cats}))
    return path
