"""The test model of ``yolo detect``'s tests and helpers to drive the command.

The test model is the real network with hand-set weights: every convolution passes the red
channel of its centre tap through (BatchNorm set to identity), so after the backbone each
grid cell holds the brightest red value inside it (max pooling). The head turns that into
p_c = sigmoid(20·v − 15) for anchor 0 and class "car": only a cell holding a white patch
(v = 1) clears the 0.6 threshold; black (v = 0) and the letterbox's grey border (v = 0.45)
do not. The decoded box is then the cell's centre with anchor 0's size, in model-input
pixels, and the tests map it back to the original image by hand.
"""

import json
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest
from click.testing import CliRunner

from yolo_cli.cli import cli
from yolo_cli.model import build_model
from yolo_cli.modelfile import Head, ModelMeta, save_model

NAMES = ["pedestrian", "car", "motorcycle"]
ANCHORS = [[20.0, 24.0], [60.0, 50.0]]
SIZE = 128
CAR = 1
SCORE = 1 / (1 + np.exp(-5.0)) * np.exp(10) / (np.exp(10) + 2)  # p_c · P(car)


def one_box_model(img_size: int = SIZE):
    model = build_model(len(NAMES), np.array(ANCHORS), img_size, width=0.25)
    red_in_block7 = model.get_layer("passthrough_fold").output.shape[-1]  # after the passthrough
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
    kernel[0, 0, 0, 0] = 20  # anchor 0's p_c logit from the red channel
    bias = np.zeros((len(ANCHORS), 5 + len(NAMES)), np.float32)
    bias[:, 0] = -30
    bias[0, 0] = -15
    bias[0, 5 + CAR] = 10
    head.set_weights([kernel, bias.reshape(-1)])
    return model


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """The one-box model as a model file."""
    meta = ModelMeta("yolo", NAMES, SIZE, [Head(32, ANCHORS)])
    return save_model(one_box_model(), tmp_path_factory.mktemp("m") / "one.keras", meta)


def scene(width: int, height: int, row: int, col: int, size: int = SIZE):
    """A black ``width × height`` RGB image with a white patch in grid cell (row, col) of the
    letterboxed ``size`` input, and the xyxy box (original pixels) the model must find."""
    scale = size / max(width, height)
    pad_x = (size - round(width * scale)) // 2
    pad_y = (size - round(height * scale)) // 2

    def to_original(x, y):
        return (x - pad_x) / scale, (y - pad_y) / scale

    image = np.zeros((height, width, 3), np.uint8)
    x1, y1 = to_original(col * 32 + 8, row * 32 + 8)
    x2, y2 = to_original(col * 32 + 24, row * 32 + 24)
    image[int(np.ceil(y1)) : int(y2), int(np.ceil(x1)) : int(x2)] = 255
    cx, cy = (col + 0.5) * 32, (row + 0.5) * 32
    (aw, ah) = ANCHORS[0]
    box = [*to_original(cx - aw / 2, cy - ah / 2), *to_original(cx + aw / 2, cy + ah / 2)]
    return image, np.array(box)


LANDSCAPE = (200, 100, 1, 2)  # width, height, cell row, cell col
PORTRAIT = (90, 180, 2, 1)


def write_rgb(path: Path, image: np.ndarray, *params) -> Path:
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), list(params))
    return path


def detect(*args, **kwargs):
    result = CliRunner().invoke(cli, ["detect", *map(str, args)], **kwargs)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def records(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def problem_lines(result) -> list[str]:
    """stderr lines other than the final summary."""
    return result.stderr.strip().splitlines()[:-1]


def write_video(path: Path, frames: int, image: np.ndarray, fps: float = 10.0) -> Path:
    h, w = image.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for _ in range(frames):
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def decoded_frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames
